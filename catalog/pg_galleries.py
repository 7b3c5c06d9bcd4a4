"""Community galleries in the PostgreSQL catalog: the interface and rules of catalog/galleries.py (named
per-guild collections, and the gallery channel's posts), on the shared database.

Names compare as SQLite's NOCASE does (ASCII letters in any case: `salon_ascii_lower`, catalog/pg_schema.py).
"""

from __future__ import annotations

import time
from typing import Any

from catalog.galleries import Gallery, GalleryPost, check_gallery_name
from core.errors import InvalidRequest

PgCatalog = Any  # catalog/pg_catalog.py (not imported: it imports this module)


class PgGalleries:
    """The gallery tables of one PostgreSQL catalog (`catalog.galleries`)."""

    def __init__(self, catalog: PgCatalog) -> None:
        self._catalog = catalog
        self._fetch = catalog.fetch

    # ----- collections -------------------------------------------------------------------------------------
    async def create(self, guild: str, name: str, owner: str) -> Gallery:
        name = check_gallery_name(name)
        if await self.get(guild, name) is not None:
            raise InvalidRequest("name", f"a gallery named {name!r} already exists here")
        created = time.time()
        rows = await self._fetch(
            "INSERT INTO galleries (guild, name, owner, created) VALUES (%s, %s, %s, %s) RETURNING id",
            (guild, name, owner, created),
        )
        return Gallery(int(rows[0]["id"]), guild, name, owner, created)

    async def get(self, guild: str, name: str) -> Gallery | None:
        found = await self._list(
            "g.guild = %s AND salon_ascii_lower(g.name) = salon_ascii_lower(%s)", (guild, name.strip())
        )
        return found[0] if found else None

    async def list(self, guild: str) -> list[Gallery]:
        return await self._list("g.guild = %s", (guild,))

    async def _list(self, where: str, args: tuple) -> list[Gallery]:
        rows = await self._fetch(
            "SELECT g.id, g.guild, g.name, g.owner, g.created, "
            "(SELECT COUNT(*) FROM gallery_images gi JOIN images i ON i.id = gi.image_id "
            " WHERE gi.gallery_id = g.id AND i.deleted_at IS NULL) AS count "
            f"FROM galleries g WHERE {where} ORDER BY salon_ascii_lower(g.name), g.id",
            args,
        )
        return [
            Gallery(row["id"], row["guild"], row["name"], row["owner"], row["created"], row["count"])
            for row in rows
        ]

    async def _curated(self, guild: str, name: str, user: str, moderator: bool) -> Gallery:
        gallery = await self.get(guild, name)
        if gallery is None:
            raise InvalidRequest("name", f"there is no gallery named {name!r} here; /gallery list shows them")
        if gallery.owner != user and not moderator:
            raise InvalidRequest(
                "name", f"{gallery.name!r} is curated by its creator <@{gallery.owner}> and moderators"
            )
        return gallery

    async def add(
        self, guild: str, name: str, image_ids: list[int], user: str, moderator: bool = False
    ) -> int:
        """Add this guild's images to a gallery (its creator or a moderator); returns how many were new."""
        gallery = await self._curated(guild, name, user, moderator)
        for image_id in image_ids:
            record = await self._catalog.get(guild, image_id)
            if record is None or record.deleted:
                raise InvalidRequest("image_id", f"there is no image #{image_id} in this server")
        added = 0
        async with self._catalog.transaction() as db:
            await db.execute("SELECT id FROM galleries WHERE id = %s FOR UPDATE", (gallery.id,))
            cursor = await db.execute(
                "SELECT COALESCE(MAX(position), 0) AS top FROM gallery_images WHERE gallery_id = %s",
                (gallery.id,),
            )
            position = (await cursor.fetchone())["top"]
            for image_id in image_ids:
                position += 1
                cursor = await db.execute(
                    "INSERT INTO gallery_images VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (gallery.id, image_id, position),
                )
                added += cursor.rowcount
        return added

    async def remove(
        self, guild: str, name: str, image_ids: list[int], user: str, moderator: bool = False
    ) -> int:
        gallery = await self._curated(guild, name, user, moderator)
        removed = 0
        async with self._catalog.transaction() as db:
            for image_id in image_ids:
                cursor = await db.execute(
                    "DELETE FROM gallery_images WHERE gallery_id = %s AND image_id = %s",
                    (gallery.id, image_id),
                )
                removed += cursor.rowcount
        return removed

    async def delete(self, guild: str, name: str, user: str, moderator: bool = False) -> None:
        gallery = await self._curated(guild, name, user, moderator)
        await self._fetch("DELETE FROM galleries WHERE id = %s", (gallery.id,))

    # ----- the gallery channel -------------------------------------------------------------------------------
    async def stars(self, image_id: int) -> int:
        rows = await self._fetch("SELECT COUNT(*) AS stars FROM favourites WHERE image_id = %s", (image_id,))
        return int(rows[0]["stars"])

    async def claim_post(self, guild: str, image_id: int) -> bool:
        """Reserve an image's gallery post (False: it was posted, or is being posted, already)."""
        rows = await self._fetch(
            "INSERT INTO gallery_posts (guild, image_id, posted_at) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING image_id",
            (guild, image_id, time.time()),
        )
        return len(rows) == 1

    async def record_post(self, guild: str, image_id: int, channel: str, message: str) -> None:
        await self._fetch(
            "UPDATE gallery_posts SET channel = %s, message = %s WHERE guild = %s AND image_id = %s",
            (channel, message, guild, image_id),
        )

    async def release_post(self, guild: str, image_id: int) -> None:
        """Forget a reservation whose post could not be made (so a later rating tries again)."""
        await self._fetch(
            "DELETE FROM gallery_posts WHERE guild = %s AND image_id = %s AND message IS NULL",
            (guild, image_id),
        )

    async def post_of(self, guild: str, image_id: int) -> GalleryPost | None:
        rows = await self._fetch(
            "SELECT guild, image_id, channel, message FROM gallery_posts WHERE guild = %s AND image_id = %s",
            (guild, image_id),
        )
        return GalleryPost(**rows[0]) if rows else None
