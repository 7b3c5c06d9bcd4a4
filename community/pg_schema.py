"""The PostgreSQL schema of the community store: numbered migrations, applied at start by one process at a time.

The same rules as the queue's schema (jobs/pg_schema.py), kept apart from it because the community room sits
below the queue's: the tables of community.db (settings, schedules, digests, web links, browse sessions), their
own version table (`community_schema_migrations`) and advisory lock, so the stores of one database migrate
independently. A database migrated by a newer Salon is refused with one clear line.
"""

from __future__ import annotations

from core.errors import SalonError
from core.pg_migrations import Migrations, apply_migrations

MIGRATION_LOCK = 0x5A10_0010  # the advisory lock key of the community store's migrations ("Salon", 16)
VERSIONS = "community_schema_migrations"

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "create community settings, browse sessions, schedules, digests and web links",
        """
        CREATE TABLE community_settings (
            guild TEXT NOT NULL,
            channel TEXT NOT NULL DEFAULT '',
            key TEXT NOT NULL,
            value JSONB NOT NULL,
            set_by TEXT NOT NULL,
            set_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (guild, channel, key)
        );
        CREATE TABLE browse_sessions (
            id BIGSERIAL PRIMARY KEY,
            guild TEXT NOT NULL,
            channel TEXT NOT NULL,
            owner TEXT NOT NULL,
            options JSONB NOT NULL,
            page INTEGER NOT NULL DEFAULT 1,
            selected BIGINT,
            message TEXT,
            created DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE schedules (
            guild TEXT NOT NULL,
            kind TEXT NOT NULL,
            cron TEXT NOT NULL,
            options JSONB NOT NULL DEFAULT '{}',
            set_by TEXT NOT NULL,
            set_at DOUBLE PRECISION NOT NULL,
            last_run DOUBLE PRECISION,
            PRIMARY KEY (guild, kind)
        );
        CREATE TABLE digests (
            guild TEXT NOT NULL,
            period TEXT NOT NULL,
            channel TEXT NOT NULL,
            message TEXT,
            claimed_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (guild, period)
        );
        CREATE TABLE web_links (
            guild TEXT PRIMARY KEY,
            nonce TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        );
        """,
    ),
)

TABLES = ("community_settings", "browse_sessions", "schedules", "digests", "web_links")


class CommunitySchemaTooNew(SalonError):
    """The community tables were migrated by a newer Salon than this one."""


class CommunityDatabaseUnavailable(SalonError):
    """The PostgreSQL server of `[database] url` cannot be reached or refuses the connection."""


async def migrate(connection, migrations: Migrations = MIGRATIONS) -> int:
    """Apply the missing migrations under the advisory lock; the schema version now. Raises
    CommunitySchemaTooNew."""
    return await apply_migrations(
        connection, migrations, table=VERSIONS, lock=MIGRATION_LOCK,
        too_new=lambda current, known: CommunitySchemaTooNew(
            f"the community store's database is at schema version {current}, newer than this Salon knows "
            f"({known}): upgrade Salon on this host"
        ),
    )  # fmt: skip
