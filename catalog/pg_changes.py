"""What changes a PostgreSQL catalog's rows after they are added: ratings and favourites (the mean and count
kept on the row, as catalog/ratings.py does), and the recycle bin (rows marked deleted, files moved into
`recycle/` and back, purged for good: catalog/recycle_bin.py's rules, the files on this host's disk).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from catalog import pg_words
from catalog.records import ImageRecord
from core.errors import InvalidRequest

PgCatalog = Any  # catalog/pg_catalog.py (not imported: it imports this module)


async def rate(catalog: PgCatalog, guild: str, image_id: int, user: str, score: int | None) -> ImageRecord:
    """Set, change (score 1–5) or remove (None) one user's rating; the mean and count follow, in one
    transaction (the mean is SQLite's AVG: the sum over the count, in double precision)."""
    if score is not None and (not isinstance(score, int) or not 1 <= score <= 5):
        raise InvalidRequest("score", f"{score!r} is not a whole number from 1 to 5")
    await catalog.existing(guild, image_id)
    async with catalog.transaction() as db:
        if score is None:
            await db.execute('DELETE FROM ratings WHERE image_id = %s AND "user" = %s', (image_id, user))
        else:
            await db.execute(
                'INSERT INTO ratings VALUES (%s, %s, %s, %s) ON CONFLICT (image_id, "user") '
                "DO UPDATE SET score = excluded.score, rated_at = excluded.rated_at",
                (image_id, user, score, time.time()),
            )
        await db.execute(
            "UPDATE images SET (rank_mean, rank_count) = (SELECT SUM(score)::double precision / COUNT(*), "
            "COUNT(*) FROM ratings WHERE image_id = %s) WHERE id = %s",
            (image_id, image_id),
        )
    return await catalog.existing(guild, image_id)


async def top_images(
    catalog: PgCatalog, guild: str, since: float, until: float, limit: int
) -> list[ImageRecord]:
    """The best-ranked images made in [since, until) in one guild (not deleted, not NSFW)."""
    rows = await catalog.fetch(
        "SELECT id FROM images WHERE guild = %s AND deleted_at IS NULL AND nsfw = 0 AND rank_count > 0 "
        "AND created >= %s AND created < %s ORDER BY rank_mean DESC, rank_count DESC, id LIMIT %s",
        (guild, since, until, limit),
    )
    return await catalog.records([row["id"] for row in rows], guild)


async def favourite(catalog: PgCatalog, guild: str, image_id: int, user: str, on: bool) -> None:
    await catalog.existing(guild, image_id)
    if on:
        await catalog.fetch(
            "INSERT INTO favourites VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (image_id, user, time.time())
        )
    else:
        await catalog.fetch('DELETE FROM favourites WHERE image_id = %s AND "user" = %s', (image_id, user))


# ----- the recycle bin ------------------------------------------------------------------------------------------
_RESCOPED = "words = ts_delete(words, %s::text) || %s::tsvector"  # the row's scope token follows its state


def _rescoped(guild: str, deleted: bool) -> tuple[str, str]:
    """(the old scope lexeme, the new one as a tsvector) of a row deleted (or restored)."""
    old = pg_words.FIELD + pg_words.scope_token(guild, not deleted)
    return old, pg_words.lexeme(pg_words.scope_token(guild, deleted), pg_words.FIELD) + ":1"


async def delete(catalog: PgCatalog, guild: str, image_ids: Iterable[int]) -> int:
    """Move images (rows stay, marked deleted; files into the recycle bin). Returns how many moved."""
    moved = 0
    for image_id in image_ids:
        record = await catalog.existing(guild, image_id)
        if record.deleted:
            continue
        target = catalog.recycle_bin / f"{record.id}-{record.filename}"
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(record.path)
        if source.exists():
            if await _shared(catalog, record):
                shutil.copy2(source, target)  # another guild's row still shows this file
            else:
                shutil.move(source, target)
        await catalog.fetch(
            f"UPDATE images SET deleted_at = %s, recycled_path = %s, {_RESCOPED} WHERE id = %s",
            (time.time(), catalog.paths.stored(target), *_rescoped(guild, True), image_id),
        )
        moved += 1
    return moved


async def restore(catalog: PgCatalog, guild: str, image_ids: Iterable[int]) -> int:
    restored = 0
    for image_id in image_ids:
        record = await catalog.existing(guild, image_id)
        if not record.deleted:
            continue
        rows = await catalog.fetch("SELECT recycled_path FROM images WHERE id = %s", (image_id,))
        stored = rows[0]["recycled_path"]
        recycled = Path(catalog.paths.absolute(stored)) if stored else None
        if recycled is not None and recycled.exists():
            if Path(record.path).exists():
                recycled.unlink()  # the file stayed for another row
            else:
                Path(record.path).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(recycled, record.path)
        await catalog.fetch(
            f"UPDATE images SET deleted_at = NULL, recycled_path = NULL, {_RESCOPED} WHERE id = %s",
            (*_rescoped(guild, False), image_id),
        )
        restored += 1
    return restored


async def purge(catalog: PgCatalog, guild: str, image_ids: Iterable[int] | None = None) -> int:
    """Empty the guild's recycle bin (or remove only these deleted images): rows and files."""
    rows = await catalog.fetch(
        "SELECT id, recycled_path FROM images WHERE guild = %s AND deleted_at IS NOT NULL", (guild,)
    )
    if image_ids is not None:
        wanted = set(image_ids)
        rows = [row for row in rows if row["id"] in wanted]
    await catalog.fetch("DELETE FROM images WHERE id = ANY(%s)", ([row["id"] for row in rows],))
    for row in rows:
        if row["recycled_path"]:
            Path(catalog.paths.absolute(row["recycled_path"])).unlink(missing_ok=True)
    return len(rows)


async def purge_older_than(catalog: PgCatalog, seconds: float) -> int:
    """Remove for good what has been in any guild's recycle bin longer than `seconds`."""
    rows = await catalog.fetch(
        "SELECT guild, id FROM images WHERE deleted_at IS NOT NULL AND deleted_at < %s",
        (time.time() - seconds,),
    )
    by_guild: dict[str, list[int]] = {}
    for row in rows:
        by_guild.setdefault(row["guild"], []).append(row["id"])
    return sum([await purge(catalog, guild, ids) for guild, ids in by_guild.items()])


async def _shared(catalog: PgCatalog, record: ImageRecord) -> bool:
    rows = await catalog.fetch(
        "SELECT 1 FROM images WHERE path = (SELECT path FROM images WHERE id = %s) AND id != %s "
        "AND deleted_at IS NULL LIMIT 1",
        (record.id, record.id),
    )
    return bool(rows)
