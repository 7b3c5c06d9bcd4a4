"""The hires fix's extra options for any front end: the second pass's own prompts, sampler, schedule and CFG
scale, and "resize width/height to" instead of the scale (A1111's hires fix panel)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from commands.options import parse_choice
from core.errors import InvalidRequest
from engine.infotext import check_prompt, normalize_prompt
from engine.requests import HiresFix, HiresUpscaler

_RESIZE = re.compile(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*")
# What A1111's API and UI send for "the first pass's" sampler and schedule.
SAME = frozenset({"", "use same sampler", "use same scheduler", "use same"})


def parse_hires_resize(text: str) -> tuple[int, int]:
    """ "1024x768" → (1024, 768); a 0 side follows the other by the aspect ratio ("1024x0")."""
    match = _RESIZE.fullmatch(text)
    if match is None or (int(match.group(1)) == 0 and int(match.group(2)) == 0):
        raise InvalidRequest(
            "hires_resize", f"{text!r} is not WIDTHxHEIGHT, e.g. 1024x1024 (0 for a side that follows)"
        )
    return int(match.group(1)), int(match.group(2))


def same_or(value: str | None) -> str:
    """A hires sampler or schedule: "" where it means the first pass's."""
    value = (value or "").strip()
    return "" if value.casefold() in SAME else value


def hires_extras(options: Any, hires: HiresFix | None) -> HiresFix | None:
    """`hires` with the hires extras of `options` (commands.generation.GenerationOptions); "resize to" alone
    turns the hires fix on. Extras without a hires fix are an error naming the option (they would do
    nothing)."""
    resize = parse_hires_resize(options.hires_resize) if options.hires_resize else (0, 0)
    extras = {
        "hires_prompt": options.hires_prompt,
        "hires_negative_prompt": options.hires_negative_prompt,
        "hires_sampler": same_or(options.hires_sampler),
        "hires_schedule": same_or(options.hires_schedule),
        "hires_cfg_scale": options.hires_cfg_scale,
    }
    if hires is None and resize == (0, 0):
        given = [name for name, value in extras.items() if value not in ("", None)]
        if given:
            raise InvalidRequest(given[0], "applies to the hires pass; turn it on with hires or hires_resize")
        return None
    if hires is None:
        upscaler = parse_choice("hires_upscaler", options.hires_upscaler, HiresUpscaler)
        hires = HiresFix(2.0, options.hires_steps, options.hires_denoising_strength, upscaler)
    prompt, negative = normalize_prompt(options.hires_prompt), normalize_prompt(options.hires_negative_prompt)
    check_prompt("hires_prompt", prompt)
    check_prompt("hires_negative_prompt", negative)
    return dataclasses.replace(
        hires,
        prompt=prompt,
        negative_prompt=negative,
        sampler=extras["hires_sampler"],
        schedule=extras["hires_schedule"],
        cfg_scale=options.hires_cfg_scale,
        resize_width=resize[0],
        resize_height=resize[1],
    )
