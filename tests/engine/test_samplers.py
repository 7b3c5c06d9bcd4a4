"""Every A1111 sampler with every Schedule type it accepts builds a diffusers scheduler and runs 2 steps."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.tasks.samplers import BUILTIN_SAMPLERS, SAMPLERS, SamplerSpec, SamplerTable
from tests.engine.helpers import pixels, request

PAIRS = [(name, schedule) for name, spec in SAMPLERS.items() for schedule in spec.schedules]
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
    assert SPEC_SAMPLERS <= set(SAMPLERS)


@pytest.mark.parametrize(("sampler", "schedule"), PAIRS)
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
