"""The recycle bin: a deleted image's row stays, marked deleted, and its file moves into `recycle/` in the
catalog's folder; restoring moves it back; purging removes rows, index entries and files for good.

A file another guild's row still shows is copied into the bin, not moved. Deleting and restoring (`into_bin`,
`out_of_bin`: which rows, where the files go) and the grouping by guild serve the PostgreSQL catalog too
(catalog/pg_changes.py), which only marks its rows its own way.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from catalog.records import ImageRecord
from catalog.store import Store

Shared = Callable[[ImageRecord], Awaitable[bool]]  # whether another row, not deleted, shows the record's file


def bin_folder(store: Store) -> Path:
    return store.folder / "recycle"


async def delete(store: Store, guild: str, image_ids: Iterable[int]) -> int:
    """Move images (rows stay, marked deleted; files into the recycle bin). Returns how many moved."""

    async def mark(image_id: int, recycled: str) -> None:
        async with store.transaction() as db:
            await db.execute(
                "UPDATE images SET deleted_at = ?, recycled_path = ? WHERE id = ?",
                (time.time(), recycled, image_id),
            )

    return await into_bin(store, guild, image_ids, bin_folder(store), functools.partial(_shared, store), mark)


async def restore(store: Store, guild: str, image_ids: Iterable[int]) -> int:
    async def mark(image_id: int) -> None:
        async with store.transaction() as db:
            await db.execute(
                "UPDATE images SET deleted_at = NULL, recycled_path = NULL WHERE id = ?", (image_id,)
            )

    return await out_of_bin(store, guild, image_ids, functools.partial(_recycled_path, store), mark)


async def into_bin(
    records: Store | Any,
    guild: str,
    image_ids: Iterable[int],
    folder: Path,
    shared: Shared,
    mark: Callable[[int, str], Awaitable[None]],
) -> int:
    """Move the guild's images not deleted yet into the bin (`folder`), each row then marked deleted by
    `mark(id, the file's stored path in the bin)`; how many moved. `records` is either catalog's store."""
    moved = 0
    for image_id in image_ids:
        record = await records.existing(guild, image_id)
        if record.deleted:
            continue
        target = folder / f"{record.id}-{record.filename}"
        await move_in(record, target, functools.partial(shared, record))
        await mark(image_id, records.paths.stored(target))
        moved += 1
    return moved


async def out_of_bin(
    records: Store | Any,
    guild: str,
    image_ids: Iterable[int],
    recycled_path: Callable[[int], Awaitable[str | None]],
    mark: Callable[[int], Awaitable[None]],
) -> int:
    """Bring the guild's deleted images back from the bin (`recycled_path(id)`: the stored path there), each
    row then marked restored by `mark(id)`; how many came back."""
    restored = 0
    for image_id in image_ids:
        record = await records.existing(guild, image_id)
        if not record.deleted:
            continue
        stored = await recycled_path(image_id)
        move_out(record, Path(records.paths.absolute(stored)) if stored else None)
        await mark(image_id)
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
    return sum([await purge(store, guild, ids) for guild, ids in by_guild(rows).items()])


async def move_in(record: ImageRecord, target: Path, shared: Callable[[], Awaitable[bool]]) -> None:
    """Put a deleted image's file (if it is still there) into the bin at `target`: copied when `shared()` says
    another guild's row still shows it, moved otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source = Path(record.path)
    if source.exists():
        if await shared():
            shutil.copy2(source, target)  # another guild's row still shows this file
        else:
            shutil.move(source, target)


def move_out(record: ImageRecord, recycled: Path | None) -> None:
    """Bring a restored image's file back from the bin (`recycled`: where it lies there, if anywhere)."""
    if recycled is not None and recycled.exists():
        if Path(record.path).exists():
            recycled.unlink()  # the file stayed for another row
        else:
            Path(record.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(recycled, record.path)


def by_guild(rows: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    """Image ids, (guild, id) pairs, grouped by guild."""
    grouped: dict[str, list[int]] = {}
    for guild, image_id in rows:
        grouped.setdefault(guild, []).append(image_id)
    return grouped


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
