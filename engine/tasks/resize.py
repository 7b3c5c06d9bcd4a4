"""A1111's img2img resize modes and inpaint masking helpers, on Pillow images (no torch)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from engine.requests import ResizeMode

RESAMPLE = Image.Resampling.LANCZOS


def resize_image(mode: ResizeMode, image: Image.Image, width: int, height: int) -> Image.Image:
    """Fit `image` to width×height the way A1111's resize mode does (latent upscale resizes pixels plainly)."""
    if mode in (ResizeMode.JUST_RESIZE, ResizeMode.LATENT_UPSCALE):
        return image.resize((width, height), RESAMPLE)
    if mode is ResizeMode.CROP_AND_RESIZE:
        return _crop_and_resize(image, width, height)
    return _resize_and_fill(image, width, height)


def _crop_and_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover the target, then cut the overflow equally from both sides."""
    scale = max(width / image.width, height / image.height)
    w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    resized = image.resize((w, h), RESAMPLE)
    left, top = (w - width) // 2, (h - height) // 2
    return resized.crop((left, top, left + width, top + height))


def _resize_and_fill(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to fit inside the target, then fill the bands by stretching the image's edge rows or columns."""
    scale = min(width / image.width, height / image.height)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    resized = image.resize((w, h), RESAMPLE)
    canvas = Image.new(image.mode, (width, height))
    left, top = (width - w) // 2, (height - h) // 2
    canvas.paste(resized, (left, top))
    if top > 0:
        canvas.paste(resized.crop((0, 0, w, 1)).resize((w, top)), (left, 0))
        bottom = height - top - h
        if bottom > 0:
            canvas.paste(resized.crop((0, h - 1, w, h)).resize((w, bottom)), (left, top + h))
    if left > 0:
        canvas.paste(resized.crop((0, 0, 1, h)).resize((left, h)), (0, top))
        right = width - left - w
        if right > 0:
            canvas.paste(resized.crop((w - 1, 0, w, h)).resize((right, h)), (left + w, top))
    return canvas


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    """A1111 "Mask blur": a Gaussian blur of the mask, so repainted areas fade into kept ones."""
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def mask_bounding_box(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """The box (x1, y1, x2, y2) around the mask's non-zero pixels grown by `padding`, or None for an empty mask."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return (
        max(0, x1 - padding),
        max(0, y1 - padding),
        min(mask.width, x2 + padding),
        min(mask.height, y2 + padding),
    )


def expand_to_aspect(
    box: tuple[int, int, int, int], width: int, height: int, bounds: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Grow `box` so its aspect ratio matches width:height, staying inside bounds (image width, height)."""
    x1, y1, x2, y2 = box
    img_w, img_h = bounds
    target = width / height
    box_w, box_h = x2 - x1, y2 - y1
    if box_w / box_h < target:
        x1, x2 = _grow(x1, x2, round(box_h * target), img_w)
    else:
        y1, y2 = _grow(y1, y2, round(box_w / target), img_h)
    return x1, y1, x2, y2


def _grow(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    size = min(size, limit)
    extra = size - (hi - lo)
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, 0), hi


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111 masked content "fill": replace masked pixels by ever finer blurs of the colours around them."""
    keep = ImageOps.invert(mask.convert("L"))
    rgba = image.convert("RGBA")
    rgba.putalpha(keep)
    premultiplied = rgba.convert("RGBa")
    result = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = premultiplied.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


def composite_over(original: Image.Image, generated: Image.Image, mask: Image.Image) -> Image.Image:
    """Put `generated` where the (blurred) mask is white and keep `original` exactly where it is black."""
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), mask.convert("L"))


def binary_latent_mask(mask: Image.Image, latent_size: tuple[int, int]) -> np.ndarray:
    """The mask at latent resolution, rounded to 0/1 (1 = repaint), as A1111 builds its latent mask."""
    small = mask.convert("L").resize(latent_size, Image.Resampling.BILINEAR)
    return np.around(np.asarray(small, dtype=np.float32) / 255.0)
