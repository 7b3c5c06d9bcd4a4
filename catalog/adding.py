"""Adding images to the catalog: rows in SQLite first, then the text index.

An image's file already exists (a job wrote it, or it is being imported). Its row is written in one
transaction with `indexed = 0`, then the index entry is committed and the row marked `indexed = 1`. A crash
between these steps leaves a row the integrity check re-indexes, or a file it imports again; never an index
entry without a row that it cannot remove.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

from catalog import derived, importing
from catalog.records import ImageRecord, NewImage
from catalog.store import Store

CHUNK = 2000  # rows added in one transaction, followed by one index commit


@derived.recovering
async def add_many(
    store: Store, images: Sequence[NewImage], chunk: int, skipped: list[str] | None, max_pixels: int
) -> list[ImageRecord]:
    """Add images in transactions of `chunk` rows, each followed by one index commit.

    Each file is checked from its header first (at most `max_pixels`: catalog/importing.py); a refused one
    raises InvalidImage, or, given a `skipped` list, is left out and listed there as "path: reason"."""
    records: list[ImageRecord] = []
    for start in range(0, len(images), chunk):
        part, rows = await importing.accepted(images[start : start + chunk], store.paths, max_pixels, skipped)
        async with store.transaction() as db:
            ids = []
            for image, row in zip(part, rows, strict=True):
                cursor = await db.execute(
                    "SELECT id FROM images WHERE guild = ? AND path = ?", (image.guild, row["path"])
                )
                existing = await cursor.fetchone()
                if existing:
                    ids.append(existing[0])
                    continue
                columns = ", ".join(row)
                cursor = await db.execute(
                    f"INSERT INTO images ({columns}) VALUES ({', '.join('?' * len(row))})",
                    tuple(row.values()),
                )
                ids.append(cursor.lastrowid)
        added = await store.records(ids)
        await derived.index_records(store, added)
        records.extend(added)
    return records


async def bulk_insert(store: Store, rows: Iterable[dict]) -> int:
    """Insert prepared rows in one transaction, without indexing them; rows already present are skipped."""
    rows = list(rows)
    if not rows:
        return 0
    columns = list(rows[0])
    sql = f"INSERT OR IGNORE INTO images ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    async with store.transaction() as db:
        before = store.db.total_changes
        await db.executemany(sql, [tuple(row[c] for c in columns) for row in rows])
        return store.db.total_changes - before


async def import_folder(
    store: Store, folder: Path, guild: str, author: str, recursive: bool, max_pixels: int
) -> tuple[list[ImageRecord], list[str]]:
    """Add every image under `folder` with its generation info; returns the records and the files skipped,
    as "path: reason" (one bad file never stops the others)."""
    found, skipped = await asyncio.to_thread(
        importing.prepare_folder, folder, guild, author, recursive, [store.folder], max_pixels
    )
    return await add_many(store, found, CHUNK, skipped, max_pixels), skipped
