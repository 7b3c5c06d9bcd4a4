"""The hires fix's extra options: parsed and checked for every front end (commands.hires_options)."""

from __future__ import annotations

import pytest

from commands.generation import GenerationOptions
from commands.hires_options import hires_extras, hires_suggestions, parse_hires_resize, parse_hires_text
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


def test_one_hires_text_is_the_whole_hires_fix():
    assert parse_hires_text("2") == {"hires_scale": 2.0}
    fields = parse_hires_text("scale=1.5, denoise=0.4,upscaler=Latent (nearest),prompt=a cat, sitting,cfg=5")
    assert fields == {
        "hires_scale": 1.5,
        "hires_denoising_strength": 0.4,
        "hires_upscaler": "Latent (nearest)",
        "hires_prompt": "a cat, sitting",
        "hires_cfg_scale": 5.0,
    }
    assert parse_hires_text("denoise=0.3")["hires_scale"] == 2.0  # A1111's default "Upscale by"
    assert "hires_scale" not in parse_hires_text("resize=1024x0")
    request = hires_extras(
        GenerationOptions("a cat", **parse_hires_text("steps=4,resize=128x0,sampler=Euler")), None
    )
    assert request is not None and (request.steps, request.resize_width, request.sampler) == (4, 128, "Euler")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scale=2,sharpness=3", "'sharpness=3' is not KEY=VALUE with a key of scale, denoise"),
        ("scale=x", "scale='x' is not a number"),
        ("steps=2.5", "steps='2.5' is not a whole number"),
        ("scale=2,scale=3", "scale is given twice"),
        ("big", "'big' is not KEY=VALUE"),
    ],
)
def test_a_bad_hires_item_is_named(text, message):
    with pytest.raises(InvalidRequest, match=message) as refused:
        parse_hires_text(text)
    assert refused.value.option == "hires"


def test_suggestions_offer_the_keys_not_given():
    assert hires_suggestions("")[:2] == ["scale=", "denoise="]
    assert hires_suggestions("scale=2,de") == ["scale=2,de", "scale=2,denoise="]
    assert "scale=2,prompt=" in hires_suggestions("scale=2") and "scale=2,scale=" not in hires_suggestions(
        "scale=2"
    )
    assert hires_suggestions("prompt=a cat, sit") == ["prompt=a cat, sit"]
