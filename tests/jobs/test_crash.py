"""SIGKILL the worker process in the middle of jobs and restart it: nothing lost, nothing produced twice.

Four jobs, one at a time. Kill 1 lands while job 2 is denoising; the restarted worker runs job 2 again and
kill 2 lands in it again, so the next start fails job 2 with a reason (two attempts); kill 3 lands in job
3, which the last worker completes on its second attempt before job 4. Each kill waits for the job's row to
say it is denoising (the worker writes its phase when it starts), so it lands where intended.
"""

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
from jobs.queue import JobQueue

START_TIMEOUT_S = 120


def row(db: Path, job_id: int) -> dict:
    with sqlite3.connect(db, timeout=10) as connection:
        connection.row_factory = sqlite3.Row
        found = connection.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return dict(found)


def start_worker(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--config", str(config), "worker", "--exit-when-idle"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def kill_while_denoising(worker: subprocess.Popen, db: Path, job_id: int, attempt: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = row(db, job_id)
        if state["status"] == "running" and state["attempts"] == attempt and state["phase"] == "txt2img":
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            return
        assert worker.poll() is None, f"worker exited early ({worker.returncode})"
        time.sleep(0.01)
    worker.kill()
    raise AssertionError(f"job {job_id} never reached attempt {attempt} while denoising: {row(db, job_id)}")


def test_sigkill_mid_job_loses_nothing_and_duplicates_nothing(tmp_path):
    config = tmp_path / "salon.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[queue]\nmax_batch_images = 1\npoll_interval_s = 0.1\n'
    )
    settings = load_settings(config)

    async def submit() -> list[int]:
        queue = await JobQueue.open(settings)
        try:
            requests = [
                GenerationRequest("a red circle on a blue background", seed=s, width=64, height=64, steps=80)
                for s in range(4)
            ]
            return [(await queue.submit(r, "ann")).id for r in requests]
        finally:
            await queue.close()

    ids = asyncio.run(submit())
    db, log = settings.queue_db, tmp_path / "worker.log"
    kill_while_denoising(start_worker(config, log), db, ids[1], attempt=1)
    kill_while_denoising(start_worker(config, log), db, ids[1], attempt=2)
    kill_while_denoising(start_worker(config, log), db, ids[2], attempt=1)
    last = start_worker(config, log)
    assert last.wait(timeout=START_TIMEOUT_S) == 0, log.read_text()

    states = [row(db, job_id) for job_id in ids]
    assert [s["status"] for s in states] == ["done", "failed", "done", "done"]
    assert [s["attempts"] for s in states] == [1, 2, 2, 1]
    assert "stopped during this job 2 times" in states[1]["error"]
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 4
    results = [Path(p) for s in states for p in json.loads(s["results"])]
    assert len(results) == 3 and all(p.is_file() for p in results)
    assert sorted(settings.outputs_path.rglob("*.png")) == sorted(results)  # no second copies
