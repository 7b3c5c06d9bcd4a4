"""An image's family (catalog/lineage.py through `Catalog.family`): the original found from any member, every
relation labelled, deleted members walked through, other guilds left out, the bounds, and cycles."""

from __future__ import annotations

import pytest
from PIL import Image

from catalog import lineage
from catalog.catalog import Catalog
from catalog.records import NewImage, Relation
from core.errors import InvalidRequest


@pytest.fixture
async def catalog(tmp_path):
    opened = await Catalog.open(tmp_path / "catalog", text_index="sqlite")
    yield opened
    await opened.close()


async def add(catalog, tmp_path, name: str, parent=None, relation=None, guild="g1"):
    path = tmp_path / "outputs" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (len(name) * 20 % 256, 0, 0)).save(path)
    info = f"{name}\nSteps: 20, Seed: 1, Size: 8x8"
    return await catalog.add(NewImage(str(path), guild, "ann", info, parent_id=parent, relation=relation))


@pytest.fixture
async def tree(catalog, tmp_path):
    """root → reroll, variation, upscale (→ img2img of the upscale → animation frame), inpaint, edit."""
    root = await add(catalog, tmp_path, "root")
    made = {"root": root}
    for name, relation in (
        ("reroll", Relation.REROLL),
        ("variation", Relation.VARIATION),
        ("upscale", Relation.UPSCALE),
        ("inpaint", Relation.INPAINT),
        ("edit", Relation.EDIT),
    ):
        made[name] = await add(catalog, tmp_path, name, root.id, relation)
    made["img2img"] = await add(catalog, tmp_path, "img2img", made["upscale"].id, Relation.IMG2IMG)
    made["frame"] = await add(catalog, tmp_path, "frame", made["img2img"].id, Relation.ANIMATION_FRAME)
    await add(catalog, tmp_path, "stranger")
    return made


def labelled(family) -> dict[str, tuple[str, int]]:
    return {member.record.prompt: (member.relation, member.generation) for member in family.members}


async def test_every_member_finds_the_same_family_with_its_relations(catalog, tree):
    expected = {
        "root": ("original", 0),
        "reroll": ("reroll", 1),
        "variation": ("variation", 1),
        "upscale": ("upscale", 1),
        "inpaint": ("inpaint", 1),
        "edit": ("edit", 1),
        "img2img": ("img2img", 2),
        "frame": ("animation frame", 3),
    }
    for name in ("root", "frame", "variation", "img2img"):
        family = await catalog.family("g1", tree[name].id)
        assert labelled(family) == expected, name
        assert family.root == tree["root"].id and family.asked == tree[name].id and family.complete
        assert family.members[0].record.id == tree["root"].id  # the original first
    alone = await catalog.family("g1", (await catalog.get("g1", tree["root"].id + 8)).id)
    assert [m.relation for m in alone.members] == ["original"] and len(alone) == 1


async def test_deleted_members_are_walked_through_and_other_guilds_are_not_seen(catalog, tree, tmp_path):
    await catalog.delete("g1", [tree["upscale"].id])
    family = await catalog.family("g1", tree["root"].id)
    assert "upscale" not in labelled(family) and labelled(family)["frame"] == ("animation frame", 3)
    assert "upscale" in labelled(await catalog.family("g1", tree["root"].id, include_deleted=True))
    assert "upscale" in labelled(await catalog.family("g1", tree["upscale"].id))  # the asked one stays
    await add(catalog, tmp_path, "elsewhere", tree["root"].id, Relation.REROLL, guild="g2")
    assert "elsewhere" not in labelled(await catalog.family("g1", tree["root"].id))
    with pytest.raises(InvalidRequest, match="no image"):
        await catalog.family("g2", tree["root"].id)
    await catalog.purge("g1")  # the upscale's children lose their parent (ON DELETE SET NULL)
    assert labelled(await catalog.family("g1", tree["frame"].id))["img2img"] == ("original", 0)


async def test_bounds_and_cycles(catalog, tmp_path, monkeypatch):
    chain = [await add(catalog, tmp_path, "c0")]
    for i in range(1, 6):
        chain.append(await add(catalog, tmp_path, f"c{i}", chain[-1].id, Relation.VARIATION))
    monkeypatch.setattr(lineage, "MAX_DEPTH", 3)
    from_top = await catalog.family("g1", chain[0].id)
    assert [m.record.id for m in from_top.members] == [r.id for r in chain[:4]] and not from_top.complete
    from_bottom = await catalog.family("g1", chain[5].id)
    assert from_bottom.root == chain[2].id and not from_bottom.complete
    monkeypatch.setattr(lineage, "MAX_DEPTH", 32)
    monkeypatch.setattr(lineage, "MAX_MEMBERS", 4)
    capped = await catalog.family("g1", chain[0].id)
    assert len(capped) == 4 and not capped.complete
    monkeypatch.setattr(lineage, "MAX_MEMBERS", 200)
    # A cycle of parents (c0's parent set to c5 by hand): the walk ends, each image once.
    async with catalog.store.transaction() as db:
        await db.execute("UPDATE images SET parent_id = ? WHERE id = ?", (chain[5].id, chain[0].id))
    looped = await catalog.family("g1", chain[3].id)
    assert sorted(m.record.id for m in looped.members) == sorted(r.id for r in chain)
    assert [m.relation for m in looped.members].count("original") == 1
