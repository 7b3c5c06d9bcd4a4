"""img2img resize modes and strength, inpaint masked content and areas, on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.infotext import parse_infotext
from engine.requests import Img2ImgRequest, InpaintArea, InpaintRequest, MaskedContent, ResizeMode
from engine.tasks.resize import blur_mask, expand_to_aspect, resize_image
from tests.engine.helpers import mean_difference, pixels, request


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    """A 64×64 test card: blue background, red disc, yellow bar."""
    image = Image.new("RGB", (64, 64), (30, 60, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 40, 40), fill=(220, 30, 30))
    draw.rectangle((44, 8, 56, 56), fill=(240, 220, 20))
    return image


def test_strength_zero_returns_the_input(engine, picture):
    result = engine.img2img(Img2ImgRequest(request(), picture, denoising_strength=0.0))
    assert np.array_equal(pixels(result.images[0].image), pixels(picture))
    assert parse_infotext(result.images[0].infotext).denoising_strength == 0


def test_strength_controls_how_far_the_output_moves(engine, picture):
    from engine.tasks.sampling import decode_latents, encode_images

    # Compare with the input's VAE round trip (a random test model's VAE does not reproduce the input).
    model = engine.load(None)
    round_trip = decode_latents(model, encode_images(model, [picture]))[0]
    low = engine.img2img(Img2ImgRequest(request(steps=10), picture, denoising_strength=0.2)).images[0]
    high = engine.img2img(Img2ImgRequest(request(steps=10), picture, denoising_strength=0.9)).images[0]
    assert mean_difference(round_trip, low.image) < mean_difference(round_trip, high.image)
    again = engine.img2img(Img2ImgRequest(request(steps=10), picture, denoising_strength=0.2)).images[0]
    assert np.array_equal(pixels(low.image), pixels(again.image))


@pytest.mark.parametrize("mode", list(ResizeMode))
def test_every_resize_mode_gives_the_requested_size(engine, picture, mode):
    wide = picture.resize((96, 48))
    result = engine.img2img(Img2ImgRequest(request(width=64, height=96), wide, 0.5, resize_mode=mode))
    assert result.images[0].image.size == (64, 96)


def test_resize_modes_follow_a1111():
    wide = Image.new("RGB", (100, 50), (0, 0, 0))
    ImageDraw.Draw(wide).rectangle((0, 0, 9, 49), fill=(255, 0, 0))  # red band at the left edge
    just = resize_image(ResizeMode.JUST_RESIZE, wide, 50, 50)
    cropped = resize_image(ResizeMode.CROP_AND_RESIZE, wide, 50, 50)
    filled = resize_image(ResizeMode.RESIZE_AND_FILL, wide, 50, 50)
    assert just.getpixel((1, 25))[0] > 200  # squeezed: the band is still there
    assert cropped.getpixel((1, 25))[0] < 50  # the left quarter is cut away
    assert filled.getpixel((1, 2))[0] > 200 and filled.getpixel((1, 25))[0] > 200  # fitted, bands stretched


def test_expand_to_aspect_stays_inside_the_image():
    assert expand_to_aspect((10, 10, 20, 40), 64, 64, (100, 100)) == (0, 10, 30, 40)
    x1, y1, x2, y2 = expand_to_aspect((90, 0, 100, 10), 128, 64, (100, 100))
    assert (x2 - x1, y2 - y1) == (20, 10) and x2 <= 100


def _half_mask(size=(64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((0, 0, size[0] // 2 - 1, size[1] - 1), fill=255)
    return mask


@pytest.mark.parametrize("content", list(MaskedContent))
@pytest.mark.parametrize("area", list(InpaintArea))
def test_inpaint_keeps_unmasked_pixels_and_repaints_the_masked_half(engine, picture, content, area):
    mask = _half_mask()
    inpaint = InpaintRequest(
        request("a green square", steps=6),
        picture,
        mask,
        denoising_strength=0.9,
        mask_blur=4,
        masked_content=content,
        inpaint_area=area,
        padding=8,
    )
    result = engine.inpaint(inpaint).images[0]
    out, original = pixels(result.image), pixels(picture)
    untouched = np.asarray(blur_mask(mask, 4)) == 0
    assert np.array_equal(out[untouched], original[untouched])
    repainted = np.asarray(mask) == 255
    assert np.abs(out[repainted] - original[repainted]).mean() > 5
    info = parse_infotext(result.infotext)
    assert info.params["Mask blur"] == "4"
    assert info.params.get("Inpaint area", "Whole picture") == area.value
    assert info.params.get("Masked content", "original") == content.value


def test_inpaint_only_masked_works_on_a_small_region_of_a_large_image(engine, picture):
    large = picture.resize((128, 128))
    mask = Image.new("L", (128, 128), 0)
    ImageDraw.Draw(mask).rectangle((80, 80, 100, 100), fill=255)
    inpaint = InpaintRequest(
        request("a red circle", steps=4),
        large,
        mask,
        denoising_strength=1.0,
        mask_blur=0,
        inpaint_area=InpaintArea.ONLY_MASKED,
        padding=4,
    )
    result = engine.inpaint(inpaint).images[0]
    assert result.image.size == (128, 128)
    out, original = pixels(result.image), pixels(large)
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[~outside] - original[~outside]).mean() > 5


def test_inpainting_checkpoint_with_nine_input_channels(tmp_path, picture):
    from config import load_settings
    from engine.runner import Engine
    from tests.tiny_models import build_tiny_sd1

    build_tiny_sd1(tmp_path / "models" / "Stable-diffusion" / "tiny-inpainting", in_channels=9)
    engine = Engine(load_settings(None, data_dir=tmp_path))
    assert engine.load(None).inpainting
    result = engine.inpaint(InpaintRequest(request(steps=3), picture, _half_mask(), denoising_strength=1.0))
    untouched = np.asarray(blur_mask(_half_mask(), 4)) == 0
    assert np.array_equal(pixels(result.images[0].image)[untouched], pixels(picture)[untouched])
