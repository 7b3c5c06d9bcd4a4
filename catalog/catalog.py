"""The catalog: every image kept, searchable, ranked and browsable. SQLite is the truth, Whoosh derived.

Adding an image: its file already exists (a job wrote it, or it is being imported); the row is written in
one transaction with `indexed = 0`, then the index entry is committed and the row marked `indexed = 1`. A
crash between these steps leaves a row the integrity check re-indexes, or a file it imports again; never an
index entry without a row that it cannot remove. Soft delete moves the file into the recycle bin folder and
back on restore; purge removes rows, index entries and files for good.

Guild scoping: every read takes the guild and every SQL statement filters on it; the index query is
intersected with the guild too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from catalog import derived, galleries, importing, path_migration, patterns, words
from catalog.importing import pixel_sha256  # noqa: F401  (where it lived before)
from catalog.keywords import (
    Node,
    SearchedTexts,
    Term,
    check_patterns,
    encode,
    parse_keywords,
    sql_keyword,
)
from catalog.paths import Found, PathForm, image_files
from catalog.prefilter import keyword_match, regex_match
from catalog.records import (
    BrowseQuery,
    ImageRecord,
    NegativeMode,
    NewImage,
    Page,
    Relation,
    SortOrder,
    searched_columns,
)
from catalog.text_index import WhooshIndex, rebuild
from core.errors import InvalidImage, InvalidRequest
from core.sqlite import BUSY_TIMEOUT_MS, Database, Migration

log = logging.getLogger(__name__)

MIGRATIONS: tuple[Migration, ...] = (
    (
        "create catalog",
        """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild TEXT NOT NULL,
            channel TEXT,
            message TEXT,
            author TEXT NOT NULL,
            created REAL NOT NULL,
            path TEXT NOT NULL,
            filename TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            model TEXT,
            model_hash TEXT,
            sampler TEXT,
            schedule TEXT,
            steps INTEGER,
            cfg REAL,
            seed INTEGER,
            prompt TEXT NOT NULL DEFAULT '',
            negative_prompt TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '',
            infotext TEXT NOT NULL DEFAULT '',
            networks TEXT NOT NULL DEFAULT '[]',
            parent_id INTEGER REFERENCES images (id) ON DELETE SET NULL,
            relation TEXT,
            nsfw INTEGER NOT NULL DEFAULT 0,
            deleted_at REAL,
            recycled_path TEXT,
            rank_mean REAL,
            rank_count INTEGER NOT NULL DEFAULT 0,
            job_id INTEGER,
            indexed INTEGER NOT NULL DEFAULT 0,
            UNIQUE (guild, path)
        );
        CREATE INDEX images_by_date ON images (guild, deleted_at, created);
        CREATE INDEX images_by_rank ON images (guild, deleted_at, rank_mean);
        CREATE INDEX images_by_author ON images (guild, author, created);
        CREATE INDEX images_by_model ON images (guild, model, created);
        CREATE INDEX images_unindexed ON images (indexed) WHERE indexed = 0;
        CREATE INDEX images_by_path ON images (path);
        CREATE TABLE ratings (
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            user TEXT NOT NULL,
            score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
            rated_at REAL NOT NULL,
            PRIMARY KEY (image_id, user)
        );
        CREATE TABLE favourites (
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            user TEXT NOT NULL,
            added_at REAL NOT NULL,
            PRIMARY KEY (user, image_id)
        );
        CREATE TABLE galleries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild TEXT NOT NULL,
            name TEXT NOT NULL,
            owner TEXT NOT NULL,
            created REAL NOT NULL,
            UNIQUE (guild, name)
        );
        CREATE TABLE gallery_images (
            gallery_id INTEGER NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            PRIMARY KEY (gallery_id, image_id)
        )
        """,
    ),
    (
        "trigram index for exact searches",
        (
            "CREATE VIRTUAL TABLE images_text USING fts5(prompt, negative_prompt, params, "
            "content='images', content_rowid='id', tokenize='trigram')",
            "CREATE TRIGGER images_text_insert AFTER INSERT ON images BEGIN "
            "INSERT INTO images_text (rowid, prompt, negative_prompt, params) "
            "VALUES (new.id, new.prompt, new.negative_prompt, new.params); END",
            "CREATE TRIGGER images_text_delete AFTER DELETE ON images BEGIN "
            "INSERT INTO images_text (images_text, rowid, prompt, negative_prompt, params) "
            "VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.params); END",
            "CREATE TRIGGER images_text_update AFTER UPDATE OF prompt, negative_prompt, params ON images BEGIN "
            "INSERT INTO images_text (images_text, rowid, prompt, negative_prompt, params) "
            "VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.params); "
            "INSERT INTO images_text (rowid, prompt, negative_prompt, params) "
            "VALUES (new.id, new.prompt, new.negative_prompt, new.params); END",
            "INSERT INTO images_text (images_text) VALUES ('rebuild')",
        ),
    ),
    ("word index in SQLite", words.MIGRATION),
    (
        "images by message and by job",
        "CREATE INDEX images_by_message ON images (message); CREATE INDEX images_by_job ON images (job_id)",
    ),
    galleries.MIGRATION,
    path_migration.MIGRATION,
)

PAGE_CACHE_KB = 131_072  # SQLite's page cache for the catalog (the default 2 MB halves rank queries at 1M)
SMALL_RESULT = 2_000  # a keyword's matches below this are sorted; above, the sort index is walked
LARGE_RESULT = 100_000  # from this many matches, the walk probes the words index instead of listing them
WORDS_IN = "id IN (SELECT rowid FROM images_words WHERE images_words MATCH ?)"
WORDS_EXISTS = "EXISTS (SELECT 1 FROM images_words WHERE images_words MATCH ? AND rowid = images.id)"
COUNT_WORDS = "SELECT COUNT(*) FROM images_words WHERE images_words MATCH ?"

SORT_COLUMNS = {
    SortOrder.DATE: "created",
    SortOrder.RANK: "rank_mean",  # unrated (NULL) sorts lowest; a plain column, so its index gives the order
    SortOrder.SEED: "seed",
    SortOrder.STEPS: "steps",
    SortOrder.CFG: "cfg",
    SortOrder.MODEL: "model",
}


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


class Catalog:
    """Open with `await Catalog.open(folder)`; the folder holds catalog.db, the index and the recycle bin.

    Paths are stored relative to the data folder, `folder`'s parent (catalog/paths.py); records carry them
    absolute. `max_pixels` bounds the images added (checked from their headers: catalog/importing.py)."""

    def __init__(self, folder: Path, database: Database, text: WhooshIndex | SqliteWords) -> None:
        self.folder = folder
        self._paths = PathForm(folder.parent)
        self.max_pixels = importing.MAX_PIXELS
        self._database = database
        self._db = database.connection
        self._transaction = database.transaction
        self._text = text
        self._index_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salon-index")
        self._closed = False

    @classmethod
    async def open(cls, folder: Path, text_index: str = "whoosh") -> Catalog:
        """`text_index`: "whoosh" (the Whoosh index in `folder/index`) or "sqlite" (FTS5, catalog/words.py)."""
        if text_index not in TEXT_INDEXES:
            raise InvalidRequest("text_index", f"{text_index!r} is not one of: {', '.join(TEXT_INDEXES)}")
        database = await Database.open(folder / "catalog.db", MIGRATIONS)
        try:
            await database.connection.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KB}")
            for name, arguments, function in (
                ("salon_match", 5, patterns.sql_match),
                ("salon_keyword", 9, sql_keyword),
                ("salon_regexp", 4, patterns.sql_regexp),
            ):
                await database.connection.create_function(name, arguments, function, deterministic=True)
            text = (
                WhooshIndex(folder / "index")
                if text_index == "whoosh"
                else SqliteWords(folder / "catalog.db")
            )
        except BaseException:
            await database.close()  # an open connection's thread would keep the process alive
            raise
        catalog = cls(folder, database, text)
        try:
            await derived.ensure_readable(
                catalog
            )  # a damaged index is rebuilt from SQLite (catalog/derived.py)
            await catalog._follow_path_migration(await path_migration.run_pending(database, catalog._paths))
        except BaseException:
            await catalog.close()
            raise
        return catalog

    async def _follow_path_migration(self, merged: path_migration.Merged) -> None:
        """The text index (outside SQLite) follows the rows the path step merged (the check would, too)."""
        if merged.removed:
            log.warning("catalog: %d duplicate rows merged into the oldest of each", len(merged.removed))
            await self._in_index_thread(self._text.remove, merged.removed)
        await self._index(await self._records(merged.kept))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._in_index_thread(self._text.close)
        self._index_thread.shutdown(wait=True)
        await self._database.close()

    @property
    def galleries(self) -> galleries.Galleries:
        """Named collections and the gallery channel's posts (catalog/galleries.py)."""
        return galleries.Galleries(self)

    @property
    def recycle_bin(self) -> Path:
        return self.folder / "recycle"

    async def _in_index_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._index_thread, function, *args)

    # ----- adding ------------------------------------------------------------------------------------------
    async def add(self, image: NewImage) -> ImageRecord:
        """Add one image (its file must exist); returns its record, searchable when this returns."""
        return (await self.add_many([image]))[0]

    @derived.recovering
    async def add_many(
        self,
        images: Sequence[NewImage],
        chunk: int = 2000,
        skipped: list[str] | None = None,
        max_pixels: int | None = None,
    ) -> list[ImageRecord]:
        """Add images in transactions of `chunk` rows, each followed by one index commit.

        Each file is checked from its header first (at most `max_pixels`, default the catalog's: see
        catalog/importing.py); a refused one raises InvalidImage, or, given a `skipped` list, is left out
        and listed there as "path: reason"."""
        records: list[ImageRecord] = []
        limit = max_pixels or self.max_pixels
        for start in range(0, len(images), chunk):
            described = await asyncio.get_running_loop().run_in_executor(
                None, importing.describe_files, images[start : start + chunk], self._paths, limit
            )
            part, rows = [], []
            for image, row in zip(images[start : start + chunk], described, strict=True):
                if isinstance(row, InvalidImage):
                    if skipped is None:
                        raise InvalidImage(row.option, f"{image.path}: {row.message}")
                    skipped.append(f"{image.path}: {row.message}")
                else:
                    part.append(image)
                    rows.append(row)
            async with self._transaction() as db:
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
            added = await self._records(ids)
            await self._index(added)
            records.extend(added)
        return records

    async def bulk_insert(self, rows: Iterable[dict]) -> int:
        """Insert prepared rows (the columns of `importing.describe_files`, paths in their stored form) in one
        transaction, without indexing them: for loading very large catalogs, followed by `rebuild_index`.
        Rows already present are skipped."""
        rows = list(rows)
        if not rows:
            return 0
        columns = list(rows[0])
        sql = f"INSERT OR IGNORE INTO images ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        async with self._transaction() as db:
            before = self._db.total_changes
            await db.executemany(sql, [tuple(row[c] for c in columns) for row in rows])
            return self._db.total_changes - before

    async def _index(self, records: Sequence[ImageRecord]) -> None:
        await derived.index_records(self, records)

    async def import_folder(
        self, folder: Path, guild: str, author: str, recursive: bool = True, max_pixels: int | None = None
    ) -> tuple[list[ImageRecord], list[str]]:
        """Add every image under `folder` with its A1111 infotext (PNG chunk, EXIF or `.txt` sidecar), or the
        generation info of ComfyUI, InvokeAI, Fooocus or NovelAI turned into one (catalog/foreign.py).

        Each file is checked from its header before anything decodes it (at most `max_pixels`, default the
        catalog's); links that leave `folder` are refused (catalog/paths.py). Returns the records and the
        files skipped, as "path: reason"; one bad file never stops the others."""
        limit = max_pixels or self.max_pixels
        found, skipped = await asyncio.to_thread(
            importing.prepare_folder, folder, guild, author, recursive, [self.folder], limit
        )
        return await self.add_many(found, skipped=skipped, max_pixels=limit), skipped

    # ----- reading ----------------------------------------------------------------------------------------
    async def get(self, guild: str, image_id: int) -> ImageRecord | None:
        records = await self._records([image_id], guild)
        return records[0] if records else None

    async def _records(self, ids: Sequence[int], guild: str | None = None) -> list[ImageRecord]:
        if not ids:
            return []
        where = "id IN (SELECT value FROM json_each(?))" + (" AND guild = ?" if guild is not None else "")
        args: tuple = (json.dumps(list(ids)),) + ((guild,) if guild is not None else ())
        async with self._db.execute(f"SELECT * FROM images WHERE {where}", args) as cursor:
            by_id = {row["id"]: _record(row, self._paths) for row in await cursor.fetchall()}
        return [by_id[i] for i in ids if i in by_id]

    async def of_message(self, guild: str, message: str) -> list[ImageRecord]:
        """The images a chat message shows (as `set_message` recorded), in order."""
        return await self._where_ids("guild = ? AND message = ?", (guild, message))

    async def of_job(self, job_id: int) -> list[ImageRecord]:
        """The images a job made, in order."""
        return await self._where_ids("job_id = ?", (job_id,))

    async def _where_ids(self, where: str, args: tuple) -> list[ImageRecord]:
        async with self._db.execute(f"SELECT id FROM images WHERE {where} ORDER BY id", args) as cursor:
            ids = [row[0] for row in await cursor.fetchall()]
        return await self._records(ids)

    async def set_message(self, image_ids: Sequence[int], channel: str, message: str) -> None:
        """Record the chat message that shows these images (reactions on it rate them)."""
        async with self._transaction() as db:
            await db.executemany(
                "UPDATE images SET channel = ?, message = ? WHERE id = ?",
                [(channel, message, image_id) for image_id in image_ids],
            )

    @derived.recovering
    @patterns.time_bounded
    async def search(self, browse: BrowseQuery) -> Page:
        """One page of the guild's images matching every filter of the query (SPEC §4)."""
        where, args, count_match = await self._filters(browse)
        keyword = bool(browse.keyword if browse.regex else browse.keyword.strip())  # as `_filters` decides
        # With a keyword, count from its matches (+guild: not by walking the guild's index past every row).
        counted = where.replace("guild = ?", "+guild = ?", 1) if keyword else where
        if count_match is not None:  # the words index counts the guild's matches by itself
            total = await self._count_words(browse, count_match)
        else:
            async with self._db.execute(f"SELECT COUNT(*) FROM images WHERE {counted}", args) as cursor:
                total = (await cursor.fetchone())[0]
        pages = max(1, -(-total // browse.page_size))
        page = pages if browse.page == -1 else browse.page
        if not 1 <= page <= pages:
            raise InvalidRequest("page", f"page {browse.page} does not exist; there are {pages} page(s)")
        offset, limit = (page - 1) * browse.page_size, browse.page_size
        descending = browse.descending
        backwards = browse.sort is not SortOrder.RANDOM and offset > total // 2
        if backwards:  # a deep page is near the other end: read it from there, then turn it round
            limit = min(limit, total - offset)
            offset, descending = total - offset - limit, not descending
        if browse.sort is SortOrder.RANDOM:
            order = "salon_random(id)"
            await self._db.create_function(
                "salon_random", 1, lambda i: random.Random(browse.random_seed * 1_000_003 + i).random()
            )
        else:
            direction = "DESC" if descending else "ASC"
            order = f"{SORT_COLUMNS[browse.sort]} {direction}, id {direction}"
        # Few matches: sort them (driven by the keyword's ids); many: walk the sort index and stop early.
        # Only ids are sorted (a sorter holding whole rows, infotexts included, was 4× slower).
        paged = where
        if keyword and total < SMALL_RESULT:
            paged = counted
        elif total >= LARGE_RESULT:  # probe the words index row by row as the walk goes, not list every match
            paged = where.replace(WORDS_IN, WORDS_EXISTS)
        sql = f"SELECT id FROM images WHERE {paged} ORDER BY {order} LIMIT ? OFFSET ?"
        async with self._db.execute(sql, (*args, limit, offset)) as cursor:
            ids = [row[0] for row in await cursor.fetchall()]
        if backwards:
            ids.reverse()
        return Page(tuple(await self._records(ids)), page, pages, total)

    async def _count_words(self, browse: BrowseQuery, node) -> int:
        async with self._db.execute("SELECT scope, images FROM scope_sizes") as cursor:
            sizes = {row[0]: row[1] for row in await cursor.fetchall()}
        within = words.scope(browse.guild, browse.deleted)
        total = 0
        for sign, match in words.count_queries(node, browse.negative, within, sizes):
            async with self._db.execute(COUNT_WORDS, (match,)) as cursor:
                total += sign * (await cursor.fetchone())[0]
        return total

    @derived.recovering
    @patterns.time_bounded
    async def matching_ids(self, browse: BrowseQuery) -> list[int]:
        """Every id matching the query's filters (all pages), in id order."""
        where, args = await self._where(browse)
        async with self._db.execute(f"SELECT id FROM images WHERE {where} ORDER BY id", args) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def _where(self, browse: BrowseQuery) -> tuple[str, tuple]:
        return (await self._filters(browse))[:2]

    async def _filters(self, browse: BrowseQuery) -> tuple[str, tuple, object | None]:
        """The WHERE clause and its arguments, and (when the words index alone can count) the keyword tree."""
        if browse.page_size < 1 or browse.page_size > 100:
            raise InvalidRequest("page_size", f"{browse.page_size} is not from 1 to 100")
        clauses = ["guild = ?", "deleted_at IS NOT NULL" if browse.deleted else "deleted_at IS NULL"]
        args: list = [browse.guild]
        if not browse.include_nsfw:
            clauses.append("nsfw = 0")
        if browse.negative is NegativeMode.NONE:
            clauses.append("negative_prompt = ''")
        if browse.filename:
            if browse.regex:
                patterns.compiled(browse.filename, browse.case_sensitive, "filename")
            clauses.append("salon_match(filename, ?, ?, ?, ?)")
            args += [browse.filename, browse.case_sensitive, browse.regex, patterns.deadline()]
        if browse.author:
            clauses.append("author = ?")
            args.append(browse.author)
        if browse.model:
            clauses.append("model = ?")
            args.append(browse.model)
        if browse.favourites_of:
            clauses.append("id IN (SELECT image_id FROM favourites WHERE user = ?)")
            args.append(browse.favourites_of)
        if browse.gallery is not None:
            clauses.append("id IN (SELECT image_id FROM gallery_images WHERE gallery_id = ?)")
            args.append(browse.gallery)
        rank = browse.rank
        if rank.kind == "none":
            clauses.append("rank_count = 0")
        elif rank.kind == "exact":
            clauses.append("rank_mean >= ? AND rank_mean < ?")  # (unrated images have no mean)
            args += [rank.low - 0.5, rank.low + 0.5]
        elif rank.kind == "range":
            clauses.append("rank_mean BETWEEN ? AND ?")
            args += [rank.low, rank.high]
        only_words = len(clauses) == 2 and not args[1:]
        count_match = None
        if browse.keyword if browse.regex else browse.keyword.strip():
            clause, more, node = await self._keyword_clause(browse)
            clauses.append(clause)
            args += more
            exact = browse.regex or browse.case_sensitive
            if only_words and isinstance(self._text, SqliteWords) and not exact and words.is_text(node):
                count_match = node
            if exact and clause.startswith("salon_"):  # a row-by-row scan (no prefilter): once, not per query
                async with self._db.execute(
                    f"SELECT id FROM images WHERE {' AND '.join(clauses)}", args
                ) as cur:
                    ids = [row[0] for row in await cur.fetchall()]
                return "id IN (SELECT value FROM json_each(?))", (json.dumps(ids),), None
        return " AND ".join(clauses), tuple(args), count_match

    async def _keyword_clause(self, browse: BrowseQuery) -> tuple[str, list, Node]:
        """The keyword's SQL condition, its arguments, and its parsed expression."""
        if browse.regex:
            node = Term(browse.keyword)  # the whole keyword is one regular expression, as in A1111
            check_patterns(node, browse.case_sensitive)
        else:
            node = parse_keywords(browse.keyword)
        if browse.regex or browse.case_sensitive:
            # Exact: evaluated row by row on the same texts as `keywords.matches` (a scan of the guild's rows).
            text = " || char(10) || ".join(searched_columns(browse.negative))
            if browse.regex:  # one pattern over the searched text: the lightest check SQLite can call
                clause = f"salon_regexp(?, {text}, ?, ?)"
                args = [browse.keyword, browse.case_sensitive, patterns.deadline()]
            else:
                clause = (
                    f"salon_keyword(?, {text}, negative_prompt, COALESCE(model, ''), COALESCE(sampler, ''), "
                    "networks, COALESCE(CAST(seed AS TEXT), ''), ?, ?)"
                )
                args = [encode(node), browse.case_sensitive, False]
            needed = (
                regex_match(browse.keyword, browse.negative)
                if browse.regex
                else keyword_match(node, browse.negative)
            )
            if needed:
                # Only rows with the substrings the search needs are checked exactly, once, here; counting and
                # paging then use the ids (the check is Python, a few µs a row: not twice).
                state = "deleted_at IS NOT NULL" if browse.deleted else "deleted_at IS NULL"
                sql = (
                    f"SELECT id FROM images WHERE id IN (SELECT rowid FROM images_text WHERE images_text MATCH ?) "
                    f"AND +guild = ? AND +{state} AND {clause}"
                )
                async with self._db.execute(sql, (needed, browse.guild, *args)) as cursor:
                    ids = [row[0] for row in await cursor.fetchall()]
                return "id IN (SELECT value FROM json_each(?))", [json.dumps(ids)], node
            return clause, args, node
        if isinstance(self._text, SqliteWords):
            return (*words.sql_condition(node, browse.negative), node)
        ids = await derived.whoosh_ids(self, node, browse.negative)
        return "id IN (SELECT value FROM json_each(?))", [json.dumps(ids)], node

    # ----- ratings and favourites ---------------------------------------------------------------------------
    async def rate(self, guild: str, image_id: int, user: str, score: int | None) -> ImageRecord:
        """Set, change (score 1–5) or remove (None) one user's rating; the mean and count follow.

        One SQLite transaction: the text index holds nothing a rating changes, so a rating never waits for it."""
        if score is not None and (not isinstance(score, int) or not 1 <= score <= 5):
            raise InvalidRequest("score", f"{score!r} is not a whole number from 1 to 5")
        await self._existing(guild, image_id)
        async with self._transaction() as db:
            if score is None:
                await db.execute("DELETE FROM ratings WHERE image_id = ? AND user = ?", (image_id, user))
            else:
                await db.execute(
                    "INSERT INTO ratings VALUES (?, ?, ?, ?) ON CONFLICT (image_id, user) "
                    "DO UPDATE SET score = excluded.score, rated_at = excluded.rated_at",
                    (image_id, user, score, time.time()),
                )
            await db.execute(
                "UPDATE images SET (rank_mean, rank_count) = "
                "(SELECT AVG(score), COUNT(*) FROM ratings WHERE image_id = ?) WHERE id = ?",
                (image_id, image_id),
            )
        return await self._existing(guild, image_id)

    async def ratings(self, image_id: int) -> dict[str, int]:
        """Every user's score of one image."""
        async with self._db.execute(
            "SELECT user, score FROM ratings WHERE image_id = ?", (image_id,)
        ) as cursor:
            return {row[0]: row[1] for row in await cursor.fetchall()}

    async def recent_messages(self, limit: int) -> list[tuple[str, str, str]]:
        """(guild, channel, message) of the newest chat messages showing images that are not deleted."""
        async with self._db.execute(
            "SELECT guild, channel, message, MAX(created) AS newest FROM images "
            "WHERE message IS NOT NULL AND channel IS NOT NULL AND deleted_at IS NULL "
            "GROUP BY guild, channel, message ORDER BY newest DESC LIMIT ?",
            (limit,),
        ) as cursor:
            return [(row[0], row[1], row[2]) for row in await cursor.fetchall()]

    async def rating_of(self, image_id: int, user: str) -> int | None:
        async with self._db.execute(
            "SELECT score FROM ratings WHERE image_id = ? AND user = ?", (image_id, user)
        ) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def favourite(self, guild: str, image_id: int, user: str, on: bool = True) -> None:
        await self._existing(guild, image_id)
        async with self._transaction() as db:
            if on:
                await db.execute(
                    "INSERT OR IGNORE INTO favourites VALUES (?, ?, ?)", (image_id, user, time.time())
                )
            else:
                await db.execute("DELETE FROM favourites WHERE image_id = ? AND user = ?", (image_id, user))

    async def is_favourite(self, image_id: int, user: str) -> bool:
        async with self._db.execute(
            "SELECT 1 FROM favourites WHERE image_id = ? AND user = ?", (image_id, user)
        ) as cursor:
            return await cursor.fetchone() is not None

    async def _existing(self, guild: str, image_id: int) -> ImageRecord:
        record = await self.get(guild, image_id)
        if record is None:
            raise InvalidRequest("image", f"there is no image {image_id} in this server")
        return record

    # ----- delete, restore, purge --------------------------------------------------------------------------
    async def delete(self, guild: str, image_ids: Iterable[int]) -> int:
        """Move images (rows stay, marked deleted; files into the recycle bin). Returns how many moved."""
        moved = 0
        for image_id in image_ids:
            record = await self._existing(guild, image_id)
            if record.deleted:
                continue
            target = self.recycle_bin / f"{record.id}-{record.filename}"
            target.parent.mkdir(parents=True, exist_ok=True)
            source = Path(record.path)
            if source.exists():
                if await self._shared(record):
                    shutil.copy2(source, target)  # another guild's row still shows this file
                else:
                    shutil.move(source, target)
            async with self._transaction() as db:
                await db.execute(
                    "UPDATE images SET deleted_at = ?, recycled_path = ? WHERE id = ?",
                    (time.time(), self._paths.stored(target), image_id),
                )
            moved += 1
        return moved

    async def delete_matching(self, browse: BrowseQuery) -> int:
        """Delete every image matching the filter, on every page ("also delete images not shown")."""
        return await self.delete(browse.guild, await self.matching_ids(browse))

    async def restore(self, guild: str, image_ids: Iterable[int]) -> int:
        restored = 0
        for image_id in image_ids:
            record = await self._existing(guild, image_id)
            if not record.deleted:
                continue
            stored = await self._recycled_path(image_id)
            recycled = Path(self._paths.absolute(stored)) if stored else None
            if recycled is not None and recycled.exists():
                if Path(record.path).exists():
                    recycled.unlink()  # the file stayed for another row
                else:
                    Path(record.path).parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(recycled, record.path)
            async with self._transaction() as db:
                await db.execute(
                    "UPDATE images SET deleted_at = NULL, recycled_path = NULL WHERE id = ?", (image_id,)
                )
            restored += 1
        return restored

    async def purge(self, guild: str, image_ids: Iterable[int] | None = None) -> int:
        """Empty the guild's recycle bin (or remove only these deleted images): rows, index entries, files."""
        async with self._db.execute(
            "SELECT id, recycled_path FROM images WHERE guild = ? AND deleted_at IS NOT NULL", (guild,)
        ) as cursor:
            rows = [(row[0], row[1]) for row in await cursor.fetchall()]
        if image_ids is not None:
            wanted = set(image_ids)
            rows = [row for row in rows if row[0] in wanted]
        ids = [row[0] for row in rows]
        async with self._transaction() as db:
            await db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
        await self._in_index_thread(self._text.remove, ids)
        for _, recycled in rows:
            if recycled:
                Path(self._paths.absolute(recycled)).unlink(missing_ok=True)
        return len(ids)

    # ----- upkeep (scheduled) ------------------------------------------------------------------------------
    async def purge_older_than(self, seconds: float) -> int:
        """Remove for good what has been in any guild's recycle bin longer than `seconds`."""
        cutoff = time.time() - seconds
        async with self._db.execute(
            "SELECT guild, id FROM images WHERE deleted_at IS NOT NULL AND deleted_at < ?", (cutoff,)
        ) as cursor:
            rows = await cursor.fetchall()
        by_guild: dict[str, list[int]] = {}
        for guild, image_id in rows:
            by_guild.setdefault(guild, []).append(image_id)
        return sum([await self.purge(guild, ids) for guild, ids in by_guild.items()])

    async def optimize_index(self) -> None:
        await self._in_index_thread(self._text.optimize)

    async def top_images(self, guild: str, since: float, until: float, limit: int = 5) -> list[ImageRecord]:
        """The best-ranked images made in [since, until) in one guild (not deleted, not NSFW)."""
        async with self._db.execute(
            "SELECT id FROM images WHERE guild = ? AND deleted_at IS NULL AND nsfw = 0 AND rank_count > 0 "
            "AND created >= ? AND created < ? ORDER BY rank_mean DESC, rank_count DESC, id LIMIT ?",
            (guild, since, until, limit),
        ) as cursor:
            ids = [row[0] for row in await cursor.fetchall()]
        records = {record.id: record for record in await self._records(ids, guild)}
        return [records[i] for i in ids if i in records]

    async def _shared(self, record: ImageRecord) -> bool:
        async with self._db.execute(  # (the stored paths compared, one form for all rows)
            "SELECT 1 FROM images WHERE path = (SELECT path FROM images WHERE id = ?) AND id != ? "
            "AND deleted_at IS NULL LIMIT 1",
            (record.id, record.id),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def _recycled_path(self, image_id: int) -> str:
        async with self._db.execute("SELECT recycled_path FROM images WHERE id = ?", (image_id,)) as cursor:
            return (await cursor.fetchone())[0]

    # ----- integrity and rebuild ---------------------------------------------------------------------------
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
        second (into `guild`), index the third and drop the fourth.

        Files and rows are compared by their stored path (catalog/paths.py), so a file is never taken for an
        orphan because a row names it another way, and a second repair changes nothing. Links under a root
        that leave it are not files of the catalog."""
        async with self._db.execute(
            "SELECT id, path, recycled_path, deleted_at, indexed FROM images"
        ) as cursor:
            rows = await cursor.fetchall()
        missing = tuple(
            row["id"]
            for row in rows
            if not (stored := row["recycled_path"] if row["deleted_at"] else row["path"])
            or not os.path.exists(self._paths.absolute(stored))
        )
        known = {row["path"] for row in rows}
        orphans = tuple(await asyncio.to_thread(self._orphans, roots, skip, known))
        in_index = await self._in_index_thread(self._text.ids)
        row_ids = {row["id"] for row in rows}
        unindexed = tuple(sorted({row["id"] for row in rows if not row["indexed"]} | (row_ids - in_index)))
        stray = tuple(sorted(in_index - row_ids))
        report = IntegrityReport(missing, orphans, unindexed, stray)
        if repair and not report.clean:
            await self._repair(report, guild, author)
        return report

    def _orphans(self, roots: Sequence[Path], skip: Sequence[Path], known: set[str]) -> list[str]:
        """Image files under `roots` (not under `skip` or the catalog's folder) whose stored path no row has."""
        orphans = []
        for root in roots:
            if root.is_dir():
                found, _links = image_files(root, exclude=[self.folder, *skip])
                orphans += [str(file.path) for file in found if self._paths.stored(file.real) not in known]
        return orphans

    async def _repair(self, report: IntegrityReport, guild: str, author: str) -> None:
        if report.rows_without_files:
            log.warning("catalog: %d rows had no file; removed", len(report.rows_without_files))
            async with self._transaction() as db:
                await db.executemany(
                    "DELETE FROM images WHERE id = ?", [(i,) for i in report.rows_without_files]
                )
        await self._in_index_thread(
            self._text.remove, [*report.index_without_rows, *report.rows_without_files]
        )
        if report.rows_not_indexed:
            gone = set(report.rows_without_files)
            await self._index(await self._records([i for i in report.rows_not_indexed if i not in gone]))
        if report.files_without_rows:
            files = [Found(Path(p), os.path.realpath(p)) for p in report.files_without_rows]
            images, refused = await asyncio.to_thread(
                importing.prepare, files, guild, author, self.max_pixels
            )
            added = await self.add_many(images, skipped=refused)
            log.warning("catalog: %d files had no row; %d added", len(report.files_without_rows), len(added))
            for line in refused:
                log.warning("catalog: not added: %s", line)

    async def rebuild_index(self) -> int:
        """Throw the text index away and build it again from SQLite; returns the documents written. SQLite's
        trigram index is rebuilt too if it is damaged."""
        await derived.repair_fts(self, ("images_text",))
        if isinstance(self._text, SqliteWords):
            await derived.rebuild_fts(self, "images_words")
            async with self._transaction() as db:
                await db.execute("UPDATE images SET indexed = 1")
            async with self._db.execute("SELECT COUNT(*) FROM images_words") as cursor:
                return (await cursor.fetchone())[0]

        def swap() -> int:  # in the index thread, reading rows as a stream (a million records do not fit)
            self._text.close()
            reader = sqlite3.connect(self.folder / "catalog.db")
            reader.row_factory = sqlite3.Row
            try:
                rows = reader.execute("SELECT * FROM images ORDER BY id")
                count = rebuild(self.folder / "index", (_record(row) for row in rows))
            finally:
                reader.close()
                self._text = WhooshIndex(self.folder / "index")
            return count

        count = await self._in_index_thread(swap)
        async with self._transaction() as db:
            await db.execute("UPDATE images SET indexed = 1")
        return count

    def index_postings(self) -> set[tuple[str, str, int]]:
        """The text index's (field, word, id) triples (blocking; for checks and tests)."""
        return self._text.postings()


TEXT_INDEXES = ("whoosh", "sqlite")


class SqliteWords:
    """The text-index interface over the FTS5 words table, which SQLite's triggers keep: writes are no-ops."""

    def __init__(self, database: Path) -> None:
        self.database = database

    def _write(self, sql: str, ids: Sequence[int]) -> None:
        db = sqlite3.connect(self.database, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            with db:
                db.execute(sql, (json.dumps(list(ids)),))
        finally:
            db.close()

    def put(self, records: Sequence[ImageRecord]) -> int:
        """Write these images' entries again (the triggers already did on insert; this repairs)."""
        ids = [record.id for record in records]
        self.remove(ids)
        self._write(words.POPULATE + " WHERE id IN (SELECT value FROM json_each(?))", ids)
        return len(ids)

    def remove(self, ids: Sequence[int]) -> None:
        self._write("DELETE FROM images_words WHERE rowid IN (SELECT value FROM json_each(?))", ids)

    def ids(self) -> set[int]:
        return {rowid for name, _, rowid in self.postings() if name == "scope"}

    def postings(self) -> set[tuple[str, str, int]]:
        """Every (column, text, image id) of the words table."""
        db = sqlite3.connect(self.database)
        try:
            rows = db.execute(
                "SELECT rowid, scope, fields, prompt, negative_prompt, params FROM images_words"
            )
            names = ("scope", "fields", "prompt", "negative_prompt", "params")
            return {(name, value, row[0]) for row in rows for name, value in zip(names, row[1:], strict=True)}
        finally:
            db.close()

    def optimize(self) -> None:
        """FTS5's merge of its b-trees into one (the scheduled counterpart of Whoosh's optimize)."""
        connection = sqlite3.connect(self.database, timeout=30)
        try:
            with connection:
                connection.execute("INSERT INTO images_words(images_words) VALUES ('optimize')")
        finally:
            connection.close()

    def close(self) -> None:
        return None


# ----- helpers ------------------------------------------------------------------------------------------------
def _record(row: sqlite3.Row | aiosqlite.Row, paths: PathForm | None = None) -> ImageRecord:
    """The record of a row; with `paths`, its path absolute (without, as stored: for the text index)."""
    return ImageRecord(
        id=row["id"],
        guild=row["guild"],
        channel=row["channel"],
        message=row["message"],
        author=row["author"],
        created=row["created"],
        path=paths.absolute(row["path"]) if paths is not None else row["path"],
        filename=row["filename"],
        sha256=row["sha256"],
        width=row["width"],
        height=row["height"],
        model=row["model"],
        model_hash=row["model_hash"],
        sampler=row["sampler"],
        schedule=row["schedule"],
        steps=row["steps"],
        cfg=row["cfg"],
        seed=row["seed"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        params=row["params"],
        infotext=row["infotext"],
        networks=tuple(json.loads(row["networks"])),
        parent_id=row["parent_id"],
        relation=Relation(row["relation"]) if row["relation"] else None,
        nsfw=bool(row["nsfw"]),
        deleted_at=row["deleted_at"],
        rank_mean=row["rank_mean"],
        rank_count=row["rank_count"],
        job_id=row["job_id"],
    )


def searched_text(record: ImageRecord, negative: NegativeMode) -> str:
    """The text an exact keyword search looks at for terms without a field."""
    return "\n".join(getattr(record, column) for column in searched_columns(negative))


def searched_texts(record: ImageRecord, negative: NegativeMode) -> SearchedTexts:
    return SearchedTexts(
        text=searched_text(record, negative),
        negative=record.negative_prompt,
        model=record.model or "",
        sampler=record.sampler or "",
        networks="\n".join(record.networks),
        seed="" if record.seed is None else str(record.seed),
    )
