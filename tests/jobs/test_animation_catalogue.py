"""A finished animation job goes into the catalog as one item with its frames (jobs/animation.py,
catalog/animations.py); a video input job whose file is not in the videos folder is refused when submitted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from commands.animation import animation_job, animation_settings
from core.errors import InvalidRequest
from jobs.records import JobStatus

SMALL = dict(width=64, height=64, steps=4, max_frames=3, seed=5, zoom="0:(1.0)", translation_x="0:(2)")


async def test_a_finished_animation_is_one_catalog_item_with_its_frames(make_queue):
    queue = await make_queue()
    chosen = animation_settings(
        prompts={"0": "a red circle"}, diffusion_cadence=2, optical_flow_cadence="DIS Medium", **SMALL
    )
    job, _ = animation_job(chosen, ["mp4"])
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stop))
    try:
        submitted = await queue.submit_task(job.kind, job.params, "ann")
        done = await queue.wait(submitted.id)
    finally:
        stop.set()
        await runner
    assert done.status is JobStatus.DONE, done.error
    records = await queue.catalog.of_job(done.id)
    [item] = [record for record in records if record.parent_id is None]
    assert len(records) == 3  # the item (frame 0) and frames 1 and 2
    assert Path(item.path).name == "00000.png" and "a red circle" in item.prompt
    media = await queue.catalog.animation("local", item.id)
    assert media is not None and str(media.video) == done.results[0] and media.frames == 3
    family = await queue.catalog.family("local", item.id)
    assert [m.relation for m in family.members] == ["original", "animation frame", "animation frame"]


async def test_a_video_outside_the_videos_folder_is_refused_when_submitted(make_queue, tmp_path):
    queue = await make_queue()
    chosen = animation_settings(
        prompts={"0": "a cat"}, animation_mode="Video Input", video_init_path="../secret.mp4", **SMALL
    )
    job, _ = animation_job(chosen, ["mp4"])
    with pytest.raises(InvalidRequest, match="video_init_path: '../secret.mp4' is not in"):
        await queue.submit_task(job.kind, job.params, "ann")
