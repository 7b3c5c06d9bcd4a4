"""Requests made from earlier results: reroll, variation, upscale, edit and run-again from infotext."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from catalog.records import ImageRecord
from commands import followups
from config import Limits
from core.errors import InvalidRequest
from engine.infotext import format_infotext
from engine.requests import GenerationRequest, HiresFix, Img2ImgRequest
from engine.tasks.samplers import BUILTIN_SAMPLERS
from engine.validation import check_request


def _image(tmp_path, seed=1234, size=(64, 64)) -> ImageRecord:
    path = tmp_path / "image.png"
    Image.new("RGB", size, (200, 10, 10)).save(path)
    fields = dict.fromkeys(f.name for f in dataclasses.fields(ImageRecord))
    fields.update(
        id=7,
        guild="g",
        author="u",
        created=0.0,
        path=str(path),
        filename="image.png",
        sha256="",
        width=size[0],
        height=size[1],
        seed=seed,
        prompt="",
        negative_prompt="",
        params="",
        infotext="",
        networks=(),
        nsfw=False,
        rank_count=0,
    )
    return ImageRecord(**fields)


REQUEST = GenerationRequest("a red circle", seed=55, width=64, height=64, batch_size=4, steps=10)


def test_reroll_keeps_settings_with_a_new_seed():
    again = followups.reroll(REQUEST)
    assert again.seed == -1 and dataclasses.replace(again, seed=55) == REQUEST


def test_variation_is_one_image_from_that_image_seed(tmp_path):
    varied = followups.variation(REQUEST, _image(tmp_path, seed=58))
    assert (varied.seed, varied.variation_seed, varied.variation_strength) == (
        58,
        -1,
        followups.VARIATION_STRENGTH,
    )
    assert (varied.batch_size, varied.batch_count, varied.prompt) == (1, 1, REQUEST.prompt)


def test_upscale_of_a_txt2img_image_is_its_hires_pass(tmp_path):
    request, scale = followups.upscale(REQUEST, _image(tmp_path, seed=57), Limits())
    assert scale == 2.0 and request.seed == 57 and request.batch_size == 1
    assert request.hires == HiresFix(2.0, 0, followups.UPSCALE_DENOISING)


def test_upscale_fits_the_limits_or_says_why(tmp_path):
    request, scale = followups.upscale(REQUEST, _image(tmp_path), Limits(max_width=96, max_height=96))
    assert scale == 1.5 and request.hires.scale == 1.5
    with pytest.raises(InvalidRequest, match="upscale: 64x64 is already about the largest size"):
        followups.upscale(REQUEST, _image(tmp_path), Limits(max_width=72, max_height=72))


def test_upscale_of_an_img2img_result_refines_the_image_itself(tmp_path):
    source = Image.new("RGB", (64, 64))
    img2img = Img2ImgRequest(REQUEST, source, 0.6)
    request, _ = followups.upscale(img2img, _image(tmp_path), Limits())
    assert isinstance(request, Img2ImgRequest)
    assert (request.params.width, request.params.height, request.image.size) == (128, 128, (64, 64))
    assert request.denoising_strength == followups.REFINE_DENOISING


def test_edit_checks_what_was_typed_and_the_queue_the_limits():
    edited = followups.edited(REQUEST, prompt="a blue square", steps=12)
    assert (edited.prompt, edited.steps, edited.seed) == ("a blue square", 12, 55)
    with pytest.raises(InvalidRequest, match="prompt"):
        followups.edited(REQUEST, prompt="a cat\nNegative prompt: trick")
    with pytest.raises(InvalidRequest, match="steps: 50 is out of range; allowed 1 to 20"):
        check_request(followups.edited(REQUEST, steps=50), Limits(max_steps=20), BUILTIN_SAMPLERS)


def test_run_again_from_infotext_repeats_the_settings():
    text = format_infotext(
        "a cat",
        "blurry",
        {
            "Steps": 12,
            "Sampler": "DPM++ 2M",
            "Schedule type": "Karras",
            "CFG scale": 5,
            "Seed": 99,
            "Size": "64x96",
            "Model": "elsewhere",
            "Hires upscale": 2,
            "Hires upscaler": "ESRGAN_4x",
            "Denoising strength": 0.4,
        },
    )
    request, notes = followups.from_infotext(text, {"salon-demo-shapes"})
    assert (request.prompt, request.negative_prompt, request.steps, request.seed) == (
        "a cat",
        "blurry",
        12,
        99,
    )
    assert (request.sampler, request.schedule, request.cfg_scale) == ("DPM++ 2M", "Karras", 5.0)
    assert (request.width, request.height, request.model) == (64, 96, None)
    assert request.hires == HiresFix(2.0, 0, 0.4)
    assert any("elsewhere" in note for note in notes) and any("ESRGAN_4x" in note for note in notes)
    with pytest.raises(InvalidRequest, match="no generation parameters"):
        followups.from_infotext("", set())
