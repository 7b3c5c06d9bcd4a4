"""The three stores, each opened as an async context manager that closes it: `queue.db` (or the queue on
PostgreSQL when `[database] url` is set: jobs/pg_store.py), `catalog.db` (with its text index) and
`community.db`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from catalog.catalog import Catalog
from community.store import CommunityStore
from config import Settings
from jobs.store import JobStore


@asynccontextmanager
async def open_job_store(settings: Settings, worker_name: str | None = None) -> AsyncIterator[JobStore]:
    """`queue.db`, or the shared queue on PostgreSQL when `[database] url` is set (`worker_name`: how this
    process shows as a worker there; default the host name)."""
    if settings.database.url:
        from jobs.pg_store import PgJobStore

        store = await PgJobStore.open(
            settings.database.url,
            lease_s=settings.database.lease_s,
            max_attempts=settings.queue.max_attempts,
            worker_name=worker_name,
        )
    else:
        store = await JobStore.open(settings.queue_db)
    try:
        yield store
    finally:
        await store.close()  # an open connection would keep the process from exiting


@asynccontextmanager
async def open_catalog(settings: Settings) -> AsyncIterator[Catalog]:
    catalog = await Catalog.open(settings.catalog_dir, settings.catalog.text_index)
    try:
        yield catalog
    finally:
        await catalog.close()


@asynccontextmanager
async def open_community(settings: Settings) -> AsyncIterator[CommunityStore]:
    community = await CommunityStore.open(settings.community_db)
    try:
        yield community
    finally:
        await community.close()
