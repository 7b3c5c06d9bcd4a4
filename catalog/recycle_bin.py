"""The recycle bin: a deleted image's row stays, marked deleted, and its file moves into `recycle/` in the
catalog's folder; restoring moves it back; purging removes rows, index entries and files for good.

A file another guild's row still shows is copied into the bin, not moved.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from catalog.records import ImageRecord
from catalog.store import Store


def bin_folder(store: Store) -> Path:
    return store.folder / "recycle"


async def delete(store: Store, guild: str, image_ids: Iterable[int]) -> int:
    """Move images (rows stay, marked deleted; files into the recycle bin). Returns how many moved."""
    moved = 0
    for image_id in image_ids:
        record = await store.existing(guild, image_id)
        if record.deleted:
            continue
        target = bin_folder(store) / f"{record.id}-{record.filename}"
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(record.path)
        if source.exists():
            if await _shared(store, record):
                shutil.copy2(source, target)  # another guild's row still shows this file
            else:
                shutil.move(source, target)
        async with store.transaction() as db:
            await db.execute(
                "UPDATE images SET deleted_at = ?, recycled_path = ? WHERE id = ?",
                (time.time(), store.paths.stored(target), image_id),
            )
        moved += 1
    return moved


async def restore(store: Store, guild: str, image_ids: Iterable[int]) -> int:
    restored = 0
    for image_id in image_ids:
        record = await store.existing(guild, image_id)
        if not record.deleted:
            continue
        stored = await _recycled_path(store, image_id)
        recycled = Path(store.paths.absolute(stored)) if stored else None
        if recycled is not None and recycled.exists():
            if Path(record.path).exists():
                recycled.unlink()  # the file stayed for another row
            else:
                Path(record.path).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(recycled, record.path)
        async with store.transaction() as db:
            await db.execute(
                "UPDATE images SET deleted_at = NULL, recycled_path = NULL WHERE id = ?", (image_id,)
            )
        restored += 1
    return restored


async def purge(store: Store, guild: str, image_ids: Iterable[int] | None = None) -> int:
    """Empty the guild's recycle bin (or remove only these deleted images): rows, index entries, files."""
    async with store.db.execute(
        "SELECT id, recycled_path FROM images WHERE guild = ? AND deleted_at IS NOT NULL", (guild,)
    ) as cursor:
        rows = [(row[0], row[1]) for row in await cursor.fetchall()]
    if image_ids is not None:
        wanted = set(image_ids)
        rows = [row for row in rows if row[0] in wanted]
    ids = [row[0] for row in rows]
    async with store.transaction() as db:
        await db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
    await store.in_index_thread(store.text.remove, ids)
    for _, recycled in rows:
        if recycled:
            Path(store.paths.absolute(recycled)).unlink(missing_ok=True)
    return len(ids)


async def purge_older_than(store: Store, seconds: float) -> int:
    """Remove for good what has been in any guild's recycle bin longer than `seconds`."""
    cutoff = time.time() - seconds
    async with store.db.execute(
        "SELECT guild, id FROM images WHERE deleted_at IS NOT NULL AND deleted_at < ?", (cutoff,)
    ) as cursor:
        rows = await cursor.fetchall()
    by_guild: dict[str, list[int]] = {}
    for guild, image_id in rows:
        by_guild.setdefault(guild, []).append(image_id)
    return sum([await purge(store, guild, ids) for guild, ids in by_guild.items()])


async def _shared(store: Store, record: ImageRecord) -> bool:
    async with store.db.execute(  # (the stored paths compared, one form for all rows)
        "SELECT 1 FROM images WHERE path = (SELECT path FROM images WHERE id = ?) AND id != ? "
        "AND deleted_at IS NULL LIMIT 1",
        (record.id, record.id),
    ) as cursor:
        return await cursor.fetchone() is not None


async def _recycled_path(store: Store, image_id: int) -> str:
    async with store.db.execute("SELECT recycled_path FROM images WHERE id = ?", (image_id,)) as cursor:
        return (await cursor.fetchone())[0]
