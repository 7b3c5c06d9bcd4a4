"""X/Y/Z plot parsing (no model): A1111's range syntax, axes, labels, refusals; prompt matrix and prompts from
file as A1111's scripts read them."""

from __future__ import annotations

import pytest

from commands.prompt_lists import (
    matrix_prompts,
    parse_prompt_file,
    prompt_matrix_plot,
    prompts_from_file_plot,
)
from commands.xyz import axis_order, build_plot, parse_axis
from core.errors import InvalidRequest
from engine.requests import GenerationRequest, HiresFix

# The values A1111's scripts/xyz_grid.py (AUTOMATIC1111/stable-diffusion-webui at
# 02d5a43c4b3302505dc58d0c8e2f3a40e3e766b8) makes of each typed text: range(start, end + 1, step) for
# integer ranges, int(x) of numpy's linspace for [count], numpy's arange(start, end + step, step) for floats.
RANGES = [
    ("Seed=1-5", (1, 2, 3, 4, 5)),
    ("Steps=1-10 (+2)", (1, 3, 5, 7, 9)),
    ("Steps=10-20 [5]", (10, 12, 15, 17, 20)),
    ("Steps=10-1 (-3)", (10, 7, 4)),  # range(10, 1 + 1, -3): A1111 adds 1 to the end whatever the sign
    ("Seed=5, 1-3, 8", (5, 1, 2, 3, 8)),
    ("Seed=-3--1", (-3, -2, -1)),
    ("CFG Scale=0.25-1 (+0.25)", (0.25, 0.5, 0.75, 1.0)),
    ("CFG Scale=1-2 [3]", (1.0, 1.5, 2.0)),
    ("CFG Scale=0.1-0.3 (+0.1)", (0.1, 0.2, 0.3, 0.4)),  # arange's end + step overshoots, as in A1111
    ("CFG Scale=7, 7.5", (7.0, 7.5)),
    ("Sampler=Euler a, DPM++ 2M", ("Euler a", "DPM++ 2M")),
    ('Prompt S/R=red, "blue, green"', ("red", "blue, green")),
]


@pytest.mark.parametrize(("typed", "values"), RANGES)
def test_values_are_a1111s(typed, values):
    assert parse_axis("x", typed).values == values


def test_labels_are_a1111s():
    assert parse_axis("x", "Seed=1-2").labels() == ["Seed: 1", "Seed: 2"]
    assert parse_axis("x", "Steps=4").labels() == ["Steps: 4"]
    assert parse_axis("x", "cfg=7").labels() == ["CFG Scale: 7.0"]
    assert parse_axis("x", "Sampler=Euler").labels() == ["Euler"]
    assert parse_axis("x", "Prompt S/R=cat,dog").labels() == ["cat", "dog"]


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("Colour=1,2", "'Colour' is not an axis; the axes are: Seed"),
        ("Steps=a,b", "Steps: 'a' is not a whole number"),
        ("Steps=1-10 (2)", "Steps: '1-10 (2)' is not a whole number"),  # A1111 needs the step's sign
        ("CFG Scale=x", "CFG Scale: 'x' is not a number"),
        ("Steps", "write AXIS=VALUES"),
        ("Steps=", "Steps: no values given"),
        ("Hires upscaler=Bicubic", "Hires upscaler: 'Bicubic' is not one of: Latent"),
    ],
)
def test_bad_axes_are_refused_naming_the_option_and_axis(typed, says):
    with pytest.raises(InvalidRequest) as refused:
        parse_axis("y", typed)
    assert refused.value.option == "y" and says in refused.value.message


BASE = GenerationRequest("a red circle", seed=7, width=64, height=64, steps=2, model="demo")


def test_plot_cells_order_and_grids():
    x, y, z = (
        parse_axis("x", "Seed=1-3"),
        parse_axis("y", "Steps=1,2"),
        parse_axis("z", "Sampler=Euler,Euler a"),
    )
    plot = build_plot(BASE, x, y, z)
    assert len(plot["cells"]) == 12 and len(plot["grids"]) == 2
    cell = plot["cells"][1 + 1 * 3 + 1 * 6]["params"]  # ix=1, iy=1, iz=1
    assert (cell["seed"], cell["steps"], cell["sampler"]) == (2, 2, "Euler a")
    assert plot["grids"][1]["title"] == "Euler a" and plot["grids"][0]["y_labels"] == ["Steps: 1", "Steps: 2"]
    assert plot["grids"][0]["params"]["Z Type"] == "Sampler" and "Z Type" not in plot["grids"][1]["params"]
    assert plot["order"] == list(range(12))  # Z outermost, then Y, then X (A1111's default)


