"""`salon imagine`'s A1111 extras: --style from styles.csv, --from-png (options typed win over the PNG's
infotext, defaults do not), --vae, --seed-resize-from and --eta, and their refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext

STYLES = 'name,prompt,negative_prompt\ncinematic,"{prompt}, film grain",cartoon\nsharp,sharp focus,\n'


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, tiny_sd1_dir):
    root = tmp_path_factory.mktemp("cli-options")
    shutil.copytree(tiny_sd1_dir, root / "models/Stable-diffusion/tiny")
    (root / "styles.csv").write_text(STYLES, encoding="utf-8")
    path = root / "salon.toml"
    path.write_text(f'data_dir = "{root}"\ndefault_model = "tiny"\n')
    return path


def salon(config_file, *args: str) -> int:
    return main(["--config", str(config_file), *args])


FAST = ("--steps", "2", "--size", "64x64", "--seed", "5")


def test_styles_are_applied_in_order_as_the_bot_applies_them(config_file, tmp_path):
    args = ("imagine", "a cat", *FAST, "--style", "cinematic", "--style", "Sharp", "-o", str(tmp_path))
    assert salon(config_file, *args) == 0
    info = parse_infotext(read_infotext(tmp_path / "00000-5.png"))
    assert (info.prompt, info.negative_prompt) == ("a cat, film grain, sharp focus", "cartoon")


def test_from_png_repeats_the_image_and_typed_options_override_it(config_file, tmp_path):
    first = (
        "imagine", "a red circle", "--negative", "blurry", "--sampler", "DDIM", "--eta", "0.5", "--cfg", "6",
        "--steps", "3", "--size", "96x96", "--seed", "9", "--seed-resize-from", "64x64",
    )  # fmt: skip
    assert salon(config_file, *first, "-o", str(tmp_path / "a")) == 0
    png = tmp_path / "a" / "00000-9.png"
    original = parse_infotext(read_infotext(png))
    assert original.params["Seed resize from"] == "64x64" and original.params["Eta DDIM"] == "0.5"
    assert salon(config_file, "imagine", "--from-png", str(png), "-o", str(tmp_path / "b")) == 0
    again = tmp_path / "b" / "00000-9.png"
    assert read_infotext(again) == read_infotext(png)
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(png)))
    assert (
        salon(config_file, "imagine", "--from-png", str(png), "--steps", "2", "-o", str(tmp_path / "c")) == 0
    )
    changed = parse_infotext(read_infotext(tmp_path / "c" / "00000-9.png"))
    assert changed.steps == 2
    assert {k: v for k, v in changed.params.items() if k != "Steps"} == {
        k: v for k, v in original.params.items() if k != "Steps"
    }
    assert (changed.prompt, changed.negative_prompt) == ("a red circle", "blurry")
    args = ("imagine", "a blue square", "--from-png", str(png), "--size", "64x64", "-o", str(tmp_path / "d"))
    assert salon(config_file, *args) == 0
    typed = parse_infotext(read_infotext(tmp_path / "d" / "00000-9.png"))
    assert (typed.prompt, typed.size, typed.sampler, typed.negative_prompt) == (
        "a blue square",
        (64, 64),
        "DDIM",
        "blurry",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["imagine", "a cat", "--style", "nope"], "style: no style named 'nope'; known: cinematic, sharp"),
        (["imagine", "--steps", "2"], "prompt: give a prompt, or --from-png FILE"),
        (["imagine", "a cat", "--vae", "nope"], "vae: no vae named 'nope': none installed in"),
        (["imagine", "a cat", "--seed-resize-from", "big"], "seed_resize_from: 'big' is not WIDTHxHEIGHT"),
        (["imagine", "a cat", "--eta", "0.5", "--size", "64x64"], "eta: DPM++ 2M takes no eta here"),
    ],
)
def test_bad_options_exit_2_naming_the_option(config_file, capsys, args, message):
    assert salon(config_file, *args) == 2
    assert message in capsys.readouterr().err


def test_a_png_without_infotext_is_refused(config_file, tmp_path, capsys):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (64, 64), "white").save(plain)
    assert salon(config_file, "imagine", "--from-png", str(plain)) == 2
    err = capsys.readouterr().err
    assert "from_png:" in err and "carries no generation parameters" in err
