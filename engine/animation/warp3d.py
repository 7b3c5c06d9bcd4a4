"""Deforum's 3D warp in torch: the previous frame's pixels lifted to points by their depth, seen again by a
camera moved by the frame's translation and rotation, and resampled with `grid_sample`.

The facts, from Deforum's `anim_frame_warp_3d` and `transform_image_3d_new` (sd-webui-deforum,
scripts/deforum_helpers/animation.py), written here in plain torch (Deforum uses PyTorch3D's cameras):

- translation is divided by 200 (`TRANSLATION_SCALE`, "matches Disco"); the camera moves by
  (−x, +y, −z) / 200, so a positive translation_x moves the picture left and a positive translation_z moves
  the camera in (the picture grows);
- rotation 3D x/y/z are degrees, made into one matrix as PyTorch3D's `euler_angles_to_matrix(…, "XYZ")`
  (Rx · Ry · Rz); PyTorch3D multiplies row vectors: a point p seen by the moved camera is p · R + T;
- the projection is PyTorch3D's `FoVPerspectiveCameras(near, far, aspect_ratio, fov)`: x' = x / (z ·
  tan(fov/2) · aspect), y' = y / (z · tan(fov/2)) (near and far only change the projected z, which the warp
  does not use);
- the points are x, y on `linspace(-1, 1)` across the width and down the height, z from the depth: normalised
  to 0…1, histogram-equalised (1024 bins), then 2 − d for MiDaS-like inverse depth or 1 + d for depth; a
  missing, constant or non-finite depth is flat (z = 1);
- each output pixel (`affine_grid`'s identity grid, `align_corners=False`) samples the previous frame at its
  own place minus the projected offset (new − old), with the padding mode (border, reflection, zeros) and the
  sampling mode (bicubic, bilinear, nearest); values are clamped to 0…255 and cut to 8 bits (truncated, as
  Deforum's `astype(uint8)`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from engine.animation.camera3d import Camera

TRANSLATION_SCALE = 1.0 / 200.0
EQUALIZATION_BINS = 1024


def rotation_matrix(x_degrees: float, y_degrees: float, z_degrees: float) -> torch.Tensor:
    """PyTorch3D's `euler_angles_to_matrix(radians, "XYZ")`: Rx · Ry · Rz (float64)."""
    matrices = []
    for axis, degrees in (("X", x_degrees), ("Y", y_degrees), ("Z", z_degrees)):
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        matrices.append(
            {
                "X": [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]],
                "Y": [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]],
                "Z": [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
            }[axis]
        )
    rx, ry, rz = (torch.tensor(m, dtype=torch.float64) for m in matrices)
    return rx @ ry @ rz


def depth_to_z(depth: torch.Tensor | None, inverse: bool) -> torch.Tensor | None:
    """Deforum's z from a depth map (`prepare_depth_tensor`, then `depth * 1 + offset`, times the factor):
    None when the map is missing, not finite or constant (the warp then uses a flat z = 1)."""
    if depth is None:
        return None
    depth = depth.detach().to(torch.float64).cpu()
    if not torch.isfinite(depth).all() or depth.min() == depth.max():
        return None
    normalized = ((depth - depth.min()) / (depth.max() - depth.min())).numpy()
    counts, edges = np.histogram(normalized, bins=EQUALIZATION_BINS, range=(0, 1))
    cdf = counts.cumsum() / float(counts.sum())
    equalized = torch.from_numpy(np.interp(normalized, edges[:-1], cdf))
    return 2.0 - equalized if inverse else equalized + 1.0


def offsets(camera: Camera, z: torch.Tensor | None, width: int, height: int) -> torch.Tensor:
    """The projected offset (new − old camera) of every pixel, (height, width, 2) in grid units (float32, as
    Deforum computes it)."""
    y, x = torch.meshgrid(
        torch.linspace(-1.0, 1.0, height, dtype=torch.float32),
        torch.linspace(-1.0, 1.0, width, dtype=torch.float32),
        indexing="ij",
    )
    z = torch.ones_like(x) if z is None else z.to(torch.float32).reshape(height, width)
    points = torch.stack((x.flatten(), y.flatten(), z.flatten()), dim=1)
    tan_half = math.tan(math.radians(camera.fov) / 2)
    scale = torch.tensor([1 / (tan_half * camera.aspect_ratio), 1 / tan_half], dtype=torch.float32)
    old = points[:, :2] * scale / points[:, 2:]
    rotation = rotation_matrix(camera.rotation_x, camera.rotation_y, camera.rotation_z).to(torch.float32)
    translation = torch.tensor(
        [
            -camera.translation_x * TRANSLATION_SCALE,
            camera.translation_y * TRANSLATION_SCALE,
            -camera.translation_z * TRANSLATION_SCALE,
        ],
        dtype=torch.float32,
    )
    moved = points @ rotation + translation
    new = moved[:, :2] * scale / moved[:, 2:]
    return (new - old).reshape(height, width, 2)


def warp_3d(
    image: Image.Image,
    camera: Camera,
    z: torch.Tensor | None = None,
    padding_mode: str = "border",
    sampling_mode: str = "bicubic",
) -> Image.Image:
    """The image seen by the moved camera (z from `depth_to_z`, None: flat)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).unsqueeze(0)
    grid = torch.nn.functional.affine_grid(identity, [1, 1, height, width], align_corners=False)
    grid = grid - offsets(camera, z, width, height).unsqueeze(0)
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    out = torch.nn.functional.grid_sample(
        tensor, grid, mode=sampling_mode, padding_mode=padding_mode, align_corners=False
    )
    result = out.squeeze(0).clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(result))
