"""The shipped demo model follows its prompts, keeps layouts under img2img and inpaints towards a prompt.

These are quality checks on fixed prompts and seeds (the evaluation script measures the same on 71 held-out
captions); they fail if the shipped weights or the engine's sampling regress.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.demo import DEMO_MODEL_NAME
from engine.requests import GenerationRequest, Img2ImgRequest, InpaintRequest
from tools.demo_model.evaluate import read_image

PROMPTS = [
    ("a red circle on a blue background", "blue", "red"),
    ("a small yellow star on the left, purple background", "purple", "yellow"),
    ("a large green square in the center, white background", "white", "green"),
    ("a black triangle on an orange background", "orange", "black"),
    ("a large white circle on the right, red background", "red", "white"),
    ("a small orange square at the top, black background", "black", "orange"),
]


def demo_request(prompt: str, seed: int = 0, **overrides) -> GenerationRequest:
    return GenerationRequest(prompt, width=64, height=64, steps=20, cfg_scale=5.0, seed=seed, **overrides)


def test_demo_model_is_the_default(engine):
    assert engine.checkpoint(None).name == DEMO_MODEL_NAME
    assert engine.native_size(None) == (64, 64)


@pytest.mark.parametrize(("prompt", "background", "colour"), PROMPTS)
def test_prompt_controls_background_and_shape_colour(engine, prompt, background, colour):
    image = engine.txt2img(demo_request(prompt)).images[0].image
    reading = read_image(image)
    assert (reading.background, reading.colour) == (background, colour)


def test_img2img_at_low_strength_keeps_colours_and_layout(engine):
    source = engine.txt2img(
        demo_request("a large yellow circle on the left, blue background", seed=4)
    ).images[0]
    before = read_image(source.image)
    moved = engine.img2img(
        Img2ImgRequest(
            demo_request("a large yellow circle on the left, blue background", seed=5), source.image, 0.3
        )
    ).images[0]
    after = read_image(moved.image)
    assert (after.background, after.colour, after.position) == (
        before.background,
        before.colour,
        before.position,
    )


def test_inpaint_changes_the_masked_half_towards_the_prompt(engine):
    source = (
        engine.txt2img(demo_request("a large red circle on the left, white background", seed=2))
        .images[0]
        .image
    )
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    request = InpaintRequest(
        demo_request("a large blue circle on the left, white background", seed=3),
        source,
        mask,
        0.9,
        mask_blur=2,
    )
    result = engine.inpaint(request).images[0].image
    left = Image.new("RGB", (64, 64), (245, 245, 245))
    left.paste(result.crop((0, 0, 32, 64)), (0, 0))
    assert read_image(left).colour == "blue"
    assert np.array_equal(np.asarray(result)[:, 40:], np.asarray(source)[:, 40:])
