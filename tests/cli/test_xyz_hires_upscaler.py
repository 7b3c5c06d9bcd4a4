"""The X/Y/Z plot's Hires upscaler axis taking model upscalers by name beside the built-in ones: parsed against
the installed upscalers (spelled as installed, an unknown one refused naming the axis's option and listing
what is allowed), each cell's infotext recording its upscaler, and the queue's own check of a plot's cells."""

from __future__ import annotations

import dataclasses

import pytest

from cli.main import main
from commands.xyz import build_plot, hires_upscaler_names, parse_axis
from config import load_settings
from core.errors import InvalidRequest, ModelNotFound
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.requests import GenerationRequest, HiresFix, HiresUpscaler
from jobs.plots import PlotTask
from tests.tiny_upscalers import save_upscaler, tiny_esrgan

BASE = GenerationRequest("a circle", seed=3, width=64, height=64, steps=1, model="demo", hires=HiresFix(2.0))


def test_the_axis_takes_builtin_and_installed_upscalers_and_refuses_others():
    axis = parse_axis("x", "Hires upscaler=latent,2x-tiny,Lanczos", ["2x-Tiny", "4x-Other"])
    assert axis.values == ("Latent", "2x-Tiny", "Lanczos") and axis.labels()[1] == "Hires upscaler: 2x-Tiny"
    assert list(hires_upscaler_names(["b", "A"]).values())[-2:] == ["A", "b"]
    with pytest.raises(InvalidRequest) as refused:
        parse_axis("y", "Hires upscaler=Latent,Bicubic", ["2x-Tiny"])
    assert refused.value.option == "y"
    assert "'Bicubic' is not one of: Latent" in refused.value.message and "2x-Tiny" in refused.value.message

    plot = build_plot(BASE, axis, parse_axis("y", None), parse_axis("z", None))
    upscalers = [cell["params"]["hires"]["upscaler"] for cell in plot["cells"]]
    assert upscalers == ["Latent", "2x-Tiny", "Lanczos"]


def test_the_queue_checks_a_plots_model_upscalers(tmp_path):
    settings = load_settings(None, data_dir=tmp_path / "data")
    save_upscaler(tiny_esrgan(2), settings.models_path / "ESRGAN" / "2x-Tiny.safetensors")
    axis = parse_axis("x", "Hires upscaler=Nearest,2x-Tiny", ["2x-Tiny"])
    plot = build_plot(BASE, axis, parse_axis("y", None), parse_axis("z", None))
    checked = PlotTask().check(plot, settings)
    assert [cell["params"]["hires"]["upscaler"] for cell in checked["cells"]] == ["Nearest", "2x-Tiny"]

    stale = build_plot(
        dataclasses.replace(BASE, hires=HiresFix(2.0, upscaler="2x-Gone")),
        parse_axis("x", "Seed=1,2"),
        parse_axis("y", None),
        parse_axis("z", None),
    )
    with pytest.raises(ModelNotFound) as refused:
        PlotTask().check(stale, settings)
    assert refused.value.option == "hires_upscaler" and "2x-Gone" in refused.value.message
    assert HiresUpscaler.LATENT.value == "Latent"


def test_salon_xyz_plots_a_model_upscaler_beside_latent(tmp_path, capsys):
    data = tmp_path / "data"
    save_upscaler(tiny_esrgan(2), data / "models" / "ESRGAN" / "2x-Tiny.safetensors")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{data}"\n')
    out = tmp_path / "out"
    args = ["--config", str(config), "xyz", "a red circle", "--steps", "1", "--size", "64x64", "--hires", "2"]
    assert main([*args, "--x", "Hires upscaler=Latent,2x-tiny", "--output", str(out)]) == 0
    capsys.readouterr()
    upscalers = set()
    for path in out.glob("*.png"):
        info = parse_infotext(read_infotext(path) or "")
        if "Hires upscaler" in info.params and "X Type" not in info.params:
            upscalers.add(info.params["Hires upscaler"])
    assert upscalers == {"Latent", "2x-Tiny"}
    assert main([*args, "--x", "Hires upscaler=Latent,4x-Missing"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "x: Hires upscaler: '4x-Missing' is not one of: Latent" in err and "2x-Tiny" in err
