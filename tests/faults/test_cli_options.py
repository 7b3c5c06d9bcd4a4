"""Options a new user gives the command line: an extension's sampler (issue 18, item 17) and the size of an
animation on the demo model (item 19)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.tasks.samplers import BUILTIN_SAMPLERS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "salon-grain"
SAMPLER = "DPM++ 3M"  # what examples/salon-grain adds


@pytest.fixture
def grain(tmp_path_factory):
    """The example extension pip-installed into a folder on sys.path (its sampler lives in the tables built
    from it, never in the built-in table, so nothing needs putting back)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLE)],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield
    sys.path.remove(str(target))
    sys.modules.pop("salon_grain", None)
    importlib.invalidate_caches()


def _config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ndefault_model = "salon-demo-shapes"\n{extra}')
    return config


def test_imagine_accepts_a_sampler_an_enabled_extension_adds(grain, tmp_path, capsys):
    """Item 17: `salon imagine --sampler "DPM++ 3M"` with salon-grain installed runs it (the bot already did);
    with the extension disabled the sampler is unknown, as in the bot."""
    args = ["imagine", "a red circle", "--sampler", SAMPLER, "--steps", "2", "--seed", "4", "--size", "64x64"]
    disabled = _config(tmp_path, '[extensions]\ndisabled = ["grain"]\n')
    assert main(["--config", str(disabled), *args]) == 2
    assert f"sampler: unknown sampler '{SAMPLER}'" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["--config", str(_config(tmp_path)), *args, "--output", str(out)]) == 0
    info = parse_infotext(read_infotext(out / "00000-4.png"))
    assert info.sampler == SAMPLER and info.schedule_type == "Karras"
    assert SAMPLER not in BUILTIN_SAMPLERS.names  # the run left nothing behind in this process


def test_animate_uses_the_models_own_size_like_imagine(tmp_path, capsys):
    """Item 19: `salon animate` without --size on the 64-pixel demo model plans 64×64 frames, not 512×512."""
    config = _config(tmp_path)
    plot = tmp_path / "plot.png"
    assert (
        main(["--config", str(config), "animate", "a red circle", "--frames", "3", "--plot", str(plot)]) == 0
    )
    assert "3 frames (0.2 s at 15 fps), 64×64" in capsys.readouterr().out
    args = ["animate", "a red circle", "--frames", "3", "--size", "96x64", "--plot", str(plot)]
    assert main(["--config", str(config), *args]) == 0
    assert "96×64" in capsys.readouterr().out
