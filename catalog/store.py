"""What the catalog's parts share: catalog.db's connection and transactions, the stored form of paths, the text
index with the one thread that writes it, and rows read back as records.

`Catalog` (catalog/catalog.py) opens one `Store` and hands it to each part: searching (catalog/search.py),
ratings (catalog/ratings.py), the recycle bin (catalog/recycle_bin.py), the integrity check
(catalog/integrity.py), the derived indexes (catalog/derived.py) and the galleries (catalog/galleries.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from catalog import patterns
from catalog.keywords import sql_keyword
from catalog.paths import PathForm
from catalog.records import ImageRecord
from catalog.schema import MIGRATIONS, record_of
from catalog.sqlite_words import SqliteWords
from catalog.text_index import WhooshIndex
from core.errors import InvalidRequest
from core.sqlite import Database

TEXT_INDEXES = ("whoosh", "sqlite")
PAGE_CACHE_KB = 131_072  # SQLite's page cache for the catalog (the default 2 MB halves rank queries at 1M)
SQL_FUNCTIONS: tuple[tuple[str, int, Callable[..., Any]], ...] = (  # (name, arguments, function)
    ("salon_match", 5, patterns.sql_match),
    ("salon_keyword", 9, sql_keyword),
    ("salon_regexp", 4, patterns.sql_regexp),
)


class Store:
    """One open catalog folder: `db` (aiosqlite) and `transaction()` from core/sqlite.py, `paths` (stored paths
    are relative to the data folder, `folder`'s parent: catalog/paths.py), and `text`, the text index, used only
    through `in_index_thread` (Whoosh blocks)."""

    def __init__(self, folder: Path, database: Database, text: WhooshIndex | SqliteWords) -> None:
        self.folder = folder
        self.paths = PathForm(folder.parent)
        self.database = database
        self.db = database.connection
        self.transaction = database.transaction
        self.text = text
        self._index_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salon-index")
        self._closed = False

    @classmethod
    async def open(cls, folder: Path, text_index: str = "whoosh") -> Store:
        """`text_index`: "whoosh" (the Whoosh index in `folder/index`) or "sqlite" (FTS5, catalog/words.py)."""
        if text_index not in TEXT_INDEXES:
            raise InvalidRequest("text_index", f"{text_index!r} is not one of: {', '.join(TEXT_INDEXES)}")
        database = await Database.open(folder / "catalog.db", MIGRATIONS)
        try:
            await database.connection.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KB}")
            for name, arguments, function in SQL_FUNCTIONS:
                await database.connection.create_function(name, arguments, function, deterministic=True)
            text = (
                WhooshIndex(folder / "index")
                if text_index == "whoosh"
                else SqliteWords(folder / "catalog.db")
            )
        except BaseException:
            await database.close()  # an open connection's thread would keep the process alive
            raise
        return cls(folder, database, text)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.in_index_thread(self.text.close)
        self._index_thread.shutdown(wait=True)
        await self.database.close()

    async def in_index_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._index_thread, function, *args)

    async def records(self, ids: Sequence[int], guild: str | None = None) -> list[ImageRecord]:
        """These images' records in the order of `ids` (those that exist, in `guild` when given)."""
        if not ids:
            return []
        where = "id IN (SELECT value FROM json_each(?))" + (" AND guild = ?" if guild is not None else "")
        args: tuple = (json.dumps(list(ids)),) + ((guild,) if guild is not None else ())
        async with self.db.execute(f"SELECT * FROM images WHERE {where}", args) as cursor:
            by_id = {row["id"]: record_of(row, self.paths) for row in await cursor.fetchall()}
        return [by_id[i] for i in ids if i in by_id]

    async def get(self, guild: str, image_id: int) -> ImageRecord | None:
        records = await self.records([image_id], guild)
        return records[0] if records else None

    async def existing(self, guild: str, image_id: int) -> ImageRecord:
        """The guild's image, or InvalidRequest saying there is none."""
        record = await self.get(guild, image_id)
        if record is None:
            raise InvalidRequest("image", f"there is no image {image_id} in this server")
        return record
