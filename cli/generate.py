"""`salon imagine`, `salon img2img` and `salon inpaint`: options into a request, through the queue (which
checks it against the limits and the samplers, the extensions' included)."""

from __future__ import annotations

import argparse

from cli.queueing import through_queue
from config import Settings

# Options of `salon imagine`/`img2img`/`inpaint` → fields of GenerationOptions (None: not typed).
_TYPED_FIELDS = {
    "negative": "negative_prompt",
    "model": "model",
    "sampler": "sampler",
    "schedule": "schedule",
    "steps": "steps",
    "cfg": "cfg_scale",
    "seed": "seed",
    "batch": "batch_size",
    "batch_count": "batch_count",
    "clip_skip": "clip_skip",
    "tiling": "tiling",
    "variation_seed": "variation_seed",
    "variation_strength": "variation_strength",
    "hires": "hires_scale",
    "hires_steps": "hires_steps",
    "hires_denoise": "hires_denoising_strength",
    "hires_upscaler": "hires_upscaler",
    "hires_resize": "hires_resize",
    "hires_prompt": "hires_prompt",
    "hires_negative": "hires_negative_prompt",
    "hires_sampler": "hires_sampler",
    "hires_schedule": "hires_schedule",
    "hires_cfg": "hires_cfg_scale",
    "vae": "vae",
    "seed_resize_from": "seed_resize_from",
    "eta": "eta",
    "refiner": "refiner",
    "refiner_switch_at": "refiner_switch_at",
    "restore_faces": "restore_faces",
    "face_restorer": "face_restorer",
    "distilled_cfg": "distilled_cfg_scale",
    "shift": "shift",
}
# What GenerationOptions needs where neither the command line nor a PNG says (the others default to None).
_FIXED_DEFAULTS = {
    "negative_prompt": "",
    "tiling": False,
    "variation_seed": -1,
    "variation_strength": 0.0,
    "hires_steps": 0,
    "hires_denoising_strength": 0.7,
    "hires_upscaler": "Latent",
}


def _typed(args: argparse.Namespace) -> dict:
    """The generation options the user typed, as GenerationOptions fields."""
    typed = {
        field: getattr(args, name)
        for name, field in _TYPED_FIELDS.items()
        if getattr(args, name, None) is not None
    }
    if args.style:
        typed["styles"] = tuple(args.style)
    if args.size is not None:  # --size wins over a PNG's width and height
        typed.update(size=args.size, width=None, height=None)
    return typed


def _generation_request(args: argparse.Namespace, settings: Settings, default_size: tuple[int, int] | None):
    from app.oneshot import model_registry
    from commands.generation import GenerationOptions, generation_request_for
    from core.errors import InvalidRequest

    registry = model_registry(settings)
    base = dict(_FIXED_DEFAULTS)
    if args.from_png is not None:
        base.update(_png_options(args.from_png, settings, registry))
    elif args.prompt is None:
        raise InvalidRequest("prompt", "give a prompt, or --from-png FILE to run again from a PNG's infotext")
    base.update(_typed(args))
    if args.prompt is not None:
        base["prompt"] = args.prompt
    base["controlnet"] = _control_units(args, settings, base.get("controlnet", ()))
    return generation_request_for(
        GenerationOptions(**base), settings, registry, settings.limits, None, default_size
    )


def _control_units(args: argparse.Namespace, settings: Settings, from_png: tuple) -> tuple:
    """--controlnet units (else a PNG's) with their --control-image files."""
    from commands.generation import controlnet_units
    from commands.options import load_input_image

    images = [load_input_image(path, settings.limits, "control_image") for path in args.control_image or ()]
    return controlnet_units(args.controlnet or (), images, from_png)


def _png_options(path, settings: Settings, registry) -> dict:
    """A PNG's infotext as GenerationOptions fields (A1111's "send to txt2img"); notes on what cannot be
    repeated here go to stderr."""
    import sys

    from commands.followups import from_infotext
    from commands.options import generation_info
    from core.errors import InvalidRequest
    from engine.models.registry import ModelKind

    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidRequest("from_png", f"cannot read {path}: {error.strerror or error}") from None
    text = generation_info(data, settings.limits, "from_png")
    if not text or not text.strip():
        raise InvalidRequest("from_png", f"{path} carries no generation parameters (no A1111 infotext)")
    request, notes = from_infotext(
        text,
        set(registry.names(ModelKind.CHECKPOINT)),
        set(registry.names(ModelKind.VAE)),
        set(registry.names(ModelKind.UPSCALER)),
    )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    hires = request.hires
    resized = request.seed_resize_from_w > 0
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "model": request.model,
        "sampler": request.sampler,
        "schedule": request.schedule,
        "steps": request.steps,
        "cfg_scale": request.cfg_scale,
        "seed": request.seed,
        "width": request.width,
        "height": request.height,
        "clip_skip": request.clip_skip,
        "tiling": request.tiling,
        "variation_seed": request.variation_seed,
        "variation_strength": request.variation_strength,
        "hires_scale": hires.scale if hires else None,
        "hires_steps": hires.steps if hires else 0,
        "hires_denoising_strength": hires.denoising_strength if hires else 0.7,
        "hires_upscaler": str(hires.upscaler) if hires else "Latent",
        "hires_prompt": hires.prompt if hires else "",
        "hires_negative_prompt": hires.negative_prompt if hires else "",
        "hires_sampler": hires.sampler or None if hires else None,
        "hires_schedule": hires.schedule or None if hires else None,
        "hires_cfg_scale": hires.cfg_scale if hires else None,
        "hires_resize": f"{hires.resize_width}x{hires.resize_height}"
        if hires and (hires.resize_width or hires.resize_height)
        else None,
        "vae": request.vae or "Automatic",  # none written: the checkpoint's own, not the server's default
        "seed_resize_from": f"{request.seed_resize_from_w}x{request.seed_resize_from_h}" if resized else None,
        "eta": request.eta,
        "eta_noise_seed_delta": request.eta_noise_seed_delta,
        "refiner": request.refiner or "None",  # none written: no refiner, not the server's default
        "refiner_switch_at": request.refiner_switch_at,
        "controlnet": request.controlnet,  # without control images: --control-image gives them again
        "restore_faces": request.face_restorer is not None,  # A1111's `Face restoration: NAME`
        "face_restorer": request.face_restorer,
        "distilled_cfg_scale": request.distilled_cfg_scale,  # SD 3.5 / Flux (`Distilled CFG Scale`, `Shift`)
        "shift": request.shift,
    }


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
