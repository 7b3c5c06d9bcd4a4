"""Training on every kind of model Salon loads: a Dreambooth `.safetensors` of the demo model (whose design has
no A1111 layout) and SDXL Dreambooth, embeddings and hypernetworks on the tiny SDXL model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from engine.training.loop import LoopOptions, NoiseObjective, encode_examples
from tests.engine.helpers import pixels, request


def _stripes(shift: int):
    from PIL import Image

    array = np.zeros((64, 64, 3), dtype=np.uint8)
    for x in range(64):
        array[:, x] = (255, 40, 40) if (x + shift) // 8 % 2 else (250, 250, 250)
    return Image.fromarray(array)


def test_a_dreambooth_safetensors_of_the_demo_model_loads_back_and_draws_the_same_pixels(engine, tmp_path):
    from engine.models.diffusers_file import LAYOUT_KEY
    from engine.training.dreambooth import (
        DreamboothOptions,
        check_can_save,
        checkpoint_path,
        has_a1111_layout,
        train_dreambooth_slice,
    )

    model = engine.base_model(None)
    assert not has_a1111_layout(model)  # its text-conditioned UNet: no A1111 names (the old refusal)
    examples = encode_examples(model, [(_stripes(k), "zkw") for k in range(2)], 64)
    options = DreamboothOptions(
        "dbdemo", LoopOptions(steps=2, learning_rate="1e-4"), instance_prompt="zkw", resolution=64
    )
    state, trainer = train_dreambooth_slice(model, examples, options, tmp_path / "w", lambda: False)
    folder = checkpoint_path(engine.settings.checkpoints_dir, "dbdemo-folder", model, "diffusers")
    file = checkpoint_path(engine.settings.checkpoints_dir, "dbdemo-file", model, "safetensors")
    check_can_save(model, file)
    try:
        trainer.save(folder, state, 2)
        trainer.save(file, state, 2)
        with safe_open(str(file), "pt") as opened:
            assert opened.metadata()[LAYOUT_KEY] == "diffusers" and "salon_dreambooth" in opened.metadata()
        assert (file.with_name("dbdemo-file.config") / "unet" / "config.json").is_file()
        engine.registry.refresh()
        from_folder = engine.txt2img(request("zkw", steps=6, model="dbdemo-folder")).images[0]
        from_file = engine.txt2img(request("zkw", steps=6, model="dbdemo-file")).images[0]
        base = engine.txt2img(request("zkw", steps=6)).images[0].image
        assert np.array_equal(pixels(from_folder.image), pixels(from_file.image))
        assert not np.array_equal(pixels(from_file.image), pixels(base))
        assert "Model: dbdemo-file" in from_file.infotext
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(file.with_name("dbdemo-file.config"), ignore_errors=True)
        file.unlink(missing_ok=True)
        engine.registry.refresh()


@pytest.fixture(scope="module")
def xl_engine(tmp_path_factory, tiny_sdxl_dir):
    from config import load_settings
    from engine.runner import Engine

    root = tmp_path_factory.mktemp("xl")
    shutil.copytree(tiny_sdxl_dir, root / "models" / "Stable-diffusion" / "tiny-xl")
    return Engine(load_settings(None, data_dir=root, default_model="tiny-xl"))


@pytest.fixture(scope="module")
def xl_examples(xl_engine):
    model = xl_engine.base_model(None)
    assert model.sdxl
    return encode_examples(model, [(_stripes(k), "zkw") for k in range(2)], 64)


def test_sdxl_dreambooth_learns_and_saves_a_folder_and_an_a1111_file_that_draw_alike(
    xl_engine, xl_examples, tmp_path
):
    from engine.training.dreambooth import (
        DreamboothOptions,
        checkpoint_path,
        has_a1111_layout,
        train_dreambooth_slice,
    )

    model = xl_engine.base_model(None)
    assert has_a1111_layout(model)
    options = DreamboothOptions(
        "xldb", LoopOptions(steps=6, learning_rate="1e-4", batch_size=2), instance_prompt="zkw",
        resolution=64, train_text_encoder=True,
    )  # fmt: skip
    state, trainer = train_dreambooth_slice(model, xl_examples, options, tmp_path / "w", lambda: False)
    assert {"te.", "te2."} <= {name[: name.index(".") + 1] for name in trainer.parameters}
    objective = NoiseObjective(model, 0)
    states, pooled = trainer.encode(["zkw"] * 2)
    before, after = (
        objective.evaluate(unet, xl_examples, states, pooled=pooled) for unet in (model.unet, trainer.unet)
    )
    assert after < before
    trainer.save(
        checkpoint_path(xl_engine.settings.checkpoints_dir, "xldb-dir", model, "diffusers"), state, 2
    )
    file = trainer.save(
        checkpoint_path(xl_engine.settings.checkpoints_dir, "xldb-file", model, "safetensors"), state, 2
    )
    with safe_open(str(file), "pt") as opened:  # A1111's SDXL names: both text encoders
        keys = set(opened.keys())
    assert any(k.startswith("conditioner.embedders.1.model.") for k in keys)
    assert any(k.startswith("conditioner.embedders.0.transformer.") for k in keys)
    xl_engine.registry.refresh()
    from_folder = xl_engine.txt2img(request("zkw", model="xldb-dir")).images[0].image
    from_file = xl_engine.txt2img(request("zkw", model="xldb-file")).images[0].image
    base = xl_engine.txt2img(request("zkw")).images[0].image
    assert np.abs(pixels(from_folder).astype(int) - pixels(from_file)).max() <= 1
    assert not np.array_equal(pixels(from_folder), pixels(base))
    assert trainer.preview("zkw", 0, 2, negative="blurry", guidance=3.0).size == (64, 64)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_an_sdxl_embedding_saves_clip_l_and_clip_g_and_is_used_by_its_name(
    xl_engine, xl_examples, tmp_path, suffix
):
    from engine.models.model_files import load_weights
    from engine.training.embedding import EmbeddingOptions, save_embedding, train_embedding_slice

    model = xl_engine.base_model(None)
    name = f"xlti{suffix[1:3]}"
    options = EmbeddingOptions(
        name, LoopOptions(steps=4, learning_rate="5e-3"), init_text="star", vectors=2, resolution=64,
        template="[name]",
    )  # fmt: skip
    examples = [type(e)(e.latents, name) for e in xl_examples]
    state, trainer = train_embedding_slice(model, examples, options, tmp_path / "w", lambda: False)
    assert set(trainer.parameters) == {"vectors", "vectors_g"}
    path = save_embedding(trainer, xl_engine.settings.embeddings_path / f"{name}{suffix}", state)
    data = load_weights(path, allow_legacy_pt=True)
    assert set(data) == {"clip_l", "clip_g"}  # exactly what A1111 and kohya read as an SDXL embedding
    widths = (model.pipe.text_encoder.config.hidden_size, model.pipe.text_encoder_2.config.hidden_size)
    assert (data["clip_l"].shape, data["clip_g"].shape) == ((2, widths[0]), (2, widths[1]))
    xl_engine.registry.refresh()
    try:
        used = xl_engine.txt2img(request(f"a {name}")).images[0]
        plain = xl_engine.txt2img(request("a star")).images[0].image
        assert "TI hashes" in used.infotext and f"{name}:" in used.infotext
        assert not np.array_equal(pixels(used.image), pixels(plain))
    finally:
        path.unlink()
        xl_engine.registry.refresh()


def test_an_sdxl_hypernetwork_learns_and_applies(xl_engine, xl_examples, tmp_path):
    from engine.prompts.hypernetwork_attention import applied_hypernetworks
    from engine.training.hypernetwork import (
        HypernetworkTraining,
        attention_widths,
        save_trained,
        train_hypernetwork_slice,
    )

    model = xl_engine.base_model(None)
    options = HypernetworkTraining(
        "xlhn", LoopOptions(steps=6, learning_rate="2e-3", batch_size=2), resolution=64,
        weight_init="XavierNormal", dropout=(0, 0.1, 0),
    )  # fmt: skip
    state, trainer = train_hypernetwork_slice(model, xl_examples, options, tmp_path / "w", lambda: False)
    objective = NoiseObjective(model, 0)
    states, pooled = trainer.encode(["zkw"] * 2)
    trainer.hypernetwork.eval()
    plain = objective.evaluate(model.unet, xl_examples, states, pooled=pooled)
    with applied_hypernetworks(model.unet, [(trainer.hypernetwork, 1.0)]):
        trained = objective.evaluate(model.unet, xl_examples, states, pooled=pooled)
    assert trained < plain
    context = model.pipe.text_encoder.config.hidden_size + model.pipe.text_encoder_2.config.hidden_size
    assert context in attention_widths(model.unet)
    path = save_trained(trainer, xl_engine.settings.hypernetworks_dir / "xlhn.pt", state)
    assert context in torch.load(path, weights_only=True)
    xl_engine.registry.refresh()
    try:
        base = xl_engine.txt2img(request("zkw")).images[0].image
        applied = xl_engine.txt2img(request("zkw <hypernet:xlhn:1>")).images[0].image
        assert not np.array_equal(pixels(base), pixels(applied))
    finally:
        path.unlink()
        xl_engine.registry.refresh()
