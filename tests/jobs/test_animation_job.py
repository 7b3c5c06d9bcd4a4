"""Animation as a queue job on the demo model: slices of frames that let image jobs through, resumable after a
SIGKILL from the last finished frame, videos and a Deforum settings file at the end."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from commands.animation import animation_job, animation_settings, parse_prompts
from config import load_settings
from engine.animation.animate import frame_path
from engine.animation.video import read_video
from engine.requests import GenerationRequest
from jobs.animation import animation_folder
from jobs.records import JobStatus
from tests.jobs.processes import activity, row, start_worker, wait_for, wait_for_exit
from tests.queues import open_queue

SMALL = dict(width=64, height=64, steps=6, max_frames=12, zoom="0:(1.03)", translation_x="0:(1)")


async def test_an_animation_yields_to_an_image_job_and_ends_with_videos(make_queue, settings):
    queue = await make_queue(slice_s=0.2, poll_interval_s=0.02)
    chosen = animation_settings(prompts=parse_prompts("0: a red circle | 6: a blue square"), seed=9, **SMALL)
    job, seed = animation_job(chosen, ["mp4", "gif"])
    events = queue.subscribe()
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stop))
    previews = []
    try:
        animation = await queue.submit_task(job.kind, job.params, "ann")
        while (event := await events.get()).kind != "progress" or event.job_id != animation.id:
            pass
        previews.append(event.preview_png)
        image = await queue.submit(
            GenerationRequest("a red circle", seed=1, width=64, height=64, steps=2), "bob"
        )
        image_done = await queue.wait(image.id)
        done = await queue.wait(animation.id)
    finally:
        stop.set()
        await runner
    assert image_done.status is JobStatus.DONE and done.status is JobStatus.DONE, done.error
    assert image_done.finished_at < done.finished_at and done.slices >= 1
    assert previews[0] is not None and previews[0][:4] == b"\x89PNG"
    folder = animation_folder(settings, await queue.store.get(animation.id))
    assert [p.rsplit("/", 1)[1] for p in done.results] == ["animation.mp4", "animation.gif", "settings.txt"]
    frames, fps = read_video(folder / "animation.mp4")
    assert len(frames) == 12 and fps == 15
    exported = json.loads((folder / "settings.txt").read_text())
    assert exported["zoom"] == "0:(1.03)" and exported["seed"] == seed == 9
    assert len(list((folder / "frames").glob("*.png"))) == 12


async def test_a_bad_animation_is_refused_when_submitted(make_queue):
    from core.errors import InvalidRequest

    queue = await make_queue()
    chosen = animation_settings(prompts={"0": "a cat"}, **SMALL)
    job, _ = animation_job(chosen, ["mp4"])
    bad = {**job.params, "settings": {**job.params["settings"], "angle": "0:(__import__(t))"}}
    with pytest.raises(InvalidRequest, match="angle at frame 0: position 1: unknown name '__import__'"):
        await queue.submit_task(job.kind, bad, "ann")
    with pytest.raises(InvalidRequest, match="formats"):
        await queue.submit_task(job.kind, {**job.params, "formats": ["avi"]}, "ann")
    big = {**job.params, "settings": {**job.params["settings"], "width": 4096}}
    with pytest.raises(InvalidRequest, match="width"):
        await queue.submit_task(job.kind, big, "ann")
    assert await queue.store.recent() == []


def _record(settings, job_id: int):
    async def get():
        queue = await open_queue(settings)
        try:
            return await queue.store.get(job_id)
        finally:
            await queue.close()

    return asyncio.run(get())


def test_a_killed_animation_resumes_after_its_last_finished_frame(tmp_path):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[queue]\npoll_interval_s = 0.1\n')
    settings = load_settings(config)
    chosen = animation_settings(
        prompts={"0": "a green star"}, seed=4, **{**SMALL, "max_frames": 24, "steps": 10}
    )

    async def submit() -> int:
        queue = await open_queue(settings)
        try:
            job, _ = animation_job(chosen, ["gif"])
            return (await queue.submit_task(job.kind, job.params, "ann")).id
        finally:
            await queue.close()

    job_id = asyncio.run(submit())
    frames = animation_folder(settings, _record(settings, job_id)) / "frames"
    log = tmp_path / "worker.log"
    worker = start_worker(config, log)
    # Waits end on progress (a frame file, the log, the point file), not on a wall-clock budget.
    watch = lambda: (activity(settings.data_dir, log)(), len(list(frames.glob("*.png"))))  # noqa: E731
    wait_for(lambda: frame_path(frames, 4).is_file(), "frame 4", watch, worker, log)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    kept = sorted(frames.glob("*.png"))
    assert 5 <= len(kept) < 24 and row(settings.queue_db, job_id)["status"] == "running"
    written = {path.name: path.stat().st_mtime_ns for path in kept}
    wait_for_exit(start_worker(config, log), "the resumed animation", watch, log)
    done = row(settings.queue_db, job_id)
    assert done["status"] == "done", log.read_text()[-2000:]
    resumed = [line for line in log.read_text().splitlines() if "resumes at frame" in line]
    assert resumed and int(resumed[0].split("at frame ")[1].split()[0]) == len(kept)
    assert all(frames.joinpath(name).stat().st_mtime_ns == when for name, when in written.items())  # kept
    assert len(list(frames.glob("*.png"))) == 24
