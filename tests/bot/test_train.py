"""`/train` through Discord: a LoRA from attachments, with progress and an announcement; bad input refused."""

from __future__ import annotations

import io
import random
import threading

import pytest

from jobs.worker import GpuWorker
from tests.bot.conftest import ANN, CHANNEL
from tools.demo_model.shapes import Scene, ShapeSpec, render


def _png(seed: int) -> bytes:
    scene = Scene((ShapeSpec("star", "green", "center", "large"),), "white")
    buffer = io.BytesIO()
    render(scene, random.Random(seed)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def loss_shown_before_training_goes_on(salon, monkeypatch):
    """The worker waits after a training step's progress (with its loss) until Discord got an edit showing a
    loss: 8 steps can end before the first progress edit is due (edits are paced), and then the reply goes
    from 'starting' to the result, which is right for the bot but proves nothing about its progress edits."""
    shown = threading.Event()
    salon.fake.before_answer(lambda request: "loss" in _content(request), lambda request: shown.set())
    reporter = GpuWorker._reporter

    def waiting(self, job_id, report):
        on_step = reporter(self, job_id, report)

        def step(event) -> None:
            on_step(event)
            if "loss" in (event.phase or "") and not shown.wait(60):
                shown.set()  # no such edit came: the training ends, and the test's assertion says so

        return step

    monkeypatch.setattr(GpuWorker, "_reporter", waiting)
    yield
    shown.set()


def _content(request) -> str:
    return str(request.json.get("content") or "") if isinstance(request.json, dict) else ""


async def test_train_a_lora_from_attachments_and_use_it(salon, loss_shown_before_training_goes_on):
    attachments = {"images": ("a.png", _png(1), "image/png"), "image2": ("b.png", _png(2), "image/png")}
    options = {"kind": "lora", "name": "gstar", "steps": 8, "learning_rate": "5e-3", "resolution": 64}
    started = await salon.fake.slash(ANN, CHANNEL, "train", options, attachments=attachments)
    await salon.fake.wait_for(lambda: started.original is not None and "✅" in started.original.content, 120)
    message = started.original
    assert "<lora:gstar:1>" in message.content and "trained on 2 images" in message.content
    assert any("loss" in (edit.payload.get("content") or "") for edit in message.edits)
    path = salon.settings.lora_dir / "gstar.safetensors"
    try:
        assert path.is_file()
        used = await salon.result(await salon.imagine(prompt="a star <lora:gstar:1>", seed=3))
        assert 'Lora hashes: "gstar:' in (await salon.images_of(used))[0].infotext
        again = await salon.fake.slash(ANN, CHANNEL, "train", options, attachments=attachments)
        assert "set overwrite to replace it" in await _refusal(again)
    finally:  # the models folder is the test session's
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".salon.json").unlink(missing_ok=True)
        salon.engine.registry.refresh()


async def _refusal(interaction) -> str:
    """What the asker sees once the public "thinking…" reply of a deferred command is gone."""
    await interaction.wait_done()

    def shown():
        return [m for m in (interaction.original, *interaction.followups) if m is not None and not m.deleted]

    await interaction.fake.wait_for(lambda: shown() and all(m.ephemeral for m in shown()), 10, "the refusal")
    return shown()[-1].content


async def test_train_refuses_missing_images_and_bad_options(salon):
    nothing = await salon.fake.slash(ANN, CHANNEL, "train", {"kind": "lora", "name": "x"})
    assert "attach images (or a zip) or give a query" in await _refusal(nothing)
    attachments = {"images": ("a.png", _png(1), "image/png")}
    for options, expected in (
        ({"name": "../up"}, "**name**"),
        ({"name": "ok", "learning_rate": "quick"}, "**learning_rate**"),
        ({"name": "ok", "rank": 0}, "**rank**"),
        ({"kind": "hypernetwork", "name": "ok", "activation": "wiggly"}, "**activation**"),
        ({"kind": "hypernetwork", "name": "ok", "layer_structure": "1, x, 1"}, "**layer_structure**"),
        ({"kind": "hypernetwork", "name": "ok", "layer_structure": "2, 1"}, "**layer_structure**"),
        ({"kind": "embedding", "name": "ok", "template": "no name here"}, "**template**"),
        ({"kind": "hypernetwork", "name": "ok", "dropout_structure": "0.2, 0, 0"}, "**dropout_structure**"),
    ):
        refused = await salon.fake.slash(
            ANN, CHANNEL, "train", {"kind": "lora", **options}, attachments=attachments
        )
        await refused.wait_done()
        content = [m for m in (refused.original, *refused.followups) if m and not m.deleted][-1].content
        assert expected in content, content
    assert await salon.services.queue.store.recent() == []


