"""Noise with A1111's rules (seeds: engine/seeds.py): image i of a batch uses seed + i, a variation seed
is mixed in by spherical interpolation. Noise is drawn on the CPU, per image, so an image depends only on its
own seed — alone or in a batch, on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def batch_seeds(first_seed: int, count: int) -> list[int]:
    """Seeds of the images of a request: first_seed, first_seed + 1, …"""
    return [first_seed + i for i in range(count)]


def make_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per image; it yields the image's initial noise, then its sampler's step noise."""
    return [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]


def slerp(t: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors, falling back to a linear mix when nearly parallel."""
    low_flat, high_flat = low.flatten(), high.flatten()
    dot = torch.dot(low_flat / low_flat.norm(), high_flat / high_flat.norm()).clamp(-1.0, 1.0)
    if dot.abs() > 0.9995:
        return (1.0 - t) * low + t * high
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    return (torch.sin((1.0 - t) * omega) / sin_omega) * low + (torch.sin(t * omega) / sin_omega) * high


def initial_noise(
    shape: tuple[int, int, int],
    generators: Sequence[torch.Generator],
    variation_seeds: Sequence[int] | None = None,
    variation_strength: float = 0.0,
) -> torch.Tensor:
    """(B, C, H, W) noise: image i from generators[i], mixed towards its variation seed's noise by strength."""
    images = []
    for i, generator in enumerate(generators):
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if variation_seeds is not None and variation_strength > 0:
            other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(variation_seeds[i])))
            noise = slerp(variation_strength, noise, other)
        images.append(noise)
    return torch.stack(images)
