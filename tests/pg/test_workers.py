"""Several `salon worker` processes on one PostgreSQL queue: every job done exactly once, and a worker killed
mid-job loses nothing: its job finishes on the other worker once its lease has expired.

The workers share one data folder (one host: the result files and the catalog are local for now). Waits end
on rows and exits (tests/jobs/processes.py), never on fixed budgets.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from config import load_settings
from engine.requests import GenerationRequest
from tests.jobs.processes import signs_of_life, start_worker, wait_for, wait_for_exit
from tests.pg.counting import catalog_paths
from tests.queues import open_queue


def configure(tmp_path: Path, url: str, lease_s: float = 30) -> Path:
    config = tmp_path / "salon.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[queue]\nmax_batch_images = 1\npoll_interval_s = 0.1\n"
        "[speed]\nwarmup = false\n"
        f'[database]\nurl = "{url}"\nlease_s = {lease_s}\n'
    )
    return config


def submit(config: Path, count: int, steps: int = 8) -> list[int]:
    async def run() -> list[int]:
        queue = await open_queue(load_settings(config))
        try:
            requests = [
                GenerationRequest(
                    "a red circle on a blue background", seed=s, width=64, height=64, steps=steps
                )
                for s in range(count)
            ]
            return [(await queue.submit(r, "ann")).id for r in requests]
        finally:
            await queue.close()

    return asyncio.run(run())


def jobs(url: str) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as db:
        return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()


def activity(url: str, *logs: Path):
    """Signs of life: the workers' logs, and the rows they change (progress, phases, heartbeats)."""

    def seen():
        with psycopg.connect(url) as db:
            rows = db.execute("SELECT status, phase, progress, worker FROM jobs ORDER BY id").fetchall()
            beats = db.execute("SELECT heartbeat FROM workers ORDER BY claim").fetchall()
        return signs_of_life(*logs), rows, beats

    return seen


def assert_exactly_once(config: Path, url: str, count: int) -> None:
    settings = load_settings(config)
    states = jobs(url)
    assert [s["status"] for s in states] == ["done"] * count
    results = [Path(p) for s in states for p in s["results"]]
    assert len(results) == count and all(p.is_file() for p in results)
    assert sorted(settings.outputs_path.rglob("*.png")) == sorted(results)  # no second copies
    assert len(catalog_paths(url, [settings.data_dir])) == count  # (the catalog is on PostgreSQL too)


def test_two_workers_run_every_job_exactly_once(tmp_path, postgres_url):
    config = configure(tmp_path, postgres_url)
    submit(config, 6)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(config, log, "--name", name) for log, name in zip(logs, "ab", strict=True)]
    for worker, log in zip(workers, logs, strict=True):
        assert wait_for_exit(worker, "the worker's exit", activity(postgres_url, *logs), log) == 0, (
            log.read_text()
        )
    assert_exactly_once(config, postgres_url, 6)
    assert {s["worker"] for s in jobs(postgres_url)} <= {"a", "b"}
    assert all(s["attempts"] == 1 for s in jobs(postgres_url))


def test_a_job_of_a_killed_worker_finishes_on_the_other_after_its_lease(tmp_path, postgres_url):
    config = configure(tmp_path, postgres_url, lease_s=2)
    [job_id] = submit(config, 1, steps=40)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    watch = activity(postgres_url, *logs)
    first = start_worker(config, logs[0], "--name", "a")

    def denoising():
        [row] = jobs(postgres_url)
        return row["status"] == "running" and row["worker"] == "a" and row["phase"] == "txt2img"

    wait_for(denoising, "worker a denoising the job", watch, first, logs[0])
    second = start_worker(config, logs[1], "--name", "b", exit_when_idle=False)
    try:
        first.send_signal(signal.SIGKILL)
        first.wait()
        wait_for(
            lambda: jobs(postgres_url)[0]["status"] == "done", "the job done by b", watch, second, logs[1]
        )
    finally:
        second.send_signal(signal.SIGTERM)
        wait_for_exit(second, "worker b's exit", watch, logs[1])
    [row] = jobs(postgres_url)
    assert row["worker"] == "b" and row["attempts"] == 2 and row["fence"] == 2, row
    assert_exactly_once(config, postgres_url, 1)
