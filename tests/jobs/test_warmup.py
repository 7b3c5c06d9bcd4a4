"""The worker compiles the fast path's shapes when it starts, before it takes the first job."""

from __future__ import annotations

import asyncio

from config import load_settings
from engine.demo import DEMO_MODEL_NAME
from engine.requests import GenerationRequest
from engine.runner import Engine
from jobs.records import WARMING_UP, JobStatus
from tests.queues import open_queue


async def test_the_first_job_finds_its_shapes_compiled(tmp_path):
    # The "eager" backend traces graphs as on a GPU but runs PyTorch's kernels: seconds, not minutes.
    speed = {"mode": "max", "compiler": "eager", "batches": [1, 2]}
    settings = load_settings(None, data_dir=tmp_path / "data", default_model=DEMO_MODEL_NAME, speed=speed)
    engine = Engine(settings)
    queue = await open_queue(settings, engine_factory=lambda: engine)
    try:
        events = queue.subscribe()
        job = await queue.submit(
            GenerationRequest("a red circle", width=64, height=64, steps=4, seed=1), "ann"
        )
        stop = asyncio.Event()
        runner = asyncio.create_task(queue.run(stop=stop))
        seen = []
        while (event := await asyncio.wait_for(events.get(), 120)).kind not in ("done", "failed"):
            seen.append(event)
        stop.set()
        await runner
        assert event.kind == "done" and (await queue.store.get(job.id)).status is JobStatus.DONE
        # While the worker compiled, the waiting job was told why it waits; then it ran.
        assert [(e.kind, e.phase) for e in seen[:2]] == [("queued", None), ("queued", WARMING_UP)]
        assert seen[2].kind == "started"
        fast = engine.load(None).fast
        assert fast.warmup_s > 0
        assert fast.calls["unet compiled"] == 4  # every step of the job on a warm graph
        assert fast.calls["unet eager"] == 0 and fast.calls["decode eager"] == 0
    finally:
        await queue.close()
