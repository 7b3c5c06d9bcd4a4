"""`salon imagine --controlnet UNIT --control-image FILE` through the queue (its codec stores the control
image), `salon models` listing ControlNets with their hashes, --from-png asking for the control image again,
and the refusals a user sees (exit status and message, no traceback)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext

FAST = ("--steps", "2", "--size", "64x64", "--seed", "5")
UNIT = "model=tiny-cn,module=canny,weight=0.8,start=0,end=1,mode=balanced,resize=crop"


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, tiny_sd1_dir):
    from tests.tiny_models import build_tiny_controlnet, save_ldm_controlnet

    root = tmp_path_factory.mktemp("cli-controlnet")
    shutil.copytree(tiny_sd1_dir, root / "models/Stable-diffusion/tiny")
    folder = build_tiny_controlnet(tmp_path_factory.mktemp("cn") / "tiny-cn")
    save_ldm_controlnet(folder, root / "models/ControlNet/tiny-cn.safetensors")
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle((12, 16, 48, 50), outline="black", width=3)
    image.save(root / "control.png")
    path = root / "salon.toml"
    path.write_text(f'data_dir = "{root}"\ndefault_model = "tiny"\n')
    return path


def salon(config_file, *args: str) -> int:
    return main(["--config", str(config_file), *args])


def test_imagine_with_a_unit_writes_its_infotext_and_from_png_needs_the_image_again(
    config_file, tmp_path, capsys
):
    control = str(config_file.parent / "control.png")
    args = ("imagine", "a box", *FAST, "--controlnet", UNIT, "--control-image", control)
    assert salon(config_file, *args, "-o", str(tmp_path / "a")) == 0
    png = tmp_path / "a" / "00000-5.png"
    info = parse_infotext(read_infotext(png))
    assert info.params["ControlNet 0"].startswith("Module: canny, Model: tiny-cn [")
    assert "Weight: 0.8, Resize Mode: Crop and Resize" in info.params["ControlNet 0"]
    assert salon(config_file, "imagine", *FAST, "-o", str(tmp_path / "plain"), "a box") == 0
    plain = np.asarray(Image.open(tmp_path / "plain" / "00000-5.png"))
    assert not np.array_equal(np.asarray(Image.open(png)), plain)

    capsys.readouterr()
    assert salon(config_file, "imagine", "--from-png", str(png), "-o", str(tmp_path / "b")) != 0
    err = capsys.readouterr().err
    assert "control image" in err and "Traceback" not in err
    again = ("imagine", "--from-png", str(png), "--control-image", control, "-o", str(tmp_path / "c"))
    assert salon(config_file, *again) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c" / "00000-5.png")), np.asarray(Image.open(png)))


def test_models_lists_controlnets_with_their_hash(config_file, capsys):
    assert salon(config_file, "models") == 0
    out = capsys.readouterr().out
    assert "controlnet" in out and "tiny-cn" in out


@pytest.mark.parametrize(
    ("unit", "message"),
    [
        ("model=nope,module=canny", "no controlnet named 'nope'"),
        ("model=tiny-cn,weight=much", "weight='much' is not a number"),
        ("model=tiny-cn,module=depth", "needs a preprocessor model"),
    ],
)
def test_bad_units_are_refused_naming_the_field(config_file, tmp_path, capsys, unit, message):
    control = str(config_file.parent / "control.png")
    args = ("imagine", "a box", *FAST, "--controlnet", unit, "--control-image", control, "-o", str(tmp_path))
    assert salon(config_file, *args) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
