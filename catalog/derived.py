"""The catalog's derived indexes kept readable: the Whoosh index, and SQLite's FTS5 tables `images_words`
(words) and `images_text` (trigrams). SQLite's `images` table is the truth; each of these is rebuilt from it
whenever it cannot be read, so a damaged index costs a rebuild, never a traceback or a wrong answer.

- At open (`ensure_readable`): each index is opened and probed with a few images SQLite says are indexed
  (the newest and two at random); one that fails or lacks them is rebuilt, with a warning naming the folder.
- While searching (`recovering`, `whoosh_ids`): an index error is damage the probe could not see (a bad
  block of one word): the index is rebuilt and the search asked once more.
- While indexing (`index_records`): a writer lock held too long by another process leaves the rows marked
  `indexed = 0`; the next add (of any process) or the integrity check indexes them.
- When asked (`rebuild_text_index`, `Catalog.rebuild_index`): the text index is built again from SQLite.

A damaged catalog.db itself is not handled here (core/sqlite.py refuses to open it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from catalog import text_index, words
from catalog.index_lock import IndexBusy
from catalog.records import ImageRecord
from catalog.schema import record_of
from catalog.sqlite_words import SqliteWords
from catalog.store import Store

log = logging.getLogger(__name__)

SAMPLES = 3  # images probed in each index at open
CATCH_UP = 500  # rows left unindexed that one add indexes with its own
FTS = {  # name → (its CREATE statement should the schema have lost it, how to fill it from `images`)
    "images_text": (
        "CREATE VIRTUAL TABLE images_text USING fts5(prompt, negative_prompt, params, "
        "content='images', content_rowid='id', tokenize='trigram')",
        "INSERT INTO images_text (images_text) VALUES ('rebuild')",
    ),
    "images_words": (words.MIGRATION[0], words.POPULATE),
}
SHADOW_TABLES = ("data", "idx", "content", "docsize", "config")
DAMAGE = ("malformed", "vtable constructor failed", "no such table: main.images_", "fts5", "corrupt")


def is_damage(exc: BaseException) -> bool:
    """Whether an error may be one of a damaged FTS5 table (a write inside a transaction reports it as
    core/errors.py's DamagedDatabase): the probes then tell."""
    from core.errors import DamagedDatabase

    if isinstance(exc, DamagedDatabase):
        return True
    return isinstance(exc, sqlite3.DatabaseError) and any(word in str(exc) for word in DAMAGE)


# ----- probing ---------------------------------------------------------------------------------------------
async def _samples(store: Store, where: str) -> list[int]:
    """The newest id and two random ids of rows matching `where`."""
    db = store.db
    async with db.execute(f"SELECT id FROM images WHERE {where} ORDER BY id DESC LIMIT 1") as cursor:
        newest = [row[0] for row in await cursor.fetchall()]
    if not newest:
        return []
    found = set(newest)
    for _ in range(SAMPLES - 1):
        async with db.execute(
            f"SELECT id FROM images WHERE id >= abs(random()) % ? AND {where} ORDER BY id LIMIT 1",
            (newest[0] + 1,),
        ) as cursor:
            found.update(row[0] for row in await cursor.fetchall())
    return sorted(found)


async def _probe_fts(store: Store, name: str) -> str | None:
    """None when the FTS5 table answers, and finds sample rows by a token they must have; else why not."""
    db = store.db
    try:
        if name == "images_words":
            scope = words.SCOPE_SQL.format(row="images")
            for image_id in await _samples(store, "1"):
                async with db.execute(f"SELECT {scope} FROM images WHERE id = ?", (image_id,)) as cursor:
                    token = (await cursor.fetchone())[0]
                if not await _finds(store, name, f"scope : {token}", image_id):
                    return f"image {image_id} is missing from it"
        else:
            where = "length(prompt) >= 3 AND instr(substr(prompt, 1, 12), char(10)) = 0"
            for image_id in await _samples(store, where):
                async with db.execute(
                    "SELECT substr(prompt, 1, 12) FROM images WHERE id = ?", (image_id,)
                ) as cur:
                    text = (await cur.fetchone())[0]
                phrase = '{prompt} : "' + text.replace('"', '""') + '"'
                if not await _finds(store, name, phrase, image_id):
                    return f"image {image_id} is missing from it"
        async with db.execute(f"SELECT rowid FROM {name} WHERE {name} MATCH ? LIMIT 1", ('"x0x"',)) as cursor:
            await cursor.fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


async def _finds(store: Store, name: str, match: str, image_id: int) -> bool:
    sql = f"SELECT rowid FROM {name} WHERE {name} MATCH ? AND rowid = ?"
    async with store.db.execute(sql, (match, image_id)) as cursor:
        return await cursor.fetchone() is not None


# ----- rebuilding ------------------------------------------------------------------------------------------
async def rebuild_fts(store: Store, name: str) -> None:
    """Drop the FTS5 table `name` and make it again from `images` (its triggers stay: they name it)."""
    created, fill = FTS[name]
    path = store.folder / "catalog.db"
    await asyncio.to_thread(_drop_unreadable, path, name)
    async with store.transaction() as db:
        async with db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            created = row[0]
            await db.execute(f"DROP TABLE {name}")
        for suffix in SHADOW_TABLES:
            await db.execute(f"DROP TABLE IF EXISTS {name}_{suffix}")
        await db.execute(created)
        await db.execute(fill)


def _drop_unreadable(path, name: str) -> None:
    """An FTS5 table whose own tables are too damaged for DROP TABLE (its constructor fails) leaves the schema
    by hand; its shadow tables are dropped after (a new connection, as the schema changed under it)."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        try:
            connection.execute(f"SELECT rowid FROM {name} LIMIT 0").fetchall()
            return  # its constructor works: DROP TABLE will too
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):
                return
        log.warning("catalog: %s in %s cannot be opened; removing it from the schema", name, path)
        connection.execute("PRAGMA writable_schema = ON")
        connection.execute("BEGIN IMMEDIATE")
        (version,) = connection.execute("PRAGMA schema_version").fetchone()
        connection.execute("DELETE FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        connection.execute(
            f"PRAGMA schema_version = {version + 1}"
        )  # other connections read the schema again
        connection.execute("COMMIT")
        connection.execute("PRAGMA writable_schema = OFF")
    finally:
        connection.close()


async def repair_fts(store: Store, names: Sequence[str] = tuple(FTS)) -> list[str]:
    """Probe these FTS5 tables and rebuild the damaged ones; returns their names."""
    repaired = []
    for name in names:
        damage = await _probe_fts(store, name)
        if damage is not None:
            log.warning(
                "catalog: the %s index in %s cannot be read (%s); rebuilding it from the images table",
                name, store.folder / "catalog.db", damage,
            )  # fmt: skip
            await rebuild_fts(store, name)
            repaired.append(name)
    return repaired


async def rebuild_whoosh(store: Store, damage: str) -> None:
    log.warning(
        "catalog: the text index in %s cannot be read (%s); rebuilding it from catalog.db",
        store.folder / "index", damage,
    )  # fmt: skip
    count = await rebuild_text_index(store)
    log.warning("catalog: text index rebuilt in %s: %d image(s)", store.folder / "index", count)


async def rebuild_text_index(store: Store) -> int:
    """Throw the text index away and build it again from SQLite; returns the documents written. SQLite's
    trigram index is rebuilt too if it is damaged."""
    await repair_fts(store, ("images_text",))
    if isinstance(store.text, SqliteWords):
        await rebuild_fts(store, "images_words")
        async with store.transaction() as db:
            await db.execute("UPDATE images SET indexed = 1")
        async with store.db.execute("SELECT COUNT(*) FROM images_words") as cursor:
            return (await cursor.fetchone())[0]

    def swap() -> int:  # in the index thread, reading rows as a stream (a million records do not fit)
        store.text.close()
        reader = sqlite3.connect(store.folder / "catalog.db")
        reader.row_factory = sqlite3.Row
        try:
            rows = reader.execute("SELECT * FROM images ORDER BY id")
            count = text_index.rebuild(store.folder / "index", (record_of(row) for row in rows))
        finally:
            reader.close()
            store.text = text_index.WhooshIndex(store.folder / "index")
        return count

    count = await store.in_index_thread(swap)
    async with store.transaction() as db:
        await db.execute("UPDATE images SET indexed = 1")
    return count


async def ensure_readable(store: Store) -> None:
    """At open: rebuild every derived index that cannot be read or lacks images SQLite says it has."""
    await repair_fts(store)
    text = store.text
    if hasattr(text, "probe"):
        expected = await _samples(store, "indexed = 1")
        damage = await store.in_index_thread(text.probe, expected)
        if damage is not None:
            await rebuild_whoosh(store, damage)


# ----- at work ---------------------------------------------------------------------------------------------
T = TypeVar("T")


def recovering(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A catalog function (its first argument the store) that reads or (through triggers) writes the FTS5
    tables: on damage, rebuild the damaged ones and call it once more (the functions wrapped can be: adding an
    image already there adds nothing)."""

    @functools.wraps(method)
    async def recovered(store: Store, *args, **kwargs) -> T:
        try:
            return await method(store, *args, **kwargs)
        except Exception as exc:
            if not is_damage(exc) or not await repair_fts(store):
                raise
        return await method(store, *args, **kwargs)

    return recovered


async def whoosh_ids(store: Store, node, negative) -> list[int]:
    """The Whoosh index's matches; a read error there is damage: rebuild it and ask again, once."""
    try:
        return await store.in_index_thread(store.text.matching_ids, node, negative)
    except Exception as exc:  # noqa: BLE001 (Whoosh reports damage with many exception types)
        await rebuild_whoosh(store, f"{type(exc).__name__}: {exc}")
    return await store.in_index_thread(store.text.matching_ids, node, negative)


async def index_records(store: Store, records: Sequence[ImageRecord]) -> None:
    """Write these images (and up to `CATCH_UP` rows an earlier add left unindexed) into the text index and
    mark them indexed. If another process holds the writer lock past its bound, they stay `indexed = 0` (a
    warning says so) for the next add or the integrity check; a damaged index is rebuilt (with them)."""
    if not records:
        return
    if hasattr(store.text, "probe"):  # Whoosh: SQLite's own word index needs no catching up
        records = [*records, *await _left_unindexed(store, {record.id for record in records})]
    try:
        await store.in_index_thread(store.text.put, records)
    except IndexBusy as exc:
        log.warning("catalog: %s; %d image(s) will be indexed by the next add or check", exc, len(records))
        return
    except Exception as exc:  # noqa: BLE001 (damage found while writing: the rebuild takes these rows too)
        if not hasattr(store.text, "probe"):
            raise
        await rebuild_whoosh(store, f"{type(exc).__name__}: {exc}")
        return
    async with store.transaction() as db:
        await db.executemany("UPDATE images SET indexed = 1 WHERE id = ?", [(r.id,) for r in records])


async def _left_unindexed(store: Store, exclude: set[int]) -> list[ImageRecord]:
    async with store.db.execute(
        "SELECT id FROM images WHERE indexed = 0 ORDER BY id LIMIT ?", (CATCH_UP + len(exclude),)
    ) as cursor:
        ids = [row[0] for row in await cursor.fetchall() if row[0] not in exclude][:CATCH_UP]
    return await store.records(ids)
