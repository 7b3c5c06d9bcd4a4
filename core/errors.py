"""The error types of the whole project. Front ends turn them into user messages; nothing here knows Discord.

Two families: errors about a request or a file a user gave (`SalonError` and its subclasses: each names the
option and what is allowed), and storage failures an operator must act on (`DamagedDatabase`, `DiskFull`):
both carry a one-line message naming the file or folder and what to do; the command line prints it and exits
with status 1, the worker logs it (and, for a full disk, waits for space: jobs/diskwait.py).
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path


class SalonError(Exception):
    """Base of every error Salon raises on purpose."""


class InvalidSettings(SalonError, ValueError):
    """The settings (salon.toml or SALON_… variables) are not acceptable; the message names each bad one and
    what is allowed."""


class InvalidRequest(SalonError, ValueError):
    """A user-supplied option is not acceptable. `option` names it; the message says what is allowed."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        self.message = message
        super().__init__(f"{option}: {message}")


class ModelNotFound(InvalidRequest):
    """A model, LoRA, embedding or hypernetwork name that the registry does not know."""


class ModelRefused(ModelNotFound):
    """A model name whose file is installed but refused (a pickle, a lying header, a link out of the folders)."""


class InvalidImage(InvalidRequest):
    """An uploaded file that is not an image we accept (truncated, empty, too many pixels, wrong type)."""


class UnsafeModelFile(SalonError):
    """A model file refused by the safety gate (not safetensors, bad header, pickle where none is allowed)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"refused model file {path}: {reason}")


class JobCancelled(SalonError):
    """Raised inside a generation when its cancel flag is set; the run stops between steps."""


# ----- storage failures: a damaged database file, a full disk -----------------------------------------

# SQLite's primary result codes (the low byte of `sqlite_errorcode`).
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26

# Below this much free space a "disk I/O error" from SQLite is taken for a full disk (it cannot create its
# -wal or -shm file, or grow one).
LOW_SPACE_BYTES = 1 << 20

# What to do about each damaged file, by name; other files get only the general advice.
RESTORE_HINTS = {
    "queue.db": "it will be created empty (queued jobs are lost)",
    "catalog.db": "it will be created empty, and `salon catalog check --repair` adds the images in the outputs "
    "folder back; `salon catalog rebuild-index` rebuilds the text index",
    "community.db": "it will be created empty (server settings and community data are lost)",
}


class DamagedDatabase(Exception):
    """A database file SQLite cannot read: random bytes, cut short, a zeroed page."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = Path(path)
        self.detail = "; ".join(line.strip() for line in str(detail).splitlines() if line.strip())  # one line
        hint = RESTORE_HINTS.get(self.path.name, "it will be created empty")
        super().__init__(
            f"{self.path} is not a valid SQLite database ({self.detail}) — restore a backup or move it away; {hint}"
        )


class DiskFull(Exception):
    """A write failed because the disk (or the user's quota) is full."""

    def __init__(self, folder: Path, free_bytes: int | None = None) -> None:
        self.folder = Path(folder)
        self.free_bytes = free_space(self.folder) if free_bytes is None else free_bytes
        super().__init__(f"disk full in {self.folder} ({human_bytes(self.free_bytes)} free)")


def is_damage(exc: BaseException) -> bool:
    """An SQLite error that means the file is damaged (not a lock, a full disk or a bad query)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.DatabaseError) and code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    return False


def as_disk_full(exc: BaseException, folder: Path) -> DiskFull | None:
    """`exc` as a DiskFull in `folder` when it is one (ENOSPC/EDQUOT, SQLITE_FULL, an I/O error with almost no
    space left), else None."""
    if isinstance(exc, DiskFull):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(_existing(Path(exc.filename).parent) if exc.filename else folder)
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.Error) and code is not None:
        if code & 0xFF == SQLITE_FULL:
            return DiskFull(folder)
        if code & 0xFF == SQLITE_IOERR and free_space(folder) < LOW_SPACE_BYTES:
            return DiskFull(folder)
    return None


def free_space(folder: Path) -> int:
    """Bytes free for this user in the file system holding `folder` (or its nearest existing parent)."""
    try:
        return shutil.disk_usage(_existing(folder)).free
    except OSError:
        return 0


def human_bytes(size: float) -> str:
    """12 KB, 3.4 MB, 1.2 GB."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("bytes", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _existing(folder: Path) -> Path:
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
