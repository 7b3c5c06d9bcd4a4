"""Community galleries in the catalog: named per-guild collections, and the record of which images were posted
to a guild's gallery channel (so each is posted once, and its post can be removed with it).

Everything is scoped to one guild: a gallery, its images and the posts never cross guilds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from catalog.store import Store
from core.errors import InvalidRequest

NAME = re.compile(r"^[\w][\w .'-]{0,63}$")


@dataclass(frozen=True)
class Gallery:
    id: int
    guild: str
    name: str
    owner: str
    created: float
    count: int = 0


@dataclass(frozen=True)
class GalleryPost:
    guild: str
    image_id: int
    channel: str | None
    message: str | None


@dataclass(frozen=True)
class Threshold:
    """When an image goes to the gallery channel: a mean rank of at least `min_rank` from at least
    `min_ratings` people, or at least `stars` ⭐ (0 = that way is off)."""

    min_rank: float = 4.0
    min_ratings: int = 3
    stars: int = 3

    def reached(self, rank_mean: float | None, rank_count: int, star_count: int) -> bool:
        by_rank = bool(self.min_ratings) and rank_mean is not None and rank_count >= self.min_ratings
        return (by_rank and rank_mean >= self.min_rank) or (bool(self.stars) and star_count >= self.stars)


def check_gallery_name(name: str) -> str:
    name = name.strip()
    if not NAME.match(name):
        raise InvalidRequest("name", f"{name!r}: use 1–64 letters, digits, spaces, '.', \"'\" or '-'")
    return name


class GalleryRules:
    """What both catalogs' galleries share (`Galleries` here, PgGalleries in catalog/pg_galleries.py): the rules
    (a new gallery's name, who may curate one, which images it may hold) and the statements both databases
    spell alike but for the placeholder (`_mark`). `records` is the catalog's store (`get(guild, image_id)`,
    `transaction()`); each subclass reads its galleries (`get(guild, name)`)."""

    _mark = "?"

    def __init__(self, records: Any) -> None:
        self._records = records

    async def get(self, guild: str, name: str) -> Gallery | None:
        raise NotImplementedError

    async def _new_name(self, guild: str, name: str) -> str:
        """The name of a new gallery, checked, refused when the guild has one of that name."""
        name = check_gallery_name(name)
        if await self.get(guild, name) is not None:
            raise InvalidRequest("name", f"a gallery named {name!r} already exists here")
        return name

    async def _curated(self, guild: str, name: str, user: str, moderator: bool) -> Gallery:
        gallery = await self.get(guild, name)
        if gallery is None:
            raise InvalidRequest("name", f"there is no gallery named {name!r} here; /gallery list shows them")
        if gallery.owner != user and not moderator:
            raise InvalidRequest(
                "name", f"{gallery.name!r} is curated by its creator <@{gallery.owner}> and moderators"
            )
        return gallery

    async def _adding(
        self, guild: str, name: str, image_ids: list[int], user: str, moderator: bool
    ) -> Gallery:
        """The gallery `user` may add these images to, each an image of the guild not deleted."""
        gallery = await self._curated(guild, name, user, moderator)
        for image_id in image_ids:
            record = await self._records.get(guild, image_id)
            if record is None or record.deleted:
                raise InvalidRequest("image_id", f"there is no image #{image_id} in this server")
        return gallery

    async def remove(
        self, guild: str, name: str, image_ids: list[int], user: str, moderator: bool = False
    ) -> int:
        gallery = await self._curated(guild, name, user, moderator)
        removed = 0
        async with self._records.transaction() as db:
            for image_id in image_ids:
                cursor = await db.execute(
                    f"DELETE FROM gallery_images WHERE gallery_id = {self._mark} AND image_id = {self._mark}",
                    (gallery.id, image_id),
                )
                removed += cursor.rowcount
        return removed

    async def delete(self, guild: str, name: str, user: str, moderator: bool = False) -> None:
        gallery = await self._curated(guild, name, user, moderator)
        await self._run(f"DELETE FROM galleries WHERE id = {self._mark}", (gallery.id,))

    async def record_post(self, guild: str, image_id: int, channel: str, message: str) -> None:
        mark = self._mark
        await self._run(
            f"UPDATE gallery_posts SET channel = {mark}, message = {mark} "
            f"WHERE guild = {mark} AND image_id = {mark}",
            (channel, message, guild, image_id),
        )

    async def release_post(self, guild: str, image_id: int) -> None:
        """Forget a reservation whose post could not be made (so a later rating tries again)."""
        await self._run(
            f"DELETE FROM gallery_posts WHERE guild = {self._mark} AND image_id = {self._mark} "
            "AND message IS NULL",
            (guild, image_id),
        )

    async def _run(self, sql: str, args: tuple) -> None:
        async with self._records.transaction() as db:
            await db.execute(sql, args)


class Galleries(GalleryRules):
    """The gallery tables of one catalog (`catalog.galleries`)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._store = store
        self._db = store.db

    # ----- collections -------------------------------------------------------------------------------------
    async def create(self, guild: str, name: str, owner: str) -> Gallery:
        name = await self._new_name(guild, name)
        async with self._store.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO galleries (guild, name, owner, created) VALUES (?, ?, ?, ?)",
                (guild, name, owner, time.time()),
            )
            gallery_id = cursor.lastrowid
        return Gallery(int(gallery_id), guild, name, owner, time.time())

    async def get(self, guild: str, name: str) -> Gallery | None:
        found = await self._list("g.guild = ? AND g.name = ? COLLATE NOCASE", (guild, name.strip()))
        return found[0] if found else None

    async def list(self, guild: str) -> list[Gallery]:
        return await self._list("g.guild = ?", (guild,))

    async def _list(self, where: str, args: tuple) -> list[Gallery]:
        sql = (
            "SELECT g.id, g.guild, g.name, g.owner, g.created, "
            "(SELECT COUNT(*) FROM gallery_images gi JOIN images i ON i.id = gi.image_id "
            " WHERE gi.gallery_id = g.id AND i.deleted_at IS NULL) AS count "
            f"FROM galleries g WHERE {where} ORDER BY g.name COLLATE NOCASE"
        )
        async with self._db.execute(sql, args) as cursor:
            return [Gallery(*row) for row in await cursor.fetchall()]

    async def add(
        self, guild: str, name: str, image_ids: list[int], user: str, moderator: bool = False
    ) -> int:
        """Add this guild's images to a gallery (its creator or a moderator); returns how many were new."""
        gallery = await self._adding(guild, name, image_ids, user, moderator)
        added = 0
        async with self._store.transaction() as db:
            async with db.execute(
                "SELECT COALESCE(MAX(position), 0) FROM gallery_images WHERE gallery_id = ?", (gallery.id,)
            ) as cursor:
                position = (await cursor.fetchone())[0]
            for image_id in image_ids:
                position += 1
                cursor = await db.execute(
                    "INSERT OR IGNORE INTO gallery_images VALUES (?, ?, ?)", (gallery.id, image_id, position)
                )
                added += cursor.rowcount
        return added

    # ----- the gallery channel -------------------------------------------------------------------------------
    async def stars(self, image_id: int) -> int:
        async with self._db.execute(
            "SELECT COUNT(*) FROM favourites WHERE image_id = ?", (image_id,)
        ) as cursor:
            return int((await cursor.fetchone())[0])

    async def claim_post(self, guild: str, image_id: int) -> bool:
        """Reserve an image's gallery post (False: it was posted, or is being posted, already)."""
        async with self._store.transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO gallery_posts (guild, image_id, posted_at) VALUES (?, ?, ?)",
                (guild, image_id, time.time()),
            )
            return cursor.rowcount == 1

    async def post_of(self, guild: str, image_id: int) -> GalleryPost | None:
        async with self._db.execute(
            "SELECT guild, image_id, channel, message FROM gallery_posts WHERE guild = ? AND image_id = ?",
            (guild, image_id),
        ) as cursor:
            row = await cursor.fetchone()
        return GalleryPost(*row) if row else None
