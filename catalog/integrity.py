"""The integrity check: SQLite's rows, the image files and the text index compared, and (when asked) repaired.

Files and rows are compared by their stored path (catalog/paths.py), so a file is never taken for an orphan
because a row names it another way, and a second repair changes nothing. Links under a root that leave it
are not files of the catalog.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from catalog import adding, derived, importing
from catalog.paths import Found, image_files
from catalog.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntegrityReport:
    """What the integrity check found (and, when asked, repaired)."""

    rows_without_files: tuple[int, ...]
    files_without_rows: tuple[str, ...]
    rows_not_indexed: tuple[int, ...]
    index_without_rows: tuple[int, ...]

    @property
    def clean(self) -> bool:
        return not (
            self.rows_without_files
            or self.files_without_rows
            or self.rows_not_indexed
            or self.index_without_rows
        )


async def check(store: Store, roots: Sequence[Path], skip: Sequence[Path]) -> IntegrityReport:
    """Rows whose file is gone, image files under `roots` (but not under `skip`) without rows, rows missing
    from the index and index entries without rows."""
    async with store.db.execute("SELECT id, path, recycled_path, deleted_at, indexed FROM images") as cursor:
        rows = await cursor.fetchall()
    missing = tuple(
        row["id"]
        for row in rows
        if not (stored := row["recycled_path"] if row["deleted_at"] else row["path"])
        or not os.path.exists(store.paths.absolute(stored))
    )
    known = {row["path"] for row in rows}
    orphans = tuple(await asyncio.to_thread(_orphans, store, roots, skip, known))
    in_index = await store.in_index_thread(store.text.ids)
    row_ids = {row["id"] for row in rows}
    unindexed = tuple(sorted({row["id"] for row in rows if not row["indexed"]} | (row_ids - in_index)))
    stray = tuple(sorted(in_index - row_ids))
    return IntegrityReport(missing, orphans, unindexed, stray)


def _orphans(store: Store, roots: Sequence[Path], skip: Sequence[Path], known: set[str]) -> list[str]:
    """Image files under `roots` (not under `skip` or the catalog's folder) whose stored path no row has."""
    orphans = []
    for root in roots:
        if root.is_dir():
            found, _links = image_files(root, exclude=[store.folder, *skip])
            orphans += [str(file.path) for file in found if store.paths.stored(file.real) not in known]
    return orphans


async def repair(store: Store, report: IntegrityReport, guild: str, author: str, max_pixels: int) -> None:
    """Remove the rows without files, index the rows missing from the index, drop the index entries without
    rows and import the files without rows (into `guild`)."""
    if report.rows_without_files:
        log.warning("catalog: %d rows had no file; removed", len(report.rows_without_files))
        async with store.transaction() as db:
            await db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in report.rows_without_files])
    await store.in_index_thread(store.text.remove, [*report.index_without_rows, *report.rows_without_files])
    if report.rows_not_indexed:
        gone = set(report.rows_without_files)
        missing = [i for i in report.rows_not_indexed if i not in gone]
        await derived.index_records(store, await store.records(missing))
    if report.files_without_rows:
        files = [Found(Path(p), os.path.realpath(p)) for p in report.files_without_rows]
        images, refused = await asyncio.to_thread(importing.prepare, files, guild, author, max_pixels)
        added = await adding.add_many(store, images, adding.CHUNK, refused, max_pixels)
        log.warning("catalog: %d files had no row; %d added", len(report.files_without_rows), len(added))
        for line in refused:
            log.warning("catalog: not added: %s", line)
