"""`/xyz`'s axes autocompleted through the fake Discord: the axes' names, then a Hires upscaler axis's values
(the built-in upscalers and the installed model upscalers, those already listed left out)."""

from __future__ import annotations

import pytest

from commands.xyz import axis_completions
from tests.bot.conftest import ANN, CHANNEL
from tests.tiny_upscalers import save_upscaler, tiny_esrgan


@pytest.fixture
def upscaler(salon):
    path = save_upscaler(tiny_esrgan(2, seed=7), salon.settings.models_path / "ESRGAN" / "2x-AxisTest.pth")
    salon.services.registry.refresh()  # the bot's own registry (autocomplete reads it)
    yield path.stem
    path.unlink(missing_ok=True)
    salon.services.registry.refresh()


def test_completions_of_an_axis():
    assert axis_completions("hires up") == ["Hires upscale=", "Hires upscaler="]
    assert axis_completions("Hires upscaler=Latent,2x", ["2x-A", "4x-B"]) == ["Hires upscaler=Latent,2x-A"]
    offered = axis_completions("Hires upscaler=latent,", ["2x-A"])
    assert "Hires upscaler=latent,Latent" not in offered and offered[-1] == "Hires upscaler=latent,2x-A"
    assert axis_completions("Steps=1,2") == ["Steps=1,2"]


async def test_xyz_autocompletes_model_upscalers(salon, upscaler):
    options = {"prompt": "a circle", "x": "Hires upscaler=Latent,2x-ax"}
    choices = await salon.fake.autocomplete(ANN, CHANNEL, "xyz", options, "x")
    assert [c["value"] for c in choices] == [f"Hires upscaler=Latent,{upscaler}"]
    names = await salon.fake.autocomplete(ANN, CHANNEL, "xyz", {"prompt": "a circle", "y": "se"}, "y")
    assert [c["value"] for c in names] == ["Seed="]
