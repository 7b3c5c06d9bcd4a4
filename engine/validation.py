"""The limits every request is checked against, once, when it is queued.

`check_request` is what `JobQueue.submit` (jobs/queue.py) runs on every request, from every front end and
follow-up, with the limits that apply there (a server's lower ones) and the process's sampler table; front
ends only parse what a user typed (`commands/options.py`), and the engine trusts what the queue accepted.
Each error names the option and the allowed values. `check_model_family`, which the queue runs beside it,
refuses what the checkpoint's family cannot run (SD 3.5 and Flux: engine.tasks.flow_rules).
"""

from __future__ import annotations

import re

from config import Limits
from core.errors import InvalidRequest
from engine.controlnet.unit_text import check_units
from engine.models.flow_files import entry_kind
from engine.requests import GenerationRequest, Img2ImgRequest, InpaintRequest, hires_plan
from engine.tasks.flow_rules import MAX_DISTILLED_CFG, SHIFT_RANGE, check_flow_options, check_flow_request
from engine.tasks.samplers import ETA_SAMPLERS, SamplerTable

SEED_LIMIT = 2**32 - 1
MAX_CLIP_SKIP = 12
MIN_SIDE = 64
MAX_MASK_BLUR = 64
MAX_PADDING = 256
_SIZE = re.compile(r"\s*(\d{1,6})\s*(?:[xX×]\s*(\d{1,6}))?\s*")


