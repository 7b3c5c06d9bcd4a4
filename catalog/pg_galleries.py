"""Community galleries in the PostgreSQL catalog: the interface and rules of catalog/galleries.py (named
per-guild collections, and the gallery channel's posts), on the shared database.

Names compare as SQLite's NOCASE does (ASCII letters in any case: `salon_ascii_lower`, catalog/pg_schema.py).
"""

from __future__ import annotations

import time
from typing import Any

from catalog.galleries import Gallery, GalleryPost, GalleryRules

PgCatalog = Any  # catalog/pg_catalog.py (not imported: it imports this module)


class PgGalleries(GalleryRules):
    """The gallery tables of one PostgreSQL catalog (`catalog.galleries`)."""

    _mark = "%s"

    def __init__(self, catalog: PgCatalog) -> None:
        super().__init__(catalog)
        self._catalog = catalog
        self._fetch = catalog.fetch

    # ----- collections -------------------------------------------------------------------------------------
    async def create(self, guild: str, name: str, owner: str) -> Gallery:
        name = await self._new_name(guild, name)
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

    async def add(
        self, guild: str, name: str, image_ids: list[int], user: str, moderator: bool = False
    ) -> int:
        """Add this guild's images to a gallery (its creator or a moderator); returns how many were new."""
        gallery = await self._adding(guild, name, image_ids, user, moderator)
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

    async def post_of(self, guild: str, image_id: int) -> GalleryPost | None:
        rows = await self._fetch(
            "SELECT guild, image_id, channel, message FROM gallery_posts WHERE guild = %s AND image_id = %s",
            (guild, image_id),
        )
        return GalleryPost(**rows[0]) if rows else None
