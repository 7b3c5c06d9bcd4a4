"""A long job resumes from its last slice on a worker of another host (jobs/slice_files.py): two `salon worker`
processes with their own data folders on one PostgreSQL queue. Worker A renders an animation in slices (it
yields to image jobs) and is SIGKILLed during a later slice; worker B takes the job over once A's lease
expired, fetches the frames of A's finished slices from the database and renders only the rest: one result.

Waits end on rows, files and exits (tests/jobs/processes.py), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from commands.animation import animation_job, animation_settings, parse_prompts
from config import load_settings
from engine.requests import GenerationRequest
from jobs.animation import animation_folder
from jobs.records import JobStatus
from tests.jobs.processes import signs_of_life, start_worker, wait_for, wait_for_exit
from tests.pg.test_workers import jobs
from tests.queues import open_queue

SETTINGS = dict(width=64, height=64, steps=8, max_frames=24, zoom="0:(1.03)", seed=4)


def configure(tmp_path: Path, name: str, url: str) -> Path:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'data_dir = "{tmp_path / name}"\n'
        "[queue]\nmax_batch_images = 1\npoll_interval_s = 0.1\nslice_s = 0.3\n"
        "[speed]\nwarmup = false\n"
        f'[database]\nurl = "{url}"\nlease_s = 2\n'
    )
    return config


def submit(config: Path) -> int:
    """ann's animation, then bob's pictures, so that the animation runs in slices (it yields to them)."""

    async def run() -> int:
        queue = await open_queue(load_settings(config))
        try:
            chosen = animation_settings(
                prompts=parse_prompts("0: a green star | 12: a red circle"), **SETTINGS
            )
            job, _ = animation_job(chosen, ["gif"])
            animation = await queue.submit_task(job.kind, job.params, "ann")
            for seed in range(6):
                request = GenerationRequest("a blue square", seed=seed, width=64, height=64, steps=2)
                await queue.submit(request, "bob")
            return animation.id
        finally:
            await queue.close()

    return asyncio.run(run())


def the_job(url: str, job_id: int) -> dict:
    return next(row for row in jobs(url) if row["id"] == job_id)


def test_a_long_job_killed_on_one_host_resumes_from_its_last_slice_on_another(tmp_path, postgres_url):
    config_a, config_b = configure(tmp_path, "a", postgres_url), configure(tmp_path, "b", postgres_url)
    job_id = submit(config_a)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    watch = lambda: (signs_of_life(log_a, log_b), [(r["status"], r["progress"]) for r in jobs(postgres_url)])  # noqa: E731

    worker_a = start_worker(config_a, log_a, "--name", "A", exit_when_idle=False)

    def later_slice_running() -> dict | None:
        row = the_job(postgres_url, job_id)
        return row if row["status"] == "running" and row["slices"] >= 2 and row["worker"] == "A" else None

    wait_for(later_slice_running, "the animation's third slice on worker A", watch, worker_a, log_a)
    worker_a.send_signal(signal.SIGKILL)
    worker_a.wait()
    killed_at = time.time()
    row = the_job(postgres_url, job_id)
    slices, unit = row["slices"], row["checkpoint"]["unit"]
    assert row["status"] == "running" and unit >= 2

    worker_b = start_worker(config_b, log_b, "--name", "B", exit_when_idle=False)
    try:
        wait_for(lambda: the_job(postgres_url, job_id)["status"] == "done", "the animation done on B", watch,
                 worker_b, log_b)  # fmt: skip
    finally:
        worker_b.send_signal(signal.SIGTERM)
        wait_for_exit(worker_b, "worker B's exit", watch, log_b)

    done = the_job(postgres_url, job_id)
    assert done["status"] == JobStatus.DONE.value and done["worker"] == "B"
    settings_a, settings_b = load_settings(config_a), load_settings(config_b)
    record = asyncio.run(_record(config_b, job_id))
    frames_a = animation_folder(settings_a, record) / "frames"
    frames_b = animation_folder(settings_b, record) / "frames"
    # B resumed after A's last finished slice, with the files of every slice A finished fetched…
    assert f"job {job_id} resumes after slice {slices} with the files of {slices} slices fetched" in (
        log_b.read_text()
    )
    # …so the frames of those slices are A's (fetched, not rendered again: older than the kill), and B
    # rendered only the frames after them.
    made_b = sorted(frames_b.glob("*.png"))
    fetched = [path for path in made_b if path.stat().st_mtime < killed_at]
    assert len(made_b) == SETTINGS["max_frames"] and len(fetched) == unit
    assert [path.name for path in fetched] == [path.name for path in made_b[:unit]]
    assert all(path.read_bytes() == (frames_a / path.name).read_bytes() for path in fetched)
    # One result: B's files, none on A.
    results = [Path(path) for path in done["results"]]
    assert results and all(path.is_file() and settings_b.data_dir in path.parents for path in results)
    assert not list((animation_folder(settings_a, record)).glob("animation.*"))
    assert sum(row["status"] == "done" for row in jobs(postgres_url)) == 7  # the animation and 6 pictures


async def _record(config: Path, job_id: int):
    queue = await open_queue(load_settings(config))
    try:
        return await queue.store.get(job_id)
    finally:
        await queue.close()
