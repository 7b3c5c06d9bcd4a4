"""The hires fix in A1111's infotext: the keys A1111 writes for it, and a `HiresFix` read back from them.

A1111 writes `Hires upscale` (or `Hires resize: WxH` when sizes replace the scale), `Hires steps`, `Hires
upscaler`, and only where the second pass differs from the first `Hires sampler`, `Hires schedule type`,
`Hires prompt`, `Hires negative prompt` and `Hires CFG Scale`.
"""

from __future__ import annotations

from collections.abc import Collection

from core.errors import InvalidRequest
from engine.requests import GenerationRequest, HiresFix, HiresUpscaler, hires_upscaler


def format_number(value: float) -> str:
    """A1111 style: 7.0 → "7", 0.75 → "0.75" (as engine.runner writes numbers)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def hires_infotext(
    p: GenerationRequest, first: tuple[str, str], second: tuple[str, str]
) -> dict[str, str | None]:
    """The hires keys of a request's infotext; `first`/`second`: each pass's (sampler, schedule type)."""
    hires = p.hires
    assert hires is not None
    resized = hires.resize_width > 0 or hires.resize_height > 0
    cfg = hires.cfg_scale
    return {
        "Denoising strength": format_number(hires.denoising_strength),
        "Hires upscale": None if resized else format_number(hires.scale),
        "Hires resize": f"{hires.resize_width}x{hires.resize_height}" if resized else None,
        "Hires steps": str(hires.steps) if hires.steps else None,
        "Hires upscaler": str(hires.upscaler),  # a HiresUpscaler's value, or a model upscaler's name
        # As A1111, where the request names another sampler or schedule than the first pass's request; also
        # where another hires sampler's own default schedule differs (so that the infotext repeats exactly).
        "Hires sampler": second[0] if _differs(hires.sampler, p.sampler) and second[0] != first[0] else None,
        "Hires schedule type": second[1]
        if _differs(hires.schedule, p.schedule) or (hires.sampler and second[1] != first[1])
        else None,
        "Hires prompt": hires.prompt if hires.prompt and hires.prompt != p.prompt else None,
        "Hires negative prompt": hires.negative_prompt
        if hires.negative_prompt and hires.negative_prompt != p.negative_prompt
        else None,
        "Hires CFG Scale": format_number(cfg) if cfg is not None and cfg != p.cfg_scale else None,
    }


def _differs(hires_value: str, first_value: str) -> bool:
    return bool(hires_value) and hires_value.strip().casefold() != first_value.strip().casefold()


def has_hires(params: dict[str, str]) -> bool:
    """Whether an infotext's parameters record a hires pass."""
    return "Hires upscale" in params or "Hires resize" in params


def hires_from_infotext(
    params: dict[str, str],
    denoising: float | None,
    notes: list[str],
    known_upscalers: Collection[str] = (),
) -> HiresFix:
    """The hires fix an infotext records: a model upscaler's name where it is one of `known_upscalers` (the
    installed ones); another unknown upscaler becomes Latent, with a note."""
    upscaler = hires_upscaler(params.get("Hires upscaler", "Latent"))
    if not isinstance(upscaler, HiresUpscaler):
        installed = {name.casefold(): name for name in known_upscalers}
        if upscaler.casefold() in installed:
            upscaler = installed[upscaler.casefold()]
        else:
            upscaler = HiresUpscaler.LATENT
            notes.append(f"hires upscaler {params['Hires upscaler']!r} is not available; Latent is used")
    try:
        resize_w, resize_h = (int(v) for v in params.get("Hires resize", "0x0").lower().split("x", 1))
        cfg = params.get("Hires CFG Scale")
        return HiresFix(
            scale=float(params.get("Hires upscale", 2.0)),
            steps=int(params.get("Hires steps", 0)),
            denoising_strength=denoising or 0.7,
            upscaler=upscaler,
            prompt=params.get("Hires prompt", ""),
            negative_prompt=params.get("Hires negative prompt", ""),
            sampler=params.get("Hires sampler", ""),
            schedule=params.get("Hires schedule type", ""),
            cfg_scale=None if cfg is None else float(cfg),
            resize_width=resize_w,
            resize_height=resize_h,
        )
    except ValueError:
        raise InvalidRequest("image", "its hires parameters are not numbers") from None