async def test_train_an_embedding_and_use_it_by_name(salon):
    attachments = {"images": ("a.png", _png(1), "image/png"), "image2": ("b.png", _png(2), "image/png")}
    options = {
        "kind": "embedding",
        "name": "gx",
        "steps": 6,
        "resolution": 64,
        "init_text": "star",
        "vectors": 2,
    }
    started = await salon.fake.slash(ANN, CHANNEL, "train", options, attachments=attachments)
    await salon.fake.wait_for(lambda: started.original is not None and "✅" in started.original.content, 120)
    assert "`gx` in a prompt" in started.original.content
    path = salon.settings.embeddings_path / "gx.pt"
    try:
        assert path.is_file()
        used = await salon.result(await salon.imagine(prompt="a picture of gx", seed=3))
        assert "TI hashes" in (await salon.images_of(used))[0].infotext
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".salon.json").unlink(missing_ok=True)
        salon.engine.registry.refresh()


async def test_train_on_the_servers_images_that_a_query_finds(salon):
    await salon.result(await salon.imagine(seed=5))
    options = {"kind": "lora", "name": "fromsearch", "query": "circle", "steps": 3, "resolution": 64}
    started = await salon.fake.slash(ANN, CHANNEL, "train", options)
    await salon.fake.wait_for(lambda: started.original is not None and "✅" in started.original.content, 120)
    assert "trained on 1 images" in started.original.content
    job = (await salon.services.queue.store.recent())[0]
    assert job.request["images"][0]["caption"] == "a red circle on a blue background"
    path = salon.settings.lora_dir / "fromsearch.safetensors"
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".salon.json").unlink(missing_ok=True)
    salon.engine.registry.refresh()
    nothing = await salon.fake.slash(ANN, CHANNEL, "train", {**options, "name": "none", "query": "dragon"})
    assert "no images in this server match 'dragon'" in await _refusal(nothing)


async def test_train_a_hypernetwork(salon):
    attachments = {"images": ("a.png", _png(1), "image/png")}
    options = {"kind": "hypernetwork", "name": "hnet", "steps": 3, "resolution": 64, "activation": "relu"}
    options |= {"weight_init": "XavierUniform", "dropout_structure": "0, 0.25, 0"}
    started = await salon.fake.slash(ANN, CHANNEL, "train", options, attachments=attachments)
    await salon.fake.wait_for(lambda: started.original is not None and "✅" in started.original.content, 120)
    assert "`<hypernet:hnet:1>`" in started.original.content
    path = salon.settings.hypernetworks_dir / "hnet.pt"
    try:
        import torch

        data = torch.load(path, weights_only=True)
        assert data["weight_initialization"] == "XavierUniform" and data["dropout_structure"] == [0, 0.25, 0]
        assert data["use_dropout"] is True
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".salon.json").unlink(missing_ok=True)
        salon.engine.registry.refresh()


