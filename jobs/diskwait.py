"""The worker's wait for disk space: how long, and how queued jobs (and `salon queue`) learn why they wait.

When a write fails because the disk is full (a PNG, the text index, SQLite itself: core.errors.DiskFull)
the queue puts the batch back in line and calls `DiskWait.wait`: the error is logged with the folder and its
free space, every queued job's phase says "waiting: disk full in … (12 KB free)", and the worker sleeps 5 s,
doubling up to 5 minutes, or until a MB more is free, or a stop. The same line goes to the worker's point
file, which is rewritten in place, so `salon queue` can show it even when SQLite cannot write.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

from core.errors import DiskFull, free_space
from jobs.blame import PointFile
from jobs.store import JobStore

log = logging.getLogger(__name__)

WAITING = "waiting: "  # the start of the phase of jobs waiting for space: "waiting: disk full in …"
RETRY_S = (5.0, 300.0)  # the first wait before trying again, doubling up to the second
SPACE_FREED_BYTES = 1 << 20  # …or try again as soon as this much more space is free than at the failure


class DiskWait:
    """One worker's state while the disk is full (`reason` is None when it is not)."""

    def __init__(self, store: JobStore, point: PointFile) -> None:
        self.store = store
        self.point = point
        self.reason: str | None = None
        self._retry_s = 0.0

    async def wait(self, full: DiskFull, *stops: asyncio.Event) -> None:
        """Log, tell the queued jobs why they wait, and wait (see the module's docstring) unless a stop is set."""
        first, longest = RETRY_S
        self._retry_s = min(longest, self._retry_s * 2) if self._retry_s else first
        self.reason = f"{WAITING}{full}"
        log.error("%s; the jobs wait, next try in %.0f s", full, self._retry_s)
        self.point.begin([], self.reason)
        with contextlib.suppress(DiskFull):
            await self.store.mark_waiting(self.reason)
        deadline = time.monotonic() + self._retry_s
        while (left := deadline - time.monotonic()) > 0 and not any(stop.is_set() for stop in stops):
            if free_space(full.folder) >= full.free_bytes + SPACE_FREED_BYTES:
                return
            waiters = [asyncio.ensure_future(stop.wait()) for stop in stops]
            await asyncio.wait(waiters, timeout=min(1.0, left), return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def over(self) -> None:
        """A batch ran: the disk has room again."""
        if self.reason is None:
            return
        log.warning("there is disk space again; jobs run")
        self.reason, self._retry_s = None, 0.0
        await self.store.clear_waiting(WAITING)


def worker_waiting(data_dir: Path, point: PointFile) -> str | None:
    """Why the worker of `data_dir`, in another process, waits (a full disk), from its point file; None when
    it does not wait, or no worker runs (whatever its point file says then is stale)."""
    try:
        fd = os.open(data_dir / "worker.lock", os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        last = point.last()
        return last.phase if last is not None and last.phase.startswith(WAITING) else None
    finally:
        os.close(fd)
