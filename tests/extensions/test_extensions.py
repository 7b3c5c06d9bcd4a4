"""Extensions: the example package (examples/salon-grain) installed with pip, listed, its post-processor used
by the queue, its command in the bot; disabled and unknown ones handled."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from config import load_settings
from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.requests import GenerationRequest
from engine.tasks.samplers import BUILTIN_SAMPLERS
from extensions import discover, sampler_table

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "salon-grain"


@pytest.fixture(scope="module")
def grain_installed(tmp_path_factory):
    """pip-installs the example extension into a folder put on sys.path for this module's tests."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLE)],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    sys.modules.pop("salon_grain", None)
    importlib.invalidate_caches()


def test_installed_extensions_are_listed_and_can_be_disabled(grain_installed, tmp_path, capsys):
    from cli.main import main

    [grain] = [e for e in discover() if e.name == "grain"]
    assert grain.distribution == "salon-grain" and grain.version == "0.1.0" and grain.enabled
    assert grain.url == "https://github.com/salon-examples/salon-grain" and grain.installed
    assert set(grain.api.postprocessors) == {"grain"} and [c.name for c in grain.api.commands] == ["grain"]
    assert [spec.name for spec in grain.api.samplers] == ["DPM++ 3M"]
    assert "DPM++ 3M" in sampler_table(discover()).names and "DPM++ 3M" not in BUILTIN_SAMPLERS.names
    assert "DPM++ 3M" not in sampler_table(discover(["grain"])).names
    [off] = [e for e in discover(["grain"]) if e.name == "grain"]
    assert not off.enabled and off.api is None
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[extensions]\ndisabled = ["grain"]\n')
    assert main(["--config", str(config), "extensions"]) == 0
    out = capsys.readouterr().out
    assert "grain" in out and "salon-grain" in out and "0.1.0" in out and "disabled" in out


async def test_a_configured_postprocessor_runs_on_every_image(grain_installed, tmp_path, engine):
    from salon_grain import add_grain

    from tests.queues import open_queue

    settings = load_settings(None, data_dir=tmp_path / "data", extensions={"postprocess": ["grain"]})
    queue = await open_queue(settings, engine_factory=lambda: engine)
    try:
        request = GenerationRequest("a red circle", seed=4, width=64, height=64, steps=3)
        job = await queue.submit(request, "ann")
        await queue.run_until_empty()
        done = await queue.store.get(job.id)
    finally:
        await queue.close()
    from PIL import Image

    with Image.open(done.results[0]) as saved:
        pixels = np.asarray(saved.convert("RGB"))
    plain = engine.txt2img(request).images[0].image
    assert np.array_equal(pixels, np.asarray(add_grain(plain, 4)))
    info = parse_infotext(read_infotext(done.results[0]))
    assert info.params["Postprocess"] == "grain" and info.seed == 4
    # The extension's sampler, through the engine the composition root makes with the role's sampler table.
    queue = await open_queue(
        load_settings(None, data_dir=tmp_path / "own", default_model=engine.settings.default_model)
    )
    try:
        third = dataclasses.replace(request, sampler="DPM++ 3M")
        job = await queue.submit(third, "ann")
        await queue.run_until_empty()
        done = await queue.store.get(job.id)
    finally:
        await queue.close()
    assert "Sampler: DPM++ 3M, Schedule type: Karras" in read_infotext(done.results[0])
    with pytest.raises(InvalidRequest, match=r"sampler: unknown sampler 'DPM\+\+ 3M'"):
        engine.txt2img(third)  # an engine made with the built-in table only (this test's shared one)
    with pytest.raises(InvalidRequest, match="no enabled extension provides sharpen"):
        await open_queue(
            load_settings(None, data_dir=tmp_path / "x", extensions={"postprocess": ["sharpen"]})
        )


async def test_the_bot_lists_extensions_and_adds_their_commands(grain_installed, salon):
    from tests.bot.conftest import ANN, CHANNEL

    listed = await salon.fake.slash(ANN, CHANNEL, "extensions", {})
    await listed.wait_done()
    text = listed.original.content
    assert "**grain** 0.1.0 (salon-grain" in text and "✅" in text and "never from Discord" in text
    used = await salon.fake.slash(ANN, CHANNEL, "grain", {})
    await used.wait_done()
    assert "Film grain of 6 levels" in used.original.content
    assert salon.bot.schedule.scheduler.get_job("extension:grain:grain-note") is not None
    offered = await salon.fake.autocomplete(
        ANN, CHANNEL, "imagine", {"prompt": "x", "sampler": "3m"}, "sampler"
    )
    assert [choice["value"] for choice in offered] == [
        "DPM++ 3M",
        "DPM++ 3M SDE",
    ]  # the extension's, then ours
