"""Running an image model tile by tile, with overlap, blending the seams.

The input is cut into tiles of at most `tile` × `tile` pixels that overlap their neighbours by `overlap`
pixels; each tile's output is weighted by a ramp that rises across the overlap towards the tile's inside
(1 where no neighbour shares it), summed into one output buffer with the weights, and divided by them at
the end. Memory is the output image and its weights, plus one tile through the model: a 4× of 1024² is a
256 MB float buffer and 192² tiles, whatever the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.errors import JobCancelled

DEFAULT_TILE = 192  # A1111's ESRGAN_tile
DEFAULT_OVERLAP = 16  # A1111's default is 8; a little more hides the seams of deep models better


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along one side: every `tile − overlap` pixels, the last one flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramp(size: int, fade: int, before: bool, after: bool) -> torch.Tensor:
    """Weights along one side of a tile's output: rising over `fade` pixels at an edge shared with a
    neighbour (`before`: the start; `after`: the end), 1 elsewhere."""
    weights = torch.ones(size)
    if fade <= 0:
        return weights
    rise = (torch.arange(fade, dtype=torch.float32) + 0.5) / fade
    if before:
        weights[:fade] = torch.minimum(weights[:fade], rise)
    if after:
        weights[size - fade :] = torch.minimum(weights[size - fade :], rise.flip(0))
    return weights


def run_tiled(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scale: int,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> torch.Tensor:
    """`model` over `image` (1, C, H, W) in tiles; the output (1, C, H·scale, W·scale) on the CPU, float32.
    `on_tile(done, total)` after each tile; `cancelled()` is checked before each one (JobCancelled)."""
    if tile <= overlap * 2:
        raise ValueError(f"a tile of {tile} pixels cannot overlap its neighbours by {overlap}")
    _, channels, height, width = image.shape
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    output = torch.zeros((1, channels, height * scale, width * scale), dtype=torch.float32)
    weight = torch.zeros((1, 1, height * scale, width * scale), dtype=torch.float32)
    total, done = len(rows) * len(cols), 0
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            if cancelled():
                raise JobCancelled()
            piece = image[:, :, top : top + tile, left : left + tile]
            result = model(piece).float().cpu()
            h, w = result.shape[-2:]
            fade = overlap * scale
            ys = _ramp(h, fade, i > 0, i < len(rows) - 1)
            xs = _ramp(w, fade, j > 0, j < len(cols) - 1)
            mask = (ys[:, None] * xs[None, :])[None, None]
            y, x = top * scale, left * scale
            output[:, :, y : y + h, x : x + w] += result[:, :channels] * mask
            weight[:, :, y : y + h, x : x + w] += mask
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return output.div_(weight)
