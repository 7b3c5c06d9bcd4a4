"""`salon imagine` with a database URL: it leaves its job to a live `salon worker` (one whose heartbeat is
younger than `lease_s`), and runs a worker itself, saying so, when there is none.

The command runs as a process of its own, watched like the workers (tests/jobs/processes.py): waits end on
rows and exits, never on fixed budgets.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg

from jobs.pg_store import PgJobStore
from tests.jobs.processes import start_worker, wait_for, wait_for_exit
from tests.pg.test_workers import activity, configure, jobs

NO_WORKER = "no live worker in the database; running one here"
WAITING = "waiting for a live worker (gpu1)"


def start_imagine(config: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "cli.main", "--config", str(config), "imagine", "a red circle"]
    command += ["--size", "64x64", "--steps", "2", "--seed", "1"]
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def with_tables(url: str) -> str:
    """The URL, once the queue's tables exist there (the watches read them before any process made them)."""

    async def migrate() -> None:
        await (await PgJobStore.open(url)).close()

    asyncio.run(migrate())
    return url


def live_workers(url: str) -> list[str]:
    with psycopg.connect(url) as db:
        return [name for (name,) in db.execute("SELECT name FROM workers WHERE stopped_at IS NULL")]


def test_imagine_leaves_its_job_to_a_live_worker(tmp_path, postgres_url):
    with_tables(postgres_url)
    config = configure(tmp_path, postgres_url)
    worker_log, cli_log = tmp_path / "worker.log", tmp_path / "imagine.log"
    watch = activity(postgres_url, worker_log, cli_log)
    worker = start_worker(config, worker_log, "--name", "gpu1", exit_when_idle=False)
    try:
        wait_for(lambda: live_workers(postgres_url), "the worker's heartbeat", watch, worker, worker_log)
        imagine = start_imagine(config, cli_log)
        assert wait_for_exit(imagine, "imagine's exit", watch, cli_log) == 0, cli_log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        wait_for_exit(worker, "the worker's exit", watch, worker_log)
    output = cli_log.read_text()
    assert NO_WORKER not in output and WAITING in output and "1 image(s)" in output, output
    [job] = jobs(postgres_url)
    assert job["status"] == "done" and job["worker"] == "gpu1", job
    assert live_workers(postgres_url) == []  # the command never advertised a worker of its own


def test_imagine_without_a_live_worker_says_so_and_runs_one_itself(tmp_path, postgres_url):
    with_tables(postgres_url)
    config = configure(tmp_path, postgres_url)
    cli_log = tmp_path / "imagine.log"
    imagine = start_imagine(config, cli_log)
    assert wait_for_exit(imagine, "imagine's exit", activity(postgres_url, cli_log), cli_log) == 0
    output = cli_log.read_text()
    assert NO_WORKER in output and "1 image(s)" in output, output
    [job] = jobs(postgres_url)
    assert job["status"] == "done" and job["worker"] == socket.gethostname(), job


def test_imagine_runs_its_job_itself_once_the_worker_it_waited_for_stops_answering(tmp_path, postgres_url):
    """The live worker the command left its job to hangs (SIGSTOP: its heartbeat stops, its process stays):
    once the heartbeat is older than `lease_s`, the command says so and runs the job itself."""
    with_tables(postgres_url)
    # The stopped worker's last heartbeat stays live for at least 2/3 of a lease: time for the command to start
    # and leave its job to it (the output says so before it takes over, or the test would prove nothing).
    config = configure(tmp_path, postgres_url, lease_s=24)
    worker_log, cli_log = tmp_path / "worker.log", tmp_path / "imagine.log"
    watch = activity(postgres_url, worker_log, cli_log)
    worker = start_worker(config, worker_log, "--name", "gpu1", exit_when_idle=False)
    try:
        wait_for(lambda: live_workers(postgres_url), "the worker's heartbeat", watch, worker, worker_log)
        worker.send_signal(signal.SIGSTOP)  # alive for another lease_s at most, then silent
        imagine = start_imagine(config, cli_log)
        assert wait_for_exit(imagine, "imagine's exit", watch, cli_log) == 0, cli_log.read_text()
    finally:
        worker.kill()
        worker.wait()
    output = cli_log.read_text()
    assert NO_WORKER in output and "1 image(s)" in output, output
    assert -1 < output.find(WAITING) < output.find(NO_WORKER), output
    [job] = jobs(postgres_url)
    assert job["status"] == "done" and job["worker"] == socket.gethostname(), job
