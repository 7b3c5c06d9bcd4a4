"""What changes a PostgreSQL catalog's rows after they are added: ratings and favourites (the mean and count
kept on the row, as catalog/ratings.py does), and the recycle bin (rows marked deleted, files moved into
`recycle/` and back, purged for good: catalog/recycle_bin.py's rules, the files on this host's disk).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from catalog import pg_words, ratings, recycle_bin
from catalog.records import ImageRecord

PgCatalog = Any  # catalog/pg_catalog.py (not imported: it imports this module)


async def rate(catalog: PgCatalog, guild: str, image_id: int, user: str, score: int | None) -> ImageRecord:
    """Set, change (score 1–5) or remove (None) one user's rating: catalog/ratings.py's `rate`, the mean as
    SQLite's AVG (the sum over the count, in double precision)."""
    return await ratings.rate(
        catalog, guild, image_id, user, score, "%s", "SUM(score)::double precision / COUNT(*)"
    )


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
    """Move images (rows stay, marked deleted, their scope token too; files into the recycle bin: catalog/
    recycle_bin.py `into_bin`). Returns how many moved."""

    async def mark(image_id: int, recycled: str) -> None:
        await catalog.fetch(
            f"UPDATE images SET deleted_at = %s, recycled_path = %s, {_RESCOPED} WHERE id = %s",
            (time.time(), recycled, *_rescoped(guild, True), image_id),
        )

    shared = functools.partial(_shared, catalog)
    return await recycle_bin.into_bin(catalog, guild, image_ids, catalog.recycle_bin, shared, mark)


async def restore(catalog: PgCatalog, guild: str, image_ids: Iterable[int]) -> int:
    async def recycled_path(image_id: int) -> str | None:
        rows = await catalog.fetch("SELECT recycled_path FROM images WHERE id = %s", (image_id,))
        return rows[0]["recycled_path"]

    async def mark(image_id: int) -> None:
        await catalog.fetch(
            f"UPDATE images SET deleted_at = NULL, recycled_path = NULL, {_RESCOPED} WHERE id = %s",
            (*_rescoped(guild, False), image_id),
        )

    return await recycle_bin.out_of_bin(catalog, guild, image_ids, recycled_path, mark)


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
    by_guild = recycle_bin.by_guild((row["guild"], row["id"]) for row in rows)
    return sum([await purge(catalog, guild, ids) for guild, ids in by_guild.items()])


async def _shared(catalog: PgCatalog, record: ImageRecord) -> bool:
    rows = await catalog.fetch(
        "SELECT 1 FROM images WHERE path = (SELECT path FROM images WHERE id = %s) AND id != %s "
        "AND deleted_at IS NULL LIMIT 1",
        (record.id, record.id),
    )
    return bool(rows)
