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
    source_shape: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """(B, C, H, W) noise: image i from generators[i], mixed towards its variation seed's noise by strength.

    `source_shape` (A1111's "resize seed from width/height"): the seed's noise is made at that latent size
    (variation mixed in there), then placed centred in noise of `shape` drawn from the same seed, cropped
    where it is larger (A1111's `ImageRNG.first`)."""
    resized = source_shape is not None and tuple(source_shape) != tuple(shape)
    drawn = tuple(source_shape) if resized else shape
    images = []
    for i, generator in enumerate(generators):
        # Resized, the seed's noise comes from a fresh generator of that seed; the image's own one then draws
        # the full-size noise (and goes on to the sampler's step noise), as A1111 draws them.
        source = _fresh_copy(generator) if resized else generator
        noise = torch.randn(drawn, generator=source, dtype=torch.float32)
        if variation_seeds is not None and variation_strength > 0:
            other = torch.randn(drawn, generator=torch.Generator("cpu").manual_seed(int(variation_seeds[i])))
            noise = slerp(variation_strength, noise, other)
        if resized:
            noise = place_centred(torch.randn(shape, generator=generator, dtype=torch.float32), noise)
        images.append(noise)
    return torch.stack(images)


def _fresh_copy(generator: torch.Generator) -> torch.Generator:
    copy = torch.Generator("cpu")
    copy.set_state(generator.get_state())
    return copy


def place_centred(target: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """`noise` (C, h, w) put centred into `target` (C, H, W): where it is larger, its centre is kept."""
    dx = (target.shape[2] - noise.shape[2]) // 2
    dy = (target.shape[1] - noise.shape[1]) // 2
    w = noise.shape[2] if dx >= 0 else noise.shape[2] + 2 * dx
    h = noise.shape[1] if dy >= 0 else noise.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    target[:, ty : ty + h, tx : tx + w] = noise[:, sy : sy + h, sx : sx + w]
    return target
