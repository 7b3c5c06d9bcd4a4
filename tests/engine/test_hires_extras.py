"""The hires fix's extras (issue 23 item 3): the second pass's own prompt, negative prompt, sampler, schedule
and CFG scale, "resize width/height to", and A1111's infotext keys for them, written and read back."""

from __future__ import annotations

import numpy as np
import pytest

from commands.followups import from_infotext
from core.errors import InvalidRequest
from engine.hires_infotext import hires_from_infotext, hires_infotext
from engine.infotext import format_infotext, parse_infotext
from engine.requests import HiresFix, hires_plan
from engine.tasks.samplers import BUILTIN_SAMPLERS
from engine.validation import check_request
from tests.engine.helpers import pixels, request


@pytest.mark.parametrize(
    ("size", "hires", "expected"),
    [
        ((512, 768), HiresFix(1.5), ((768, 1152), (768, 1152))),
        ((512, 768), HiresFix(resize_width=1024), ((1024, 1536), (1024, 1536))),
        ((512, 768), HiresFix(resize_height=1000), ((664, 1000), (664, 1000))),
        # Both sides: upscaled to cover them, then the centre cropped (A1111's truncation).
        ((512, 768), HiresFix(resize_width=1024, resize_height=1024), ((1024, 1536), (1024, 1024))),
        ((768, 512), HiresFix(resize_width=1024, resize_height=1024), ((1536, 1024), (1024, 1024))),
    ],
)
def test_the_hires_sizes_are_a1111s(size, hires, expected):
    assert hires_plan(*size, hires) == expected


FULL = HiresFix(  # the scale is A1111's default: "Hires resize" replaces it in the infotext
    2.0,
    4,
    0.55,
    prompt="a cat, detailed fur, [red:blue:0.5]",
    negative_prompt="blurry, lowres",
    sampler="DPM++ 2S a",
    schedule="Align Your Steps",
    cfg_scale=4.5,
    resize_width=1024,
    resize_height=0,
)


def test_the_infotext_keys_are_written_as_a1111_writes_them_and_read_back():
    p = request("a cat", negative_prompt="ugly", hires=FULL)
    keys = hires_infotext(p, ("Euler", "Karras"), ("DPM++ 2S a", "Align Your Steps"))
    text = format_infotext(p.prompt, p.negative_prompt, {"Steps": "3", "Seed": "1", **keys})
    assert 'Hires prompt: "a cat, detailed fur, [red:blue:0.5]"' in text
    assert 'Hires negative prompt: "blurry, lowres"' in text
    assert "Hires sampler: DPM++ 2S a" in text and "Hires schedule type: Align Your Steps" in text
    assert "Hires CFG Scale: 4.5" in text and "Hires resize: 1024x0" in text
    assert "Hires upscale:" not in text
    info = parse_infotext(text)
    assert hires_from_infotext(info.params, info.denoising_strength, []) == FULL
    assert from_infotext(text, set())[0].hires == FULL


def test_keys_equal_to_the_first_pass_are_left_out():
    p = request("a cat", cfg_scale=7.0, hires=HiresFix(2.0, prompt="a cat", sampler="Euler", cfg_scale=7.0))
    keys = {k: v for k, v in hires_infotext(p, ("Euler", "Uniform"), ("Euler", "Uniform")).items() if v}
    assert keys == {"Denoising strength": "0.7", "Hires upscale": "2", "Hires upscaler": "Latent"}


@pytest.mark.parametrize(
    ("hires", "message"),
    [
        (HiresFix(sampler="Euler b"), "hires_sampler: unknown sampler 'Euler b'"),
        (
            HiresFix(sampler="DDIM", schedule="Karras"),
            "hires_schedule: schedule type 'Karras' is not available",
        ),
        (HiresFix(cfg_scale=0.5), "hires_cfg_scale: 0.5 is out of range"),
        (HiresFix(resize_width=100), "hires_resize_width: 100 is not a multiple of 8"),
        (HiresFix(resize_width=4096, resize_height=4096), "hires_resize_width: 4096 is out of range"),
        (HiresFix(prompt="x" * 100_000), "hires_prompt: 100000 characters"),
    ],
)
def test_bad_hires_extras_are_refused_naming_the_option(settings, hires, message):
    with pytest.raises(InvalidRequest, match=message):
        check_request(request(hires=hires), settings.limits, BUILTIN_SAMPLERS)


def test_a_hires_pass_with_its_own_prompt_sampler_cfg_and_size(engine):
    base = HiresFix(2.0, 2, 0.6)
    plain = engine.txt2img(request(hires=base)).images[0]
    own = HiresFix(
        2.0,
        2,
        0.6,
        prompt="a blue star",
        negative_prompt="red",
        sampler="Euler a",
        schedule="Karras",
        cfg_scale=3.0,
        resize_width=128,
        resize_height=96,
    )
    generated = engine.txt2img(request(hires=own)).images[0]
    assert generated.image.size == (128, 96)  # 64x64 upscaled to 128x128, the centre cropped to 128x96
    info = parse_infotext(generated.infotext)
    assert info.params["Hires sampler"] == "Euler a" and info.params["Hires schedule type"] == "Karras"
    assert info.params["Hires prompt"] == "a blue star" and info.params["Hires CFG Scale"] == "3"
    assert info.params["Hires resize"] == "128x96"
    assert hires_from_infotext(info.params, info.denoising_strength, []) == own
    again = engine.txt2img(from_infotext(generated.infotext, set())[0]).images[0]
    assert np.array_equal(pixels(again.image), pixels(generated.image))
    only_prompt = engine.txt2img(request(hires=HiresFix(2.0, 2, 0.6, prompt="a blue star"))).images[0]
    assert not np.array_equal(pixels(only_prompt.image), pixels(plain.image))
