"""txt2img, with A1111's hires fix as an optional second pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from engine.requests import HiresUpscaler, RunControl, hires_size
from engine.tasks.img2img import img2img_latents
from engine.tasks.sampling import (
    Prepared,
    decode_latents,
    denoise,
    encode_images,
    latent_shape,
    new_scheduler,
    seeded_noise,
)


def run_txt2img(
    prep: Prepared,
    seeds: Sequence[int],
    variation_seeds: Sequence[int] | None,
    control: RunControl,
    first_index: int,
) -> list[Image.Image]:
    """One batch: noise from each image's seed, denoise, then the hires pass if asked, then decode."""
    p = prep.params
    # 1. Per-image generators and starting noise.
    generators, noise = seeded_noise(prep, seeds, variation_seeds, p.width, p.height)
    # 2. Denoise from pure noise.
    scheduler = new_scheduler(prep, p.steps, seeds)
    latents = noise * scheduler.init_noise_sigma
    latents = denoise(
        prep,
        latents,
        scheduler,
        scheduler.timesteps,
        generators,
        control,
        phase="txt2img",
        first_index=first_index,
        size=(p.width, p.height),
    )
    # 3. Hires fix: upscale, then img2img at the larger size with fresh noise from the same seeds.
    if p.hires is not None:
        first_pass = len(scheduler.timesteps)
        latents = _hires_pass(prep, latents, seeds, variation_seeds, control, first_index, first_pass)
    # 4. Decode.
    return decode_latents(prep.model, latents)


def _hires_pass(
    prep: Prepared,
    latents: torch.Tensor,
    seeds: Sequence[int],
    variation_seeds: Sequence[int] | None,
    control: RunControl,
    first_index: int,
    first_pass_steps: int,
) -> torch.Tensor:
    """Upscale, then img2img at the larger size; prompt schedules count on from the first pass (A1111)."""
    p, hires = prep.params, prep.params.hires
    assert hires is not None
    width, height = hires_size(p.width, p.height, hires.scale)
    shape = latent_shape(prep.model, width, height)
    if hires.upscaler in (HiresUpscaler.LATENT, HiresUpscaler.LATENT_NEAREST):
        mode = "bilinear" if hires.upscaler is HiresUpscaler.LATENT else "nearest"
        upscaled = torch.nn.functional.interpolate(latents, size=shape[1:], mode=mode)
    else:
        resample = (
            Image.Resampling.LANCZOS if hires.upscaler is HiresUpscaler.LANCZOS else Image.Resampling.NEAREST
        )
        images = [img.resize((width, height), resample) for img in decode_latents(prep.model, latents)]
        upscaled = encode_images(prep.model, images)
    generators, noise = seeded_noise(prep, seeds, variation_seeds, width, height)
    return img2img_latents(
        prep,
        upscaled,
        noise,
        generators,
        hires.denoising_strength,
        hires.steps or p.steps,
        control,
        phase="hires",
        first_index=first_index,
        size=(width, height),
        first_pass_steps=first_pass_steps,
    )
