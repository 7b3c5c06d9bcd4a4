"""What `salon` says when its storage fails: a damaged database file or a full disk, as one line, exit 1.

A damaged file is usually found when a database is opened (`PRAGMA quick_check`, core/sqlite.py); damage
that appears later (a page overwritten while a command runs) surfaces as a bare `sqlite3.DatabaseError`, which
does not say which file: the data folder's databases are checked then, to name it.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from config import Settings
from core.errors import DamagedDatabase, DiskFull, as_disk_full, is_damage


def storage_failure(exc: BaseException, settings: Settings | None) -> str | None:
    """The one-line message for `exc` when it is a storage failure, else None."""
    if isinstance(exc, DamagedDatabase | DiskFull):
        return str(exc)
    if is_damage(exc):
        damaged = _damaged_file(settings) if settings is not None else None
        if damaged is not None:
            return str(DamagedDatabase(damaged, str(exc)))
        where = settings.data_dir if settings is not None else "the data folder"
        return f"a database in {where} is damaged ({exc}) — restore a backup of it or move it away"
    if settings is not None:
        full = as_disk_full(exc, settings.data_dir)
        if full is not None:
            return str(full)
    return None


def leave_without_gpu_thread(status: int) -> None:
    """Exit now if a GPU thread is still busy (it would keep the process alive); see jobs.worker."""
    worker = sys.modules.get("jobs.worker")  # never imported here just for this: it brings torch along
    if worker is not None:
        worker.exit_if_gpu_busy(status)


def databases(settings: Settings) -> list[Path]:
    """The SQLite files of a data folder."""
    return [settings.queue_db, settings.catalog_dir / "catalog.db", settings.community_db]


def _damaged_file(settings: Settings) -> Path | None:
    for path in databases(settings):
        if path.is_file() and not _intact(path):
            return path
    return None


def _intact(path: Path) -> bool:
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return False
    try:
        return connection.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    except sqlite3.Error:
        return False
    finally:
        connection.close()
