"""One writer at a time for the Whoosh index across processes, waiting in line rather than polling.

Whoosh's own lock is tried every 0.1 s, so under several writing processes a commit could wait seconds while
others barged in. Salon's writers first take this lock: a blocking `flock` (the kernel wakes waiters as the
holder lets go, no polling), with a bounded wait. The wait happens in a helper thread so that it can give
up after `timeout`; a lock granted after the caller gave up is let go at once.
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path


class IndexBusy(Exception):
    """Another process held the index's writer lock for longer than the wait allowed."""


def _acquire(fd: int, timeout: float) -> bool:
    """Lock `fd` (exclusive); False after `timeout` seconds. On False, `fd` belongs to the waiter thread."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    granted, gave_up = threading.Event(), threading.Event()
    state = threading.Lock()

    def wait() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        with state:
            if gave_up.is_set():
                os.close(fd)  # the caller gave up: let go of the lock (and the file) at once
                return
            granted.set()

    threading.Thread(target=wait, name="salon-index-lock", daemon=True).start()
    if granted.wait(timeout):
        return True
    with state:
        if granted.is_set():
            return True
        gave_up.set()
    return False


@contextmanager
def held(path: Path, timeout: float):
    """Hold the lock file `path` (created if missing) for the block; IndexBusy after `timeout` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if not _acquire(fd, timeout):
        raise IndexBusy(f"{path}: another process has held the text index's writer lock for {timeout:g} s")
    try:
        yield
    finally:
        os.close(fd)  # closing the file lets go of the lock
