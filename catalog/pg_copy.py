"""Copying a SQLite catalog (catalog.db) into the catalog on PostgreSQL, for `salon db migrate-to`.

The images (the recycle bin's too: they are rows marked deleted) keep their ids, their words written on the
way (catalog/pg_words.py); then the ratings, favourites, galleries (with their ids) and their images, and the
gallery channel's posts. The id sequences continue past the highest id SQLite ever gave (its ids are never
reused, so neither are they here). Files are not copied: paths are stored relative to the data folder on
both sides.

The source is an open `Catalog` or a read-only `core.sqlite_snapshot.Snapshot` of catalog.db; the target a
`PgCatalog` (the copy is then one transaction of its own) or a psycopg async connection with dict rows, in
the caller's transaction (the catalog's tables are made there first when missing). The target must hold no
images yet.
"""

from __future__ import annotations

from typing import Any

from catalog import pg_words
from catalog.catalog import Catalog
from catalog.pg_catalog import PgCatalog
from catalog.pg_schema import migrate
from core.errors import SalonError

CHUNK = 5000  # image rows written at a time
# catalog.db's tables and their PostgreSQL twins (catalog/pg_schema.py; the counts compared afterwards).
TABLES = {
    "images": "images",
    "ratings": "ratings",
    "favourites": "favourites",
    "galleries": "galleries",
    "gallery_images": "gallery_images",
    "gallery_posts": "gallery_posts",
    "animations": "animations",  # catalog/animations.py
}
COLUMNS: dict[str, tuple[str, ...]] = {  # the columns copied, the same names on both sides
    "images": (
        "id", "guild", "channel", "message", "author", "created", "path", "filename", "sha256", "width",
        "height", "model", "model_hash", "sampler", "schedule", "steps", "cfg", "seed", "prompt",
        "negative_prompt", "params", "infotext", "networks", "parent_id", "relation", "nsfw", "deleted_at",
        "recycled_path", "rank_mean", "rank_count", "job_id",
    ),
    "ratings": ("image_id", "user", "score", "rated_at"),
    "favourites": ("image_id", "user", "added_at"),
    "galleries": ("id", "guild", "name", "owner", "created"),
    "gallery_images": ("gallery_id", "image_id", "position"),
    "gallery_posts": ("guild", "image_id", "channel", "message", "posted_at"),
    "animations": ("image_id", "video", "settings_file", "frames", "fps"),
}  # fmt: skip
SEQUENCES = ("images", "galleries")


class TargetNotEmpty(SalonError):
    """The catalog on PostgreSQL already holds images: a copy goes into an empty one only."""


async def copy_catalog(source: Any, target: Any) -> dict[str, tuple[int, int]]:
    """Copy every row of `source` (a `Catalog`, or a `Snapshot` of catalog.db) into `target` (a `PgCatalog`, or
    an async psycopg connection inside the caller's transaction), keeping ids. Returns, per table, (rows in
    the source, rows in the target afterwards): the tables of `TABLES`, and `recycle_bin` (the deleted images
    among them). Raises TargetNotEmpty when the target holds images."""
    if isinstance(target, PgCatalog):
        async with target.transaction() as connection:
            return await _copy(source, connection)
    await migrate(target)
    return await _copy(source, target)


async def _copy(source: Any, db: Any) -> dict[str, tuple[int, int]]:
    present = await _one(db, "SELECT count(*) AS n FROM images")
    if present:
        raise TargetNotEmpty(
            f"the catalog on PostgreSQL already holds {present} images: copy into an empty one"
        )
    counted: dict[str, tuple[int, int]] = {}
    deleted = 0
    for table, columns in COLUMNS.items():
        rows = await _rows(source, table, columns)
        if table == "images":
            deleted = sum(1 for row in rows if row[columns.index("deleted_at")] is not None)
            for start in range(0, len(rows), CHUNK):
                await _write_images(db, rows[start : start + CHUNK])
        else:
            await _write(db, TABLES[table], columns, rows)
        counted[table] = (len(rows), await _one(db, f"SELECT count(*) AS n FROM {TABLES[table]}"))
    counted["recycle_bin"] = (
        deleted,
        await _one(db, "SELECT count(*) AS n FROM images WHERE deleted_at IS NOT NULL"),
    )
    for table in SEQUENCES:
        highest = max(
            await _sequence(source, table), await _one(db, f"SELECT COALESCE(MAX(id), 0) AS n FROM {table}")
        )
        await db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s + 1, false)", (highest,))
    return counted


async def _rows(source: Any, table: str, columns: tuple[str, ...]) -> list[tuple]:
    """The table's rows from either kind of source, in id (rowid) order."""
    if isinstance(source, Catalog):
        sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid"
        async with source.store.db.execute(sql) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]
    return [tuple(row[c] for c in columns) for row in source.rows(table)]


async def _sequence(source: Any, table: str) -> int:
    """The highest id SQLite's AUTOINCREMENT ever gave in `table`."""
    if not isinstance(source, Catalog):
        return source.sequence(table)
    async with source.store.db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)) as cursor:
        row = await cursor.fetchone()
    return row[0] if row else 0


async def _one(db: Any, sql: str) -> int:
    cursor = await db.execute(sql)
    return (await cursor.fetchone())["n"]


async def _write_images(db: Any, rows: list[tuple]) -> None:
    columns = COLUMNS["images"]
    words = pg_words.tsvectors([dict(zip(columns, row, strict=True)) for row in rows])
    values = [(*row, vector) for row, vector in zip(rows, words, strict=True)]
    await _write(db, "images", (*columns, "words"), values)


async def _write(db: Any, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    names = ", ".join(f'"{column}"' for column in columns)
    async with db.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)
