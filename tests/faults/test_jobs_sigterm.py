"""SIGTERM ends `salon worker` within 10 s whatever it is doing; the job goes back in line, its attempt not
counted, and a restart completes it exactly once (issue 18, item 10)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path

from config import load_settings
from engine.requests import GenerationRequest
from tests.jobs.processes import activity, point, row, start_worker, wait_for, wait_for_exit
from tests.queues import open_queue

EXIT_WITHIN_S = 10.0


def setup(tmp_path: Path, steps: int):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[queue]\npoll_interval_s = 0.1\n')
    settings = load_settings(config)

    async def submit() -> int:
        queue = await open_queue(settings)
        try:
            job = GenerationRequest("a red circle", seed=3, width=64, height=64, steps=steps)
            return (await queue.submit(job, "ann")).id
        finally:
            await queue.close()

    return config, settings, asyncio.run(submit())


def terminate(worker) -> float:
    """SIGTERM the worker; the seconds until it exited (killed after a minute, to fail plainly)."""
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        status = worker.wait(timeout=60)
    except Exception:
        worker.kill()
        raise
    assert status == 0, status
    return time.monotonic() - started


def assert_done_once(settings, job_id: int) -> None:
    done = row(settings.queue_db, job_id)
    assert done["status"] == "done" and done["attempts"] == 1, done
    results = [Path(p) for p in json.loads(done["results"])]
    assert sorted(settings.outputs_path.rglob("*.png")) == sorted(results) and len(results) == 1
    with sqlite3.connect(settings.catalog_dir / "catalog.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 1


def test_sigterm_during_a_model_load_exits_within_10_s_and_the_job_runs_once_after(tmp_path):
    """Item 10: a model load nothing can interrupt (slowed to 10 min): the worker still exits within 10 s."""
    config, settings, job_id = setup(tmp_path, steps=3)
    log = tmp_path / "worker.log"
    worker = start_worker(config, log, hooks={"SALON_TEST_SLOW_LOAD_S": "600"})
    watch = activity(settings.data_dir, log)
    wait_for(
        lambda: row(settings.queue_db, job_id)["phase"].startswith("loading "), "the load", watch, worker, log
    )
    assert terminate(worker) < EXIT_WITHIN_S, log.read_text()[-3000:]
    back = row(settings.queue_db, job_id)
    assert (
        back["status"] == "queued" and back["attempts"] == 0 and back["phase"] == "queued again after a stop"
    )
    assert "exiting without waiting for it" in log.read_text()
    assert wait_for_exit(start_worker(config, log), "the job after a restart", watch, log) == 0
    assert_done_once(settings, job_id)


def test_sigterm_while_denoising_and_while_idle_exits_within_10_s(tmp_path):
    """Item 10: SIGTERM mid-denoising (the job goes back in line) and while idle; both exits within 10 s."""
    config, settings, job_id = setup(tmp_path, steps=40)
    log = tmp_path / "worker.log"
    watch = activity(settings.data_dir, log)
    worker = start_worker(config, log, exit_when_idle=False)

    def denoising():
        where = point(settings.data_dir)
        return where is not None and where.jobs == (job_id,) and where.phase == "txt2img" and where.step >= 2

    wait_for(denoising, "denoising", watch, worker, log)
    assert terminate(worker) < EXIT_WITHIN_S, log.read_text()[-3000:]
    back = row(settings.queue_db, job_id)
    assert back["status"] == "queued" and back["attempts"] == 0, back
    worker = start_worker(config, log, exit_when_idle=False)
    wait_for(lambda: row(settings.queue_db, job_id)["status"] == "done", "the job", watch, worker, log)
    time.sleep(0.5)  # idle now: waiting for jobs
    assert terminate(worker) < EXIT_WITHIN_S, log.read_text()[-3000:]
    assert_done_once(settings, job_id)
