"""Ratings and favourites: one user's score (1–5) of an image, its mean and count kept on the row, and the
images each user keeps.

SQLite alone: the text index holds nothing a rating changes, so a rating never waits for it. `rate` serves the
PostgreSQL catalog too (catalog/pg_changes.py), in its placeholders and its spelling of the mean.
"""

from __future__ import annotations

import time
from typing import Any

from catalog.records import ImageRecord
from catalog.store import Store
from core.errors import InvalidRequest


async def rate(
    store: Store | Any,
    guild: str,
    image_id: int,
    user: str,
    score: int | None,
    mark: str = "?",
    mean: str = "AVG(score)",
) -> ImageRecord:
    """Set, change (score 1–5) or remove (None) one user's rating; the mean and count follow, in one
    transaction. `store` is either catalog's (`existing`, `transaction`), `mark` its driver's placeholder and
    `mean` its spelling of SQLite's AVG."""
    if score is not None and (not isinstance(score, int) or not 1 <= score <= 5):
        raise InvalidRequest("score", f"{score!r} is not a whole number from 1 to 5")
    await store.existing(guild, image_id)
    async with store.transaction() as db:
        if score is None:
            await db.execute(
                f'DELETE FROM ratings WHERE image_id = {mark} AND "user" = {mark}', (image_id, user)
            )
        else:
            await db.execute(
                f'INSERT INTO ratings VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (image_id, "user") '
                "DO UPDATE SET score = excluded.score, rated_at = excluded.rated_at",
                (image_id, user, score, time.time()),
            )
        await db.execute(
            "UPDATE images SET (rank_mean, rank_count) = "
            f"(SELECT {mean}, COUNT(*) FROM ratings WHERE image_id = {mark}) WHERE id = {mark}",
            (image_id, image_id),
        )
    return await store.existing(guild, image_id)


async def ratings(store: Store, image_id: int) -> dict[str, int]:
    """Every user's score of one image."""
    async with store.db.execute("SELECT user, score FROM ratings WHERE image_id = ?", (image_id,)) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}


async def rating_of(store: Store, image_id: int, user: str) -> int | None:
    async with store.db.execute(
        "SELECT score FROM ratings WHERE image_id = ? AND user = ?", (image_id, user)
    ) as cursor:
        row = await cursor.fetchone()
    return row[0] if row else None


async def top_images(store: Store, guild: str, since: float, until: float, limit: int) -> list[ImageRecord]:
    """The best-ranked images made in [since, until) in one guild (not deleted, not NSFW)."""
    async with store.db.execute(
        "SELECT id FROM images WHERE guild = ? AND deleted_at IS NULL AND nsfw = 0 AND rank_count > 0 "
        "AND created >= ? AND created < ? ORDER BY rank_mean DESC, rank_count DESC, id LIMIT ?",
        (guild, since, until, limit),
    ) as cursor:
        ids = [row[0] for row in await cursor.fetchall()]
    records = {record.id: record for record in await store.records(ids, guild)}
    return [records[i] for i in ids if i in records]


async def favourite(store: Store, guild: str, image_id: int, user: str, on: bool) -> None:
    await store.existing(guild, image_id)
    async with store.transaction() as db:
        if on:
            await db.execute(
                "INSERT OR IGNORE INTO favourites VALUES (?, ?, ?)", (image_id, user, time.time())
            )
        else:
            await db.execute("DELETE FROM favourites WHERE image_id = ? AND user = ?", (image_id, user))


async def is_favourite(store: Store, image_id: int, user: str) -> bool:
    async with store.db.execute(
        "SELECT 1 FROM favourites WHERE image_id = ? AND user = ?", (image_id, user)
    ) as cursor:
        return await cursor.fetchone() is not None
