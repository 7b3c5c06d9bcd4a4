"""Every A1111 sampler with every Schedule type it accepts builds a diffusers scheduler and runs 2 steps."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.tasks.samplers import BUILTIN_SAMPLERS, SAMPLERS, SamplerSpec, SamplerTable
from tests.engine.helpers import pixels, request

ALL_PAIRS = [(name, schedule) for name, spec in SAMPLERS.items() for schedule in spec.schedules]
NEW_SAMPLERS = {"DPM fast", "DPM adaptive", "DPM++ 2S a", "Restart"}
SPEC_SAMPLERS = {
    "DPM++ 2M",
    "DPM++ 2M SDE",
    "DPM++ SDE",
    "DPM2",
    "DPM2 a",
    "Euler",
    "Euler a",
    "Heun",
    "LMS",
    "DDIM",
    "PLMS",
    "UniPC",
    "LCM",
}


def test_every_sampler_of_the_spec_is_offered():
    assert SPEC_SAMPLERS | NEW_SAMPLERS <= set(SAMPLERS)


def test_every_pairing_a1111_allows_is_accepted():
    """A k-diffusion sampler takes every Schedule type (Euler a with Karras included); the timestep samplers
    (DDIM, PLMS, UniPC, LCM) keep the ones their diffusers class takes."""
    schedules = {"Polyexponential", "KL Optimal", "Align Your Steps", "Normal", "DDIM", "Karras", "Beta"}
    for name, spec in SAMPLERS.items():
        if spec.k_function:
            assert schedules <= set(spec.schedules), name
            for schedule in spec.schedules:
                assert BUILTIN_SAMPLERS.resolve(name, schedule)[0] is spec
    assert SAMPLERS["Euler a"].runs_k_loop("Karras") and not SAMPLERS["Euler a"].runs_k_loop("Uniform")
    assert SAMPLERS["Euler"].runs_k_loop("Align Your Steps") and not SAMPLERS["Euler"].runs_k_loop("Karras")
    assert all(SAMPLERS[name].runs_k_loop("Automatic") for name in NEW_SAMPLERS)
    assert "KL Optimal" not in SAMPLERS["UniPC"].schedules


@pytest.mark.parametrize("sampler", sorted(NEW_SAMPLERS))
def test_a_new_sampler_is_deterministic_by_seed_and_differs_by_seed(engine, sampler):
    a = engine.txt2img(request(sampler=sampler, steps=4, seed=5)).images[0].image
    b = engine.txt2img(request(sampler=sampler, steps=4, seed=5)).images[0].image
    c = engine.txt2img(request(sampler=sampler, steps=4, seed=6)).images[0].image
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


@pytest.mark.parametrize(("sampler", "schedule"), ALL_PAIRS)  # every pair A1111 offers
def test_sampler_and_schedule_run_two_steps(engine, sampler, schedule):
    generated = engine.txt2img(request(sampler=sampler, schedule=schedule, steps=2)).images[0]
    values = pixels(generated.image)
    assert values.std() > 1  # a picture, not a flat or NaN-black image
    info = parse_infotext(generated.infotext)
    assert info.sampler == sampler
    assert info.schedule_type == BUILTIN_SAMPLERS.resolve(sampler, schedule)[1]


@pytest.mark.parametrize("sampler", sorted(s for s in SAMPLERS if "SDE" in s or s.endswith(" a")))
def test_stochastic_samplers_are_deterministic_by_seed(engine, sampler):
    a = engine.txt2img(request(sampler=sampler, steps=3)).images[0].image
    b = engine.txt2img(request(sampler=sampler, steps=3)).images[0].image
    assert np.array_equal(pixels(a), pixels(b))


@pytest.mark.parametrize(
    ("sampler", "schedule", "expected"),
    [
        ("DPM++ 2M", "Automatic", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE", "Automatic", ("DPM++ 2M SDE", "Exponential")),
        ("DPM2 a", "Automatic", ("DPM2 a", "Karras")),
        ("Euler", "Automatic", ("Euler", "Uniform")),
        ("DPM++ 2M Karras", "Automatic", ("DPM++ 2M", "Karras")),
        ("LMS Karras", "Automatic", ("LMS", "Karras")),
        ("dpm++ 2m", "karras", ("DPM++ 2M", "Karras")),
        ("DDIM", "SGM Uniform", ("DDIM", "SGM Uniform")),
    ],
)
def test_automatic_is_the_a1111_default_and_legacy_names_split(sampler, schedule, expected):
    spec, chosen = BUILTIN_SAMPLERS.resolve(sampler, schedule)
    assert (spec.name, chosen) == expected


def test_unknown_sampler_and_impossible_schedule_are_refused():
    with pytest.raises(
        InvalidRequest, match="sampler: unknown sampler 'Euler b'; choose one of: DPM\\+\\+ 2M"
    ):
        BUILTIN_SAMPLERS.resolve("Euler b")
    with pytest.raises(InvalidRequest, match="schedule: schedule type 'Karras' is not available for DDIM"):
        BUILTIN_SAMPLERS.resolve("DDIM", "Karras")
    with pytest.raises(InvalidRequest, match="schedule: schedule type 'Fast' is not available"):
        BUILTIN_SAMPLERS.resolve("Euler", "Fast")


def test_sampler_tables_are_values_that_do_not_leak_into_each_other():
    """Two roles' (or two tests') tables: an extension's sampler is in the table it was added to only, never
    in another table or the built-in one, which nothing can change."""
    third = SamplerSpec("DPM++ 3M", "DPMSolverMultistepScheduler", {"solver_order": 3}, "Karras")
    other = SamplerSpec("Euler CFG++", "EulerDiscreteScheduler")
    worker = BUILTIN_SAMPLERS.with_samplers([third])
    bot = BUILTIN_SAMPLERS.with_samplers([other])
    assert worker.resolve("dpm++ 3m") == (third, "Karras") and bot.resolve("Euler CFG++")[0] is other
    assert "DPM++ 3M" not in bot.names and "Euler CFG++" not in worker.names
    for table in (BUILTIN_SAMPLERS, SamplerTable()):
        assert table.names == tuple(SAMPLERS)
        with pytest.raises(InvalidRequest, match=r"sampler: unknown sampler 'DPM\+\+ 3M'"):
            table.resolve("DPM++ 3M")
    with pytest.raises(TypeError):
        SAMPLERS["DPM++ 3M"] = third  # type: ignore[index]
    with pytest.raises(TypeError):
        worker.specs["Euler CFG++"] = other  # type: ignore[index]
    assert worker.with_samplers([third]) == worker  # the same sampler again (one extension seen twice)
    with pytest.raises(ValueError, match="a different sampler named 'euler' exists already"):
        BUILTIN_SAMPLERS.with_samplers([SamplerSpec("euler", "HeunDiscreteScheduler")])


@pytest.mark.parametrize(("sampler", "schedule"), [("Restart", "Karras"), ("Euler a", "KL Optimal")])
def test_a_k_diffusion_loop_inpaints_keeping_the_unmasked_area(engine, sampler, schedule):
    from PIL import Image, ImageDraw

    from engine.requests import InpaintRequest
    from engine.tasks.resize import blur_mask

    picture = Image.new("RGB", (64, 64), (200, 40, 40))
    ImageDraw.Draw(picture).ellipse((16, 16, 48, 48), fill=(40, 40, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    params = request("a green square", sampler=sampler, schedule=schedule, steps=4)
    result = engine.inpaint(InpaintRequest(params, picture, mask, denoising_strength=0.9, mask_blur=4))
    out, original = pixels(result.images[0].image), pixels(picture)
    untouched = np.asarray(blur_mask(mask, 4)) == 0
    assert np.array_equal(out[untouched], original[untouched])
    assert np.abs(out[~untouched] - original[~untouched]).mean() > 5
