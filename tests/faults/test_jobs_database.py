"""A damaged queue.db or catalog.db: every command says which file and what to do in one line and exits 1 within
seconds; no traceback, no hang (issue 18, item 4). Each corruption × each command that opens the file, as real
subprocesses; and damage that appears while a worker runs."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import load_settings
from engine.requests import GenerationRequest
from tests.jobs.processes import activity, start_worker, wait_for, wait_for_exit
from tests.queues import open_queue

EXIT_WITHIN_S = 30.0  # the target is 5 s; a loaded 2-core machine needs seconds just to import
PAGE = 4096

COMMANDS = {
    "queue": ["queue"],
    "imagine": ["imagine", "a red circle", "--steps", "2"],
    "browse": ["browse"],
    "worker": ["worker", "--exit-when-idle"],
    "web": ["web", "--local", "--port", "8"],  # it must fail before it binds anything
    "run": ["run"],
}
OPENS = {  # which commands open which file
    "queue.db": ["queue", "imagine", "worker", "run"],
    "catalog.db": ["queue", "imagine", "browse", "worker", "web", "run"],
}
HINTS = {
    "queue.db": "queued jobs are lost",
    "catalog.db": "`salon catalog rebuild-index` rebuilds the text index",
}


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "random bytes":
        data = bytearray(random.Random(18).randbytes(len(data)))
    elif how == "cut in half":
        data = data[: len(data) // 2]
    else:  # a zeroed page in the middle
        middle = len(data) // PAGE // 2
        data[middle * PAGE : (middle + 1) * PAGE] = bytes(PAGE)
    path.write_bytes(bytes(data))


def make_data(tmp_path: Path):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    settings = load_settings(config)

    async def fill() -> None:
        queue = await open_queue(settings)
        try:
            for seed in range(5):
                await queue.submit(GenerationRequest("a red circle", seed=seed, width=64, height=64), "ann")
        finally:
            await queue.close()

    asyncio.run(fill())
    return config, settings


def salon(config: Path, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "TRANSFORMERS_VERBOSITY": "error",
        "DISCORD_TOKEN": "not-a-real-token",
        "COLUMNS": "300",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("how", ["random bytes", "cut in half", "a zeroed page"])
@pytest.mark.parametrize("name", ["queue.db", "catalog.db"])
def test_every_command_names_a_damaged_database_and_exits_1_quickly(tmp_path, name, how):
    """Item 4: queue, imagine, browse, worker, web and the bot on a damaged file: one line, exit 1, no hang."""
    config, settings = make_data(tmp_path)
    path = settings.queue_db if name == "queue.db" else settings.catalog_dir / "catalog.db"
    corrupt(path, how)
    started = time.monotonic()
    running = {command: salon(config, *COMMANDS[command]) for command in OPENS[name]}
    for command, process in running.items():
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"salon {command} hung on {name} ({how})") from None
        elapsed = time.monotonic() - started
        assert process.returncode == 1, (command, process.returncode, err[-2000:])
        assert "Traceback" not in out + err, (command, err[-3000:])
        message = err.strip().splitlines()[-1]
        assert message.startswith(f"error {path} is not a valid SQLite database ("), (command, err)
        assert "restore a backup or move it away" in message and HINTS[name] in message, (command, message)
        assert elapsed < EXIT_WITHIN_S, (command, elapsed)


def test_damage_that_appears_while_the_worker_runs_stops_it_with_the_same_message(tmp_path):
    """Item 4: a worker whose queue.db is damaged under it exits 1 with the message, instead of hanging."""
    config, settings = make_data(tmp_path)
    with sqlite3.connect(settings.queue_db) as connection:
        connection.execute("UPDATE jobs SET status = 'cancelled'")  # an idle worker that keeps reading
    log = tmp_path / "worker.log"
    worker = start_worker(config, log, exit_when_idle=False)
    watch = activity(settings.data_dir, log)
    try:
        lock = settings.data_dir / "worker.lock"
        wait_for(lambda: lock.is_file() and lock.read_text().strip(), "the worker", watch, worker, log)
        time.sleep(1.0)  # it polls the queue now
        with sqlite3.connect(settings.queue_db, timeout=10) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            roots = [
                r for (r,) in connection.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'jobs'")
            ]
        data = bytearray(settings.queue_db.read_bytes())
        for root in roots:  # the jobs table and its indexes, as if the disk had lost those pages
            data[(root - 1) * PAGE : root * PAGE] = bytes(PAGE)
        with open(settings.queue_db, "r+b") as file:
            file.write(data)
        with sqlite3.connect(
            settings.queue_db, timeout=10
        ) as connection:  # a write: readers drop their cache
            connection.execute("INSERT INTO schema_migrations VALUES (99, 'touch', 0)")
        status = wait_for_exit(worker, "the worker's exit", watch, log)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    output = log.read_text()
    assert status == 1 and "Traceback" not in output, output[-3000:]
    assert f"error {settings.queue_db} is not a valid SQLite database (" in output, output[-3000:]
