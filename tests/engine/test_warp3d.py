"""Deforum's 3D warp in torch (engine/animation/warp3d.py): zero motion, translation, rotation, depth.

Facts pinned from sd-webui-deforum at commit 322426851408ebca2cd49492bfeb1ec86e1dc869:
- scripts/deforum_helpers/animation.py `anim_frame_warp_3d`: `TRANSLATION_SCALE = 1.0/200.0`; translate_xyz =
  (−x, +y, −z) × scale; rotate_xyz in radians of the degree schedules; `euler_angles_to_matrix(…, "XYZ")`.
- `transform_image_3d_new`: `FoVPerspectiveCameras(near, far, aspect_ratio, fov, degrees=True)` old (still)
  and new (R, T); x, y on `linspace(-1, 1)`; offsets new − old subtracted from `affine_grid`'s identity
  (`align_corners=False`); MiDaS depth `(d·1 − 2)·−1`, other algorithms `d·1 + 1`; `prepare_depth_tensor`:
  normalised, then `depth_equalization` (1024 bins, `np.interp` on the CDF); a constant, NaN or missing depth is
  flat (z = 1); the result clamped to 0…255 and cast with `astype` (truncation).
- args.py interface values: translation_z "0: (1.75)", fov "0: (70)", near "0: (200)", far "0: (10000)",
  padding "border", sampling "bicubic", depth_algorithm "Midas-3-Hybrid", midas_weight 0.2.
PyTorch3D's projection (`FoVPerspectiveCameras.compute_projection_matrix`) and row-vector transforms
(p · R + T, then division by w) are transcribed literally in `_pytorch3d_offsets` below, near and far included,
as a second derivation of the offsets the module computes in closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from engine.animation.camera3d import PADDING_MODES, SAMPLING_MODES, Camera, Settings3D
from engine.animation.warp3d import TRANSLATION_SCALE, depth_to_z, offsets, rotation_matrix, warp_3d


def _coordinates(width: int = 64, height: int = 64) -> Image.Image:
    """Red = 3·x, green = 3·y: a bilinear sample at any inner point gives its position back."""
    ys, xs = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([xs * 3, ys * 3, np.zeros_like(xs)], -1).astype(np.uint8))


def _pytorch3d_offsets(camera: Camera, z: torch.Tensor, width: int, height: int) -> torch.Tensor:
    fov = math.radians(camera.fov)
    max_y = math.tan(fov / 2) * camera.near
    max_x = max_y * camera.aspect_ratio
    k = torch.zeros(4, 4, dtype=torch.float64)
    k[0, 0] = 2 * camera.near / (2 * max_x)
    k[1, 1] = 2 * camera.near / (2 * max_y)
    k[3, 2] = 1.0
    k[2, 2] = camera.far / (camera.far - camera.near)
    k[2, 3] = -(camera.far * camera.near) / (camera.far - camera.near)
    y, x = torch.meshgrid(
        torch.linspace(-1, 1, height, dtype=torch.float64),
        torch.linspace(-1, 1, width, dtype=torch.float64),
        indexing="ij",
    )
    points = torch.stack([x.flatten(), y.flatten(), z.flatten().double(), torch.ones(width * height)], 1)

    def project(world_to_view: torch.Tensor) -> torch.Tensor:
        out = points @ world_to_view @ k.T
        return out[:, :2] / out[:, 3:]

    moved = torch.eye(4, dtype=torch.float64)
    moved[:3, :3] = rotation_matrix(camera.rotation_x, camera.rotation_y, camera.rotation_z)
    s = TRANSLATION_SCALE
    moved[3, :3] = torch.tensor(
        [-camera.translation_x * s, camera.translation_y * s, -camera.translation_z * s]
    )
    return (project(moved) - project(torch.eye(4, dtype=torch.float64))).reshape(height, width, 2)


def test_deforums_constants_and_defaults():
    assert TRANSLATION_SCALE == 1 / 200
    defaults = Settings3D()
    assert (defaults.translation_z, defaults.fov_schedule) == ("0: (1.75)", "0: (70)")
    assert (defaults.near_schedule, defaults.far_schedule) == ("0: (200)", "0: (10000)")
    assert (defaults.padding_mode, defaults.sampling_mode) == ("border", "bicubic")
    assert (defaults.depth_algorithm, defaults.midas_weight) == ("Midas-3-Hybrid", 0.2)
    # PyTorch3D's X, Y, Z axis rotations multiplied in that order
    r = rotation_matrix(90, 0, 0)
    assert torch.allclose(
        r, torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64), atol=1e-12
    )
    both = rotation_matrix(30, 40, 50)
    assert torch.allclose(
        both, rotation_matrix(30, 0, 0) @ rotation_matrix(0, 40, 0) @ rotation_matrix(0, 0, 50)
    )


@pytest.mark.parametrize("near, far", [(200, 10000), (0.5, 3), (1000, 1001)])
def test_the_offsets_are_pytorch3ds_projection_and_near_far_do_not_move_pixels(near, far):
    rng = np.random.default_rng(1)
    z = torch.from_numpy(rng.uniform(1, 2, (12, 20)))
    camera = Camera(7, -4, 30, 3, -5, 11, fov=55, near=near, far=far, aspect_ratio=1.3)
    reference = _pytorch3d_offsets(camera, z, 20, 12).float()
    assert torch.allclose(offsets(camera, z, 20, 12), reference, atol=1e-5)


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("sampling", SAMPLING_MODES)
def test_zero_motion_is_the_identity(padding, sampling):
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((24, 40, 3)) * 255).astype(np.uint8))
    for z in (None, torch.from_numpy(rng.uniform(1, 2, (24, 40)))):
        out = warp_3d(image, Camera(), z, padding, sampling)
        difference = np.abs(np.asarray(out, dtype=int) - np.asarray(image, dtype=int))
        assert difference.max() <= 1  # Deforum truncates to 8 bits: 254.99998 is 254


def test_translation_x_and_y_with_a_flat_depth_shift_by_the_expected_pixels():
    image = _coordinates()
    fov = 70
    shift = 32 * 10 * TRANSLATION_SCALE / math.tan(math.radians(fov) / 2)  # half the width × NDC offset
    assert shift == pytest.approx(2.28504, abs=1e-5)
    out = np.asarray(
        warp_3d(image, Camera(translation_x=10, fov=fov), None, "border", "bilinear"), dtype=float
    )
    # a positive translation_x moves the camera right: pixel x now shows what was at x + shift (picture left)
    assert np.allclose(out[10:50, 10:50, 0] / 3, np.arange(10, 50) + shift, atol=0.4)
    assert np.allclose(out[10:50, 10:50, 1] / 3, np.arange(10, 50)[:, None], atol=0.4)
    down = np.asarray(
        warp_3d(image, Camera(translation_y=10, fov=fov), None, "border", "bilinear"), dtype=float
    )
    assert np.allclose(
        down[10:50, 10:50, 1] / 3, np.arange(10, 50)[:, None] - shift, atol=0.4
    )  # picture down


def test_translation_z_zooms_in_and_depth_makes_parallax():
    image = _coordinates()
    closer = np.asarray(warp_3d(image, Camera(translation_z=40), None, "border", "bilinear"), dtype=float)
    # the centre stays, the rest comes from nearer the centre: the picture grows
    assert abs(closer[32, 50, 0] / 3 - 50) > 1 and closer[32, 50, 0] / 3 < 50 and closer[32, 14, 0] / 3 > 14
    ramp = torch.linspace(0, 1, 64).repeat(64, 1)  # MiDaS-like: the right side is near
    z = depth_to_z(ramp, inverse=True)
    moved = offsets(Camera(translation_x=20), z, 64, 64)
    assert abs(moved[32, 60, 0]) > 1.5 * abs(moved[32, 3, 0])  # near pixels move more than far ones


def test_rotation_about_z_rotates_the_picture():
    image = _coordinates()
    angle = 4.0
    out = np.asarray(warp_3d(image, Camera(rotation_z=angle), None, "border", "bilinear"), dtype=float)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    scale = 1 / math.tan(math.radians(70) / 2)
    for y, x in ((20, 44), (44, 20), (24, 24), (40, 40)):
        gx, gy = 2 * x / 63 - 1, 2 * y / 63 - 1  # the point's place on linspace(-1, 1)
        # Deforum samples at p − k·(p·R − p) (flat depth, square frame; k = 1 / tan(fov/2)); 32 pixels per unit
        shift_x = (gx * c + gy * s - gx) * scale * 32
        shift_y = (-gx * s + gy * c - gy) * scale * 32
        assert out[y, x, 0] / 3 == pytest.approx(x - shift_x, abs=0.5)
        assert out[y, x, 1] / 3 == pytest.approx(y - shift_y, abs=0.5)
    # a positive angle turns the picture counter-clockwise on screen: the right edge's content goes up
    assert out[32, 50, 1] / 3 > 32 + 0.5


def test_depth_is_normalised_equalised_and_mapped_as_deforums():
    assert depth_to_z(None, True) is None
    assert depth_to_z(torch.full((4, 4), 3.0), True) is None  # constant: flat
    assert depth_to_z(torch.tensor([[1.0, float("nan")]]), True) is None
    ramp = torch.arange(1024, dtype=torch.float64).reshape(32, 32) * 5 + 7  # uniform: equalisation keeps it
    near_large = depth_to_z(ramp, inverse=True)
    assert near_large.min() >= 1 and near_large.max() <= 2
    assert near_large[31, 31] == pytest.approx(1.0, abs=2e-3) and near_large[0, 0] == pytest.approx(
        2.0, abs=2e-3
    )
    far_large = depth_to_z(ramp, inverse=False)
    assert torch.allclose(far_large - 1, 2 - near_large)
    skewed = torch.tensor([[0.0, 0.01, 0.02, 1.0]])  # equalised: ranks, not distances
    z = depth_to_z(skewed, inverse=False)
    assert z[0, 1] - 1 == pytest.approx(0.5) and z[0, 2] - 1 == pytest.approx(0.75)
