"""Deforum's frame noise: before img2img the moved frame is blended towards a noise image,
`(1 − amount) × frame + amount × noise`, which also pulls it towards mid-grey.

The noise image is Gaussian noise from torch's CPU generator seeded with the frame's seed (`uniform` — Deforum's
name, though the noise is normal), optionally scaled pixel by pixel by Perlin noise (`perlin`: gradient noise of
`perlin_w` × `perlin_h` cells over the frame, `perlin_octaves` octaves each of twice the cells and
`perlin_persistence` times the amplitude), mapped from [−1, 1] to 0–255 and truncated to 8 bits. Deforum draws
both with one torch generator in this order, lays the noise out in OpenCV's channel order (blue first) and blends
with OpenCV's `addWeighted` (single precision with fused multiply-adds, rounded half to even); all of that is
repeated here so a Deforum file gives Deforum's pixels.

Deforum computes the noise at the frame size rounded down to multiples of 64 and, for Perlin noise, stretches it
back to the frame (nearest neighbour); with uniform noise at a size that is not a multiple of 64 Deforum stops
with an error, Salon stretches it the same way. Perlin noise needs that rounded size to be a whole number of cells
at every octave (`perlin_problem` says what does not fit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

NOISE_TYPES = ("uniform", "perlin")
BLOCK = 64  # Deforum draws its noise at the frame size rounded down to multiples of this


@dataclass(frozen=True)
class Perlin:
    """Deforum's Perlin options: cells across the height (`perlin_w`, as Deforum uses it) and the width
    (`perlin_h`), octaves and persistence."""

    cells_down: int = 8
    cells_across: int = 8
    octaves: int = 4
    persistence: float = 0.5


def perlin_problem(width: int, height: int, perlin: Perlin) -> str | None:
    """Why Perlin noise cannot be made for this frame size, or None when it can."""
    finest = 2 ** max(perlin.octaves - 1, 0)
    for axis, size, cells, option in (
        ("height", height, perlin.cells_down, "perlin_w"),
        ("width", width, perlin.cells_across, "perlin_h"),
    ):
        drawn = size - size % BLOCK
        if drawn == 0 or drawn % (cells * finest):
            return (
                f"Perlin noise needs the {axis} rounded down to a multiple of {BLOCK} ({drawn}) to divide into "
                f"{option} × 2^(octaves − 1) = {cells * finest} cells; change {option}, perlin_octaves or the size"
            )
    return None


def add_noise(
    image: Image.Image, amount: float, seed: int, noise_type: str = "perlin", perlin: Perlin | None = None
) -> Image.Image:
    """The frame blended towards the frame's noise image by `amount` (0 = unchanged)."""
    if amount == 0:
        return image
    pixels = np.asarray(image.convert("RGB"))
    noise = noise_image(pixels.shape[0], pixels.shape[1], seed, noise_type, perlin or Perlin())
    return Image.fromarray(add_weighted(pixels, noise[..., ::-1], amount))  # noise comes blue first


def noise_image(height: int, width: int, seed: int, noise_type: str, perlin: Perlin) -> np.ndarray:
    """Deforum's noise image, `(height, width, 3)` uint8 in OpenCV's channel order (blue, green, red)."""
    import torch
    from torch.nn.functional import interpolate

    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise type {noise_type!r} is not one of {NOISE_TYPES}")
    rows, cols = height - height % BLOCK, width - width % BLOCK
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn((3, rows, cols), generator=generator)
    if noise_type == "perlin":
        problem = perlin_problem(width, height, perlin)
        if problem:
            raise ValueError(problem)
        scale = _octaves(rows, cols, perlin, generator)
        noise = noise * ((scale + torch.ones((rows, cols))) / 2)
    if (rows, cols) != (height, width):
        noise = interpolate(noise.unsqueeze(1), size=(height, width)).squeeze(1)  # nearest neighbour
    values = noise.numpy().transpose(1, 2, 0).astype(np.float32)
    return (np.clip(values * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8)  # truncated, as Deforum's sample_to_cv2


def add_weighted(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """OpenCV's `addWeighted(a, 1 − weight, b, weight, 0)` on uint8: fma(a, α, fma(b, β, 0)) in single
    precision (each fused step rounded once), then rounded half to even and saturated."""
    alpha, beta = float(np.float32(1 - weight)), float(np.float32(weight))
    inner = (b.astype(np.float64) * beta).astype(np.float32).astype(np.float64)
    mixed = (a.astype(np.float64) * alpha + inner).astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _octaves(rows: int, cols: int, perlin: Perlin, generator):
    """The sum of the octaves, each gradient noise of twice the cells and `persistence` times the amplitude."""
    import torch

    total = torch.zeros((rows, cols))
    frequency, amplitude = 1, 1.0
    for _ in range(int(perlin.octaves)):
        total += amplitude * _gradient_noise(
            rows, cols, frequency * perlin.cells_down, frequency * perlin.cells_across, generator
        )
        frequency *= 2
        amplitude *= perlin.persistence
    return total


def _gradient_noise(rows: int, cols: int, cells_down: int, cells_across: int, generator):
    """One octave of 2D Perlin noise: a random unit gradient at each cell corner (angles drawn row-major from
    the generator), each pixel the quintic-faded bilinear mix of the four corners' gradient · offset, × √2."""
    import torch

    def positions(size: int, cells: int):
        return (torch.arange(0, cells, cells / size) % 1)[:size]  # where each pixel lies within its cell

    down, across = positions(rows, cells_down), positions(cols, cells_across)
    angles = 2 * math.pi * torch.rand(cells_down + 1, cells_across + 1, generator=generator)
    gradients = torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1)
    cell_rows = torch.arange(rows) // (rows // cells_down)
    cell_cols = torch.arange(cols) // (cols // cells_across)
    grid_down, grid_across = down[:, None].expand(rows, cols), across[None, :].expand(rows, cols)

    def corner(step_down: int, step_across: int):  # gradient · offset from that corner
        gradient = gradients[cell_rows + step_down][:, cell_cols + step_across]
        return (grid_down - step_down) * gradient[..., 0] + (grid_across - step_across) * gradient[..., 1]

    def fade(t):
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    fade_down, fade_across = fade(grid_down), fade(grid_across)
    top = torch.lerp(corner(0, 0), corner(1, 0), fade_down)
    bottom = torch.lerp(corner(0, 1), corner(1, 1), fade_down)
    return math.sqrt(2) * torch.lerp(top, bottom, fade_across)
