"""SIGKILL the worker process in the middle of jobs and restart it: nothing lost, nothing produced twice.

Four jobs, one at a time. Kill 1 lands while job 2 is denoising, early; the restarted worker runs jobs 3 and
4 first (a job that died comes after its owner's other jobs), then job 2, where kill 2 lands later, at
another point, and kill 3 later still: job 2 is not to blame (jobs/blame.py: it never died twice at the same
point), and the last worker completes it. Each kill waits for the worker's point file to name the job and a
step (it is rewritten at every step), so it lands where intended.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

from config import load_settings
from engine.requests import GenerationRequest
from tests.jobs.processes import activity, point, row, start_worker, wait_for, wait_for_exit
from tests.queues import open_queue


def kill_at(worker, data_dir: Path, log: Path, job_id: int, step: int) -> int:
    """SIGKILL the worker once it runs `job_id` alone at `step` or later; returns the step its point names."""

    def reached():
        where = point(data_dir)
        return (
            where is not None and where.jobs == (job_id,) and where.phase == "txt2img" and where.step >= step
        )

    wait_for(reached, f"job {job_id} at step {step}", activity(data_dir, log), worker, log)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    return point(data_dir).step


def test_sigkill_mid_job_loses_nothing_and_duplicates_nothing(tmp_path):
    config = tmp_path / "salon.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[queue]\nmax_batch_images = 1\npoll_interval_s = 0.1\n'
    )
    settings = load_settings(config)

    async def submit() -> list[int]:
        queue = await open_queue(settings)
        try:
            requests = [
                GenerationRequest("a red circle on a blue background", seed=s, width=64, height=64, steps=40)
                for s in range(4)
            ]
            return [(await queue.submit(r, "ann")).id for r in requests]
        finally:
            await queue.close()

    ids = asyncio.run(submit())
    data, db, log = settings.data_dir, settings.queue_db, tmp_path / "worker.log"
    first = kill_at(start_worker(config, log), data, log, ids[1], step=3)
    second = kill_at(start_worker(config, log), data, log, ids[1], step=first + 10)
    third = kill_at(start_worker(config, log), data, log, ids[1], step=second + 10)
    last = start_worker(config, log)
    assert wait_for_exit(last, "the last worker's exit", activity(data, log), log) == 0, log.read_text()

    states = [row(db, job_id) for job_id in ids]
    assert [s["status"] for s in states] == ["done", "done", "done", "done"]
    assert [s["attempts"] for s in states] == [1, 4, 1, 1]  # the run that finished, and each lone death
    assert json.loads(states[1]["deaths"]) == [f"txt2img step {n}" for n in (first, second, third)]
    assert states[1]["finished_at"] > max(states[2]["finished_at"], states[3]["finished_at"])
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 4
    results = [Path(p) for s in states for p in json.loads(s["results"])]
    assert len(results) == 4 and all(p.is_file() for p in results)
    assert sorted(settings.outputs_path.rglob("*.png")) == sorted(results)  # no second copies
    with sqlite3.connect(settings.catalog_dir / "catalog.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 4