def test_a_checkpoint_axis_runs_outermost():
    x, y = parse_axis("x", "Seed=1,2"), parse_axis("y", "Checkpoint name=a,b")
    assert axis_order([x, y, parse_axis("z", None)]) == (1, 2, 0)
    plot = build_plot(BASE, x, y, parse_axis("z", None))
    assert plot["order"] == [0, 1, 2, 3]
    assert [plot["cells"][i]["params"]["model"] for i in range(4)] == ["a", "a", "b", "b"]
    x, y = parse_axis("x", "Checkpoint name=a,b"), parse_axis("y", "Seed=1,2")
    assert build_plot(BASE, x, y, parse_axis("z", None))["order"] == [0, 2, 1, 3]


def test_random_seeds_are_fixed_and_recorded():
    plot = build_plot(BASE, parse_axis("x", "Seed=-1,5"), parse_axis("y", None), parse_axis("z", None))
    fixed = plot["grids"][0]["params"]["Fixed X Values"].split(", ")
    assert fixed[0] != "-1" and fixed[1] == "5" and plot["cells"][0]["params"]["seed"] == int(fixed[0])


def test_plot_refusals():
    nothing = parse_axis("z", None)
    with pytest.raises(InvalidRequest, match="at most 100"):
        build_plot(BASE, parse_axis("x", "Seed=1-11"), parse_axis("y", "Steps=1-10"), nothing)
    with pytest.raises(InvalidRequest, match="Prompt S/R: 'dog'"):
        build_plot(BASE, parse_axis("x", "Prompt S/R=dog,cat"), nothing, nothing)
    with pytest.raises(InvalidRequest, match="Hires steps needs the hires fix"):
        build_plot(BASE, parse_axis("x", "Hires steps=1,2"), nothing, nothing)
    with pytest.raises(InvalidRequest, match="Seed is on two axes"):
        build_plot(BASE, parse_axis("x", "Seed=1,2"), parse_axis("y", "Seed=3"), nothing)
    with pytest.raises(InvalidRequest, match="give at least one axis"):
        build_plot(BASE, parse_axis("x", None), nothing, nothing)


def test_prompt_sr_and_hires_axes_change_the_request():
    hires = GenerationRequest("a red circle", seed=1, hires=HiresFix(scale=1.5), model="demo")
    plot = build_plot(
        hires,
        parse_axis("x", "Prompt S/R=red,blue"),
        parse_axis("y", "Denoising=0.3,0.6"),
        parse_axis("z", None),
    )
    cells = [cell["params"] for cell in plot["cells"]]
    assert [c["prompt"] for c in cells] == ["a red circle", "a blue circle"] * 2
    assert [c["hires"]["denoising_strength"] for c in cells] == [0.3, 0.3, 0.6, 0.6]


def test_prompt_matrix_is_a1111s():
    assert matrix_prompts("a cat|in a hat|on a mat") == [
        "a cat",
        "a cat, in a hat",
        "a cat, on a mat",
        "a cat, in a hat, on a mat",
    ]
    plot = prompt_matrix_plot(GenerationRequest("a cat|in a hat|on a mat|red", seed=3, model="demo"))
    assert len(plot["cells"]) == 8 and {c["params"]["seed"] for c in plot["cells"]} == {3}
    grid = plot["grids"][0]
    assert grid["columns"] == 4 and len(grid["y_labels"]) == 2  # 1 << (3 // 2) rows, as A1111
    assert grid["x_labels"][3] == "in a hat\non a mat" and grid["y_labels"] == ["—", "red"]
    with pytest.raises(InvalidRequest, match="parts separated by \\|"):
        prompt_matrix_plot(GenerationRequest("a cat", model="demo"))


def test_prompts_from_file_lines_as_a1111_reads_them():
    lines = parse_prompt_file(
        "a red circle\n\n  --prompt a blue square --negative_prompt green --steps 10 --seed 5\n"
        '--sampler_name "Euler a" --cfg_scale 4.5 --width 64 --height 64 --tiling true --n_iter 2\n'
    )
    assert lines[0] == {"prompt": "a red circle"}
    assert lines[1] == {"prompt": "a blue square", "negative_prompt": "green", "steps": 10, "seed": 5}
    assert lines[2] == {
        "sampler": "Euler a",
        "cfg_scale": 4.5,
        "width": 64,
        "height": 64,
        "tiling": True,
        "batch_count": 2,
    }
    with pytest.raises(InvalidRequest) as refused:
        parse_prompt_file("ok\n--steps ten")
    assert refused.value.option == "line 2" and "'ten' is not a number" in refused.value.message
    with pytest.raises(InvalidRequest, match="--colour is not an option"):
        parse_prompt_file("--colour red")
    plot = prompts_from_file_plot(
        GenerationRequest("", seed=10, model="demo"),
        "one\ntwo\n--seed 1\n",
        iterate_seed=True,
        samplers=("Euler a",),
    )
    assert [c["params"]["seed"] for c in plot["cells"]] == [10, 11, 1] and plot["grids"] == []
