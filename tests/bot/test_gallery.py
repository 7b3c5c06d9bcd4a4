"""Galleries through Discord: the gallery channel (posted once at the threshold, removed on delete) and
shared collections with their curators."""

from __future__ import annotations

import asyncio

from tests.bot.conftest import ANN, BOB, CHANNEL, GALLERY_CHANNEL, MOD


async def _ephemeral(interaction) -> str:
    await interaction.wait_done()
    return interaction.original.content


async def test_an_image_reaching_the_threshold_is_posted_once_and_unposted_when_deleted(salon):
    fake = salon.fake
    refused = await fake.slash(ANN, CHANNEL, "gallery", {"channel": GALLERY_CHANNEL}, subcommand="channel")
    assert "only moderators" in await _ephemeral(refused)
    chosen = await fake.slash(MOD, CHANNEL, "gallery", {"channel": GALLERY_CHANNEL}, subcommand="channel")
    assert f"<#{GALLERY_CHANNEL}>" in await _ephemeral(chosen)
    await salon.services.community.set(str(100), "gallery_min_ratings", "2", str(MOD))
    message = await salon.result(await salon.imagine(seed=5))
    [image] = await salon.images_of(message)
    await fake.react(ANN, message.id, "5️⃣")
    await fake.react(BOB, message.id, "3️⃣")  # mean 4 from 2 ratings: the threshold

    def posts():
        return [m for m in fake.channel_messages(GALLERY_CHANNEL) if f"image #{image.id}" in m.content]

    await fake.wait_for(lambda: len(posts()) == 1, 30, "the gallery post")
    [post] = posts()
    catalog = salon.services.catalog

    async def counted() -> None:  # the moderator's score and star are in the catalog
        while (
            not await catalog.galleries.stars(image.id) or (await catalog.get("100", image.id)).rank_count < 3
        ):
            await asyncio.sleep(0.05)

    assert f"by <@{ANN}>" in post.content and "rank 4.0 (2)" in post.content and post.attachments
    assert f"/channels/100/{CHANNEL}/{message.id}" in post.content
    await fake.react(MOD, message.id, "5️⃣")  # still above the threshold: not posted again
    await fake.react(MOD, message.id, "⭐")
    await asyncio.wait_for(counted(), 10)
    assert len(posts()) == 1
    await fake.react(ANN, message.id, "🗑️")
    await fake.wait_for(lambda: not posts(), 30, "the gallery post removed")
    assert post.deleted


async def test_collections_with_curators_and_the_browse_view(salon):
    fake = salon.fake
    first = await salon.images_of(await salon.result(await salon.imagine(seed=1)))
    second = await salon.images_of(await salon.result(await salon.imagine(user=BOB, seed=2)))
    created = await fake.slash(ANN, CHANNEL, "gallery", {"name": "Red circles"}, subcommand="create")
    await created.wait_done()
    assert "Gallery **Red circles** created" in created.original.content
    again = await fake.slash(BOB, CHANNEL, "gallery", {"name": "red circles"}, subcommand="create")
    assert "already exists" in await _ephemeral(again)
    ids = f"{first[0].id}, #{second[0].id}"
    added = await fake.slash(
        ANN, CHANNEL, "gallery", {"name": "Red circles", "image_ids": ids}, subcommand="add"
    )
    assert "2 image(s) added to **Red circles**" in await _ephemeral(added)
    not_curator = await fake.slash(
        BOB, CHANNEL, "gallery", {"name": "Red circles", "image_ids": ids}, subcommand="remove"
    )
    assert "curated by its creator" in await _ephemeral(not_curator)
    moderated = await fake.slash(
        MOD, CHANNEL, "gallery", {"name": "Red circles", "image_ids": str(second[0].id)}, subcommand="remove"
    )
    assert "1 image(s) removed" in await _ephemeral(moderated)
    listed = await fake.slash(BOB, CHANNEL, "gallery", {}, subcommand="list")
    assert "**Red circles** — 1 image(s)" in await _ephemeral(listed)
    shown = await fake.slash(BOB, CHANNEL, "gallery", {"name": "Red circles"}, subcommand="show")
    await shown.wait_done()
    assert "1 images" in shown.original.embeds[0]["footer"]["text"]
    bad = await fake.slash(
        ANN, CHANNEL, "gallery", {"name": "Red circles", "image_ids": "12; drop"}, subcommand="add"
    )
    assert "is not image numbers" in await _ephemeral(bad)


async def test_gallery_web_gives_a_link_served_by_the_bot(salon):
    import re
    import socket

    import aiohttp

    disabled = await salon.fake.slash(ANN, CHANNEL, "gallery", {}, subcommand="web")
    assert "the web gallery is not enabled" in await _ephemeral(disabled)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web = salon.settings.web.model_copy(update={"enabled": True, "port": port})
    salon.settings = salon.settings.model_copy(update={"web": web})
    await salon.restart()
    await salon.result(await salon.imagine(seed=3))
    given = await salon.fake.slash(ANN, CHANNEL, "gallery", {}, subcommand="web")
    link = re.search(r"http://127\.0\.0\.1:\d+/g/[^/\s]+/", await _ephemeral(given)).group(0)
    async with aiohttp.ClientSession() as http:
        async with http.get(link) as response:
            assert response.status == 200 and "1 images" in await response.text()
        refused = await salon.fake.slash(BOB, CHANNEL, "gallery", {"renew": True}, subcommand="web")
        assert "only moderators" in await _ephemeral(refused)
        renewed = await salon.fake.slash(MOD, CHANNEL, "gallery", {"renew": True}, subcommand="web")
        assert "The old link no longer works" in await _ephemeral(renewed)
        async with http.get(link) as response:
            assert response.status == 403


async def test_add_to_gallery_from_a_result_and_from_browse(salon):
    fake = salon.fake
    message = await salon.result(await salon.imagine(seed=4))
    [image] = await salon.images_of(message)
    created = await fake.slash(ANN, CHANNEL, "gallery", {"name": "Keepers"}, subcommand="create")
    await created.wait_done()
    button = next(c for c, _, _ in message.buttons() if c and c.endswith(":gallery"))
    await (await fake.click(ANN, message.id, button)).wait_done()
    added = await fake.submit_modal(ANN, CHANNEL, "salon:gallery-add", {"name": "Keepers"})
    assert f"#{image.id}: 1 added to **Keepers**" in await _ephemeral(added)
    await (await fake.click(BOB, message.id, button)).wait_done()
    refused = await fake.submit_modal(BOB, CHANNEL, "salon:gallery-add", {"name": "Keepers"})
    assert "curated by its creator" in await _ephemeral(refused)
    gallery = await salon.services.catalog.galleries.get("100", "Keepers")
    assert gallery.count == 1
