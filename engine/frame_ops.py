"""What Deforum's 2D mode does to the previous frame before img2img: the camera move (an affine warp with a
replicated or wrapped border), colour coherence (histogram matching to the first frame in LAB, HSV or RGB),
contrast, and noise. Plain numpy and PIL, so each step is easy to check on its own.

The warp is OpenCV's `getRotationMatrix2D(centre, angle, zoom) @ translation` as Deforum builds it, sampled
bilinearly at pixel centres: output pixel p shows the input at M⁻¹·p.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

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
    """Deforum's colour coherence: each channel's histogram matched to the reference's, in LAB, HSV or RGB
    (computed in floating point; only the result is rounded to 8 bits)."""
    if mode == "None":
        return image
    if mode not in COLOR_COHERENCE:
        raise ValueError(f"color coherence {mode!r} is not one of {COLOR_COHERENCE}")
    to_space, from_space = _SPACES[mode]
    source = to_space(np.asarray(image.convert("RGB"), dtype=np.float64) / 255)
    template = to_space(np.asarray(reference.convert("RGB"), dtype=np.float64) / 255)
    matched = np.stack(
        [_match_channel(source[..., c], template[..., c]) for c in range(source.shape[-1])], axis=-1
    )
    rgb = from_space(matched)
    return Image.fromarray(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8))


def _match_channel(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Histogram matching (as scikit-image's match_histograms): each source value goes to the template value
    at the same quantile."""
    values, inverse, counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    template_values, template_counts = np.unique(template.ravel(), return_counts=True)
    quantiles = np.cumsum(counts) / source.size
    template_quantiles = np.cumsum(template_counts) / template.size
    mapped = np.interp(quantiles, template_quantiles, template_values)
    return mapped[inverse].reshape(source.shape)


# sRGB (D65) ↔ CIE LAB, the standard formulas.
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE = np.array([0.950456, 1.0, 1.088754])


def _rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f > 0.206893, f**3, (f - 16 / 116) / 7.787) * _WHITE
    linear = np.clip(xyz @ np.linalg.inv(_RGB_TO_XYZ).T, 0, 1)
    return np.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, linear * 12.92)


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    high, low = rgb.max(-1), rgb.min(-1)
    span = high - low
    safe = np.where(span == 0, 1, span)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(high == r, (g - b) / safe % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = np.where(span == 0, 0, hue) / 6
    saturation = np.where(high == 0, 0, span / np.where(high == 0, 1, high))
    return np.stack([hue, saturation, high], -1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0] % 1 * 6, np.clip(hsv[..., 1], 0, 1), np.clip(hsv[..., 2], 0, 1)
    sector = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    channels = [np.choose(sector, [c[i] for c in choices]) for i in range(3)]
    return np.stack(channels, -1)


_SPACES = {
    "LAB": (_rgb_to_lab, _lab_to_rgb),
    "HSV": (_rgb_to_hsv, _hsv_to_rgb),
    "RGB": (lambda rgb: rgb, lambda rgb: rgb),
}


def adjust_contrast(image: Image.Image, contrast: float) -> Image.Image:
    """Deforum's contrast schedule: pixel values multiplied by `contrast` (1 = unchanged)."""
    if contrast == 1:
        return image
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) * contrast
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def add_noise(image: Image.Image, amount: float, seed: int) -> Image.Image:
    """Deforum's noise schedule: Gaussian noise of standard deviation `amount` in the [-1, 1] pixel range, seeded."""
    if amount == 0:
        return image
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 127.5 - 1
    noise = np.random.default_rng(seed).standard_normal(pixels.shape)
    out = (pixels + noise * amount + 1) * 127.5
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


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
