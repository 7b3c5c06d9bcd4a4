"""Upscaling a picture with a model upscaler, as A1111's Extras tab and hires fix do: the model runs (tiled)
while the image is smaller than the size asked for, at most three times, then Lanczos resizes to that size
(a 4× model asked for 2× runs once and halves; asked for 8×, twice)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from engine.upscaling.extras import MODEL_PASSES
from engine.upscaling.files import Upscaler
from engine.upscaling.tiles import DEFAULT_OVERLAP, DEFAULT_TILE, run_tiled


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB picture as a (1, 3, H, W) float tensor in 0..1."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """A (1, 3, H, W) tensor in 0..1 as an RGB picture (rounded, as A1111 does); the tensor is changed in
    place, so a 4096² output needs no float copies beside it."""
    array = tensor[0].clamp_(0, 1).mul_(255.0).round_().permute(1, 2, 0).to(torch.uint8).numpy()
    return Image.fromarray(array, "RGB")


def model_pass(
    upscaler: Upscaler,
    image: Image.Image,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Image.Image:
    """One run of the model over the whole picture, in tiles, on the model's device and dtype."""
    model = upscaler.model
    device, dtype = model.device, model.dtype

    def run(piece: torch.Tensor) -> torch.Tensor:
        return model(piece.to(device=device, dtype=dtype))

    with torch.inference_mode():
        out = run_tiled(
            run,
            to_tensor(image),
            upscaler.scale,
            tile=tile,
            overlap=overlap,
            on_tile=on_tile,
            cancelled=cancelled,
        )
        return to_image(out)


def upscale_to(
    upscaler: Upscaler,
    image: Image.Image,
    size: tuple[int, int],
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    on_tile: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Image.Image:
    """`image` (RGB) at `size`: model passes while it is smaller, then Lanczos to exactly that size."""
    image = image.convert("RGB")
    for _ in range(MODEL_PASSES):
        if image.width >= size[0] and image.height >= size[1]:
            break
        image = model_pass(upscaler, image, tile=tile, overlap=overlap, on_tile=on_tile, cancelled=cancelled)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image
