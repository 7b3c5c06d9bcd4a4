"""`/upscale` with "Scale to" (`size`, `crop`) and a second upscaler, through the fake Discord, with tiny
random-weight ESRGANs in the session's models folder; bad values refused naming this command's options."""

from __future__ import annotations

import pytest

from tests.bot.conftest import ANN, CHANNEL
from tests.bot.upscaling import installed, png, shown
from tests.tiny_upscalers import tiny_esrgan


@pytest.fixture
def upscalers(salon):
    models = {
        "2x-BotSize.pth": tiny_esrgan(2, seed=8),
        "4x-BotSecond.safetensors": tiny_esrgan(4, seed=9),
    }
    with installed(salon, models) as names:
        yield names


async def _refusal(salon, interaction) -> str:
    await interaction.wait_done()
    await salon.fake.wait_for(lambda: shown(interaction) and all(m.ephemeral for m in shown(interaction)), 10)
    return shown(interaction)[-1].content


async def test_upscale_to_a_size_with_crop_and_a_second_upscaler(salon, upscalers):
    first, second = upscalers
    attachments = {"image": ("in.png", png(), "image/png")}
    options = {
        "upscaler": first,
        "size": "96x96",
        "crop": True,
        "upscaler_2": second,
        "upscaler_2_visibility": 0.5,
    }
    started = await salon.fake.slash(ANN, CHANNEL, "upscale", options, attachments=attachments)
    await salon.fake.wait_for(lambda: any("✅" in m.content for m in shown(started)), 60, "the upscale")
    message = next(m for m in shown(started) if "✅" in m.content)
    assert f"upscaled to 96x96 (cropped) with {first} + {second}" in message.content
    [image] = await salon.services.catalog.of_job(int(message.content.split("(job ")[1].split(",")[0]))
    assert (image.width, image.height) == (96, 96)

    no_size = await salon.fake.slash(
        ANN, CHANNEL, "upscale", {"upscaler": first, "crop": True}, attachments=attachments
    )
    assert "**crop**" in await _refusal(salon, no_size)
    bad = await salon.fake.slash(
        ANN, CHANNEL, "upscale", {"upscaler": first, "size": "huge"}, attachments=attachments
    )
    assert "**size**" in await _refusal(salon, bad)
    too_big = await salon.fake.slash(
        ANN, CHANNEL, "upscale", {"upscaler": first, "size": "9000x64"}, attachments=attachments
    )
    assert "**size**" in (text := await _refusal(salon, too_big)) and "64..8192" in text
