"""What Deforum's 2D mode does to the previous frame before img2img: the camera move (an affine warp with a
replicated or wrapped border), colour coherence (histogram matching to a reference frame in LAB, HSV or RGB),
contrast, and noise (engine/animation/frame_noise.py). Plain numpy and PIL, so each step is easy to check on its own.

The warp is OpenCV's `getRotationMatrix2D(centre, angle, zoom) @ translation` as Deforum builds it, sampled
bilinearly at pixel centres: output pixel p shows the input at M⁻¹·p.

Colour coherence is Deforum's `maintain_colors` (scripts/deforum_helpers/colors.py): scikit-image's histogram
matching of 8-bit channels after OpenCV's 8-bit conversion to LAB or HSV (bit for bit:
engine/animation/opencv_color.py).
Deforum passes OpenCV's BGR pixels to conversions named RGB→LAB and RGB→HSV, so the "LAB" it matches in is that of
the frame with red and blue swapped; Salon swaps them the same way, so its frames are Deforum's.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from engine.animation.opencv_color import hsv_to_rgb, lab_to_rgb, rgb_to_hsv, rgb_to_lab

BORDERS = ("replicate", "wrap")
COLOR_COHERENCE = ("None", "LAB", "HSV", "RGB")


def motion_matrix(
    width: int,
    height: int,
    zoom: float = 1.0,
    angle: float = 0.0,
    translation_x: float = 0.0,
    translation_y: float = 0.0,
    center_x: float = 0.5,
    center_y: float = 0.5,
) -> np.ndarray:
    """The 3×3 forward transform of one frame's 2D motion (angle in degrees, counter-clockwise; translation in
    pixels; centre as a fraction of the size), as Deforum's `anim_frame_warp_2d` composes it."""
    cx, cy = width * center_x, height * center_y
    radians = math.radians(angle)
    alpha, beta = zoom * math.cos(radians), zoom * math.sin(radians)
    rotate = np.array(
        [
            [alpha, beta, (1 - alpha) * cx - beta * cy],
            [-beta, alpha, beta * cx + (1 - alpha) * cy],
            [0.0, 0.0, 1.0],
        ]
    )
    translate = np.array([[1.0, 0.0, translation_x], [0.0, 1.0, translation_y], [0.0, 0.0, 1.0]])
    return rotate @ translate


def warp(image: Image.Image, matrix: np.ndarray, border: str = "replicate") -> Image.Image:
    """The image moved by `matrix` (forward transform), bilinear, the border replicated or wrapped around."""
    if border not in BORDERS:
        raise ValueError(f"border {border!r} is not one of {BORDERS}")
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    inverse = np.linalg.inv(matrix)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(src_x), np.floor(src_y)
    fx, fy = (src_x - x0)[..., None], (src_y - y0)[..., None]

    def index(values: np.ndarray, size: int) -> np.ndarray:
        values = values.astype(np.int64)
        return np.mod(values, size) if border == "wrap" else np.clip(values, 0, size - 1)

    xa, xb = index(x0, width), index(x0 + 1, width)
    ya, yb = index(y0, height), index(y0 + 1, height)
    top = pixels[ya, xa] * (1 - fx) + pixels[ya, xb] * fx
    bottom = pixels[yb, xa] * (1 - fx) + pixels[yb, xb] * fx
    out = top * (1 - fy) + bottom * fy
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def match_colors(image: Image.Image, reference: Image.Image, mode: str) -> Image.Image:
    """Deforum's colour coherence: each channel's histogram matched to the reference's, in LAB, HSV or RGB."""
    if mode == "None":
        return image
    if mode not in COLOR_COHERENCE:
        raise ValueError(f"color coherence {mode!r} is not one of {COLOR_COHERENCE}")
    to_space, from_space = _SPACES[mode]
    # Deforum's frames are BGR arrays handed to RGB conversions: the swapped order is part of its result.
    source = to_space(np.asarray(image.convert("RGB"))[..., ::-1])
    template = to_space(np.asarray(reference.convert("RGB"))[..., ::-1])
    matched = np.stack(
        [_match_channel(source[..., c], template[..., c]) for c in range(source.shape[-1])], axis=-1
    )
    return Image.fromarray(np.ascontiguousarray(from_space(matched)[..., ::-1]))


def _match_channel(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """scikit-image's `match_histograms` on one 8-bit channel: each source level goes to the template level at
    the same quantile (interpolated), and the result is stored back into 8 bits by truncation."""
    source_counts = np.bincount(source.ravel(), minlength=256)
    template_counts = np.bincount(template.ravel(), minlength=256)
    template_levels = np.nonzero(template_counts)[0]
    quantiles = np.cumsum(source_counts) / source.size
    template_quantiles = np.cumsum(template_counts[template_levels]) / template.size
    mapped = np.interp(quantiles, template_quantiles, template_levels)
    return mapped.astype(np.uint8)[source]


_SPACES = {
    "LAB": (rgb_to_lab, lab_to_rgb),
    "HSV": (rgb_to_hsv, hsv_to_rgb),
    "RGB": (lambda rgb: rgb, lambda rgb: rgb),
}


def adjust_contrast(image: Image.Image, contrast: float) -> Image.Image:
    """Deforum's contrast schedule: pixel values multiplied by `contrast` (1 = unchanged), rounded half to even.
    Deforum lets values over 255 wrap around (an unchecked cast); Salon keeps them at 255."""
    if contrast == 1:
        return image
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64) * contrast
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def blend(a: Image.Image, b: Image.Image, weight: float) -> Image.Image:
    """(1 − weight) × a + weight × b, rounded (cadence's frames between two diffused frames)."""
    mixed = np.asarray(a, dtype=np.float32) * (1 - weight) + np.asarray(b, dtype=np.float32) * weight
    return Image.fromarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))


def color_drift(image: Image.Image, reference: Image.Image) -> float:
    """How far an image's colours are from the reference's: the mean absolute difference of their per-channel
    means and standard deviations (0 = the same colour statistics)."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    b = np.asarray(reference.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    return float(np.abs(a.mean(0) - b.mean(0)).mean() + np.abs(a.std(0) - b.std(0)).mean())
