"""Copying `queue.db` into the queue on PostgreSQL (`salon db migrate-to`): every job with its id.

Each job keeps its id, status, request, options, results, attempts, owner, front-end details and crash blame;
the `jobs` id sequence is then set past the highest id SQLite ever gave, so new jobs never reuse one. A job
that was running when its SQLite worker stopped is copied as running under an expired lease: the first
PostgreSQL worker re-queues it with the usual crash blame (jobs/pg_store.py `recover`), as the SQLite worker
would have at its next start. The copy runs in the caller's transaction, through `COPY … FROM STDIN`.
"""

from __future__ import annotations

from typing import Any

from core.sqlite_snapshot import Snapshot
from jobs.store import MIGRATIONS

TABLES = {"jobs": "jobs"}  # queue.db's tables and their PostgreSQL twins (the counts compared afterwards)
BOOL_COLUMNS = {"cancel_requested", "solo"}
MOVED_CLAIM = "sqlite"  # the claim of jobs that were running in queue.db (one batch, as the blame sees it)
KNOWN_VERSION = len(MIGRATIONS)


async def copy_jobs(snapshot: Snapshot, connection) -> int:
    """Copy every job of `snapshot` (queue.db) into the `jobs` table of `connection` (in its transaction);
    how many."""
    rows = snapshot.rows("jobs")
    if not rows:
        return 0
    columns = list(rows[0])
    running = [*columns, "claim", "lease_until"]
    async with connection.cursor() as cursor:
        async with cursor.copy(f"COPY jobs ({', '.join(running)}) FROM STDIN") as copy:
            for row in rows:
                moved = (MOVED_CLAIM, 0.0) if row["status"] == "running" else (None, None)
                await copy.write_row([_value(name, row[name]) for name in columns] + list(moved))
        highest = max(snapshot.sequence("jobs"), max(row["id"] for row in rows))
        await cursor.execute("SELECT setval(pg_get_serial_sequence('jobs', 'id'), %s)", (highest,))
    return len(rows)


def _value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in BOOL_COLUMNS:
        return bool(value)
    return value  # JSON columns: SQLite's text, which PostgreSQL parses into jsonb
