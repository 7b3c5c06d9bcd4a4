"""OpenCV's 8-bit colour conversions (`cv2.cvtColor` RGB↔LAB and RGB↔HSV on uint8 images), bit for bit, in numpy.

Deforum's colour coherence converts 8-bit frames with OpenCV, matches histograms there and converts back, so the
rounding of those conversions is part of how a Deforum animation looks. OpenCV computes them in fixed point with
lookup tables built from the sRGB and CIE formulas; the tables and the integer steps below follow the published
formulas and constants of OpenCV 4 (`modules/imgproc/src/color_lab.cpp`, `color_hsv.simd.hpp`), and the tests
compare every one of the 2²⁴ inputs with OpenCV itself.

Each function takes and returns an `(..., 3)` uint8 array; the channel order is the one named (RGB in, LAB out).
"""

from __future__ import annotations

import numpy as np

_F32 = np.float32

# ----- RGB → LAB ------------------------------------------------------------------------------------------
# sRGB → XYZ (D65) and the D65 white point, as OpenCV writes them.
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_XYZ_TO_RGB = np.array(
    [[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]]
)
_WHITE = np.array([0.950456, 1.0, 1.088754])
_LAB_SHIFT = 12  # fixed-point bits of the XYZ matrix
_GAMMA_SHIFT = 3  # extra bits of the linearised channel
_LAB_SHIFT2 = _LAB_SHIFT + _GAMMA_SHIFT
_L_SCALE = (116 * 255 + 50) // 100
_L_SHIFT = -((16 * 255 * (1 << _LAB_SHIFT2) + 50) // 100)
# The one entry of the cube-root table where OpenCV's own single-precision cube root lands one unit lower than
# the correctly rounded float (its value, 0.5415…, times 2¹⁵ falls just either side of 17745.5).
_CBRT_FIXES = {324: 17745}


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.where(x <= 809 / 20000, x / (323 / 25), ((x + 11 / 200) / (1 + 11 / 200)) ** (12 / 5))


def _gamma_table() -> np.ndarray:
    """255·8 × the linear value of each 8-bit sRGB level, rounded (single-precision steps as OpenCV's)."""
    levels = np.arange(256).astype(_F32) / _F32(255)
    return np.rint(_F32(255 * (1 << _GAMMA_SHIFT)) * _srgb_to_linear(levels).astype(_F32)).astype(np.int64)


def _cbrt_table() -> np.ndarray:
    """2¹⁵ × f(x) for x = i/(255·8), f the CIE cube root with its linear part below (6/29)³."""
    x = (_F32(1) / (_F32(255) * _F32(1 << _GAMMA_SHIFT))) * np.arange(
        256 * 3 // 2 * (1 << _GAMMA_SHIFT)
    ).astype(_F32)
    threshold, scale, bias = _F32(216) / _F32(24389), _F32(841) / _F32(108), _F32(16) / _F32(116)
    linear = (x.astype(np.float64) * float(scale) + float(bias)).astype(
        _F32
    )  # one rounding: a fused multiply-add
    root = np.cbrt(x.astype(np.float64)).astype(_F32)
    table = np.rint(_F32(1 << _LAB_SHIFT2) * np.where(x < threshold, linear, root)).astype(np.int64)
    for index, value in _CBRT_FIXES.items():
        table[index] = value
    return table


_GAMMA = _gamma_table()
_CBRT = _cbrt_table()
_XYZ_FIXED = np.rint((1 << _LAB_SHIFT) * _RGB_TO_XYZ / _WHITE[:, None]).astype(np.int64)


def _descale(value: np.ndarray, bits: int) -> np.ndarray:
    return (value + (1 << (bits - 1))) >> bits


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """`cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)` for uint8: L scaled to 0–255, a and b offset by 128."""
    linear = _GAMMA[rgb.astype(np.int64)]
    f = _CBRT[_descale(linear @ _XYZ_FIXED.T, _LAB_SHIFT)]
    half = 128 * (1 << _LAB_SHIFT2)
    lightness = _descale(_L_SCALE * f[..., 1] + _L_SHIFT, _LAB_SHIFT2)
    a = _descale(500 * (f[..., 0] - f[..., 1]) + half, _LAB_SHIFT2)
    b = _descale(200 * (f[..., 1] - f[..., 2]) + half, _LAB_SHIFT2)
    return np.clip(np.stack([lightness, a, b], -1), 0, 255).astype(np.uint8)


# ----- LAB → RGB ------------------------------------------------------------------------------------------
_BASE_SHIFT = 14
_BASE = 1 << _BASE_SHIFT
_INV_GAMMA_SHIFT = 12
_MIN_AB = -8145  # the smallest index of the a/b → X/Z table


def _lightness_tables() -> tuple[np.ndarray, np.ndarray]:
    """Y and f(Y) (both × 2¹⁴) for each 8-bit L."""
    y = np.zeros(256, np.int64)
    fy = np.zeros(256, np.int64)
    for level in range(256):
        if level <= 20:  # the linear part of the CIE curve: L·100/255 below 8
            y[level] = np.rint(_F32(level * _BASE * 20 * 9) / _F32(17 * 29 * 29 * 29))
            fy[level] = np.rint(_F32(_BASE) * (_F32(16) / _F32(116) + _F32(level * 5) / _F32(3 * 17 * 29)))
        else:
            f = _F32(level * 100 * _BASE) / _F32(255 * 116) + _F32(16 * _BASE) / _F32(116)
            fy[level] = np.rint(f)
            y[level] = np.rint(f * f * f / _F32(_BASE * _BASE))
    return y, fy


def _ab_table() -> np.ndarray:
    """X or Z (× 2¹⁴, before the white point) for f(X) or f(Z) from _MIN_AB on, in integer arithmetic."""
    f = np.arange(_MIN_AB, _BASE * 9 // 4 + _MIN_AB, dtype=np.int64)
    scaled = f * 108
    linear = np.sign(scaled) * (np.abs(scaled) // 841) - (_BASE * 16 // 116 * 108 // 841)  # C division
    cube = (f * f // _BASE) * f // _BASE
    return np.where(f <= 3390, linear, cube)


def _inverse_gamma_table() -> np.ndarray:
    """The 8-bit sRGB level of each of 4096 linear values."""
    x = ((_F32(1) / _F32(1 << _INV_GAMMA_SHIFT)) * np.arange(1 << _INV_GAMMA_SHIFT).astype(_F32)).astype(
        np.float64
    )
    srgb = np.where(x <= 7827 / 2500000, x * (323 / 25), x ** (5 / 12) * (1 + 11 / 200) - 11 / 200)
    return np.rint(_F32(255) * srgb.astype(_F32)).astype(np.int64)


_Y, _FY = _lightness_tables()
_AB_TO_XZ = _ab_table()
_INV_GAMMA = _inverse_gamma_table()
_RGB_FIXED = np.rint((1 << _LAB_SHIFT) * _XYZ_TO_RGB * _WHITE[None, :]).astype(np.int64)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """`cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)` for uint8."""
    lab = lab.astype(np.int64)
    y, fy = _Y[lab[..., 0]], _FY[lab[..., 0]]
    a_div = ((5 * lab[..., 1] * 53687 + (1 << 7)) >> 13) - 128 * _BASE // 500  # ≈ (a − 128)·2¹⁴/500
    b_div = ((lab[..., 2] * 41943 + (1 << 4)) >> 9) - 128 * _BASE // 200 + 1  # ≈ (b − 128)·2¹⁴/200
    x = _AB_TO_XZ[fy + a_div - _MIN_AB]
    z = _AB_TO_XZ[fy - b_div - _MIN_AB]
    shift = _LAB_SHIFT + _BASE_SHIFT - _INV_GAMMA_SHIFT
    linear = _descale(np.stack([x, y, z], -1) @ _RGB_FIXED.T, shift)
    return _INV_GAMMA[np.clip(linear, 0, (1 << _INV_GAMMA_SHIFT) - 1)].astype(np.uint8)


# ----- RGB ↔ HSV (H from 0 to 179) ------------------------------------------------------------------------
_HSV_SHIFT = 12
_LEVELS = np.arange(256)
_S_DIV = np.rint((255 << _HSV_SHIFT) / np.maximum(_LEVELS, 1)).astype(np.int64) * (_LEVELS > 0)
_H_DIV = np.rint((180 << _HSV_SHIFT) / (6.0 * np.maximum(_LEVELS, 1))).astype(np.int64) * (_LEVELS > 0)
HSV_BLOCK = 64  # pixels per vector block of OpenCV's HSV → RGB on an AVX-512 machine (32 with AVX2)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """`cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)` for uint8 (integer arithmetic, H halved to fit a byte)."""
    rgb = rgb.astype(np.int64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(-1)
    spread = value - rgb.min(-1)
    half = 1 << (_HSV_SHIFT - 1)
    saturation = (spread * _S_DIV[value] + half) >> _HSV_SHIFT
    hue = np.where(value == r, g - b, np.where(value == g, b - r + 2 * spread, r - g + 4 * spread))
    hue = (hue * _H_DIV[spread] + half) >> _HSV_SHIFT
    hue = np.where(hue < 0, hue + 180, hue)
    return np.stack([hue, saturation, value], -1).astype(np.uint8)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """`cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)` for uint8 images `(rows, width, 3)`: single-precision sectors;
    OpenCV's vector code truncates to 8 bits, its scalar code for the last width mod 64 pixels of a row
    rounds."""
    out = _hsv_to_rgb(hsv, np.trunc)
    tail = hsv.shape[-2] % HSV_BLOCK if hsv.ndim >= 2 else 0
    if tail:
        out[..., -tail:, :] = _hsv_to_rgb(hsv[..., -tail:, :], np.rint)
    return out


def _hsv_to_rgb(hsv: np.ndarray, to_int) -> np.ndarray:
    one = _F32(1)
    hue = hsv[..., 0].astype(_F32) * (_F32(6) / _F32(180))
    saturation = hsv[..., 1].astype(_F32) * _F32(1 / 255)
    value = hsv[..., 2].astype(_F32) * _F32(1 / 255)
    whole = np.trunc(hue)
    fraction = hue - whole
    sector = whole - np.trunc(whole * _F32(1 / 6)) * _F32(6)

    def fused(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # 1 − a·b with one rounding, as OpenCV's FMA
        return (1.0 - a.astype(np.float64) * b.astype(np.float64)).astype(_F32)

    full, low = value, value * (one - saturation)
    falling, rising = value * fused(saturation, fraction), value * fused(saturation, one - fraction)
    red = np.select(
        [sector < 1, sector == 1, sector == 2, sector == 3, sector == 4],
        [full, falling, low, low, rising],
        full,
    )
    green = np.select([sector < 1, sector < 3, sector == 3], [rising, full, falling], low)
    blue = np.select([sector < 2, sector == 2, sector < 5], [low, rising, full], falling)
    rgb = to_int(np.stack([red, green, blue], -1) * _F32(255))
    return np.clip(rgb, 0, 255).astype(np.uint8)
