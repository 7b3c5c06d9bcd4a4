"""Retention on the PostgreSQL blob store (jobs/pg_blobs.py `listed`, jobs/blob_retention.py): old keys by
prefix and age, and a dropped blob's chunks gone with it."""

from __future__ import annotations

import asyncio
import time

import psycopg

from jobs.blob_retention import DAY_S, PREVIEW_GRACE_S, drop_old_blobs
from jobs.pg_blobs import PgBlobStore
from jobs.records import JobStatus
from tests.jobs.test_blob_retention import RESULT, Catalog, Jobs


def rows(url: str) -> tuple[list[str], int]:
    with psycopg.connect(url) as db:
        keys = [key for (key,) in db.execute("SELECT key FROM blobs ORDER BY key")]
        (chunks,) = db.execute("SELECT count(*) FROM blob_chunks").fetchone()
    return keys, chunks


def test_listed_by_prefix_and_age_with_hostile_prefixes(postgres_url):
    async def scenario():
        blobs = await PgBlobStore.open(postgres_url)
        try:
            for key in ("previews/1.jpg", "previews_x/2.jpg", "outputs/a%b/1.png", "outputs/ab/2.png"):
                await blobs.put(key, b"x")
            later = time.time() + 10
            assert await blobs.listed("previews/", later) == ["previews/1.jpg"]
            assert await blobs.listed("outputs/a%", later) == ["outputs/a%b/1.png"]  # % is no wildcard
            assert await blobs.listed("previews/", time.time() - 60) == []  # too new
        finally:
            await blobs.close()

    asyncio.run(scenario())


def test_a_retention_pass_drops_rows_and_chunks(postgres_url):
    async def scenario():
        blobs = await PgBlobStore.open(postgres_url, chunk_bytes=4)
        try:
            await blobs.put("previews/5.jpg", b"preview!")
            await blobs.put(RESULT.format(job=5), b"purged image")
            await blobs.put(RESULT.format(job=6), b"catalogued image")
            jobs = Jobs({5: JobStatus.DONE, 6: JobStatus.DONE})
            soon = time.time() + PREVIEW_GRACE_S + 60
            dropped = await drop_old_blobs(blobs, jobs, Catalog({6}), keep_days=30, now=soon)
            assert (dropped.previews, dropped.results) == (1, 0)
            later = time.time() + 31 * DAY_S
            dropped = await drop_old_blobs(blobs, jobs, Catalog({6}), keep_days=30, now=later)
            assert dropped.results == 1
            assert await blobs.get(RESULT.format(job=6)) == b"catalogued image"
        finally:
            await blobs.close()

    asyncio.run(scenario())
    assert rows(postgres_url) == ([RESULT.format(job=6)], 4)  # 16 bytes in 4-byte chunks, nothing else
