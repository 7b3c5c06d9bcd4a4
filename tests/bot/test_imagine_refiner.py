"""`/imagine`'s `refiner` option (Discord's 25th): a checkpoint of the registry, offered by autocomplete with
"None", and refused by name before anything is queued when it is not installed. The refiner's own behaviour
(switching, infotext, refusals of another family) is tested on tiny SDXL models in tests/engine/test_refiner.py."""

from __future__ import annotations

from tests.bot.conftest import ANN, CHANNEL


async def test_an_unknown_refiner_is_refused_by_name_and_nothing_is_queued(salon):
    from tests.bot.test_commands import _refused

    refused = await _refused(await salon.imagine(refiner="no-such-refiner"))
    assert refused.startswith("**refiner**") and "no-such-refiner" in refused
    assert "salon-demo-shapes" in refused  # the installed checkpoints are named
    assert await salon.services.queue.store.recent() == []


async def test_autocomplete_offers_none_then_the_checkpoints(salon):
    choices = await salon.fake.autocomplete(
        ANN, CHANNEL, "imagine", {"prompt": "x", "refiner": ""}, "refiner"
    )
    values = [c["value"] for c in choices]
    assert values[0] == "None" and "salon-demo-shapes" in values
