"""The hires fix's extra options: parsed and checked for every front end (commands.hires_options)."""

from __future__ import annotations

import pytest

from commands.generation import GenerationOptions
from commands.hires_options import hires_extras, parse_hires_resize
from core.errors import InvalidRequest
from engine.requests import HiresFix, HiresUpscaler


def test_resize_is_width_x_height_with_a_following_side():
    assert parse_hires_resize("1024x768") == (1024, 768)
    assert parse_hires_resize(" 1024 x 0 ") == (1024, 0)
    for bad in ("0x0", "big", "1024", "-8x8"):
        with pytest.raises(InvalidRequest, match="hires_resize: .* is not WIDTHxHEIGHT"):
            parse_hires_resize(bad)


def test_extras_are_added_to_the_hires_fix_and_use_same_means_the_first_pass():
    options = GenerationOptions(
        "a cat",
        hires_prompt="a cat, fur",
        hires_sampler="Use same sampler",
        hires_schedule="Karras",
        hires_cfg_scale=5.0,
        hires_resize="96x0",
    )
    hires = hires_extras(options, HiresFix(1.5, 2))
    assert hires == HiresFix(
        1.5, 2, prompt="a cat, fur", sampler="", schedule="Karras", cfg_scale=5.0, resize_width=96
    )


def test_resize_alone_turns_the_hires_fix_on_and_extras_alone_are_refused():
    options = GenerationOptions("a cat", hires_resize="0x128", hires_upscaler="Lanczos", hires_steps=3)
    assert hires_extras(options, None) == HiresFix(
        2.0, 3, 0.7, HiresUpscaler.LANCZOS, resize_width=0, resize_height=128
    )
    assert hires_extras(GenerationOptions("a cat"), None) is None
    with pytest.raises(InvalidRequest, match="hires_cfg_scale: applies to the hires pass"):
        hires_extras(GenerationOptions("a cat", hires_cfg_scale=3.0), None)
