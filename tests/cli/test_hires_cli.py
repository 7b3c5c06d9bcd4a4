"""`salon imagine`'s hires extras (--hires-resize, --hires-prompt, --hires-negative, --hires-sampler,
--hires-schedule, --hires-cfg) and the new samplers and schedule types, written into the infotext and
repeated from the PNG."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from tests.cli.test_generate_options import FAST, config_file, salon  # noqa: F401 (the fixture)


def test_hires_extras_and_a_k_diffusion_pair_round_trip(config_file, tmp_path):  # noqa: F811
    args = (
        "imagine", "a red circle", *FAST, "--sampler", "DPM++ 2S a", "--schedule", "Align Your Steps",
        "--hires-resize", "96x0", "--hires-steps", "2", "--hires-prompt", "a blue circle",
        "--hires-sampler", "Restart", "--hires-schedule", "KL Optimal", "--hires-cfg", "4",
    )  # fmt: skip
    assert salon(config_file, *args, "-o", str(tmp_path / "a")) == 0
    png = tmp_path / "a" / "00000-5.png"
    info = parse_infotext(read_infotext(png))
    assert (info.sampler, info.schedule_type) == ("DPM++ 2S a", "Align Your Steps")
    assert Image.open(png).size == (96, 96)
    assert info.params["Hires resize"] == "96x0" and info.params["Hires prompt"] == "a blue circle"
    assert info.params["Hires sampler"] == "Restart" and info.params["Hires schedule type"] == "KL Optimal"
    assert info.params["Hires CFG Scale"] == "4"
    assert salon(config_file, "imagine", "--from-png", str(png), "-o", str(tmp_path / "b")) == 0
    again = tmp_path / "b" / "00000-5.png"
    assert read_infotext(again) == read_infotext(png)
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(png)))


def test_a_hires_extra_without_the_hires_fix_is_refused(config_file, tmp_path, capsys):  # noqa: F811
    assert salon(config_file, "imagine", "a cat", *FAST, "--hires-cfg", "4", "-o", str(tmp_path)) != 0
    assert "hires_cfg_scale: applies to the hires pass" in capsys.readouterr().err