async def test_train_a_dreambooth_checkpoint_with_previews_and_imagine_with_it(salon):
    import shutil

    attachments = {"images": ("a.png", _png(1), "image/png"), "image2": ("b.png", _png(2), "image/png")}
    options = {
        "kind": "dreambooth",
        "name": "dbgstar",
        "steps": 4,
        "learning_rate": "3e-5",
        "resolution": 64,
        "instance_prompt": "a photo of [name]",
        "class_prompt": "a star",
        "class_images": 2,
        "preview_every": 2,
    }
    started = await salon.fake.slash(ANN, CHANNEL, "train", options, attachments=attachments)
    await salon.fake.wait_for(lambda: started.original is not None and "✅" in started.original.content, 120)
    message = started.original
    assert "`/imagine model:dbgstar`, with `a photo of dbgstar` in the prompt" in message.content
    assert any(f.filename == "preview.png" for edit in message.edits for f in edit.files)
    folder = salon.settings.checkpoints_dir / "dbgstar"
    try:
        assert (folder / "model_index.json").is_file()
        salon.engine.registry.refresh()
        used = await salon.result(await salon.imagine(prompt="a photo of dbgstar", model="dbgstar", seed=3))
        assert "Model: dbgstar" in (await salon.images_of(used))[0].infotext
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        (salon.settings.checkpoints_dir / "dbgstar.salon.json").unlink(missing_ok=True)
        shutil.rmtree(salon.settings.data_dir / "training" / "dbgstar", ignore_errors=True)
        salon.engine.registry.refresh()


async def test_a_cancelled_training_says_which_saved_result_stays(salon):
    attachments = {"images": ("a.png", _png(1), "image/png")}
    options = {"kind": "lora", "name": "cutshort", "steps": 2000, "resolution": 64, "save_every": 2}
    started = await salon.fake.slash(ANN, CHANNEL, "train", options, attachments=attachments)
    path = salon.settings.lora_dir / "cutshort.safetensors"
    try:
        await salon.fake.wait_for(lambda: path.with_name(path.name + ".salon.json").is_file(), 60)
        cancel = await salon.fake.slash(ANN, CHANNEL, "cancel", {})
        await cancel.wait_done()
        await salon.fake.wait_for(
            lambda: started.original is not None and "🚫" in started.original.content, 60
        )
        assert "its last saved result stays installed: `cutshort` from step " in started.original.content
        assert path.is_file()
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".salon.json").unlink(missing_ok=True)
        salon.engine.registry.refresh()


async def test_train_dreambooth_concepts_from_a_json_list_and_a_zip(salon):
    import json
    import shutil
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for folder, seeds in (("stars", (1, 2)), ("more/stars", (3,))):
            for seed in seeds:
                archive.writestr(f"{folder}/{seed}.png", _png(seed))
    concepts = [
        {
            "instance_data_dir": "stars",
            "instance_prompt": "zka",
            "save_sample_prompt": "zka",
            "save_infer_steps": 2,
        },
        {"instance_data_dir": "./more/stars/", "instance_prompt": "zkb", "wobble": True},
    ]
    attachments = {
        "images": ("shapes.zip", buffer.getvalue(), "application/zip"),
        "image2": ("concepts.json", json.dumps(concepts).encode(), "application/json"),
    }
    options = {"kind": "dreambooth", "name": "dbcon", "steps": 2, "resolution": 64}
    refused = await salon.fake.slash(
        ANN, CHANNEL, "train", {**options, "kind": "lora"}, attachments=attachments
    )
    assert "**concepts**" in await _refusal(refused)
    started = await salon.fake.slash(ANN, CHANNEL, "train", options, attachments=attachments)
    await salon.fake.wait_for(lambda: started.original is not None and "✅" in started.original.content, 180)
    shown = [edit.payload.get("content") or "" for edit in started.original.edits]
    assert any("note: concepts[1]: unknown key 'wobble' ignored" in content for content in shown), shown
    folder = salon.settings.checkpoints_dir / "dbcon"
    try:
        assert (folder / "model_index.json").is_file()
        job = (await salon.services.queue.store.recent())[0]
        assert [item["concept"] for item in job.request["images"]] == [0, 0, 1]
        samples = salon.engine.settings.data_dir / "training" / "dbcon"  # the worker's data folder
        assert sorted(p.name for p in samples.iterdir()) == ["dbcon-c0-00002-0.png"]  # concept 1: no sample
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        (salon.settings.checkpoints_dir / "dbcon.salon.json").unlink(missing_ok=True)
        shutil.rmtree(salon.engine.settings.data_dir / "training" / "dbcon", ignore_errors=True)
        salon.engine.registry.refresh()
