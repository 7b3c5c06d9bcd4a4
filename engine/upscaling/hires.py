"""A model upscaler as the hires pass's upscaler (A1111's "Hires upscaler: 4x-UltraSharp"): the first pass's
decoded images go through the model (tiled) to the hires size, then are encoded again for the second pass."""

from __future__ import annotations

import dataclasses
from functools import partial

from PIL import Image

from engine.models.registry import ModelRegistry
from engine.requests import HiresUpscaler
from engine.tasks.sampling import Prepared
from engine.upscaling.files import UPSCALERS, Upscaler
from engine.upscaling.upscale import upscale_to


def with_model_upscaler(prep: Prepared, registry: ModelRegistry, device: object) -> Prepared:
    """`prep` with its `pixel_upscaler` set when its hires fix names a model upscaler (loaded now, so a
    missing or refused file fails before any denoising)."""
    hires = prep.params.hires
    if hires is None or isinstance(hires.upscaler, HiresUpscaler):
        return prep
    upscaler = UPSCALERS.load(registry, hires.upscaler, str(device))
    return dataclasses.replace(prep, pixel_upscaler=partial(_upscale, upscaler))


def _upscale(upscaler: Upscaler, image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return upscale_to(upscaler, image, size)
