"""The blob store on PostgreSQL (jobs/blobs.py's interface): result files and previews shared by every host.

Two tables (jobs/pg_schema.py): `blobs`, one row per key with its size and chunk count, and `blob_chunks`,
the bytes in `bytea` rows of `CHUNK_BYTES` (1 MiB; stored uncompressed: PNGs and JPEGs are compressed
already). A put replaces the key's rows in one transaction, so a reader sees the old blob or the new one,
never part of one; a get reads the header and its chunks in one statement (one snapshot) and checks the size.
A blob over the cap (`[database] blob_max_mb`) is refused with `BlobTooLarge` before anything is written.
"""

from __future__ import annotations

import time

from jobs.blobs import DEFAULT_MAX_BYTES, MIB, check_size, checked_key
from jobs.pg_schema import migrate

CHUNK_BYTES = MIB


class DamagedBlob(RuntimeError):
    """A blob's chunks do not add up to its recorded size."""


class PgBlobStore:
    """Blobs in the database of `[database] url`. `await PgBlobStore.open(url)`; `await close()`."""

    def __init__(self, pool, max_bytes: int = DEFAULT_MAX_BYTES, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.pool = pool  # also used for NOTIFY (jobs/pg_notify.py)
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes

    @classmethod
    async def open(
        cls, url: str, max_bytes: int = DEFAULT_MAX_BYTES, chunk_bytes: int = CHUNK_BYTES
    ) -> PgBlobStore:
        """A small pool of its own; the schema migrated (a role may open blobs before the queue)."""
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(
            url, min_size=1, max_size=3, open=False, kwargs={"autocommit": True, "row_factory": dict_row}
        )
        try:
            await pool.open(wait=True, timeout=30.0)
            async with pool.connection() as connection:
                await migrate(connection)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, max_bytes, chunk_bytes)

    async def close(self) -> None:
        await self.pool.close()

    async def put(self, key: str, data: bytes) -> None:
        checked_key(key)
        check_size(key, data, self.max_bytes)
        size = self.chunk_bytes
        chunks = [(key, n, data[start : start + size]) for n, start in enumerate(range(0, len(data), size))]
        async with self.pool.connection() as connection, connection.transaction():
            # The header row first: a concurrent put of the same key waits for this one on its row lock.
            await connection.execute(
                "INSERT INTO blobs (key, size, chunks, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET size = EXCLUDED.size, chunks = EXCLUDED.chunks, "
                "created_at = EXCLUDED.created_at",
                (key, len(data), len(chunks), time.time()),
            )
            await connection.execute("DELETE FROM blob_chunks WHERE key = %s", (key,))
            async with connection.cursor() as cursor:
                await cursor.executemany("INSERT INTO blob_chunks (key, n, data) VALUES (%s, %s, %s)", chunks)

    async def get(self, key: str) -> bytes | None:
        checked_key(key)
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT b.size, b.chunks, c.n, c.data FROM blobs b LEFT JOIN blob_chunks c ON c.key = b.key "
                "WHERE b.key = %s ORDER BY c.n",
                (key,),
            )
            rows = await cursor.fetchall()
        if not rows:
            return None
        parts = [bytes(row["data"]) for row in rows if row["data"] is not None]
        data = b"".join(parts)
        if len(parts) != rows[0]["chunks"] or len(data) != rows[0]["size"]:
            raise DamagedBlob(
                f"blob {key}: {len(data)} bytes in {len(parts)} chunks, {rows[0]['size']} expected"
            )
        return data

    async def has(self, key: str) -> bool:
        checked_key(key)
        async with self.pool.connection() as connection:
            cursor = await connection.execute("SELECT 1 FROM blobs WHERE key = %s", (key,))
            return await cursor.fetchone() is not None

    async def delete(self, key: str) -> bool:
        checked_key(key)
        async with self.pool.connection() as connection:
            cursor = await connection.execute("DELETE FROM blobs WHERE key = %s RETURNING key", (key,))
            return await cursor.fetchone() is not None

    async def listed(self, prefix: str, before: float) -> list[str]:
        """The keys under `prefix` last written before `before` (a Unix time), in key order."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT key FROM blobs WHERE key LIKE %s AND created_at < %s ORDER BY key", (pattern, before)
            )
            return [row["key"] for row in await cursor.fetchall()]
