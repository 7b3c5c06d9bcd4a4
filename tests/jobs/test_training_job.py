"""Training as a queue job on the demo model: slices that let image jobs through, the result installed."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from commands.training import training_job
from engine.models.trained_files import OWNER_SUFFIX
from engine.requests import GenerationRequest
from jobs.records import JobStatus
from tools.demo_model.shapes import Scene, ShapeSpec, render


def _stars() -> list:
    rng = random.Random(0)
    scene = Scene((ShapeSpec("star", "green", "center", "large"),), "white")
    return [(render(scene, rng), "qvx style") for _ in range(4)]


OPTIONS = {"steps": 12, "learning_rate": "5e-3", "batch_size": 2, "resolution": 64, "rank": 4}


async def test_training_yields_to_an_image_job_and_installs_a_lora(make_queue, settings):
    queue = await make_queue(slice_s=0.3, poll_interval_s=0.02)
    job = training_job(queue.settings, "lora", "qvx", _stars(), "ann", options=OPTIONS)
    events = queue.subscribe()
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stop))
    try:
        training = await queue.submit_task(job.kind, job.params, "ann")
        while (event := await events.get()).kind != "progress" or event.job_id != training.id:
            pass
        image = await queue.submit(
            GenerationRequest("a red circle", seed=1, width=64, height=64, steps=2), "bob"
        )
        image_done = await queue.wait(image.id)
        trained = await queue.wait(training.id)
    finally:
        stop.set()
        await runner
    assert image_done.status is JobStatus.DONE and trained.status is JobStatus.DONE
    assert image_done.finished_at < trained.finished_at  # the image did not wait for the whole training
    assert trained.slices >= 1
    path = settings.lora_dir / "qvx.safetensors"
    try:
        assert trained.results == (str(path),) and path.is_file()
        assert json.loads(path.with_name(path.name + OWNER_SUFFIX).read_text())["owner"] == "ann"
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + OWNER_SUFFIX).unlink(missing_ok=True)


async def test_a_training_job_is_checked_when_submitted(make_queue):
    from core.errors import InvalidRequest

    queue = await make_queue()
    job = training_job(queue.settings, "lora", "ok", _stars()[:1], "ann", options=OPTIONS)
    with pytest.raises(InvalidRequest, match="learning_rate"):
        await queue.submit_task(job.kind, {**job.params, "learning_rate": "fast"}, "ann")
    with pytest.raises(InvalidRequest, match="rank"):
        await queue.submit_task(job.kind, {**job.params, "rank": 0}, "ann")
    with pytest.raises(InvalidRequest, match="name"):
        await queue.submit_task(job.kind, {**job.params, "name": "../evil"}, "ann")
    with pytest.raises(InvalidRequest, match="missing"):
        await queue.submit_task(job.kind, {**job.params, "images": [{"file": "../../etc/passwd"}]}, "ann")
    assert await queue.store.recent() == []


async def test_a_cancel_keeps_the_last_saved_file_and_previews_come_with_progress(make_queue, settings):
    from safetensors import safe_open

    from engine.models.trained_files import preview_folder

    queue = await make_queue(poll_interval_s=0.02)
    options = {**OPTIONS, "steps": 400, "save_every": 3, "preview_every": 3, "preview_steps": 2}
    job = training_job(queue.settings, "lora", "qvxcut", _stars(), "ann", options=options)
    events = queue.subscribe()
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stop))
    path = settings.lora_dir / "qvxcut.safetensors"
    previews = []
    try:
        training = await queue.submit_task(job.kind, job.params, "ann")
        while True:
            event = await events.get()
            if event.kind == "progress" and event.job_id == training.id:
                if event.preview_png is not None:
                    previews.append(event.step)
                if event.step >= 7:
                    break
        await queue.cancel(training.id, "ann")
        cancelled = await queue.wait(training.id)
    finally:
        stop.set()
        await runner
    try:
        assert cancelled.status is JobStatus.CANCELLED
        assert previews[:2] == [3, 6]  # a preview every 3 steps, and only then
        assert (preview_folder(settings, "qvxcut") / "qvxcut-00003.png").is_file()
        with safe_open(str(path), "pt") as file:
            saved_step = int(file.metadata()["ss_steps"])
        assert saved_step % 3 == 0 and 6 <= saved_step < 400  # the last file saved before the cancel stays
        sidecar = json.loads(path.with_name(path.name + OWNER_SUFFIX).read_text())
        assert sidecar["owner"] == "ann" and sidecar["step"] == saved_step
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + OWNER_SUFFIX).unlink(missing_ok=True)
        import shutil

        shutil.rmtree(preview_folder(settings, "qvxcut"), ignore_errors=True)


async def test_dreambooth_job_generates_class_images_in_slices_then_installs_a_checkpoint(
    make_queue, settings
):
    import shutil

    from engine.models.registry import ModelKind, ModelRegistry

    queue = await make_queue(slice_s=0.01, poll_interval_s=0.02)
    options = {
        "steps": 4,
        "learning_rate": "3e-5",
        "batch_size": 2,
        "resolution": 64,
        "instance_prompt": "qvx [filewords]",
        "class_prompt": "a star",
        "class_images": 3,
        "class_steps": 2,
    }
    job = training_job(queue.settings, "dreambooth", "qvxdb", _stars(), "ann", options=options)
    phases = []
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stop))
    folder = settings.checkpoints_dir / "qvxdb"
    try:
        training = await queue.submit_task(job.kind, job.params, "ann")
        # Image jobs keep arriving, so each slice ends as soon as it may: class images come a few per slice.
        feeder = asyncio.create_task(_keep_submitting(queue))
        done = await queue.wait(training.id, on_event=lambda e: phases.append(e.phase) if e.phase else None)
        feeder.cancel()
    finally:
        stop.set()
        await runner
    try:
        assert done.status is JobStatus.DONE, done.error
        assert done.results == (str(folder),) and (folder / "model_index.json").is_file()
        assert done.slices >= 2
        assert any(phase.startswith("class images") for phase in phases)
        assert "qvxdb" in ModelRegistry.from_settings(settings).names(ModelKind.CHECKPOINT)
        assert json.loads((settings.checkpoints_dir / "qvxdb.salon.json").read_text())["owner"] == "ann"
        about = json.loads((folder / "salon_dreambooth.json").read_text())
        assert about["instance_prompt"] == "qvx [filewords]" and about["steps"] == 4
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        (settings.checkpoints_dir / "qvxdb.salon.json").unlink(missing_ok=True)


async def _keep_submitting(queue) -> None:
    seed = 0
    while True:
        seed += 1
        image = await queue.submit(
            GenerationRequest("a red circle", seed=seed, width=64, height=64, steps=1), "bob"
        )
        await queue.wait(image.id)
