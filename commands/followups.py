"""New requests made from earlier results: reroll, variations, upscale, edit, and "run again" from infotext.

These are what the buttons under a result do (SPEC §2), written once for every front end. Each takes the
job's stored request (or an image's infotext) and returns a new request plus the catalog relation; the queue
checks it against the limits when it is submitted, as any other request.
"""

from __future__ import annotations

import dataclasses

from catalog.records import ImageRecord, Relation
from config import Limits
from core.errors import InvalidRequest
from engine.controlnet.unit_text import units_from_infotext
from engine.hires_infotext import has_hires, hires_from_infotext
from engine.infotext import check_prompt, parse_infotext
from engine.requests import (
    DEFAULT_CFG_SCALE,
    DEFAULT_REFINER_SWITCH_AT,
    DEFAULT_SAMPLER,
    DEFAULT_SIZE,
    DEFAULT_STEPS,
    GenerationRequest,
    HiresFix,
    Img2ImgRequest,
    ResizeMode,
    hires_size,
    hires_upscaler,
    vae_choice,
    with_params,
)
from engine.tasks.samplers import AUTOMATIC, ETA_SAMPLERS
from jobs.codec import AnyRequest

VARIATION_STRENGTH = 0.15  # like Midjourney's subtle variations: same composition, other details
UPSCALE_SCALE = 2.0
UPSCALE_DENOISING = 0.5  # the hires pass keeps the picture and adds detail
REFINE_DENOISING = 0.35  # upscaling an img2img/inpaint result: img2img of the image at the larger size


def reroll(request: AnyRequest) -> AnyRequest:
    """The same settings with new random seeds."""
    params = dataclasses.replace(request.params, seed=-1, variation_seed=-1, variation_strength=0.0)
    return with_params(request, params)


def variation(request: AnyRequest, image: ImageRecord, strength: float = VARIATION_STRENGTH) -> AnyRequest:
    """One image like `image`: its seed, blended with a new variation seed (A1111 subseed)."""
    if image.seed is None:
        raise InvalidRequest("image", f"image {image.id} has no seed to vary")
    params = dataclasses.replace(
        request.params,
        seed=image.seed,
        variation_seed=-1,
        variation_strength=strength,
        batch_size=1,
        batch_count=1,
    )
    return with_params(request, params)


def upscale(
    request: AnyRequest, image: ImageRecord, limits: Limits, upscaler: str | None = None
) -> tuple[AnyRequest, float]:
    """`image` at up to twice its size: the hires-fix pass of the same seed for a txt2img image (its upscaler
    `upscaler`, a model upscaler's name such as the server's `default_upscaler`; None: Latent), or an img2img
    refinement of the image itself otherwise. Returns the request and the scale used."""
    scale = _largest_scale(image.width, image.height, limits)
    params = dataclasses.replace(request.params, batch_size=1, batch_count=1)
    if isinstance(request, GenerationRequest) and request.hires is None and image.seed is not None:
        hires = HiresFix(scale, 0, UPSCALE_DENOISING, hires_upscaler(upscaler))
        params = dataclasses.replace(params, seed=image.seed, variation_strength=0.0, hires=hires)
        return params, scale
    from PIL import Image

    width, height = hires_size(image.width, image.height, scale)
    with Image.open(image.path) as opened:
        source = opened.convert("RGB")
    params = dataclasses.replace(
        params, width=width, height=height, hires=None, seed=-1, variation_strength=0.0
    )
    return Img2ImgRequest(params, source, REFINE_DENOISING, ResizeMode.JUST_RESIZE), scale


def _largest_scale(width: int, height: int, limits: Limits) -> float:
    scale = min(
        UPSCALE_SCALE,
        limits.max_width / width,
        limits.max_height / height,
        (limits.max_pixels / (width * height)) ** 0.5,
    )
    if scale < 1.25:
        raise InvalidRequest(
            "upscale", f"{width}x{height} is already about the largest size this server allows"
        )
    return scale


def edited(request: AnyRequest, **changes: object) -> AnyRequest:
    """The request with some settings changed by hand (the ✏️ modal); −1 or a missing seed = new seed."""
    params = dataclasses.replace(request.params, **changes, variation_strength=0.0)  # type: ignore[arg-type]
    check_prompt("prompt", params.prompt)
    check_prompt("negative_prompt", params.negative_prompt)
    return with_params(request, params)


