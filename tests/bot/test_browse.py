"""`/browse` through Discord: every filter of SPEC §4 against a brute-force check, pages, the select and actions."""

from __future__ import annotations

import re

import pytest

from catalog.records import NewImage
from engine.infotext import format_infotext
from engine.infotext_files import save_image_with_infotext
from tests.bot.conftest import ANN, BOB, CHANNEL, GUILD, MOD

PROMPTS = ["a red circle", "a Blue square", "green triangle"]


def _spec(i: int) -> dict:
    return {
        "prompt": PROMPTS[i // 4],
        "negative": "" if i % 2 == 0 else "blurry",
        "model": "modelA" if i < 6 else "modelB",
        "author": str(ANN if i < 8 else BOB),
        "seed": 1000 + (i * 7) % 12,
        "steps": 10 + i,
    }


@pytest.fixture
async def seeded(salon, tmp_path):
    """12 images in the guild's catalog (files with A1111 infotext), three of them rated, one a favourite."""
    from PIL import Image

    catalog = salon.services.catalog
    new = []
    for i in range(12):
        spec = _spec(i)
        params = {
            "Steps": spec["steps"],
            "Sampler": "Euler",
            "CFG scale": 7,
            "Seed": spec["seed"],
            "Size": "64x64",
            "Model": spec["model"],
        }
        path = save_image_with_infotext(
            Image.new("RGB", (64, 64), (20 * i, 0, 0)),
            tmp_path / f"{i:05d}-{spec['seed']}.png",
            format_infotext(spec["prompt"], spec["negative"], params),
        )
        infotext = format_infotext(spec["prompt"], spec["negative"], params)
        new.append(NewImage(str(path), str(GUILD), spec["author"], infotext, created=1_700_000_000 + i))
    records = await catalog.add_many(new)
    ids = [record.id for record in records]
    await catalog.rate(str(GUILD), ids[0], str(ANN), 5)
    await catalog.rate(str(GUILD), ids[1], str(ANN), 3)
    await catalog.rate(str(GUILD), ids[2], str(ANN), 4)
    await catalog.rate(str(GUILD), ids[2], str(BOB), 2)
    await catalog.favourite(str(GUILD), ids[5], str(ANN))
    return ids


def _shown(message) -> tuple[list[int], int]:
    """The image ids listed on a browse message, and the total it reports."""
    embed = message.embeds[0]
    ids = [int(found) for found in re.findall(r"\*\*#(\d+)\*\*", embed.get("description", ""))]
    total = int(re.search(r"· (\d+) images", embed["footer"]["text"]).group(1))
    return ids, total


async def _browse(salon, user=ANN, **options):
    interaction = await salon.fake.slash(user, CHANNEL, "browse", options)
    await interaction.wait_done()
    return interaction


def _expect(predicate) -> list[int]:
    """Indexes of the seeded images matching, newest first (the default sort)."""
    return [i for i in reversed(range(12)) if predicate(i, _spec(i))]


CASES = [
    ({}, lambda i, s: True),
    ({"query": "circle"}, lambda i, s: "circle" in s["prompt"]),
    ({"query": "blue", "case_sensitive": True}, lambda i, s: False),
    ({"query": "Blue", "case_sensitive": True}, lambda i, s: "Blue" in s["prompt"]),
    ({"query": "red or green"}, lambda i, s: "red" in s["prompt"] or "green" in s["prompt"]),
    ({"query": "not circle"}, lambda i, s: "circle" not in s["prompt"]),
    ({"query": "blurry"}, lambda i, s: False),
    ({"query": "blurry", "negative": "yes"}, lambda i, s: s["negative"] == "blurry"),
    ({"query": "circle", "negative": "only"}, lambda i, s: False),
    ({"query": "blurry", "negative": "only"}, lambda i, s: s["negative"] == "blurry"),
    ({"negative": "none"}, lambda i, s: s["negative"] == ""),
    ({"query": r"^a (red|Blue) ", "regex": True}, lambda i, s: s["prompt"].startswith(("a red", "a Blue"))),
    ({"query": "model:modelB"}, lambda i, s: s["model"] == "modelB"),
    ({"query": "seed:1007"}, lambda i, s: s["seed"] == 1007),
    ({"filename": "00003-"}, lambda i, s: i == 3),
    ({"rank": "none"}, lambda i, s: i > 2),
    ({"rank": "3"}, lambda i, s: i in (1, 2)),
    ({"rank": "4-5"}, lambda i, s: i == 0),
    ({"min_rank": 3.5}, lambda i, s: i == 0),
    ({"max_rank": 3.0}, lambda i, s: i in (1, 2)),
    ({"model": "modelA"}, lambda i, s: s["model"] == "modelA"),
    ({"favourites": True}, lambda i, s: i == 5),
]


async def test_every_filter_lists_what_a_brute_force_check_finds(salon, seeded):
    for options, predicate in CASES:
        expected = [seeded[i] for i in _expect(predicate)]
        ids, total = _shown((await _browse(salon, **options)).original)
        assert (ids, total) == (expected[:9], len(expected)), options
    ids, total = _shown((await _browse(salon, author=BOB)).original)
    assert total == 4 and ids == [seeded[i] for i in (11, 10, 9, 8)]


async def test_sort_orders(salon, seeded):
    ids, _ = _shown((await _browse(salon, sort="seed", ascending=True)).original)
    assert ids == [seeded[i] for i in sorted(range(12), key=lambda i: _spec(i)["seed"])][:9]
    ids, _ = _shown((await _browse(salon, sort="steps")).original)
    assert ids == [seeded[i] for i in reversed(range(12))][:9]
    ids, _ = _shown((await _browse(salon, sort="rank")).original)
    assert ids[0] == seeded[0] and set(ids[1:3]) == {seeded[1], seeded[2]}
    ids, _ = _shown((await _browse(salon, sort="model", ascending=True)).original)
    assert set(ids[:6]) == set(seeded[:6])
    shuffled, total = _shown((await _browse(salon, sort="random")).original)
    assert total == 12 and set(shuffled) <= set(seeded) and len(set(shuffled)) == 9
    assert shuffled != [seeded[i] for i in reversed(range(12))][:9]


async def test_pages_buttons_and_select(salon, seeded):
    opened = await _browse(salon)
    message = opened.original
    ids, total = _shown(message)
    assert total == 12 and len(ids) == 9 and "page 1 of 2" in message.embeds[0]["footer"]["text"]
    assert message.attachments[0].filename == "page.png"

    async def press(emoji):
        click = await salon.fake.click(ANN, message.id, message.find_button(emoji))
        await salon.fake.wait_for(lambda: click.acked_at is not None, 10)
        return _shown(message)

    assert await press("▶️") == ([seeded[i] for i in (2, 1, 0)], 12)
    assert "page 2 of 2" in message.embeds[0]["footer"]["text"]
    assert (await press("⏮️"))[0][0] == seeded[11]
    assert (await press("⏭️"))[0] == [seeded[i] for i in (2, 1, 0)]
    assert (await press("◀️"))[0][0] == seeded[11]
    select = message.selects()[0]
    picked = await salon.fake.select(ANN, message.id, select["custom_id"], [str(seeded[10])])
    await picked.wait_acked()
    assert len(message.embeds) == 2 and f"#{seeded[10]}" in message.embeds[1]["title"]
    assert "Seed: 1010" in message.embeds[1]["description"] or "Seed:" in message.embeds[1]["description"]
    assert [a.filename for a in message.attachments][1].startswith("selected-")
    other = await salon.fake.click(BOB, message.id, message.find_button("▶️"))
    await other.wait_done()
    assert other.ephemeral and "belongs to" in other.original.content


async def test_actions_info_rerun_favourite_delete(salon, seeded):
    message = (await _browse(salon)).original
    select = message.selects()[0]["custom_id"]
    catalog = salon.services.catalog

    async def pick(index):
        done = await salon.fake.select(ANN, message.id, select, [str(seeded[index])])
        await done.wait_acked()

    async def click(label, user=ANN):
        interaction = await salon.fake.click(user, message.id, message.find_button(label))
        await interaction.wait_acked()
        return interaction

    await pick(11)  # bob's image
    info = await click("Info")
    await info.wait_done()
    assert info.ephemeral and "Model: modelB" in info.original.content
    favourite = await click("Favourite")
    await favourite.wait_done()
    assert "added to your favourites" in favourite.original.content
    assert await catalog.is_favourite(seeded[11], str(ANN))
    refused = await click("Delete")
    await refused.wait_done()
    assert (
        refused.ephemeral and "only the person who made this image or a moderator" in refused.original.content
    )
    assert not (await catalog.get(str(GUILD), seeded[11])).deleted
    await pick(7)  # ann's own
    await click("Delete")
    await salon.fake.wait_for(lambda: seeded[7] not in _shown(message)[0], 10, "image 7 gone from the page")
    assert (await catalog.get(str(GUILD), seeded[7])).deleted
    await pick(10)
    rerun = await click("Rerun")
    result = await salon.result(rerun)
    [image] = await salon.images_of(result)
    assert (
        image.parent_id == seeded[10] and image.prompt == "green triangle" and image.seed == _spec(10)["seed"]
    )


async def test_delete_all_results_needs_a_moderator_and_a_confirmation(salon, seeded):
    refused = await _browse(salon, user=ANN, query="circle")
    click = await salon.fake.click(
        ANN, refused.original.id, refused.original.find_button("Delete all results")
    )
    await click.wait_done()
    assert click.ephemeral and "only moderators" in click.original.content
    opened = await _browse(salon, user=MOD, query="circle")
    ask = await salon.fake.click(MOD, opened.original.id, opened.original.find_button("Delete all results"))
    await ask.wait_done()
    assert ask.ephemeral and "all **4** images" in ask.original.content
    confirm = await salon.fake.click(MOD, ask.original.id, ask.original.find_button("🧨"))
    await confirm.wait_acked()
    await salon.fake.wait_for(lambda: "Deleted 4 images" in ask.original.content, 10)
    await salon.fake.wait_for(lambda: _shown(opened.original) == ([], 0), 10, "the browse message redrawn")
    ids, total = _shown((await _browse(salon, user=MOD, recycle_bin=True)).original)
    assert total == 4 and sorted(ids) == sorted(seeded[:4])
    bin_refused = await _browse(salon, user=ANN, recycle_bin=True)
    assert bin_refused.ephemeral and "only moderators" in bin_refused.original.content
