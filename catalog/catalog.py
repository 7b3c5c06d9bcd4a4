"""The catalog: every image kept, searchable, ranked and browsable. SQLite is the truth, Whoosh derived.

`Catalog` is what the other rooms use; each of its parts is a module working on the open `Store`
(catalog/store.py): adding images (catalog/adding.py: SQLite first, then the text index), searching
(catalog/search.py), ratings and favourites (catalog/ratings.py), the recycle bin (catalog/recycle_bin.py:
soft delete moves the file into it and back on restore; purge removes rows, index entries and files for good),
the integrity check (catalog/integrity.py), the derived indexes kept readable (catalog/derived.py) and the
galleries (catalog/galleries.py).

Guild scoping: every read takes the guild and every SQL statement filters on it; the index query is
intersected with the guild too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from catalog import (
    adding,
    animations,
    derived,
    galleries,
    importing,
    integrity,
    lineage,
    path_migration,
    ratings,
    recycle_bin,
    search,
)
from catalog.integrity import IntegrityReport
from catalog.records import BrowseQuery, ImageRecord, NewImage, Page
from catalog.store import Store

log = logging.getLogger(__name__)


class Catalog:
    """Open with `await Catalog.open(folder)`; the folder holds catalog.db, the index and the recycle bin.

    Paths are stored relative to the data folder, `folder`'s parent (catalog/paths.py); records carry them
    absolute. `max_pixels` bounds the images added (checked from their headers: catalog/importing.py)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.folder = store.folder
        self.max_pixels = importing.MAX_PIXELS

    @classmethod
    async def open(cls, folder: Path, text_index: str = "whoosh") -> Catalog:
        """`text_index`: "whoosh" (the Whoosh index in `folder/index`) or "sqlite" (FTS5, catalog/words.py)."""
        store = await Store.open(folder, text_index)
        try:
            await derived.ensure_readable(
                store
            )  # a damaged index is rebuilt from SQLite (catalog/derived.py)
            await _follow_path_migration(store, await path_migration.run_pending(store.database, store.paths))
        except BaseException:
            await store.close()
            raise
        return cls(store)

    async def close(self) -> None:
        await self.store.close()

    @property
    def galleries(self) -> galleries.Galleries:
        """Named collections and the gallery channel's posts (catalog/galleries.py)."""
        return galleries.Galleries(self.store)

    @property
    def recycle_bin(self) -> Path:
        return recycle_bin.bin_folder(self.store)

    # ----- adding ------------------------------------------------------------------------------------------
    async def add(self, image: NewImage) -> ImageRecord:
        """Add one image (its file must exist); returns its record, searchable when this returns."""
        return (await self.add_many([image]))[0]

    async def add_many(
        self,
        images: Sequence[NewImage],
        chunk: int = adding.CHUNK,
        skipped: list[str] | None = None,
        max_pixels: int | None = None,
    ) -> list[ImageRecord]:
        """Add images in transactions of `chunk` rows, each followed by one index commit.

        Each file is checked from its header first (at most `max_pixels`, default the catalog's: see
        catalog/importing.py); a refused one raises InvalidImage, or, given a `skipped` list, is left out
        and listed there as "path: reason"."""
        return await adding.add_many(self.store, images, chunk, skipped, max_pixels or self.max_pixels)

    async def bulk_insert(self, rows: Iterable[dict]) -> int:
        """Insert prepared rows (the columns of `importing.describe_files`, paths in their stored form) in one
        transaction, without indexing them: for loading very large catalogs, followed by `rebuild_index`.
        Rows already present are skipped."""
        return await adding.bulk_insert(self.store, rows)

    async def import_folder(
        self, folder: Path, guild: str, author: str, recursive: bool = True, max_pixels: int | None = None
    ) -> tuple[list[ImageRecord], list[str]]:
        """Add every image under `folder` with its A1111 infotext (PNG chunk, EXIF or `.txt` sidecar), or the
        generation info of ComfyUI, InvokeAI, Fooocus or NovelAI turned into one (catalog/foreign.py).

        Each file is checked from its header before anything decodes it (at most `max_pixels`, default the
        catalog's); links that leave `folder` are refused (catalog/paths.py). Returns the records and the
        files skipped, as "path: reason"; one bad file never stops the others."""
        limit = max_pixels or self.max_pixels
        return await adding.import_folder(self.store, folder, guild, author, recursive, limit)

    # ----- reading ----------------------------------------------------------------------------------------
    async def get(self, guild: str, image_id: int) -> ImageRecord | None:
        return await self.store.get(guild, image_id)

    async def of_message(self, guild: str, message: str) -> list[ImageRecord]:
        """The images a chat message shows (as `set_message` recorded), in order."""
        return await self._where_ids("guild = ? AND message = ?", (guild, message))

    async def of_job(self, job_id: int) -> list[ImageRecord]:
        """The images a job made, in order."""
        return await self._where_ids("job_id = ?", (job_id,))

    async def _where_ids(self, where: str, args: tuple) -> list[ImageRecord]:
        async with self.store.db.execute(f"SELECT id FROM images WHERE {where} ORDER BY id", args) as cursor:
            ids = [row[0] for row in await cursor.fetchall()]
        return await self.store.records(ids)

    async def set_message(self, image_ids: Sequence[int], channel: str, message: str) -> None:
        """Record the chat message that shows these images (reactions on it rate them)."""
        async with self.store.transaction() as db:
            await db.executemany(
                "UPDATE images SET channel = ?, message = ? WHERE id = ?",
                [(channel, message, image_id) for image_id in image_ids],
            )

    async def recent_messages(self, limit: int) -> list[tuple[str, str, str]]:
        """(guild, channel, message) of the newest chat messages showing images that are not deleted."""
        async with self.store.db.execute(
            "SELECT guild, channel, message, MAX(created) AS newest FROM images "
            "WHERE message IS NOT NULL AND channel IS NOT NULL AND deleted_at IS NULL "
            "GROUP BY guild, channel, message ORDER BY newest DESC LIMIT ?",
            (limit,),
        ) as cursor:
            return [(row[0], row[1], row[2]) for row in await cursor.fetchall()]

    async def search(self, browse: BrowseQuery) -> Page:
        """One page of the guild's images matching every filter of the query (SPEC §4; catalog/search.py)."""
        return await search.page(self.store, browse)

    async def matching_ids(self, browse: BrowseQuery) -> list[int]:
        """Every id matching the query's filters (all pages), in id order."""
        return await search.matching_ids(self.store, browse)

    async def family(self, guild: str, image_id: int, include_deleted: bool = False) -> lineage.Family:
        """The image's original and everything made from it, each with its relation (catalog/lineage.py)."""
        await self.store.existing(guild, image_id)

        async def rows_of(ids) -> list[tuple[int, int | None]]:
            return await self._links(guild, "id", ids)

        async def children_of(ids) -> list[tuple[int, int | None]]:
            return await self._links(guild, "parent_id", ids)

        return await lineage.family(
            image_id, rows_of, children_of, lambda ids: self.store.records(ids, guild), include_deleted
        )

    async def _links(self, guild: str, column: str, ids) -> list[tuple[int, int | None]]:
        async with self.store.db.execute(
            f"SELECT id, parent_id FROM images WHERE guild = ? AND {column} IN (SELECT value FROM json_each(?))",
            (guild, json.dumps(list(ids))),
        ) as cursor:
            return [(row[0], row[1]) for row in await cursor.fetchall()]

    # ----- animations (catalog/animations.py) ---------------------------------------------------------------
    async def add_animation(self, animation: animations.NewAnimation) -> ImageRecord:
        """One item for a finished animation (its first frame, with its video and settings file), its other
        frames added as the item's children; returns the item."""

        async def execute(sql: str, args: tuple) -> None:
            async with self.store.transaction() as db:
                await db.execute(sql, args)

        return await animations.add(animation, self.add_many, execute, self.store.paths)

    async def animation(self, guild: str, image_id: int) -> animations.Animation | None:
        """The video and settings file of the guild's animation item `image_id`; None for any other image."""
        if await self.store.get(guild, image_id) is None:
            return None

        async def fetch(sql: str, args: tuple) -> list:
            async with self.store.db.execute(sql, args) as cursor:
                return list(await cursor.fetchall())

        return await animations.find(image_id, fetch, self.store.paths)

    # ----- ratings and favourites (catalog/ratings.py) ------------------------------------------------------
    async def rate(self, guild: str, image_id: int, user: str, score: int | None) -> ImageRecord:
        """Set, change (score 1–5) or remove (None) one user's rating; the mean and count follow."""
        return await ratings.rate(self.store, guild, image_id, user, score)

    async def ratings(self, image_id: int) -> dict[str, int]:
        """Every user's score of one image."""
        return await ratings.ratings(self.store, image_id)

    async def rating_of(self, image_id: int, user: str) -> int | None:
        return await ratings.rating_of(self.store, image_id, user)

    async def top_images(self, guild: str, since: float, until: float, limit: int = 5) -> list[ImageRecord]:
        """The best-ranked images made in [since, until) in one guild (not deleted, not NSFW)."""
        return await ratings.top_images(self.store, guild, since, until, limit)

    async def favourite(self, guild: str, image_id: int, user: str, on: bool = True) -> None:
        await ratings.favourite(self.store, guild, image_id, user, on)

    async def is_favourite(self, image_id: int, user: str) -> bool:
        return await ratings.is_favourite(self.store, image_id, user)

    # ----- delete, restore, purge (catalog/recycle_bin.py) ---------------------------------------------------
    async def delete(self, guild: str, image_ids: Iterable[int]) -> int:
        """Move images (rows stay, marked deleted; files into the recycle bin). Returns how many moved."""
        return await recycle_bin.delete(self.store, guild, image_ids)

    async def delete_matching(self, browse: BrowseQuery) -> int:
        """Delete every image matching the filter, on every page ("also delete images not shown")."""
        return await self.delete(browse.guild, await self.matching_ids(browse))

    async def restore(self, guild: str, image_ids: Iterable[int]) -> int:
        return await recycle_bin.restore(self.store, guild, image_ids)

    async def purge(self, guild: str, image_ids: Iterable[int] | None = None) -> int:
        """Empty the guild's recycle bin (or remove only these deleted images): rows, index entries, files."""
        return await recycle_bin.purge(self.store, guild, image_ids)

    async def purge_older_than(self, seconds: float) -> int:
        """Remove for good what has been in any guild's recycle bin longer than `seconds` (scheduled)."""
        return await recycle_bin.purge_older_than(self.store, seconds)

    # ----- integrity and the text index ---------------------------------------------------------------------
    async def check(
        self,
        roots: Sequence[Path] = (),
        guild: str = "local",
        author: str = "local",
        repair: bool = False,
        skip: Sequence[Path] = (),
    ) -> IntegrityReport:
        """Find rows whose file is gone, image files under `roots` (but not under `skip`) without rows, rows
        missing from the index and index entries without rows; with `repair`, remove the first, import the
        second (into `guild`), index the third and drop the fourth (catalog/integrity.py)."""
        report = await integrity.check(self.store, roots, skip)
        if repair and not report.clean:
            await integrity.repair(self.store, report, guild, author, self.max_pixels)
        return report

    async def rebuild_index(self) -> int:
        """Throw the text index away and build it again from SQLite; returns the documents written. SQLite's
        trigram index is rebuilt too if it is damaged."""
        return await derived.rebuild_text_index(self.store)

    async def optimize_index(self) -> None:
        """Merge the text index's segments (scheduled)."""
        await self.store.in_index_thread(self.store.text.optimize)

    def index_postings(self) -> set[tuple[str, str, int]]:
        """The text index's (field, word, id) triples (blocking; for checks and tests)."""
        return self.store.text.postings()


async def _follow_path_migration(store: Store, merged: path_migration.Merged) -> None:
    """The text index (outside SQLite) follows the rows the path step merged (the check would, too)."""
    if merged.removed:
        log.warning("catalog: %d duplicate rows merged into the oldest of each", len(merged.removed))
        await store.in_index_thread(store.text.remove, merged.removed)
    await derived.index_records(store, await store.records(merged.kept))
