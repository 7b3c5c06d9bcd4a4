"""The catalog on PostgreSQL: the public interface of `Catalog` (catalog/catalog.py) over one shared database,
for several hosts (bot, web, workers) against `[database] url`.

Chosen by the composition root (app/stores.py) when `[database] url` is set. The rows are catalog.db's
(catalog/pg_schema.py); the text index is not a separate store but a column of each row (`words`, a tsvector
with a GIN index: catalog/pg_words.py), written in the row's own INSERT, so a row can never be missing from
the index nor the index hold a row that is gone. Searching is catalog/pg_search.py; ratings and the recycle
bin catalog/pg_changes.py; galleries catalog/pg_galleries.py. Files stay on this host's disk, under the data
folder (`folder`'s parent), as with SQLite: paths are stored in the same form (catalog/paths.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

from catalog import animations, importing, integrity, lineage, pg_changes, pg_search, pg_words
from catalog.integrity import IntegrityReport
from catalog.paths import Found, PathForm
from catalog.pg_galleries import PgGalleries
from catalog.pg_schema import migrate
from catalog.records import BrowseQuery, ImageRecord, NewImage, Page
from catalog.schema import record_of
from core.errors import SalonError

CONNECT_TIMEOUT_S = 30.0
CHUNK = 2000  # rows added in one transaction
BULK_PART = 5000  # rows of a bulk insert copied and inserted at a time
WORD_COLUMNS = (
    "guild",
    "deleted_at",
    "prompt",
    "negative_prompt",
    "params",
    "model",
    "sampler",
    "seed",
    "networks",
)
COLUMNS = (
    "id, guild, channel, message, author, created, path, filename, sha256, width, height, model, model_hash, "
    "sampler, schedule, steps, cfg, seed, prompt, negative_prompt, params, infotext, networks, parent_id, "
    "relation, nsfw, deleted_at, recycled_path, rank_mean, rank_count, job_id, indexed"
)


class CatalogUnavailable(SalonError):
    """The PostgreSQL server of `[database] url` cannot be reached for the catalog."""


class PgCatalog:
    """Open with `await PgCatalog.open(url, folder)`; `folder` holds the recycle bin (catalog/recycle_bin.py's
    layout), paths are stored relative to its parent, the data folder."""

    def __init__(self, pool, url: str, folder: Path) -> None:
        self._pool = pool
        self.url = url
        self.folder = folder
        self.paths = PathForm(folder.parent)
        self.max_pixels = importing.MAX_PIXELS

    @classmethod
    async def open(cls, url: str, folder: Path) -> PgCatalog:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        pool = AsyncConnectionPool(
            url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True, "row_factory": dict_row}
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            async with pool.connection() as connection:
                await migrate(connection)
        except PoolTimeout:
            await pool.close()
            raise CatalogUnavailable(
                f"cannot reach the catalog's database within {CONNECT_TIMEOUT_S:.0f} s: is PostgreSQL "
                "running, and [database] url right?"
            ) from None
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url, folder)

    async def close(self) -> None:
        await self._pool.close()

    # ----- the database, for the catalog's parts ----------------------------------------------------------------
    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[dict]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, args)
            return await cursor.fetchall() if cursor.description else []

    async def batches(self, sql: str, args: Sequence[Any], size: int) -> AsyncIterator[list[dict]]:
        """The rows of one statement, `size` at a time, from a server-side cursor: read only as far as the
        caller goes on (close the iterator when done: `contextlib.aclosing`)."""
        async with self._pool.connection() as connection, connection.transaction():
            async with connection.cursor(name="salon_batches") as cursor:
                await cursor.execute(sql, args)
                while rows := await cursor.fetchmany(size):
                    yield rows

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A connection inside one transaction (committed when the block ends without an exception)."""
        async with self._pool.connection() as connection, connection.transaction():
            yield connection

    async def records(self, ids: Sequence[int], guild: str | None = None) -> list[ImageRecord]:
        """These images' records in the order of `ids` (those that exist, in `guild` when given)."""
        if not ids:
            return []
        where = "id = ANY(%s)" + (" AND guild = %s" if guild is not None else "")
        args = (list(ids),) + ((guild,) if guild is not None else ())
        rows = await self.fetch(f"SELECT {COLUMNS} FROM images WHERE {where}", args)
        by_id = {row["id"]: record_of(row, self.paths) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def existing(self, guild: str, image_id: int) -> ImageRecord:
        from core.errors import InvalidRequest

        record = await self.get(guild, image_id)
        if record is None:
            raise InvalidRequest("image", f"there is no image {image_id} in this server")
        return record

    @property
    def galleries(self) -> PgGalleries:
        return PgGalleries(self)

    @property
    def recycle_bin(self) -> Path:
        return self.folder / "recycle"

    # ----- adding ------------------------------------------------------------------------------------------
    async def add(self, image: NewImage) -> ImageRecord:
        return (await self.add_many([image]))[0]

    async def add_many(
        self,
        images: Sequence[NewImage],
        chunk: int = CHUNK,
        skipped: list[str] | None = None,
        max_pixels: int | None = None,
    ) -> list[ImageRecord]:
        """Add images in transactions of `chunk` rows (each searchable when its transaction commits); a file
        refused by its header raises InvalidImage, or, given a `skipped` list, is listed there."""
        limit = max_pixels or self.max_pixels
        records: list[ImageRecord] = []
        for start in range(0, len(images), chunk):
            _, rows = await importing.accepted(images[start : start + chunk], self.paths, limit, skipped)
            records += await self.records(await self._insert(rows))
        return records

    async def _insert(self, rows: list[dict]) -> list[int]:
        """Insert rows (those already there kept); the id of each."""
        ids = []
        words = await asyncio.to_thread(pg_words.tsvectors, rows)
        async with self.transaction() as db:
            for row, vector in zip(rows, words, strict=True):
                columns = ", ".join([*row, "words"])
                marks = ", ".join(["%s"] * len(row))
                cursor = await db.execute(
                    f"INSERT INTO images ({columns}) VALUES ({marks}, %s::tsvector) "
                    "ON CONFLICT (guild, path) DO NOTHING RETURNING id",
                    (*row.values(), vector),
                )
                found = await cursor.fetchone()
                if found is None:
                    cursor = await db.execute(
                        "SELECT id FROM images WHERE guild = %s AND path = %s", (row["guild"], row["path"])
                    )
                    found = await cursor.fetchone()
                ids.append(found["id"])
        return ids

    async def bulk_insert(self, rows: Iterable[dict]) -> int:
        """Insert prepared rows (the columns of `importing.describe_files`, paths stored) in one transaction,
        through COPY; rows already present are skipped. Returns how many were added.

        In parts of `BULK_PART` rows: while the server inserts one part (and updates its indexes), a thread
        makes the next part's words."""
        rows = list(rows)
        if not rows:
            return 0
        columns = list(rows[0])
        names = ", ".join([*columns, "words"])
        parts = [rows[start : start + BULK_PART] for start in range(0, len(rows), BULK_PART)]
        added = 0
        async with self.transaction() as db:
            await db.execute(
                f"CREATE TEMP TABLE incoming ON COMMIT DROP AS SELECT {names} FROM images WITH NO DATA"
            )
            upcoming = asyncio.ensure_future(asyncio.to_thread(pg_words.tsvectors, parts[0]))
            for number, part in enumerate(parts):
                words = await upcoming
                if number + 1 < len(parts):
                    upcoming = asyncio.ensure_future(asyncio.to_thread(pg_words.tsvectors, parts[number + 1]))
                async with db.cursor().copy(f"COPY incoming ({names}) FROM STDIN") as copy:
                    for row, vector in zip(part, words, strict=True):
                        await copy.write_row([*(row[c] for c in columns), vector])
                cursor = await db.execute(
                    f"INSERT INTO images ({names}) SELECT {names} FROM incoming "
                    "ON CONFLICT (guild, path) DO NOTHING"
                )
                added += cursor.rowcount
                await db.execute("TRUNCATE incoming")
        return added

    async def import_folder(
        self, folder: Path, guild: str, author: str, recursive: bool = True, max_pixels: int | None = None
    ) -> tuple[list[ImageRecord], list[str]]:
        """Add every image under `folder` with its generation info (as `Catalog.import_folder`)."""
        limit = max_pixels or self.max_pixels
        found, skipped = await asyncio.to_thread(
            importing.prepare_folder, folder, guild, author, recursive, [self.folder], limit
        )
        return await self.add_many(found, CHUNK, skipped, limit), skipped

    # ----- reading ----------------------------------------------------------------------------------------
    async def get(self, guild: str, image_id: int) -> ImageRecord | None:
        records = await self.records([image_id], guild)
        return records[0] if records else None

    async def of_message(self, guild: str, message: str) -> list[ImageRecord]:
        return await self._where_ids("guild = %s AND message = %s", (guild, message))

    async def of_job(self, job_id: int) -> list[ImageRecord]:
        return await self._where_ids("job_id = %s", (job_id,))

    async def _where_ids(self, where: str, args: tuple) -> list[ImageRecord]:
        rows = await self.fetch(f"SELECT id FROM images WHERE {where} ORDER BY id", args)
        return await self.records([row["id"] for row in rows])

    async def set_message(self, image_ids: Sequence[int], channel: str, message: str) -> None:
        await self.fetch(
            "UPDATE images SET channel = %s, message = %s WHERE id = ANY(%s)",
            (channel, message, list(image_ids)),
        )

    async def recent_messages(self, limit: int) -> list[tuple[str, str, str]]:
        rows = await self.fetch(
            "SELECT guild, channel, message, MAX(created) AS newest FROM images "
            "WHERE message IS NOT NULL AND channel IS NOT NULL AND deleted_at IS NULL "
            "GROUP BY guild, channel, message ORDER BY newest DESC LIMIT %s",
            (limit,),
        )
        return [(row["guild"], row["channel"], row["message"]) for row in rows]

    async def search(self, browse: BrowseQuery) -> Page:
        """One page of the guild's images matching every filter of the query (catalog/pg_search.py)."""
        ids, number, pages, total, exact = await pg_search.page(self.fetch, browse, self.batches)
        return Page(tuple(await self.records(ids)), number, pages, total, exact)

    async def matching_ids(self, browse: BrowseQuery) -> list[int]:
        return await pg_search.matching_ids(self.fetch, browse)

    async def family(self, guild: str, image_id: int, include_deleted: bool = False) -> lineage.Family:
        """The image's original and everything made from it, each with its relation (catalog/lineage.py)."""
        await self.existing(guild, image_id)

        async def links(column: str, ids) -> list[tuple[int, int | None]]:
            sql = f"SELECT id, parent_id FROM images WHERE guild = %s AND {column} = ANY(%s)"
            return [(row["id"], row["parent_id"]) for row in await self.fetch(sql, (guild, list(ids)))]

        return await lineage.family(
            image_id,
            lambda ids: links("id", ids),
            lambda ids: links("parent_id", ids),
            lambda ids: self.records(ids, guild),
            include_deleted,
        )

    # ----- animations (catalog/animations.py) ---------------------------------------------------------------
    async def add_animation(self, animation: animations.NewAnimation) -> ImageRecord:
        """One item for a finished animation, its other frames its children (as `Catalog.add_animation`)."""

        async def execute(sql: str, args: tuple) -> None:
            async with self.transaction() as db:
                await db.execute(animations.placeholder(sql), args)

        return await animations.add(animation, self.add_many, execute, self.paths)

    async def animation(self, guild: str, image_id: int) -> animations.Animation | None:
        """The video and settings file of the guild's animation item `image_id`; None for any other image."""
        if await self.get(guild, image_id) is None:
            return None
        fetch = lambda sql, args: self.fetch(animations.placeholder(sql), args)  # noqa: E731
        return await animations.find(image_id, fetch, self.paths)

    # ----- ratings, favourites, the recycle bin (catalog/pg_changes.py) ---------------------------------------
    async def rate(self, guild: str, image_id: int, user: str, score: int | None) -> ImageRecord:
        return await pg_changes.rate(self, guild, image_id, user, score)

    async def ratings(self, image_id: int) -> dict[str, int]:
        rows = await self.fetch('SELECT "user", score FROM ratings WHERE image_id = %s', (image_id,))
        return {row["user"]: row["score"] for row in rows}

    async def rating_of(self, image_id: int, user: str) -> int | None:
        rows = await self.fetch(
            'SELECT score FROM ratings WHERE image_id = %s AND "user" = %s', (image_id, user)
        )
        return rows[0]["score"] if rows else None

    async def top_images(self, guild: str, since: float, until: float, limit: int = 5) -> list[ImageRecord]:
        return await pg_changes.top_images(self, guild, since, until, limit)

    async def favourite(self, guild: str, image_id: int, user: str, on: bool = True) -> None:
        await pg_changes.favourite(self, guild, image_id, user, on)

    async def is_favourite(self, image_id: int, user: str) -> bool:
        rows = await self.fetch(
            'SELECT 1 FROM favourites WHERE image_id = %s AND "user" = %s', (image_id, user)
        )
        return bool(rows)

    async def delete(self, guild: str, image_ids: Iterable[int]) -> int:
        return await pg_changes.delete(self, guild, image_ids)

    async def delete_matching(self, browse: BrowseQuery) -> int:
        return await self.delete(browse.guild, await self.matching_ids(browse))

    async def restore(self, guild: str, image_ids: Iterable[int]) -> int:
        return await pg_changes.restore(self, guild, image_ids)

    async def purge(self, guild: str, image_ids: Iterable[int] | None = None) -> int:
        return await pg_changes.purge(self, guild, image_ids)

    async def purge_older_than(self, seconds: float) -> int:
        return await pg_changes.purge_older_than(self, seconds)

    # ----- integrity and the words -----------------------------------------------------------------------------
    async def check(
        self,
        roots: Sequence[Path] = (),
        guild: str = "local",
        author: str = "local",
        repair: bool = False,
        skip: Sequence[Path] = (),
    ) -> IntegrityReport:
        """Rows whose file is gone and image files under `roots` (not under `skip`) without rows; with
        `repair`, remove the first and import the second (into `guild`). The words are part of each row, so
        the index parts of the report are always empty."""
        rows = await self.fetch("SELECT id, path, recycled_path, deleted_at FROM images ORDER BY id")
        missing = tuple(
            row["id"]
            for row in rows
            if not (stored := row["recycled_path"] if row["deleted_at"] is not None else row["path"])
            or not os.path.exists(self.paths.absolute(stored))
        )
        known = {row["path"] for row in rows}
        orphans = tuple(await asyncio.to_thread(integrity._orphans, self, roots, skip, known))
        report = IntegrityReport(missing, orphans, (), ())
        if repair and report.rows_without_files:
            await self.fetch("DELETE FROM images WHERE id = ANY(%s)", (list(report.rows_without_files),))
        if repair and report.files_without_rows:
            files = [Found(Path(p), os.path.realpath(p)) for p in report.files_without_rows]
            images, refused = await asyncio.to_thread(
                importing.prepare, files, guild, author, self.max_pixels
            )
            await self.add_many(images, CHUNK, refused, self.max_pixels)
        return report

    async def rebuild_index(self) -> int:
        """Write every row's words again (after a change of tokenizer); returns the rows written."""
        written, after = 0, -1
        while True:
            rows = await self.fetch(
                f"SELECT id, {', '.join(WORD_COLUMNS)} FROM images WHERE id > %s ORDER BY id LIMIT %s",
                (after, CHUNK),
            )
            if not rows:
                return written
            words = await asyncio.to_thread(pg_words.tsvectors, rows)
            await self.fetch(
                "UPDATE images SET words = new.words::tsvector FROM unnest(%s::bigint[], %s::text[]) "
                "AS new (id, words) WHERE images.id = new.id",
                ([row["id"] for row in rows], words),
            )
            written += len(rows)
            after = rows[-1]["id"]

    async def optimize_index(self) -> None:
        """Merge the GIN indexes' pending entries (every lookup reads all of them: the words' and the
        trigrams', whose lookups decide the exact searches' time) and refresh the planner's statistics
        (scheduled)."""
        for index in ("images_words", "images_text_trigrams"):
            await self.fetch("SELECT gin_clean_pending_list(%s::regclass)", (index,))
        await self.fetch("ANALYZE images")

    def index_postings(self) -> set[tuple[str, str, int]]:
        """The (column, word, id) triples of the words column (blocking; for checks and tests)."""
        import psycopg

        with psycopg.connect(self.url) as connection:
            rows = connection.execute("SELECT id, unnest(tsvector_to_array(words)) FROM images").fetchall()
        columns = {mark: column for column, mark in pg_words.MARKS.items() if mark} | {
            pg_words.FIELD: "fields"
        }
        return {
            (columns.get(word[:1], "prompt"), word[1:] if word[:1] in columns else word, image_id)
            for image_id, word in rows
        }