def _check_range(option: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidRequest(option, f"{value} is out of range; allowed {_fmt(low)} to {_fmt(high)}")


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_size(text: str) -> tuple[int, int]:
    """ "512x768" → (512, 768); "512" → (512, 512). The option is `size` (a front end's, or a server's
    default size), checked against the limits afterwards."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise InvalidRequest("size", f"{text!r} is not WIDTHxHEIGHT, e.g. 512x768")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


def check_size(option: str, value: int, limit: int) -> None:
    """A side length: a multiple of 8 between 64 and the limit."""
    if value % 8 != 0:
        raise InvalidRequest(
            option, f"{value} is not a multiple of 8; use e.g. {max(MIN_SIDE, value // 8 * 8)}"
        )
    _check_range(option, value, MIN_SIDE, limit)


def _check_generation(p: GenerationRequest, limits: Limits, samplers: SamplerTable) -> None:
    """Everything of a txt2img request (and the shared part of img2img/inpaint)."""
    if len(p.prompt) > limits.max_prompt_chars:
        raise InvalidRequest(
            "prompt", f"{len(p.prompt)} characters; at most {limits.max_prompt_chars} allowed"
        )
    if len(p.negative_prompt) > limits.max_prompt_chars:
        raise InvalidRequest(
            "negative_prompt",
            f"{len(p.negative_prompt)} characters; at most {limits.max_prompt_chars} allowed",
        )
    check_size("width", p.width, limits.max_width)
    check_size("height", p.height, limits.max_height)
    _check_pixels("width × height", p.width, p.height, limits.max_pixels)
    _check_range("steps", p.steps, 1, limits.max_steps)
    _check_range("cfg_scale", p.cfg_scale, 1, limits.max_cfg_scale)
    _check_range("batch_size", p.batch_size, 1, limits.max_batch_size)
    _check_range("batch_count", p.batch_count, 1, limits.max_batch_count)
    _check_range("clip_skip", p.clip_skip, 1, MAX_CLIP_SKIP)
    if p.seed != -1:
        _check_range("seed", p.seed, 0, SEED_LIMIT)
    if p.variation_seed != -1:
        _check_range("variation_seed", p.variation_seed, 0, SEED_LIMIT)
    _check_range("variation_strength", p.variation_strength, 0, 1)
    spec = samplers.resolve(p.sampler, p.schedule)[0]
    _check_seed_extras(p, spec.name, limits)
    if p.refiner is not None:
        _check_range("refiner_switch_at", p.refiner_switch_at, 0, 1)
    if p.face_restorer is not None:
        _check_range("code_former_weight", p.code_former_weight, 0, 1)
    if p.distilled_cfg_scale is not None:
        _check_range("distilled_cfg_scale", p.distilled_cfg_scale, 0, MAX_DISTILLED_CFG)
    if p.shift is not None:
        _check_range("shift", p.shift, *SHIFT_RANGE)
    if p.hires is not None:
        _check_hires(p, limits, samplers)
    if p.blend is not None:
        for option, text in (
            ("blend_prompt", p.blend.prompt),
            ("blend_negative_prompt", p.blend.negative_prompt),
        ):
            if len(text) > limits.max_prompt_chars:
                raise InvalidRequest(
                    option, f"{len(text)} characters; at most {limits.max_prompt_chars} allowed"
                )
        _check_range("blend_weight", p.blend.weight, 0, 1)


def _check_seed_extras(p: GenerationRequest, sampler: str, limits: Limits) -> None:
    """Resize seed from, eta (only where a scheduler here takes one) and ENSD."""
    if (p.seed_resize_from_w > 0) != (p.seed_resize_from_h > 0):
        raise InvalidRequest("seed_resize_from", "give both a width and a height (WxH), or neither")
    if p.seed_resize_from_w > 0:
        check_size("seed_resize_from_w", p.seed_resize_from_w, limits.max_width)
        check_size("seed_resize_from_h", p.seed_resize_from_h, limits.max_height)
    if p.eta is not None:
        if sampler not in ETA_SAMPLERS:
            allowed = ", ".join(ETA_SAMPLERS)
            raise InvalidRequest("eta", f"{sampler} takes no eta here; samplers with an eta: {allowed}")
        _check_range("eta", p.eta, 0, 1)
    _check_range("eta_noise_seed_delta", p.eta_noise_seed_delta, 0, SEED_LIMIT)


def _check_pixels(option: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InvalidRequest(
            option, f"{width}x{height} = {width * height} pixels; at most {max_pixels} allowed"
        )


def _check_hires(p: GenerationRequest, limits: Limits, samplers: SamplerTable) -> None:
    hires = p.hires
    assert hires is not None
    _check_range("hires_scale", hires.scale, 1, limits.max_hires_scale)
    _check_range("hires_steps", hires.steps, 0, limits.max_steps)
    _check_range("hires_denoising_strength", hires.denoising_strength, 0, 1)
    for option, text in (("hires_prompt", hires.prompt), ("hires_negative_prompt", hires.negative_prompt)):
        if len(text) > limits.max_prompt_chars:
            raise InvalidRequest(option, f"{len(text)} characters; at most {limits.max_prompt_chars} allowed")
    if hires.sampler or hires.schedule:
        try:
            samplers.resolve(hires.sampler or p.sampler, hires.schedule or p.schedule)
        except InvalidRequest as error:
            raise InvalidRequest(f"hires_{error.option}", error.message) from None
    if hires.cfg_scale is not None:
        _check_range("hires_cfg_scale", hires.cfg_scale, 1, limits.max_cfg_scale)
    for option, side, limit in (
        ("hires_resize_width", hires.resize_width, limits.max_width),
        ("hires_resize_height", hires.resize_height, limits.max_height),
    ):
        if side != 0:
            check_size(option, side, limit)
    option = "hires_resize" if hires.resize_width or hires.resize_height else "hires_scale"
    (up_w, up_h), (width, height) = hires_plan(p.width, p.height, hires)
    if up_w > limits.max_width or up_h > limits.max_height:
        raise InvalidRequest(
            option,
            f"{p.width}x{p.height} upscaled to {up_w}x{up_h} exceeds the "
            f"maximum {limits.max_width}x{limits.max_height}",
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidRequest(option, f"{p.width}x{p.height} resized to {width}x{height} is below {MIN_SIDE}")
    _check_pixels(option, up_w, up_h, limits.max_pixels)


def check_request(
    request: GenerationRequest | Img2ImgRequest | InpaintRequest, limits: Limits, samplers: SamplerTable
) -> None:
    """Any request against the limits and the known samplers: what the queue checks when a job is submitted
    (every front end and follow-up passes there)."""
    if isinstance(request, GenerationRequest):
        _check_generation(request, limits, samplers)
    elif isinstance(request, Img2ImgRequest):
        _check_img2img(request, limits, samplers)
    elif isinstance(request, InpaintRequest):
        _check_inpaint(request, limits, samplers)
    else:
        raise InvalidRequest("request", f"unsupported request type {type(request).__name__}")
    check_units(request.params.controlnet, has_input_image=not isinstance(request, GenerationRequest))


def check_model_family(request: GenerationRequest | Img2ImgRequest | InpaintRequest, entry: object) -> None:
    """What the checkpoint's family cannot run, refused by name before the job runs: SD 3.5 and Flux
    (engine.tasks.flow_rules); the family is read from the registry entry's folder or header, no weights."""
    kind = entry_kind(entry)
    if kind is not None:
        check_flow_request(request, kind)
    else:  # SD 1.x / SDXL: the flow families' own options refused by name
        check_flow_options(request.params, None, getattr(entry, "name", "this model"))


def _check_img2img(request: Img2ImgRequest, limits: Limits, samplers: SamplerTable) -> None:
    _check_generation(request.params, limits, samplers)
    _check_range("denoising_strength", request.denoising_strength, 0, 1)
    _check_range("noise_multiplier", request.noise_multiplier, 0, 2)


def _check_inpaint(request: InpaintRequest, limits: Limits, samplers: SamplerTable) -> None:
    _check_generation(request.params, limits, samplers)
    _check_range("denoising_strength", request.denoising_strength, 0, 1)
    _check_range("mask_blur", request.mask_blur, 0, MAX_MASK_BLUR)
    _check_range("padding", request.padding, 0, MAX_PADDING)
    if request.mask.size != request.image.size:
        raise InvalidRequest(
            "mask",
            f"mask is {request.mask.width}x{request.mask.height} but the image is "
            f"{request.image.width}x{request.image.height}; they must match",
        )
