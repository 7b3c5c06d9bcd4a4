"""The blob store on PostgreSQL (jobs/pg_blobs.py): round trips, chunks, the cap, whole replacement."""

from __future__ import annotations

import asyncio
import os

import psycopg
import pytest

from jobs.blobs import BlobTooLarge
from jobs.pg_blobs import PgBlobStore


async def opened(url: str, **options) -> PgBlobStore:
    return await PgBlobStore.open(url, **options)


def chunk_rows(url: str, key: str) -> list[int]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT length(data) FROM blob_chunks WHERE key = %s ORDER BY n", (key,))
        return [length for (length,) in rows]


def test_round_trip_has_and_delete(postgres_url):
    async def scenario():
        blobs = await opened(postgres_url)
        try:
            assert await blobs.get("outputs/a.png") is None and not await blobs.has("outputs/a.png")
            data = os.urandom(3000)
            await blobs.put("outputs/a.png", data)
            assert await blobs.get("outputs/a.png") == data and await blobs.has("outputs/a.png")
            await blobs.put("outputs/empty", b"")
            assert await blobs.get("outputs/empty") == b""
            assert await blobs.delete("outputs/a.png") and not await blobs.delete("outputs/a.png")
            assert await blobs.get("outputs/a.png") is None
        finally:
            await blobs.close()

    asyncio.run(scenario())
    assert chunk_rows(postgres_url, "outputs/a.png") == []  # its chunks went with it


def test_a_blob_is_kept_in_chunks_and_replaced_whole(postgres_url):
    data = os.urandom(2500)

    async def scenario():
        blobs = await opened(postgres_url, chunk_bytes=1000)
        try:
            await blobs.put("k/big", data)
            assert chunk_rows(postgres_url, "k/big") == [1000, 1000, 500]
            assert await blobs.get("k/big") == data
            await blobs.put("k/big", b"short")  # fewer chunks than before: none of the old ones stays
            assert chunk_rows(postgres_url, "k/big") == [5]
            assert await blobs.get("k/big") == b"short"
        finally:
            await blobs.close()

    asyncio.run(scenario())


def test_concurrent_puts_of_one_key_leave_one_whole_blob(postgres_url):
    versions = [bytes([n]) * 2500 for n in range(6)]

    async def scenario():
        blobs = await opened(postgres_url, chunk_bytes=1000)
        try:
            await asyncio.gather(*(blobs.put("k/race", version) for version in versions))
            assert await blobs.get("k/race") in versions
        finally:
            await blobs.close()

    asyncio.run(scenario())
    assert chunk_rows(postgres_url, "k/race") == [1000, 1000, 500]


def test_a_blob_over_the_cap_is_refused_with_the_setting_named(postgres_url):
    async def scenario():
        blobs = await opened(postgres_url, max_bytes=1024)
        try:
            await blobs.put("k/ok", b"x" * 1024)
            with pytest.raises(BlobTooLarge, match=r"\[database\] blob_max_mb"):
                await blobs.put("k/too-big", b"x" * 1025)
            assert not await blobs.has("k/too-big")
            with pytest.raises(ValueError, match="not a blob key"):
                await blobs.put("../escape", b"x")
        finally:
            await blobs.close()

    asyncio.run(scenario())
