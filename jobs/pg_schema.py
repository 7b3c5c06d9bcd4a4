"""The PostgreSQL schema of the job queue: numbered migrations, applied at start by one process at a time.

Whichever process opens the store first applies the missing migrations, in one transaction holding an
advisory lock (`pg_advisory_xact_lock`), so that roles starting together (a bot, several workers) never apply
one twice. A database whose schema is newer than this code knows is refused with one clear line (a newer
Salon migrated it): running old code against it could corrupt it.
"""

from __future__ import annotations

from core.errors import SalonError
from core.pg_migrations import Migrations, apply_migrations
from jobs.fair_heads import index_sql
from jobs.fair_sql import POSTGRES

MIGRATION_LOCK = 0x5A10_0001  # the advisory lock key of the queue's migrations ("Salon", 1)

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "create jobs and workers",
        """
        CREATE TABLE jobs (
            id BIGSERIAL PRIMARY KEY,
            kind TEXT NOT NULL,
            owner TEXT NOT NULL,
            guild TEXT,
            channel TEXT,
            request JSONB NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            phase TEXT NOT NULL DEFAULT '',
            progress DOUBLE PRECISION NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            error TEXT,
            results JSONB NOT NULL DEFAULT '[]',
            idempotency_key TEXT UNIQUE,
            attempts INTEGER NOT NULL DEFAULT 0,
            batch_key TEXT NOT NULL DEFAULT '',
            model TEXT,
            checkpoint JSONB,
            slices INTEGER NOT NULL DEFAULT 0,
            cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
            meta JSONB NOT NULL DEFAULT '{}',
            delivered_at DOUBLE PRECISION,
            solo BOOLEAN NOT NULL DEFAULT FALSE,
            deaths JSONB NOT NULL DEFAULT '[]',
            worker TEXT,
            claim TEXT,
            fence BIGINT NOT NULL DEFAULT 0,
            lease_until DOUBLE PRECISION
        );
        CREATE INDEX jobs_by_status ON jobs (status, id);
        CREATE INDEX jobs_by_owner ON jobs (owner, status);
        CREATE INDEX jobs_undelivered ON jobs (finished_at) WHERE delivered_at IS NULL;
        CREATE INDEX jobs_by_lease ON jobs (lease_until) WHERE status = 'running';
        CREATE TABLE workers (
            claim TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            gpu TEXT NOT NULL,
            models JSONB NOT NULL DEFAULT '[]',
            started_at DOUBLE PRECISION NOT NULL,
            heartbeat DOUBLE PRECISION NOT NULL,
            stopped_at DOUBLE PRECISION
        );
        """,
    ),
    (
        "people passed over for model affinity",
        """
        CREATE TABLE passed_over (
            owner TEXT PRIMARY KEY,
            times INTEGER NOT NULL
        );
        """,
    ),
    (
        "blobs: result files and previews in chunks (jobs/pg_blobs.py)",
        """
        CREATE TABLE blobs (
            key TEXT PRIMARY KEY,
            size BIGINT NOT NULL,
            chunks INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE blob_chunks (
            key TEXT NOT NULL REFERENCES blobs (key) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (key, n)
        );
        ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
        """,
    ),
    (
        "each person's last start by index: the turns of the fair order in SQL (jobs/fair_sql.py)",
        """
        CREATE INDEX jobs_served ON jobs (owner, started_at);
        """,
    ),
    (
        "the fair order person by person: indexes of the waiting people's lines (jobs/fair_heads.py)",
        index_sql(POSTGRES),
    ),
)


class SchemaTooNew(SalonError):
    """The database was migrated by a newer Salon than this one (the CLI prints it as one line, exit 2)."""


class DatabaseUnavailable(SalonError):
    """The PostgreSQL server of `[database] url` cannot be reached or refuses the connection."""


async def migrate(connection, migrations: Migrations = MIGRATIONS) -> int:
    """Apply the missing migrations under the advisory lock; the schema version now. Raises SchemaTooNew."""
    return await apply_migrations(
        connection, migrations, table="schema_migrations", lock=MIGRATION_LOCK,
        too_new=lambda current, known: SchemaTooNew(
            f"the queue's database is at schema version {current}, newer than this Salon knows "
            f"({known}): upgrade Salon on this host"
        ),
    )  # fmt: skip
