"""Galleries in the catalog: collections with their curators, guild isolation, and gallery-channel posts."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from catalog.catalog import Catalog
from catalog.galleries import Threshold
from catalog.records import NewImage
from commands.browse import browse_query
from core.errors import InvalidRequest


async def _images(catalog: Catalog, folder, guild: str, count: int) -> list[int]:
    ids = []
    for index in range(count):
        path = folder / f"{guild}-{index}.png"
        Image.new("RGB", (8, 8), (index * 20, 0, 0)).save(path)
        record = await catalog.add(
            NewImage(str(path), guild, "ann", f"a cat {index}\nSteps: 20, Seed: {index}, Size: 8x8")
        )
        ids.append(record.id)
    return ids


async def test_collections_are_curated_by_their_creator_and_moderators(tmp_path):
    catalog = await Catalog.open(tmp_path / "catalog")
    try:
        mine = await _images(catalog, tmp_path, "g1", 3)
        theirs = await _images(catalog, tmp_path, "g2", 1)
        galleries = catalog.galleries
        await galleries.create("g1", "Best cats", "ann")
        with pytest.raises(InvalidRequest, match="already exists"):
            await galleries.create("g1", "best cats", "bob")
        with pytest.raises(InvalidRequest, match="name"):
            await galleries.create("g1", "../evil", "bob")
        assert await galleries.add("g1", "best cats", mine[:2], "ann") == 2
        assert await galleries.add("g1", "Best cats", mine[:2], "ann") == 0  # already there
        with pytest.raises(InvalidRequest, match="curated by its creator"):
            await galleries.add("g1", "Best cats", [mine[2]], "bob")
        assert await galleries.add("g1", "Best cats", [mine[2]], "bob", moderator=True) == 1
        with pytest.raises(InvalidRequest, match=f"no image #{theirs[0]} in this server"):
            await galleries.add("g1", "Best cats", theirs, "ann")
        [gallery] = await galleries.list("g1")
        assert gallery.name == "Best cats" and gallery.count == 3
        assert await galleries.list("g2") == [] and await galleries.get("g2", "Best cats") is None
        page = await catalog.search(
            browse_query("g1", keyword="cat", gallery=gallery.id, sort="seed", ascending=True)
        )
        assert [image.id for image in page.images] == mine
        assert await galleries.remove("g1", "Best cats", [mine[0]], "ann") == 1
        await catalog.delete("g1", [mine[1]])
        assert (await galleries.get("g1", "Best cats")).count == 1  # deleted images are not counted
        with pytest.raises(InvalidRequest, match="curated by its creator"):
            await galleries.delete("g1", "Best cats", "bob")
        await galleries.delete("g1", "Best cats", "ann")
        assert await galleries.list("g1") == []
    finally:
        await catalog.close()


async def test_a_gallery_post_is_claimed_once(tmp_path):
    catalog = await Catalog.open(tmp_path / "catalog")
    try:
        [image] = await _images(catalog, tmp_path, "g1", 1)
        galleries = catalog.galleries
        assert await galleries.claim_post("g1", image) and not await galleries.claim_post("g1", image)
        await galleries.release_post("g1", image)
        assert await galleries.claim_post("g1", image)
        await galleries.record_post("g1", image, "300", "900")
        await galleries.release_post("g1", image)  # a recorded post stays
        assert (await galleries.post_of("g1", image)).message == "900"
        assert await galleries.post_of("g2", image) is None
    finally:
        await catalog.close()


def test_thresholds():
    rule = Threshold(min_rank=4, min_ratings=3, stars=2)
    assert not rule.reached(5.0, 2, 0) and rule.reached(4.0, 3, 0) and not rule.reached(3.9, 10, 1)
    assert rule.reached(None, 0, 2)
    assert not Threshold(stars=0).reached(None, 0, 99)


async def test_top_images_of_a_period_stay_in_their_guild(tmp_path):
    catalog = await Catalog.open(tmp_path / "catalog")
    try:
        mine = await _images(catalog, tmp_path, "g1", 4)
        theirs = await _images(catalog, tmp_path, "g2", 2)
        for image_id, score in zip(mine, (2, 5, 4, 3), strict=True):
            await catalog.rate("g1", image_id, "u", score)
        for image_id in theirs:
            await catalog.rate("g2", image_id, "u", 5)
        now = time.time()
        top = await catalog.top_images("g1", now - 3600, now + 60, limit=3)
        assert [image.id for image in top] == [mine[1], mine[2], mine[3]]
        assert await catalog.top_images("g1", now + 60, now + 120) == []  # nothing made in that period
        assert {image.guild for image in await catalog.top_images("g2", now - 3600, now + 60)} == {"g2"}
    finally:
        await catalog.close()
