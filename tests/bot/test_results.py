"""The buttons and reactions under a result: reroll, variations, upscale, edit, info, delete, ratings."""

from __future__ import annotations

import io

from PIL import Image

from catalog.records import Relation
from tests.bot.conftest import ANN, BOB, CHANNEL, MOD


async def _images_of(salon, message):
    """The catalog images a message shows (recorded just after the message is sent)."""
    return await salon.images_of(message)


async def test_reroll_and_v1_make_new_images_linked_to_the_first(salon):
    first = await salon.result(await salon.imagine(seed=11))
    [parent] = await _images_of(salon, first)
    reroll = await salon.fake.click(BOB, first.id, first.find_button("🎲"))
    rerolled = await salon.result(reroll)
    [child] = await _images_of(salon, rerolled)
    assert (child.parent_id, child.relation, child.author) == (parent.id, Relation.REROLL, str(BOB))
    assert child.seed != parent.seed and child.prompt == parent.prompt and child.steps == parent.steps
    variation = await salon.fake.click(ANN, first.id, first.find_button("V1"))
    varied = await salon.result(variation)
    [var] = await _images_of(salon, varied)
    assert (var.parent_id, var.relation, var.seed) == (parent.id, Relation.VARIATION, parent.seed)
    assert "Variation seed strength: 0.15" in var.infotext
    assert var.sha256 != parent.sha256


async def test_upscale_is_the_hires_pass_of_the_same_seed(salon):
    first = await salon.result(await salon.imagine(seed=12))
    [parent] = await _images_of(salon, first)
    upscaled = await salon.result(await salon.fake.click(ANN, first.id, first.find_button("U1")))
    [big] = await _images_of(salon, upscaled)
    assert (big.width, big.height, big.seed, big.relation) == (128, 128, parent.seed, Relation.UPSCALE)
    assert "Hires upscale: 2" in big.infotext


async def test_edit_opens_a_modal_and_runs_the_changed_prompt(salon):
    first = await salon.result(await salon.imagine(seed=13))
    click = await salon.fake.click(ANN, first.id, first.find_button("✏️"))
    await click.wait_acked()
    assert click.modal is not None and click.modal["title"] == "Edit and run again"
    submitted = await salon.fake.submit_modal(
        ANN,
        CHANNEL,
        click.modal["custom_id"],
        {
            **_modal_defaults(click.modal),
            _input_id(click.modal, "Prompt"): "a blue square on a yellow background",
        },
        message_id=first.id,
    )
    edited = await salon.result(submitted)
    [image] = await _images_of(salon, edited)
    assert image.prompt == "a blue square on a yellow background" and image.relation is Relation.EDIT
    assert image.seed == 13


def _inputs(modal):
    for row in modal["components"]:
        for component in row.get("components", [row.get("component")] if row.get("component") else []):
            if component and component.get("type") == 4:
                yield row.get("label") or component.get("label"), component


def _input_id(modal, label: str) -> str:
    return next(component["custom_id"] for name, component in _inputs(modal) if name == label)


def _modal_defaults(modal) -> dict[str, str]:
    return {component["custom_id"]: component.get("value", "") for _, component in _inputs(modal)}


async def test_info_shows_the_infotext_to_the_asker_only(salon):
    first = await salon.result(await salon.imagine(seed=14))
    click = await salon.fake.click(BOB, first.id, first.find_button("📋"))
    await click.wait_done()
    assert click.ephemeral and "Seed: 14" in click.original.content and "Steps: 6" in click.original.content


async def test_delete_is_refused_to_others_and_allowed_to_a_moderator(salon):
    first = await salon.result(await salon.imagine(seed=15))
    [image] = await _images_of(salon, first)
    refused = await salon.fake.click(BOB, first.id, first.find_button("🗑️"))
    await refused.wait_done()
    assert (
        refused.ephemeral and "only the person who made this image or a moderator" in refused.original.content
    )
    assert not first.deleted and not (await salon.services.catalog.get(image.guild, image.id)).deleted
    allowed = await salon.fake.click(MOD, first.id, first.find_button("🗑️"))
    await salon.fake.wait_for(lambda: first.deleted, 10, "the result message deleted")
    assert allowed.ephemeral
    assert (await salon.services.catalog.get(image.guild, image.id)).deleted


async def test_reactions_rate_favourite_and_dm(salon):
    first = await salon.result(await salon.imagine(seed=16))
    [image] = await _images_of(salon, first)
    catalog = salon.services.catalog

    async def rank():
        record = await catalog.get(image.guild, image.id)
        return record.rank_mean, record.rank_count

    await salon.fake.react(ANN, first.id, "4️⃣")
    await salon.fake.react(BOB, first.id, "2️⃣")
    await _until(salon, rank, (3.0, 2))
    await salon.fake.react(BOB, first.id, "5️⃣")  # a new score replaces the old one…
    await salon.fake.unreact(BOB, first.id, "2️⃣")  # …and removing the old reaction keeps it
    await _until(salon, rank, (4.5, 2))
    seen = await salon.fake.slash(ANN, CHANNEL, "browse", {"rank": "4-5"})
    await seen.wait_done()
    assert f"**#{image.id}** ★4.5 (2)" in seen.original.embeds[0]["description"]  # what /browse shows
    await salon.fake.unreact(ANN, first.id, "4️⃣")
    await _until(salon, rank, (5.0, 1))
    await salon.fake.react(ANN, first.id, "⭐")
    await _until(salon, lambda: catalog.is_favourite(image.id, str(ANN)), True)
    await salon.fake.react(BOB, first.id, "✉️")
    await salon.fake.wait_for(lambda: bool(salon.fake.dms(BOB)), 10, "a DM to bob")
    [dm] = salon.fake.dms(BOB)
    assert "Seed: 16" in dm.content
    assert Image.open(io.BytesIO(dm.attachments[0].data)).size == (64, 64)


async def _until(salon, read, expected, timeout: float = 10.0):
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"{value!r} is not {expected!r}"
        await asyncio.sleep(0.05)


async def test_the_wastebasket_reaction_deletes_only_for_the_owner_or_a_moderator(salon):
    first = await salon.result(await salon.imagine(seed=17))
    [image] = await _images_of(salon, first)
    await salon.fake.react(BOB, first.id, "🗑️")
    await salon.fake.react(ANN, first.id, "1️⃣")  # handled after bob's, so bob's was handled too
    await _until(salon, lambda: salon.services.catalog.rating_of(image.id, str(ANN)), 1)
    assert not first.deleted and not (await salon.services.catalog.get(image.guild, image.id)).deleted
    await salon.fake.react(ANN, first.id, "🗑️")
    await salon.fake.wait_for(lambda: first.deleted, 10, "the result deleted by its owner")
    assert (await salon.services.catalog.get(image.guild, image.id)).deleted


async def test_reactions_made_while_the_bot_was_offline_count_after_it_starts(salon):
    first = await salon.result(await salon.imagine(seed=18))
    [image] = await _images_of(salon, first)
    await salon.fake.react(ANN, first.id, "2️⃣")
    await _until(salon, lambda: salon.services.catalog.rating_of(image.id, str(ANN)), 2)
    await salon.stop()
    await salon.fake.unreact(ANN, first.id, "2️⃣")  # nobody hears these
    await salon.fake.react(BOB, first.id, "5️⃣")
    await salon.fake.react(BOB, first.id, "⭐")
    await salon.start()
    catalog = salon.services.catalog
    await _until(salon, lambda: catalog.ratings(image.id), {str(BOB): 5})
    await _until(salon, lambda: catalog.is_favourite(image.id, str(BOB)), True)
