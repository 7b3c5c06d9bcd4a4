"""Animations in the catalog on PostgreSQL: the same item, media and family as on SQLite, and the copy from
SQLite (`salon db migrate-to`) keeps an animation's video and settings file."""

from __future__ import annotations

from pathlib import Path

from catalog.catalog import Catalog
from catalog.pg_copy import copy_catalog
from tests.catalog.test_animations import GUILD, make_animation
from tests.pg.catalogs import open_pg_catalog


async def test_an_animation_on_postgresql_and_copied_from_sqlite(tmp_path, postgres_url):
    folder = tmp_path / "outputs" / "animations" / "00009-1"
    animation = make_animation(folder)
    sqlite = await Catalog.open(tmp_path / "catalog", text_index="sqlite")
    postgres = await open_pg_catalog(postgres_url, tmp_path / "catalog")
    try:
        item = await sqlite.add_animation(animation)
        counts = await copy_catalog(sqlite, postgres)
        assert counts["animations"] == (1, 1) and counts["images"] == (4, 4)
        assert await postgres.animation(GUILD, item.id) == await sqlite.animation(GUILD, item.id)
        media = await postgres.animation(GUILD, item.id)
        assert media.video == folder / "animation.mp4" and media.frames == 4
        family = await postgres.family(GUILD, item.id)
        assert [m.relation for m in family.members] == ["original", *["animation frame"] * 3]
        assert await postgres.animation("200", item.id) is None
        again = await postgres.add_animation(animation)  # already there: nothing added
        assert again.id == item.id and Path(again.path).name == "00000.png"
    finally:
        await postgres.close()
        await sqlite.close()
