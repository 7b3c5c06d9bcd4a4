"""Numbered schema migrations on PostgreSQL, shared by the queue, the catalog and the community store.

Each store keeps its own version table and advisory lock key; this applies the missing migrations under that
lock in one transaction and refuses a schema newer than the code. It takes an open async connection (psycopg 3
with dict rows) and imports no driver itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

Migrations = tuple[tuple[str, str], ...]  # (name, SQL), version = position + 1


async def apply_migrations(
    connection: Any,
    migrations: Migrations,
    *,
    table: str,
    lock: int,
    too_new: Callable[[int, int], Exception],
    before_applying: Callable[[Any], Awaitable[None]] | None = None,
) -> int:
    """Apply `migrations` missing from `table` under the advisory lock `lock`; the schema version now.
    `too_new(current, known)` is the error raised for a newer schema; `before_applying(connection)` runs once
    when some migration is missing (a check of what the migrations need)."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        cursor = await connection.execute(f"SELECT COALESCE(MAX(version), 0) AS version FROM {table}")
        current = (await cursor.fetchone())["version"]
        if current > len(migrations):
            raise too_new(current, len(migrations))
        if current < len(migrations) and before_applying is not None:
            await before_applying(connection)
        for version, (name, sql) in enumerate(migrations, start=1):
            if version > current:
                await connection.execute(sql)
                await connection.execute(
                    f"INSERT INTO {table} VALUES (%s, %s, %s)", (version, name, time.time())
                )
        return max(current, len(migrations))
