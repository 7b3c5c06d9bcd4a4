"""txt2img, with A1111's hires fix as an optional second pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from engine.requests import HiresUpscaler, RunControl, hires_plan
from engine.tasks.img2img import img2img_latents
from engine.tasks.refiner import decoding_model
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
    # 4. Decode (with the refiner's VAE once a refiner took over, as A1111).
    return decode_latents(decoding_model(prep), latents)


def _hires_pass(
    prep: Prepared,
    latents: torch.Tensor,
    seeds: Sequence[int],
    variation_seeds: Sequence[int] | None,
    control: RunControl,
    first_index: int,
    first_pass_steps: int,
) -> torch.Tensor:
    """Upscale (then crop, for "resize to" both sides), then img2img at the larger size with the hires pass's
    own sampler, CFG scale and prompts where given; prompt schedules count on from the first pass (A1111)."""
    p, hires = prep.params, prep.params.hires
    assert hires is not None
    (width, height), final = hires_plan(p.width, p.height, hires)
    shape = latent_shape(prep.model, width, height)
    if hires.upscaler in (HiresUpscaler.LATENT, HiresUpscaler.LATENT_NEAREST):
        mode = "bilinear" if hires.upscaler is HiresUpscaler.LATENT else "nearest"
        upscaled = torch.nn.functional.interpolate(latents, size=shape[1:], mode=mode)
    elif prep.pixel_upscaler is not None:  # a model upscaler (engine.upscaling.hires), on decoded pixels
        images = [prep.pixel_upscaler(img, (width, height)) for img in decode_latents(prep.model, latents)]
        upscaled = encode_images(prep.model, images)
    else:
        resample = (
            Image.Resampling.LANCZOS if hires.upscaler is HiresUpscaler.LANCZOS else Image.Resampling.NEAREST
        )
        images = [img.resize((width, height), resample) for img in decode_latents(prep.model, latents)]
        upscaled = encode_images(prep.model, images)
    upscaled = _crop(upscaled, (width, height), final, prep.model.vae_scale_factor)
    second = prep.hires or prep
    generators, noise = seeded_noise(second, seeds, variation_seeds, *final)
    return img2img_latents(
        second,
        upscaled,
        noise,
        generators,
        hires.denoising_strength,
        hires.steps or p.steps,
        control,
        phase="hires",
        first_index=first_index,
        size=final,
        first_pass_steps=first_pass_steps,
    )


def _crop(latents: torch.Tensor, size: tuple[int, int], final: tuple[int, int], factor: int) -> torch.Tensor:
    """The centre of latents upscaled to `size`, cut to `final` (A1111's hires truncation)."""
    cut_x, cut_y = (size[0] - final[0]) // factor, (size[1] - final[1]) // factor
    if cut_x <= 0 and cut_y <= 0:
        return latents
    h, w = latents.shape[-2:]
    return latents[..., cut_y // 2 : h - (cut_y + 1) // 2, cut_x // 2 : w - (cut_x + 1) // 2]
