"""engine/animation/opencv_color.py against OpenCV itself: every one of the 2²⁴ 8-bit inputs of each conversion.

The digests are SHA-256 of `cv2.cvtColor(x, code)` over all 2²⁴ byte triples (x[k] = (k >> 16, k >> 8 & 255,
k & 255), laid out 4096 × 4096, or 520 wide for the row-tail case), computed once with opencv-python-headless
4.14.0 on an AVX-512 machine, in a throwaway environment outside the repository. The tables and integer steps
follow OpenCV's modules/imgproc/src/color_lab.cpp (commit 00e21e4b894bb32f79d407fbc58af872e66e83c8) and
color_hsv.simd.hpp (commit 0fea0afcbc5250047a9c02ef0061dd44fe7c7831). Deforum calls these conversions in its
colour coherence (sd-webui-deforum scripts/deforum_helpers/colors.py, commit
322426851408ebca2cd49492bfeb1ec86e1dc869).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from engine.animation import opencv_color

OPENCV_4_14 = {
    "rgb_to_lab": "b3067516fa862bb008af4ffb4da5555722524a70776bf7ffd523a90f4331480c",
    "lab_to_rgb": "fe94a44a1fb178c1b5041a43095c4d99f4d37fb7b32258da356d8bd63bba9b0d",
    "rgb_to_hsv": "a5b38b214f65aed9d382cc07bf40311aff2e3e324c98da86df77bef285f224eb",
    "hsv_to_rgb": "480b1c6168e0d875c27b92831a2184de8f40ebdeafdceac450afe4785b054334",
}


def _every_triple(width: int) -> np.ndarray:
    k = np.arange(256**3, dtype=np.uint32)
    triples = np.stack([k >> 16, (k >> 8) & 255, k & 255], -1).astype(np.uint8)
    rows = len(triples) // width
    return triples[: rows * width].reshape(rows, width, 3)


def _digest(function, images: np.ndarray) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(images), 256):
        digest.update(np.ascontiguousarray(function(images[start : start + 256])).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(OPENCV_4_14))
def test_every_8_bit_input_converts_as_opencv_does(name):
    assert _digest(getattr(opencv_color, name), _every_triple(4096)) == OPENCV_4_14[name]


def test_hsv_rows_that_end_off_the_vector_block_round_their_last_pixels():
    """A row 520 wide: OpenCV's vector code truncates the first 512 pixels, its scalar code rounds the last 8."""
    expected = "3ef250f4080eac222127c97d1c2edfb3b3c049f5484ff01a61f5f24c6ba5d276"
    assert _digest(opencv_color.hsv_to_rgb, _every_triple(520)) == expected


def test_known_values():
    """A few values to read: white, a saturated red, and mid-grey (OpenCV: L 0–255, a and b offset by 128)."""
    rgb = np.array([[[255, 255, 255], [255, 0, 0], [128, 128, 128]]], dtype=np.uint8)
    assert opencv_color.rgb_to_lab(rgb).tolist() == [[[255, 128, 128], [136, 208, 195], [137, 128, 128]]]
    assert opencv_color.rgb_to_hsv(rgb).tolist() == [[[0, 0, 255], [0, 255, 255], [0, 0, 128]]]
