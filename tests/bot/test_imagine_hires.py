"""`/imagine`'s one `hires` text option: a factor or `key=value` items, parsed in one place
(commands/hires_options.py), refused naming the bad item, its keys offered by autocomplete."""

from __future__ import annotations

from engine.infotext import parse_infotext
from tests.bot.conftest import ANN, CHANNEL


async def test_hires_items_reach_the_infotext(salon):
    hires = "scale=1.5,denoise=0.5,steps=3,cfg=4,prompt=a cat, sitting"
    made = await salon.result(await salon.imagine(seed=5, hires=hires), timeout=300)  # a busy machine
    [image] = await salon.images_of(made)
    info = parse_infotext(image.infotext).params
    assert (image.width, image.height) == (96, 96)
    assert info["Hires upscale"] == "1.5" and info["Hires steps"] == "3"
    assert info["Denoising strength"] == "0.5" and info["Hires CFG Scale"] == "4"
    assert info["Hires prompt"] == "a cat, sitting"
    [plain] = await salon.images_of(await salon.result(await salon.imagine(seed=5, hires="1.5"), timeout=300))
    assert (plain.width, plain.height) == (96, 96) and "Hires CFG Scale" not in plain.infotext


async def test_a_bad_hires_item_is_refused_by_name(salon):
    from tests.bot.test_commands import _refused

    unknown = await _refused(await salon.imagine(hires="scale=2,sharpness=3"))
    assert unknown.startswith("**hires**") and "'sharpness=3'" in unknown and "denoise" in unknown
    not_number = await _refused(await salon.imagine(hires="scale=2,denoise=lots"))
    assert "**hires**" in not_number and "denoise='lots' is not a number" in not_number
    assert await salon.services.queue.store.recent() == []


async def test_autocomplete_offers_the_keys_not_given(salon):
    choices = await salon.fake.autocomplete(
        ANN, CHANNEL, "imagine", {"prompt": "x", "hires": "scale=2,de"}, "hires"
    )
    assert [c["value"] for c in choices] == ["scale=2,de", "scale=2,denoise="]
    fresh = await salon.fake.autocomplete(ANN, CHANNEL, "imagine", {"prompt": "x", "hires": ""}, "hires")
    values = [c["value"] for c in fresh]
    assert values[:3] == ["scale=", "denoise=", "upscaler="] and "prompt=" in values
