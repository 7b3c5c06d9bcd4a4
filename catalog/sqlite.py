"""SQLite as Salon keeps it (the catalog and the job queue): WAL, one writer connection, numbered migrations.

Every write is a `BEGIN IMMEDIATE` transaction (a deferred one that reads then writes can fail at once with
SQLITE_BUSY, ignoring busy_timeout), one at a time on the connection, since all of a process's coroutines
share it. Migrations are recorded in `schema_migrations` and run once, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

BUSY_TIMEOUT_MS = 10_000  # wait this long for another process's write lock before failing

# A migration: (name, SQL text of ";"-separated statements, or a tuple of statements for triggers).
Migration = tuple[str, str | tuple[str, ...]]


class Database:
    """One aiosqlite connection with serialized write transactions. Open with `await Database.open(path)`."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection = connection
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, migrations: Sequence[Migration]) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        for pragma in (
            "journal_mode = WAL",
            f"busy_timeout = {BUSY_TIMEOUT_MS}",
            "foreign_keys = ON",
            "synchronous = NORMAL",
        ):
            await connection.execute(f"PRAGMA {pragma}")
        database = cls(connection)
        await database._migrate(migrations)
        return database

    async def close(self) -> None:
        await self.connection.close()

    @asynccontextmanager
    async def transaction(self):
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error; one at a time on this connection."""
        async with self._write_lock:
            await self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                await self.connection.execute("ROLLBACK")
                raise
            await self.connection.execute("COMMIT")

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
