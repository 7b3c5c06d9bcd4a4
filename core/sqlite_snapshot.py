"""Reading one of Salon's SQLite files without changing it: a read-only connection, one read transaction.

Used to copy an installation elsewhere (`salon db migrate-to`): the file is opened with `mode=ro` (no
migration, no journal-mode change, no checkpoint), and every table is read inside one transaction, so the
rows and the counts come from one consistent moment even if another process writes meanwhile.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from core.errors import SalonError


class SnapshotUnreadable(SalonError):
    """The SQLite file cannot be opened or read without writing to it."""


class Snapshot:
    """`with Snapshot(path) as snapshot:` then `rows(table)`, `count(table)`; a missing file reads as empty."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._connection: sqlite3.Connection | None = None

    def __enter__(self) -> Snapshot:
        if not self.path.exists():
            return self
        try:
            self._connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            self._connection.row_factory = sqlite3.Row
            self._connection.execute("BEGIN")
            self._connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # the snapshot starts
        except sqlite3.Error as exc:
            self.__exit__()
            raise SnapshotUnreadable(
                f"cannot read {self.path} without changing it ({exc}): start and stop Salon once, then retry"
            ) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def exists(self) -> bool:
        return self._connection is not None

    def tables(self) -> set[str]:
        if self._connection is None:
            return set()
        rows = self._connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {row[0] for row in rows}

    def version(self) -> int:
        """The schema version (core/sqlite.py's `schema_migrations`); 0 for a missing file."""
        if "schema_migrations" not in self.tables():
            return 0
        return self._connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[
            0
        ]

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of `table` in rowid order (none when the file or the table is missing)."""
        if table not in self.tables():
            return []
        return [dict(row) for row in self._connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid')]

    def count(self, table: str) -> int:
        if table not in self.tables():
            return 0
        return self._connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]

    def sequence(self, table: str) -> int:
        """The highest id AUTOINCREMENT ever gave in `table` (ids are never reused, even after a delete)."""
        if "sqlite_sequence" not in self.tables():
            return 0
        row = self._connection.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return row[0] if row else 0