def from_infotext(
    text: str,
    known_models: set[str],
    known_vaes: set[str] | None = None,
    known_upscalers: set[str] | frozenset[str] = frozenset(),
) -> tuple[GenerationRequest, list[str]]:
    """A txt2img request repeating an A1111 infotext, and notes on what could not be repeated. `known_vaes`:
    the installed VAE names (None: the infotext's VAE is kept, and refused later if it is missing);
    `known_upscalers`: the installed model upscalers (a hires upscaler not among them becomes Latent)."""
    info = parse_infotext(text)
    if not info.prompt and not info.params:
        raise InvalidRequest("image", "it carries no generation parameters")
    notes = []
    model = info.model if info.model in known_models else None
    if info.model and model is None:
        notes.append(f"model {info.model!r} is not installed here; the default model is used")
    width, height = info.size or (DEFAULT_SIZE, DEFAULT_SIZE)
    hires = None
    if has_hires(info.params):
        hires = hires_from_infotext(info.params, info.denoising_strength, notes, known_upscalers)
    request = GenerationRequest(
        prompt=info.prompt,
        negative_prompt=info.negative_prompt,
        model=model,
        sampler=info.sampler or DEFAULT_SAMPLER,
        schedule=info.schedule_type or AUTOMATIC,
        steps=info.steps or DEFAULT_STEPS,
        cfg_scale=info.cfg_scale or DEFAULT_CFG_SCALE,
        seed=info.seed if info.seed is not None else -1,
        width=width,
        height=height,
        clip_skip=info.clip_skip,
        tiling=info.params.get("Tiling", "").lower() == "true",
        variation_seed=info.variation_seed if info.variation_seed is not None else -1,
        variation_strength=info.variation_seed_strength or 0.0,
        hires=hires,
        controlnet=units_from_infotext(info.params),
        **_seed_extras_of(info, known_vaes, notes),
        **_refiner_of(info, known_models, notes),
        face_restorer=info.params.get("Face restoration") or None,  # A1111's restorer name, run again
        **_flow_of(info.params, model, notes),
    )
    if request.controlnet:
        notes.append(
            f"{len(request.controlnet)} ControlNet unit(s) repeated: an infotext does not hold the control "
            "image, give it again"
        )
    return request, notes


# SD 3.5 / Flux keys (Forge's) → request fields
_FLOW_KEYS = {"Distilled CFG Scale": "distilled_cfg_scale", "Shift": "shift"}


def _flow_of(params: dict[str, str], model: str | None, notes: list[str]) -> dict:
    """Forge's `Distilled CFG Scale` and `Shift` as request fields, when the infotext's model is installed
    here (another model, the default one, may be SD 1.x / SDXL, which takes neither)."""
    found = {}
    for key, field in _FLOW_KEYS.items():
        if key not in params:
            continue
        try:
            value = float(params[key])
        except ValueError:
            notes.append(f"{key} {params[key]!r} is not a number; it is left out")
            continue
        if model is None:
            notes.append(
                f"{key} is left out: it belongs to the infotext's model, which is not installed here"
            )
            continue
        found[field] = value
    return found


def _refiner_of(info, known_models: set[str], notes: list[str]) -> dict:
    """A1111's refiner and its switch fraction, when the refiner is installed here."""
    if info.refiner is None:
        return {}
    if info.refiner not in known_models:
        notes.append(f"refiner {info.refiner!r} is not installed here; the image is made without it")
        return {}
    return {"refiner": info.refiner, "refiner_switch_at": info.refiner_switch_at or DEFAULT_REFINER_SWITCH_AT}


def _seed_extras_of(info, known_vaes: set[str] | None, notes: list[str]) -> dict:
    """The VAE, resize seed from, eta and ENSD of an infotext, as request fields."""
    vae = vae_choice(info.vae)
    if (
        vae is not None
        and known_vaes is not None
        and vae.casefold() not in {v.casefold() for v in known_vaes}
    ):
        notes.append(f"VAE {info.vae!r} is not installed here; the checkpoint's own VAE is used")
        vae = None
    width, height = info.seed_resize_from or (0, 0)
    eta = info.eta
    takes_eta = ETA_SAMPLERS.get(info.sampler or "", ("",))[0] == "Eta"  # an ancestral or SDE sampler
    if "Eta" in info.params and "Eta DDIM" not in info.params and not takes_eta:
        notes.append("the infotext's Eta is for a sampler that takes no eta here; it is left out")
        eta = None
    return {
        "vae": vae,
        "seed_resize_from_w": width,
        "seed_resize_from_h": height,
        "eta": eta,
        "eta_noise_seed_delta": info.ensd,
    }


RELATIONS = {"reroll": Relation.REROLL, "variation": Relation.VARIATION, "upscale": Relation.UPSCALE}
