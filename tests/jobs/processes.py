"""For tests that watch worker processes: start one, read its rows and its point file, and wait on what it does.

Waits end on an event (a row, a file, an exit), never on a fixed budget: the deadline moves on as long as the
worker shows signs of life (its log grows, its point file or the queue's WAL changes), so a loaded machine
only makes a test slower, and a stuck worker still fails it after `STALL_S` without any progress.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from jobs.blame import Point, PointFile

T = TypeVar("T")

STALL_S = 180.0  # no sign of life for this long: the worker is stuck (imports alone take ~20 s when loaded)
POLL_S = 0.01


def start_worker(
    config: Path,
    log: Path,
    *args: str,
    hooks: dict[str, str] | None = None,
    exit_when_idle: bool = True,
) -> subprocess.Popen:
    """`salon worker` (through tests/faults/hooked_worker.py when `hooks` sets its environment variables)."""
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", **(hooks or {})}
    module = "tests.faults.hooked_worker" if hooks else "cli.main"
    command = [sys.executable, "-m", module, "--config", str(config), "worker", *args]
    if exit_when_idle:
        command.append("--exit-when-idle")
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def row(db: Path, job_id: int) -> dict:
    with sqlite3.connect(db, timeout=10) as connection:
        connection.row_factory = sqlite3.Row
        found = connection.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return dict(found)


def rows(db: Path) -> list[dict]:
    with sqlite3.connect(db, timeout=10) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute("SELECT * FROM jobs ORDER BY id")]


def point(data_dir: Path) -> Point | None:
    """Where the worker of `data_dir` is (or died), from its point file."""
    return PointFile(data_dir / "worker.point").last()


def signs_of_life(*paths: Path) -> tuple:
    """Sizes and modification times of files a working worker changes."""
    found = []
    for path in paths:
        try:
            stat = path.stat()
            found.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            found.append(None)
    return tuple(found)


def activity(data_dir: Path, log: Path) -> Callable[[], tuple]:
    """A worker's signs of life: its log, its point file (rewritten every step), the queue's WAL."""
    return lambda: signs_of_life(log, data_dir / "worker.point", data_dir / "queue.db-wal")


def wait_for(
    condition: Callable[[], T],
    what: str,
    watch: Callable[[], object],
    worker: subprocess.Popen | None = None,
    log: Path | None = None,
    stall_s: float = STALL_S,
) -> T:
    """The first true value of `condition()`; fails when `worker` exits first or nothing `watch` returns
    changes for `stall_s`."""
    seen, last_change = watch(), time.monotonic()
    while True:
        value = condition()
        if value:
            return value
        tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
        if worker is not None and worker.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.returncode}) before {what}\n{tail}")
        now = time.monotonic()
        if (current := watch()) != seen:
            seen, last_change = current, now
        elif now - last_change > stall_s:
            if worker is not None:
                worker.kill()
            raise AssertionError(f"no progress for {stall_s:.0f} s while waiting for {what}\n{tail}")
        time.sleep(POLL_S)


def wait_for_exit(
    worker: subprocess.Popen, what: str, watch: Callable[[], object], log: Path | None = None
) -> int:
    """The worker's exit status, once it exits (as long as it shows signs of life meanwhile)."""
    wait_for(lambda: worker.poll() is not None, what, watch, None, log)
    return worker.returncode


def kill(worker: subprocess.Popen) -> None:
    worker.kill()
    worker.wait()
