"""The three stores, each opened as an async context manager that closes it: `queue.db` (or the queue on
PostgreSQL when `[database] url` is set: jobs/pg_store.py), `catalog.db` (with its text index; on PostgreSQL
with the URL: catalog/pg_catalog.py) and
`community.db`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from catalog.catalog import Catalog
from community.store import CommunityStore
from config import Settings
from jobs.store import JobStore

if TYPE_CHECKING:
    from jobs.pg_blobs import PgBlobStore


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
async def open_blob_store(settings: Settings) -> AsyncIterator[PgBlobStore | None]:
    """The blob store that carries result files and previews between hosts (jobs/pg_blobs.py) when `[database]
    url` is set; None with the SQLite files (every process reads the one data folder)."""
    if not settings.database.url:
        yield None
        return
    from jobs.pg_blobs import PgBlobStore

    blobs = await PgBlobStore.open(
        settings.database.url, max_bytes=settings.database.blob_max_mb * 1024 * 1024
    )
    try:
        yield blobs
    finally:
        await blobs.close()


@asynccontextmanager
async def open_catalog(settings: Settings) -> AsyncIterator[Catalog]:
    """`catalog.db` with its text index, or the catalog on PostgreSQL when `[database] url` is set
    (catalog/pg_catalog.py: the same interface; files and the recycle bin stay in the data folder)."""
    if settings.database.url:
        from catalog.pg_catalog import PgCatalog

        catalog = await PgCatalog.open(settings.database.url, settings.catalog_dir)
    else:
        catalog = await Catalog.open(settings.catalog_dir, settings.catalog.text_index)
    try:
        yield catalog
    finally:
        await catalog.close()


@asynccontextmanager
async def open_community(settings: Settings) -> AsyncIterator[CommunityStore]:
    """`community.db`, or the community tables on PostgreSQL when `[database] url` is set
    (community/pg_store.py: the same interface)."""
    if settings.database.url:
        from community.pg_store import PgCommunityStore

        community = await PgCommunityStore.open(settings.database.url)
    else:
        community = await CommunityStore.open(settings.community_db)
    try:
        yield community
    finally:
        await community.close()
