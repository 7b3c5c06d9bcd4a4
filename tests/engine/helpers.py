"""Small helpers for engine tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.requests import GenerationRequest

FAST = dict(width=64, height=64, steps=3, seed=11)


def request(prompt: str = "a red circle", **overrides) -> GenerationRequest:
    """A quick request for the tiny model (64×64, 3 steps, fixed seed) with any field overridden."""
    return GenerationRequest(prompt=prompt, **{**FAST, **overrides})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())
