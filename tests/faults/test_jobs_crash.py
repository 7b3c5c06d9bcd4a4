"""Crashes are blamed on the job that causes them: a batch that dies is run again job by job, and only a job that
kills the worker at the same point while running alone fails (issue 18, item 2). Real `salon worker` processes,
SIGKILLed from outside or killing themselves (tests/faults/hooked_worker.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from config import load_settings
from engine.requests import GenerationRequest
from tests.jobs.processes import activity, point, rows, start_worker, wait_for, wait_for_exit
from tests.queues import open_queue


def configure(tmp_path: Path, **queue: object):
    config = tmp_path / "salon.toml"
    options = "\n".join(f"{key} = {value}" for key, value in {"poll_interval_s": 0.1, **queue}.items())
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[queue]\n{options}\n')
    return config, load_settings(config)


def submit(settings, prompts: list[str], steps: int = 12) -> list[int]:
    async def run() -> list[int]:
        queue = await open_queue(settings)
        try:
            return [
                (
                    await queue.submit(
                        GenerationRequest(prompt, seed=seed, width=64, height=64, steps=steps), "ann"
                    )
                ).id
                for seed, prompt in enumerate(prompts)
            ]
        finally:
            await queue.close()

    return asyncio.run(run())


def assert_intact(settings) -> None:
    for db in (settings.queue_db, settings.catalog_dir / "catalog.db"):
        with sqlite3.connect(db, timeout=10) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)], db


def catalog_paths(settings) -> list[str]:
    with sqlite3.connect(settings.catalog_dir / "catalog.db", timeout=10) as connection:
        return [row[0] for row in connection.execute("SELECT path FROM images")]


def test_a_batch_killed_twice_mid_batch_ends_with_every_job_done_once(tmp_path):
    """Item 2: two SIGKILLs, each in the middle of a batch of four: no job fails, none is produced twice."""
    config, settings = configure(tmp_path, max_batch_images=4)
    ids = submit(settings, [f"a red circle, number {n}" for n in range(8)])
    data, log = settings.data_dir, tmp_path / "worker.log"
    killed = []
    for _ in range(2):  # each time, whichever batch the worker runs next
        started = time.time_ns()
        worker = start_worker(config, log)

        def mid_batch(started=started):
            where = point(data)
            fresh = (data / "worker.point").stat().st_mtime_ns > started if where else False
            return fresh and len(where.jobs) > 1 and where.phase == "txt2img" and where.step >= 3 and where

        killed.append(wait_for(mid_batch, "a batch at step 3", activity(data, log), worker, log).jobs)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert_intact(settings)
    assert killed == [tuple(ids[:4]), tuple(ids[4:])]  # the first batch's jobs then ran alone
    assert wait_for_exit(start_worker(config, log), "the last worker", activity(data, log), log) == 0

    jobs = rows(settings.queue_db)
    assert [job["status"] for job in jobs] == ["done"] * 8, [job["error"] for job in jobs]
    assert [job["attempts"] for job in jobs] == [1] * 8  # a batch's death counts for none of its jobs
    assert all(json.loads(job["deaths"]) == [] and job["solo"] for job in jobs)
    results = sorted(Path(p) for job in jobs for p in json.loads(job["results"]))
    assert len(results) == 8 and sorted(settings.outputs_path.rglob("*.png")) == results
    assert not [p for p in settings.outputs_path.rglob("*") if p.is_file() and p.suffix != ".png"]
    paths = catalog_paths(settings)
    assert len(paths) == 8 and len(set(paths)) == 8
    assert_intact(settings)


def test_a_job_that_always_crashes_the_worker_fails_alone_with_where_it_died(tmp_path):
    """Item 2: a job that kills the worker at step 3 fails after three lone deaths there; its batch mates finish."""
    config, settings = configure(tmp_path, max_batch_images=4)
    ids = submit(settings, ["a red circle", "a boom circle", "a blue square", "a green star"])
    data, log = settings.data_dir, tmp_path / "worker.log"
    hooks = {"SALON_TEST_CRASH_PROMPT": "boom", "SALON_TEST_CRASH_STEP": "3"}
    statuses = []
    while not statuses or statuses[-1] != 0:
        assert len(statuses) < 8, f"the worker kept dying: {statuses}\n{log.read_text()[-3000:]}"
        worker = start_worker(config, log, hooks=hooks)
        statuses.append(wait_for_exit(worker, "the worker's end", activity(data, log), log))
        assert_intact(settings)
    # The batch died, then the crasher alone, three times: four deaths, and the fifth worker finishes.
    assert statuses == [-signal.SIGKILL] * 4 + [0]

    jobs = rows(settings.queue_db)
    assert [job["status"] for job in jobs] == ["done", "failed", "done", "done"]
    crasher = jobs[1]
    assert crasher["error"] == (
        "the worker died 3 times at txt2img step 3 while running this job alone; it was not run again"
    )
    assert json.loads(crasher["deaths"]) == ["txt2img step 3"] * 3
    assert [job["attempts"] for job in jobs] == [1, 3, 1, 1]
    assert len(catalog_paths(settings)) == 3 and len(list(settings.outputs_path.rglob("*.png"))) == 3
    assert ids == [job["id"] for job in jobs]

    listing = subprocess.run(
        [sys.executable, "-m", "cli.main", "--config", str(config), "queue"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=120,
    )
    assert listing.returncode == 0 and "died 3 times at txt2img step 3" in listing.stdout, listing.stdout
