"""`salon imagine`, `salon img2img` and `salon inpaint`: options into a request, through the queue (which
checks it against the limits and the samplers, the extensions' included)."""

from __future__ import annotations

import argparse

from cli.queueing import through_queue
from config import Settings


def _generation_request(args: argparse.Namespace, settings: Settings, default_size: tuple[int, int] | None):
    from app.oneshot import model_registry
    from commands.generation import GenerationOptions, generation_request_for

    hires = getattr(args, "hires", None)
    options = GenerationOptions(
        args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        sampler=args.sampler,
        schedule=args.schedule,
        steps=args.steps,
        cfg_scale=args.cfg,
        seed=args.seed,
        size=args.size,
        batch_size=args.batch,
        batch_count=args.batch_count,
        clip_skip=args.clip_skip,
        tiling=args.tiling,
        variation_seed=args.variation_seed,
        variation_strength=args.variation_strength,
        hires_scale=hires,
        hires_steps=getattr(args, "hires_steps", 0),
        hires_denoising_strength=getattr(args, "hires_denoise", 0.7),
        hires_upscaler=getattr(args, "hires_upscaler", "Latent"),
    )
    return generation_request_for(
        options, settings, model_registry(settings), settings.limits, None, default_size
    )


def imagine(args: argparse.Namespace, settings: Settings) -> int:
    from app.worker import load_extensions

    extensions = load_extensions(settings)  # once: the queue checks samplers against theirs too
    request = _generation_request(args, settings, None)  # the model's own size unless --size
    return through_queue(settings, request, args.output, extensions)


def _image_size(image) -> tuple[int, int]:
    from commands.options import output_size_for

    return output_size_for(image)


def img2img(args: argparse.Namespace, settings: Settings) -> int:
    from app.worker import load_extensions
    from commands.options import img2img_request, load_input_image

    extensions = load_extensions(settings)  # once: the queue checks samplers against theirs too
    image = load_input_image(args.image, settings.limits)
    params = _generation_request(args, settings, _image_size(image))
    request = img2img_request(
        params,
        image,
        denoising_strength=args.strength,
        resize_mode=args.resize_mode,
        noise_multiplier=args.noise_multiplier,
    )
    return through_queue(settings, request, args.output, extensions)


def inpaint(args: argparse.Namespace, settings: Settings) -> int:
    from app.worker import load_extensions
    from commands.options import inpaint_request, load_input_image, region_mask

    extensions = load_extensions(settings)  # once: the queue checks samplers against theirs too
    image = load_input_image(args.image, settings.limits)
    params = _generation_request(args, settings, _image_size(image))
    mask = (
        region_mask(image, args.region)
        if args.region
        else load_input_image(args.mask, settings.limits, "mask")
    )
    request = inpaint_request(
        params,
        image,
        mask,
        denoising_strength=args.strength,
        resize_mode=args.resize_mode,
        mask_blur=args.mask_blur,
        masked_content=args.masked_content,
        inpaint_area=args.inpaint_area,
        padding=args.padding,
    )
    return through_queue(settings, request, args.output, extensions)
