"""A1111 bodies into Salon requests, and finished jobs back into A1111 answers.

A body becomes the same `GenerationOptions` the bot and the CLI build, and goes through the one request
builder (`commands.generation.generation_request_for`) and the option parsers of `commands/options.py`; the
limits are checked once, by the queue at submit. What this module adds is only A1111's vocabulary: field
names, numeric codes (resize_mode 0–3, inpainting_fill 0–3), base64 images, and a 422 naming every field
Salon has no equivalent for when it holds anything but A1111's neutral value.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from api.controlnet import SCRIPT_NAMES, script_units
from api.schemas import GenerationBody, Img2ImgBody, Txt2ImgBody
from commands.generation import GenerationOptions, generation_request_for
from commands.options import img2img_request, inpaint_request, load_input_image
from commands.styles import apply_style, load_styles
from config import Limits, Settings
from core.errors import InvalidRequest
from engine.models.registry import ModelRegistry
from engine.requests import InpaintArea, MaskedContent, ResizeMode
from engine.tasks.samplers import ETA_SAMPLERS

# A1111's numeric codes, in A1111's order.
RESIZE_MODES = (ResizeMode.JUST_RESIZE, ResizeMode.CROP_AND_RESIZE, ResizeMode.RESIZE_AND_FILL,
                ResizeMode.LATENT_UPSCALE)  # fmt: skip
INPAINTING_FILLS = (MaskedContent.FILL, MaskedContent.ORIGINAL, MaskedContent.LATENT_NOISE,
                    MaskedContent.LATENT_NOTHING)  # fmt: skip

# Salon's option names (in InvalidRequest) → the A1111 field a client sent.
FIELD_OF_OPTION = {
    "sampler": "sampler_name",
    "schedule": "scheduler",
    "batch_count": "n_iter",
    "variation_seed": "subseed",
    "variation_strength": "subseed_strength",
    "clip_skip": "override_settings.CLIP_stop_at_last_layers",
    "model": "override_settings.sd_model_checkpoint",
    "hires_scale": "hr_scale",
    "hires_steps": "hr_second_pass_steps",
    "hires_denoising_strength": "denoising_strength",
    "hires_upscaler": "hr_upscaler",
    "hires_prompt": "hr_prompt",
    "hires_negative_prompt": "hr_negative_prompt",
    "hires_sampler": "hr_sampler_name",
    "hires_schedule": "hr_scheduler",
    "hires_cfg_scale": "hr_cfg",
    "hires_resize": "hr_resize_x",
    "hires_resize_width": "hr_resize_x",
    "hires_resize_height": "hr_resize_y",
    "width × height": "width",
    "noise_multiplier": "initial_noise_multiplier",
    "image": "init_images",
    "masked_content": "inpainting_fill",
    "style": "styles",
    "vae": "override_settings.sd_vae",
    "seed_resize_from": "seed_resize_from_w",
    "seed_resize_from_w": "seed_resize_from_w",
    "seed_resize_from_h": "seed_resize_from_h",
    "refiner": "refiner_checkpoint",
    "refiner_switch_at": "refiner_switch_at",
    "face_restorer": "restore_faces",
    "code_former_weight": "override_settings.code_former_weight",
}

# Fields Salon has no equivalent for, with the values that mean "not used" (A1111's defaults, and what the
# `webuiapi` client sends by default).
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "s_min_uncond": (None, 0.0),
    "s_churn": (None, 0.0),
    "s_tmax": (None, 0.0, float("inf")),
    "s_tmin": (None, 0.0),
    "s_noise": (None, 1.0),
    "firstpass_image": (None, ""),
    "infotext": (None, ""),
    "disable_extra_networks": (False,),
    "comments": (None,),
}
HR_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "hr_checkpoint_name": (None, "", "Use same checkpoint"),
    "firstphase_width": (0,),
    "firstphase_height": (0,),
}
IMG2IMG_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "latent_mask": (None, ""),
    "image_cfg_scale": (None, 1.5),  # only instruct-pix2pix models use it; A1111 ignores it for others
}
WRITABLE_OVERRIDES = (
    "sd_model_checkpoint",
    "CLIP_stop_at_last_layers",
    "sd_vae",
    "face_restoration_model",
    "code_former_weight",
)


class Unsupported(InvalidRequest):
    """A field Salon cannot honour; `option` is the A1111 field name."""


def _refuse_unless_neutral(body: GenerationBody, table: Mapping[str, tuple[Any, ...]]) -> None:
    for name, neutral in table.items():
        value = getattr(body, name)
        if value not in neutral:
            raise Unsupported(
                name, f"{value!r} is not supported by Salon (send {neutral[-1]!r} or leave it out)"
            )


def check_supported(body: GenerationBody) -> None:
    """Refuse, naming the field, everything Salon would otherwise have to ignore."""
    _refuse_unless_neutral(body, NEUTRAL)
    if body.script_name:
        raise Unsupported(
            "script_name", f"Salon has no script {body.script_name!r}; it runs no A1111 scripts"
        )
    if body.script_args:
        raise Unsupported("script_args", "Salon runs no A1111 scripts")
    for name in body.alwayson_scripts:
        if name.casefold() not in SCRIPT_NAMES:  # sd-webui-controlnet's: api/controlnet.py
            raise Unsupported(f"alwayson_scripts.{name}", "Salon runs no A1111 scripts but ControlNet")
    for key in body.override_settings or {}:
        if key not in WRITABLE_OVERRIDES:
            raise Unsupported(
                f"override_settings.{key}", f"Salon can override only {', '.join(WRITABLE_OVERRIDES)}"
            )
    vae = (body.override_settings or {}).get("sd_vae", None)
    if vae is not None and not isinstance(vae, str):
        raise Unsupported("override_settings.sd_vae", "send a VAE's name, Automatic or None")
    if isinstance(body, Txt2ImgBody) and body.enable_hr:
        _refuse_unless_neutral(body, HR_NEUTRAL)
    if isinstance(body, Img2ImgBody):
        _refuse_unless_neutral(body, IMG2IMG_NEUTRAL)


def _model_name(value: object, field: str) -> str | None:
    """A checkpoint by name (A1111's title "name [hash]" too), never a path."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "/" in value or "\\" in value or value.startswith("."):
        raise Unsupported(field, "give a model by the name /sdapi/v1/sd-models lists, not a path")
    return value.replace(".safetensors", "")  # A1111 titles may carry the suffix


def model_title(registry: ModelRegistry, entry) -> str:
    """A checkpoint's title as A1111 lists it ("name [short hash]"); `registry.find` reads it back."""
    return f"{entry.name} [{registry.short_hash(entry)}]"


def _clip_skip(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise Unsupported(field, f"{value!r} is not a whole number")
    return int(value)


def _schedule(value: str | None) -> str | None:
    """A1111's scheduler names ("karras", "sgm_uniform", "automatic") as Salon's labels (matched casefolded)."""
    return value.replace("_", " ") if value else None


def generation_options(
    body: GenerationBody, settings: Settings, defaults: Mapping[str, Any]
) -> GenerationOptions:
    """The front-end-neutral options of a body; `defaults` are the caller's /sdapi/v1/options."""
    check_supported(body)
    overrides = body.override_settings or {}
    prompt, negative = body.prompt, body.negative_prompt or ""
    if body.styles:
        styles = load_styles(settings.styles_file)
        for name in body.styles:
            prompt, negative = apply_style(styles, name, prompt, negative)
    model = _model_name(overrides.get("sd_model_checkpoint"), "override_settings.sd_model_checkpoint")
    clip_skip = _clip_skip(
        overrides.get("CLIP_stop_at_last_layers"), "override_settings.CLIP_stop_at_last_layers"
    )
    hires: dict[str, Any] = {}
    if isinstance(body, Txt2ImgBody) and body.enable_hr:
        hires = {
            "hires_scale": body.hr_scale,
            "hires_steps": body.hr_second_pass_steps,
            "hires_denoising_strength": 0.7 if body.denoising_strength is None else body.denoising_strength,
            "hires_upscaler": body.hr_upscaler or "Latent",
            "hires_prompt": body.hr_prompt or "",
            "hires_negative_prompt": body.hr_negative_prompt or "",
            "hires_sampler": body.hr_sampler_name,
            "hires_schedule": _schedule(body.hr_scheduler),
            "hires_cfg_scale": body.hr_cfg,
            "hires_resize": f"{body.hr_resize_x}x{body.hr_resize_y}"
            if body.hr_resize_x or body.hr_resize_y
            else None,
        }
    return GenerationOptions(
        prompt,
        negative_prompt=negative,
        model=model or defaults.get("sd_model_checkpoint"),
        sampler=body.sampler_name or body.sampler_index or "Euler",
        schedule=_schedule(body.scheduler),
        steps=body.steps,
        cfg_scale=body.cfg_scale,
        seed=body.seed,
        width=body.width,
        height=body.height,
        batch_size=body.batch_size,
        batch_count=body.n_iter,
        clip_skip=clip_skip if clip_skip is not None else defaults.get("CLIP_stop_at_last_layers"),
        tiling=bool(body.tiling),
        variation_seed=body.subseed,
        variation_strength=body.subseed_strength,
        **hires,
        **_seed_extras(body, overrides.get("sd_vae")),
        **_face_restoration(body, {**defaults, **overrides}),  # the caller's options, then the body's
        **_flow_fields(body),
        controlnet=script_units(body.alwayson_scripts, _decoder(settings)),
    )


def _decoder(settings: Settings):
    def decode(data: str, field: str) -> Image.Image:
        return decode_image(data, settings.limits, field)

    return decode


def _face_restoration(body: GenerationBody, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A1111's `restore_faces`, with the restorer and CodeFormer weight of `override_settings`
    (`face_restoration_model`, `code_former_weight`; else the server's settings)."""
    if not body.restore_faces:
        return {}
    name = overrides.get("face_restoration_model")
    if name is not None and not isinstance(name, str):
        raise Unsupported(
            "override_settings.face_restoration_model", "send CodeFormer, GFPGAN or a file's name"
        )
    weight = overrides.get("code_former_weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)):
        raise Unsupported("override_settings.code_former_weight", "send a number from 0 to 1")
    return {"restore_faces": True, "face_restorer": name or None, "code_former_weight": weight}


FORGE_DISTILLED_CFG = 3.5  # Forge's default, which its clients send for every model


def _flow_fields(body: GenerationBody) -> dict[str, Any]:
    """Forge's `distilled_cfg_scale` (its default 3.5, sent for any model, is Flux dev's own: none given) and
    `shift`, for SD 3.5 / Flux; the queue refuses them by name on other models."""
    distilled = body.distilled_cfg_scale
    return {
        "distilled_cfg_scale": None if distilled == FORGE_DISTILLED_CFG else distilled,
        "shift": body.shift,
    }


def _seed_extras(body: GenerationBody, vae: str | None) -> dict[str, Any]:
    """`sd_vae` (None: the server's default VAE), `seed_resize_from_w/h` (used when both are > 0, as A1111
    does), `eta` (1.0, what clients send by default, is the k-diffusion samplers' own eta: none given) and the
    refiner (none unless `refiner_checkpoint` names one, as A1111's API)."""
    width, height = body.seed_resize_from_w or 0, body.seed_resize_from_h or 0
    sampler = body.sampler_name or body.sampler_index or "Euler"
    eta = body.eta
    if eta == 1.0 and ETA_SAMPLERS.get(sampler, ("", 1.0))[1] == 1.0:  # what clients send: the default's eta
        eta = None
    refiner = body.refiner_checkpoint  # A1111's title "name [hash]" or a name; "" / "None": none
    return {
        "vae": vae or None,
        "seed_resize_from": f"{width}x{height}" if width > 0 and height > 0 else None,
        "eta": eta,
        "refiner": "None" if refiner in (None, "", "None") else refiner,
        "refiner_switch_at": body.refiner_switch_at,
    }


def txt2img_request(
    body: Txt2ImgBody, settings: Settings, registry: ModelRegistry, defaults: Mapping[str, Any]
):
    options = generation_options(body, settings, defaults)
    return generation_request_for(
        options, settings, registry, settings.limits, None, (body.width, body.height)
    )


def decode_image(data: str, limits: Limits, field: str) -> Image.Image:
    """A base64 image (optionally a data: URL), its size checked before decoding and its header before the
    pixels are (commands.options.load_input_image). URLs are not fetched."""
    return load_input_image(base64_bytes(data, limits, field), limits, field)


def base64_bytes(data: str, limits: Limits, field: str) -> bytes:
    """The bytes of a base64 file (optionally a data: URL), refused by its length before it is decoded."""
    text = data.strip()
    if text.startswith(("http://", "https://")):
        raise Unsupported(field, "Salon does not fetch images from URLs; send the image as base64")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) > (limits.max_upload_bytes * 4) // 3 + 4:
        raise Unsupported(field, f"the file is larger than {limits.max_upload_bytes:,} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Unsupported(field, "is not base64") from None


def img2img_request_of(
    body: Img2ImgBody, settings: Settings, registry: ModelRegistry, defaults: Mapping[str, Any]
):
    """An img2img request, or an inpaint request when the body has a mask."""
    images = body.init_images or []
    if len(images) != 1:
        raise Unsupported("init_images", f"give exactly one image ({len(images)} given)")
    if body.resize_mode not in range(len(RESIZE_MODES)):
        raise Unsupported("resize_mode", f"{body.resize_mode!r} is not one of 0, 1, 2, 3")
    limits = settings.limits
    image = decode_image(images[0], limits, "init_images")
    params = generation_request_for(
        generation_options(body, settings, defaults),
        settings,
        registry,
        limits,
        None,
        (body.width, body.height),
    )
    strength = 0.75 if body.denoising_strength is None else body.denoising_strength
    resize = RESIZE_MODES[body.resize_mode].value
    if not body.mask:
        noise = 1.0 if body.initial_noise_multiplier is None else body.initial_noise_multiplier
        return img2img_request(
            params, image, denoising_strength=strength, resize_mode=resize, noise_multiplier=noise
        )
    if body.initial_noise_multiplier not in (None, 1.0):
        raise Unsupported("initial_noise_multiplier", "inpainting in Salon uses no extra noise (send 1)")
    if body.inpainting_fill not in range(len(INPAINTING_FILLS)):
        raise Unsupported("inpainting_fill", f"{body.inpainting_fill!r} is not one of 0, 1, 2, 3")
    if body.inpainting_mask_invert not in (0, 1):
        raise Unsupported("inpainting_mask_invert", f"{body.inpainting_mask_invert!r} is not 0 or 1")
    blur = body.mask_blur
    if blur is None:
        if body.mask_blur_x != body.mask_blur_y:
            raise Unsupported("mask_blur_y", "Salon blurs the mask the same way across and down")
        blur = body.mask_blur_x
    mask = decode_image(body.mask, limits, "mask").convert("L")
    if body.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    return inpaint_request(
        params,
        image,
        mask,
        denoising_strength=strength,
        resize_mode=resize,
        mask_blur=blur,
        masked_content=INPAINTING_FILLS[body.inpainting_fill].value,
        inpaint_area=(InpaintArea.ONLY_MASKED if body.inpaint_full_res else InpaintArea.WHOLE_PICTURE).value,
        padding=body.inpaint_full_res_padding,
    )


def parameters_of(body: GenerationBody) -> dict[str, Any]:
    """The `parameters` of an answer: the body as received (A1111 returns `vars(request)`), without the
    input images unless `include_init_images`."""
    parameters = body.model_dump()
    if isinstance(body, Img2ImgBody) and not body.include_init_images:
        parameters["init_images"] = None
        parameters["mask"] = None
    return parameters


def info_of(request, body: GenerationBody, infotexts: list[str], created_at: float) -> str:
    """A1111's `Processed.js()`: a JSON string with its keys, from the accepted request and the images'
    infotexts (what each image really holds)."""
    from engine.infotext import parse_infotext

    p = request.params
    parsed = [parse_infotext(text) for text in infotexts]
    seeds = [_int(info.params.get("Seed"), p.seed) for info in parsed] or [p.seed]
    subseeds = [_int(info.params.get("Variation seed"), p.variation_seed) for info in parsed] or [
        p.variation_seed
    ]
    first = parsed[0] if parsed else None
    obj = {
        "prompt": p.prompt,
        "all_prompts": [info.prompt for info in parsed] or [p.prompt],
        "negative_prompt": p.negative_prompt,
        "all_negative_prompts": [info.negative_prompt for info in parsed] or [p.negative_prompt],
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": subseeds[0],
        "all_subseeds": subseeds,
        "subseed_strength": p.variation_strength,
        "width": p.width,
        "height": p.height,
        "sampler_name": first.params.get("Sampler", p.sampler) if first else p.sampler,
        "cfg_scale": p.cfg_scale,
        "steps": p.steps,
        "batch_size": p.batch_size,
        "restore_faces": p.face_restorer is not None,
        "face_restoration_model": p.face_restorer,
        "sd_model_name": first.params.get("Model", p.model) if first else p.model,
        "sd_model_hash": first.params.get("Model hash") if first else None,
        "sd_vae_name": first.vae if first else None,
        "sd_vae_hash": first.vae_hash if first else None,
        "seed_resize_from_w": p.seed_resize_from_w or -1,
        "seed_resize_from_h": p.seed_resize_from_h or -1,
        "denoising_strength": _denoising(request),
        "extra_generation_params": {"Schedule type": first.params.get("Schedule type")} if first else {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": list(body.styles or []),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(created_at)),
        "clip_skip": p.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": first.params.get("Version", "") if first else "",
    }
    return json.dumps(obj)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _denoising(request) -> float | None:
    if hasattr(request, "denoising_strength"):
        return request.denoising_strength
    hires = request.params.hires
    return hires.denoising_strength if hires is not None else None


def encode_file(path: Path) -> str:
    """A result file as A1111 sends it: the PNG bytes (with the infotext chunk) in base64."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


def option_field(option: str) -> str:
    """The A1111 field a Salon option name stands for (the same name where they agree)."""
    return FIELD_OF_OPTION.get(option, option)


def decode_png_info(data: str, limits: Limits) -> dict[str, Any]:
    """`/sdapi/v1/png-info`: the infotext an image carries (A1111's, or another generator's turned into one),
    read from the metadata only, with A1111's parsed `parameters`."""
    from commands.options import generation_info
    from engine.infotext import parse_infotext

    info = generation_info(base64_bytes(data, limits, "image"), limits, "image") or ""
    if not info:
        return {"info": "", "items": {}, "parameters": {}}
    parsed = parse_infotext(info)
    parameters: dict[str, Any] = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt}
    parameters.update(parsed.params)
    size = parsed.params.get("Size", "")
    width, sep, height = size.partition("x")
    if sep:
        parameters["Size-1"], parameters["Size-2"] = width, height
    return {"info": info, "items": {}, "parameters": parameters}
