"""Training as a queue job on the demo model: slices that let image jobs through, the result installed."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from commands.training import training_job
from engine.demo.shapes import Scene, ShapeSpec, render
from engine.requests import GenerationRequest
from jobs.records import JobStatus
from jobs.training import OWNER_SUFFIX


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
    from engine.errors import InvalidRequest

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
