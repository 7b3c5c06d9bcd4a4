"""Copying `community.db` into the community store on PostgreSQL (`salon db migrate-to`).

Settings per guild and channel, schedules (with when each last ran), digests (claimed and posted), web-gallery
links (so the links already handed out keep working) and browse sessions (with their ids, so the buttons of
`/browse` messages keep working; the id sequence is set past the highest). The copy runs in the caller's
transaction.
"""

from __future__ import annotations

from core.sqlite_snapshot import Snapshot

# community.db's tables and their PostgreSQL twins (community/pg_schema.py; the counts compared afterwards),
# with the columns copied, in the same order on both sides (browse_sessions' `user` is `owner` there).
TABLES = {
    "community_settings": "community_settings",
    "schedules": "schedules",
    "digests": "digests",
    "web_links": "web_links",
    "browse_sessions": "browse_sessions",
}
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "community_settings": (
        ("guild", "guild"),
        ("channel", "channel"),
        ("key", "key"),
        ("value", "value"),
        ("set_by", "set_by"),
        ("set_at", "set_at"),
    ),
    "schedules": (
        ("guild", "guild"),
        ("kind", "kind"),
        ("cron", "cron"),
        ("options", "options"),
        ("set_by", "set_by"),
        ("set_at", "set_at"),
        ("last_run", "last_run"),
    ),
    "digests": (
        ("guild", "guild"),
        ("period", "period"),
        ("channel", "channel"),
        ("message", "message"),
        ("claimed_at", "claimed_at"),
    ),
    "web_links": (
        ("guild", "guild"),
        ("nonce", "nonce"),
        ("created_by", "created_by"),
        ("created_at", "created_at"),
    ),
    "browse_sessions": (
        ("id", "id"),
        ("guild", "guild"),
        ("channel", "channel"),
        ("user", "owner"),
        ("options", "options"),
        ("page", "page"),
        ("selected", "selected"),
        ("message", "message"),
        ("created", "created"),
    ),
}


async def copy_community(snapshot: Snapshot, connection) -> dict[str, int]:
    """Copy every row of `snapshot` (community.db) into `connection`'s community tables (in its transaction);
    how many rows per table."""
    copied: dict[str, int] = {}
    highest = 0
    async with connection.cursor() as cursor:
        for table, columns in COLUMNS.items():
            rows = snapshot.rows(table)
            target = ", ".join(name for _, name in columns)
            async with cursor.copy(f"COPY {TABLES[table]} ({target}) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row([row[name] for name, _ in columns])  # JSON text parses into jsonb
            copied[table] = len(rows)
            if table == "browse_sessions":
                highest = max([snapshot.sequence(table), *(row["id"] for row in rows)])
        if highest:
            await cursor.execute(
                "SELECT setval(pg_get_serial_sequence('browse_sessions', 'id'), %s)", (highest,)
            )
    return copied
