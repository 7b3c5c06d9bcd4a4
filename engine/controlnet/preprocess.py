"""Control images: the preprocessors that need no weights (OpenCV's Canny, XDoG scribbles, invert, none) run
as sd-webui-controlnet runs them, then the map is fitted to the generation size by the unit's resize mode.

Canny and scribble work at the unit's processor resolution: the short side scaled to it (cubic up, area
down), padded to a multiple of 64 with the edge pixels, processed, the padding cut off again.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from engine.controlnet.unit_text import preprocessor
from engine.requests import ControlNetUnit, ControlResize, ResizeMode
from engine.tasks.resize import resize_image

_RESIZE = {
    ControlResize.JUST_RESIZE: ResizeMode.JUST_RESIZE,
    ControlResize.CROP_AND_RESIZE: ResizeMode.CROP_AND_RESIZE,
    ControlResize.RESIZE_AND_FILL: ResizeMode.RESIZE_AND_FILL,
}


def detected_map(unit: ControlNetUnit, image: Image.Image) -> Image.Image:
    """The unit's preprocessor applied to `image` (RGB out; "none" returns the image itself)."""
    name = preprocessor(unit.module).name
    rgb = np.asarray(image.convert("RGB"))
    if name == "none":
        return Image.fromarray(rgb, "RGB")
    if name == "invert":
        return Image.fromarray(255 - rgb, "RGB")
    padded, unpad = _resize_with_pad(rgb, unit.processor_res)
    if name == "canny":
        assert unit.threshold_a is not None and unit.threshold_b is not None
        edges = cv2.Canny(padded, unit.threshold_a, unit.threshold_b)
    else:  # scribble_xdog
        assert unit.threshold_a is not None
        edges = _xdog(padded, unit.threshold_a)
    return Image.fromarray(np.stack([unpad(edges)] * 3, axis=-1), "RGB")


def fitted(unit: ControlNetUnit, image: Image.Image, width: int, height: int) -> Image.Image:
    """The detected map of `image` fitted to width×height by the unit's resize mode."""
    return resize_image(_RESIZE[unit.resize_mode], detected_map(unit, image), width, height)


def _resize_with_pad(rgb: np.ndarray, resolution: int):
    height, width = rgb.shape[:2]
    k = resolution / min(height, width)
    interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    target_h, target_w = int(np.round(height * k)), int(np.round(width * k))
    resized = cv2.resize(rgb, (target_w, target_h), interpolation=interpolation)
    pad_h, pad_w = -target_h % 64, -target_w % 64
    padded = np.pad(resized, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge")

    def unpad(result: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(result[:target_h, :target_w])

    return padded, unpad


def _xdog(rgb: np.ndarray, threshold: float) -> np.ndarray:
    """sd-webui-controlnet's `scribble_xdog`: a difference of Gaussians, thresholded to white lines."""
    fine = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 0.5)
    coarse = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(coarse - fine, axis=2)).clip(0, 255).astype(np.uint8)
    result = np.zeros(rgb.shape[:2], dtype=np.uint8)
    result[2 * (255 - dog) > threshold] = 255  # uint8 arithmetic, wrapping as sd-webui-controlnet's does
    return result
