"""`/upscale` through Discord (an attachment, a catalog image as the parent) and the U buttons taking the
server's `default_upscaler`, with tiny random-weight ESRGANs in the session's models folder."""

from __future__ import annotations

import pytest

from catalog.records import Relation
from tests.bot.conftest import ANN, CHANNEL, GUILD, MOD
from tests.bot.upscaling import installed, png, shown
from tests.tiny_upscalers import tiny_esrgan


@pytest.fixture
def upscaler(salon):
    with installed(salon, {"2x-BotTest.pth": tiny_esrgan(2, seed=7)}) as names:
        yield names[0]


async def _announced(salon, interaction):
    await salon.fake.wait_for(lambda: any("✅" in m.content for m in shown(interaction)), 60, "the upscale")
    return next(m for m in shown(interaction) if "✅" in m.content)


async def test_upscale_an_attachment_and_a_catalog_image(salon, upscaler):
    attachments = {"image": ("in.png", png(), "image/png")}
    started = await salon.fake.slash(
        ANN, CHANNEL, "upscale", {"upscaler": upscaler, "scale": 2.0}, attachments=attachments
    )
    message = await _announced(salon, started)
    assert f"upscaled ×2 with {upscaler}" in message.content and message.attachments
    [first] = await salon.services.catalog.of_job(int(message.content.split("(job ")[1].split(",")[0]))
    assert (first.width, first.height) == (64, 48)

    again = await salon.fake.slash(
        ANN, CHANNEL, "upscale", {"upscaler": upscaler, "image_id": first.id, "scale": 1.5}
    )
    second = await _announced(salon, again)
    job_id = int(second.content.split("(job ")[1].split(",")[0])
    [child] = await salon.services.catalog.of_job(job_id)
    assert (child.parent_id, child.relation, child.width) == (first.id, Relation.UPSCALE, 96)

    refused = await salon.fake.slash(
        ANN, CHANNEL, "upscale", {"upscaler": "4x-Nope"}, attachments=attachments
    )
    await refused.wait_done()
    await salon.fake.wait_for(lambda: shown(refused) and all(m.ephemeral for m in shown(refused)), 10)
    assert f"no upscaler named '4x-Nope'; installed: {upscaler}" in shown(refused)[-1].content


async def test_u_buttons_use_the_servers_default_upscaler(salon, upscaler):
    await salon.services.community.set(str(GUILD), "default_upscaler", upscaler, str(MOD))
    first = await salon.result(await salon.imagine(seed=12))
    upscaled = await salon.result(await salon.fake.click(ANN, first.id, first.find_button("U1")))
    [big] = await salon.images_of(upscaled)
    assert (big.width, big.height, big.relation) == (128, 128, Relation.UPSCALE)
    assert f"Hires upscaler: {upscaler}" in big.infotext
