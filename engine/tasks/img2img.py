"""img2img: encode the input, noise it to the strength's point of the schedule, denoise from there."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from engine.requests import Img2ImgRequest, ResizeMode, RunControl
from engine.tasks.refiner import decoding_model
from engine.tasks.resize import resize_image
from engine.tasks.sampling import (
    KeepOriginal,
    Prepared,
    decode_latents,
    denoise,
    encode_images,
    latent_shape,
    new_scheduler,
    seeded_noise,
    strength_timesteps,
)


def img2img_latents(
    prep: Prepared,
    init_latents: torch.Tensor,
    noise: torch.Tensor,
    generators: Sequence[torch.Generator],
    strength: float,
    steps: int,
    control: RunControl,
    *,
    phase: str,
    first_index: int,
    size: tuple[int, int],
    keep: KeepOriginal | None = None,
    extra_channels: torch.Tensor | None = None,
    first_pass_steps: int | None = None,
) -> torch.Tensor:
    """Denoise `init_latents` with `strength` (0 = unchanged, 1 = from pure noise) over steps × strength steps.

    Prompt schedules count this pass's full schedule from its first step run (as A1111's img2img);
    `first_pass_steps` (the hires pass) makes them count after a first pass of that many steps."""
    scheduler = new_scheduler(prep, steps, [g.initial_seed() for g in generators])
    full = len(scheduler.timesteps)
    prompt_steps = (full, None) if first_pass_steps is None else (first_pass_steps, full)
    timesteps = strength_timesteps(scheduler, steps, strength)
    if len(timesteps) == 0:
        return init_latents
    batch = noise.shape[0]
    latents = scheduler.add_noise(init_latents.expand(batch, -1, -1, -1), noise, timesteps[:1].repeat(batch))
    return denoise(
        prep,
        latents,
        scheduler,
        timesteps,
        generators,
        control,
        phase=phase,
        first_index=first_index,
        size=size,
        keep=keep,
        extra_channels=extra_channels,
        prompt_steps=prompt_steps,
    )


def run_img2img(
    prep: Prepared,
    request: Img2ImgRequest,
    seeds: Sequence[int],
    variation_seeds: Sequence[int] | None,
    control: RunControl,
    first_index: int,
) -> list[Image.Image]:
    """One batch of img2img from the request's image."""
    p = prep.params
    # 1. Strength 0 changes nothing: return the resized input rather than a lossy VAE round trip.
    if request.denoising_strength == 0:
        resized = resize_image(request.resize_mode, request.image.convert("RGB"), p.width, p.height)
        return [resized.copy() for _ in seeds]
    # 2. Encode the input at the target size (latent upscale: at its own size, then resize the latents).
    init_latents = _init_latents(prep, request)
    # 3. Noise from each image's seed, scaled by the noise multiplier, and denoise.
    generators, noise = seeded_noise(prep, seeds, variation_seeds, p.width, p.height)
    noise = noise * request.noise_multiplier
    latents = img2img_latents(
        prep,
        init_latents,
        noise,
        generators,
        request.denoising_strength,
        p.steps,
        control,
        phase="img2img",
        first_index=first_index,
        size=(p.width, p.height),
    )
    return decode_latents(decoding_model(prep), latents)  # the refiner's VAE once it took over


def _init_latents(prep: Prepared, request: Img2ImgRequest) -> torch.Tensor:
    p = prep.params
    image = request.image.convert("RGB")
    if request.resize_mode is not ResizeMode.LATENT_UPSCALE:
        return encode_images(prep.model, [resize_image(request.resize_mode, image, p.width, p.height)])
    own_size = (max(8, image.width // 8 * 8), max(8, image.height // 8 * 8))
    latents = encode_images(prep.model, [image.resize(own_size, Image.Resampling.LANCZOS)])
    return torch.nn.functional.interpolate(
        latents, size=latent_shape(prep.model, p.width, p.height)[1:], mode="bilinear"
    )
