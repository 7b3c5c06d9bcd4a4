"""SQLite as Salon keeps it (the catalog, the job queue, the community store): WAL, one writer connection,
numbered migrations.

Every write is a `BEGIN IMMEDIATE` transaction (a deferred one that reads then writes can fail at once with
SQLITE_BUSY, ignoring busy_timeout), one at a time on the connection, since all of a process's coroutines
share it. Migrations are recorded in `schema_migrations` and run once, in order.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from core.errors import DamagedDatabase, as_disk_full, is_damage

BUSY_TIMEOUT_MS = 10_000  # wait this long for another process's write lock before failing

# A migration: (name, SQL text of ";"-separated statements, or a tuple of statements for triggers).
Migration = tuple[str, str | tuple[str, ...]]


class Database:
    """One aiosqlite connection with serialized write transactions. Open with `await Database.open(path)`."""

    def __init__(self, connection: aiosqlite.Connection, path: Path | None = None) -> None:
        self.connection = connection
        self.path = Path(path) if path is not None else Path(":memory:")
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, migrations: Sequence[Migration]) -> Database:
        """Open (creating) the database, check it, migrate it. A damaged file raises DamagedDatabase, a full
        disk DiskFull; the connection is closed on every failure (an open one keeps the process from exiting)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            connection.row_factory = aiosqlite.Row
            for pragma in (
                "journal_mode = WAL",
                f"busy_timeout = {BUSY_TIMEOUT_MS}",
                "foreign_keys = ON",
                "synchronous = NORMAL",
            ):
                await connection.execute(f"PRAGMA {pragma}")
            await _check(connection, path)
            database = cls(connection, path)
            await database._migrate(migrations)
        except BaseException as exc:
            await connection.close()
            error = translated(exc, path)
            if error is exc:
                raise
            raise error from exc
        return database

    async def close(self) -> None:
        await self.connection.close()

    @asynccontextmanager
    async def transaction(self):
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error (a COMMIT that fails too, e.g. on a full disk,
        where SQLite keeps the transaction open); one at a time on this connection. A full disk raises
        DiskFull, a damaged file DamagedDatabase."""
        async with self._write_lock:
            try:
                await self.connection.execute("BEGIN IMMEDIATE")
                try:
                    yield self.connection
                    await self.connection.execute("COMMIT")
                except BaseException:
                    if self.connection.in_transaction:
                        await self.connection.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                error = translated(exc, self.path)
                if error is exc:
                    raise
                raise error from exc

    async def _migrate(self, migrations: Sequence[Migration]) -> None:
        async with self.transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)"
            )
            async with db.execute("SELECT MAX(version) FROM schema_migrations") as cursor:
                current = (await cursor.fetchone())[0] or 0
            for version, (name, sql) in enumerate(migrations, start=1):
                if version > current:
                    statements = sql if isinstance(sql, tuple) else filter(str.strip, sql.split(";"))
                    for statement in statements:
                        await db.execute(statement)
                    await db.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time())
                    )


async def _check(connection: aiosqlite.Connection, path: Path) -> None:
    """`PRAGMA quick_check` (reads every page once, without comparing indexes to tables): DamagedDatabase
    unless it says ok."""
    async with connection.execute("PRAGMA quick_check") as cursor:
        problems = [row[0] for row in await cursor.fetchall()]
    if problems != ["ok"]:
        raise DamagedDatabase(path, "; ".join(problems[:3]))


def translated(exc: BaseException, path: Path) -> BaseException:
    """An SQLite error as what it means to an operator: DamagedDatabase, DiskFull, or itself."""
    if isinstance(exc, DamagedDatabase):
        return exc
    if is_damage(exc):
        return DamagedDatabase(path, str(exc))
    return as_disk_full(exc, path.parent) or exc
