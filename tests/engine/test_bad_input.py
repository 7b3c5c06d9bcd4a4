"""Bad input is refused before any work, with a typed error naming the option and what is allowed: what a
user typed by the options' parsers (commands/options.py), the limits by the queue's one check
(`check_request`, what `JobQueue.submit` runs), and what only the engine can know (a missing model) by it."""

from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image

from commands.options import generation_request, inpaint_request, load_input_image
from core.errors import InvalidImage, InvalidRequest, ModelNotFound
from engine.requests import HiresFix
from engine.tasks.samplers import BUILTIN_SAMPLERS
from engine.validation import check_request, parse_size
from tests.engine.helpers import request


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"width": 100}, r"width: 100 is not a multiple of 8; use e.g. 96"),
        ({"height": 30}, r"height: 30 is not a multiple of 8"),
        ({"height": 32}, r"height: 32 is out of range; allowed 64 to 2048"),
        ({"steps": 0}, r"steps: 0 is out of range; allowed 1 to 150"),
        ({"steps": -3}, r"steps: -3 is out of range"),
        ({"steps": 10**6}, r"steps: 1000000 is out of range"),
        ({"cfg_scale": 0.5}, r"cfg_scale: 0.5 is out of range; allowed 1 to 30"),
        ({"batch_size": 9}, r"batch_size: 9 is out of range; allowed 1 to 8"),
        ({"width": 65536}, r"width: 65536 is out of range; allowed 64 to 2048"),
        ({"width": 2048, "height": 2048, "hires": HiresFix(2.0)}, r"hires_scale: .* exceeds the maximum"),
        ({"seed": 2**40}, r"seed: .* out of range"),
        ({"variation_strength": 1.5}, r"variation_strength: 1.5 is out of range; allowed 0 to 1"),
        ({"sampler": "Euler b"}, r"sampler: unknown sampler 'Euler b'; choose one of"),
        (
            {"sampler": "DDIM", "schedule": "Karras"},
            r"schedule: schedule type 'Karras' is not available for DDIM",
        ),
        ({"prompt": "x" * 5000}, r"prompt: 5000 characters; at most 4000 allowed"),
    ],
)
def test_generation_options_out_of_range(settings, overrides, pattern):
    with pytest.raises(InvalidRequest, match=pattern):
        check_request(request(**overrides), settings.limits, BUILTIN_SAMPLERS)


def test_huge_pixel_count_is_refused_at_the_queues_check(settings):
    with pytest.raises(InvalidRequest, match=r"width: 16384 is out of range"):
        check_request(generation_request("a cat", size="16384x16384"), settings.limits, BUILTIN_SAMPLERS)
    with pytest.raises(InvalidRequest, match=r"size: 'big' is not WIDTHxHEIGHT"):
        parse_size("big")


def test_unknown_model_names_what_is_installed(engine):
    with pytest.raises(ModelNotFound, match=r"model: no checkpoint named 'sd_xl_base'; installed: tiny"):
        engine.txt2img(request(model="sd_xl_base"))


def test_prompt_line_that_would_break_the_infotext(settings):
    with pytest.raises(InvalidRequest, match="prompt"):
        generation_request("a cat\nNegative prompt: trick")


def test_input_files_are_checked_from_their_header(settings, tmp_path):
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    ihdr = struct.pack(">IIBBBBB", 65535, 65535, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    for source, pattern in [
        (truncated, "image: "),
        (text, "image: .*not a PNG, JPEG, WebP, GIF or BMP image"),
        (bomb, r"image: is 65535x65535 = 4,294,836,225 pixels, more than the limit"),
        (b"", "image: .*empty"),
    ]:
        with pytest.raises(InvalidImage, match=pattern):
            load_input_image(source, settings.limits)


def test_mask_must_match_the_image(settings):
    params = generation_request("a cat", size="64x64")
    mismatched = inpaint_request(params, Image.new("RGB", (64, 64)), Image.new("L", (32, 32)))
    with pytest.raises(InvalidRequest, match="mask: mask is 32x32 but the image is 64x64; they must match"):
        check_request(mismatched, settings.limits, BUILTIN_SAMPLERS)
    with pytest.raises(InvalidRequest, match="masked_content: 'blur' is not one of: fill, original"):
        inpaint_request(
            params,
            Image.new("RGB", (64, 64)),
            Image.new("L", (64, 64)),
            masked_content="blur",
        )
