"""The hires fix's extra options for any front end: the second pass's own prompts, sampler, schedule and CFG
scale, and "resize width/height to" instead of the scale (A1111's hires fix panel)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from core.errors import InvalidRequest
from engine.infotext import check_prompt, normalize_prompt
from engine.requests import HiresFix, hires_upscaler

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


# The keys of one hires text (`scale=2,denoise=0.5,upscaler=Latent,…`) → GenerationOptions fields.
HIRES_KEYS: dict[str, str] = {
    "scale": "hires_scale",
    "denoise": "hires_denoising_strength",
    "upscaler": "hires_upscaler",
    "steps": "hires_steps",
    "sampler": "hires_sampler",
    "schedule": "hires_schedule",
    "cfg": "hires_cfg_scale",
    "resize": "hires_resize",
    "prompt": "hires_prompt",
    "negative": "hires_negative_prompt",
}
_NUMBERS = {"scale": float, "denoise": float, "steps": int, "cfg": float}
# A comma starts the next item only before `word=`, so prompts keep their commas.
_ITEM_START = re.compile(r",\s*(?=[A-Za-z_]\w*\s*=)")


def parse_hires_text(text: str, option: str = "hires") -> dict[str, Any]:
    """The hires fix in one text, as GenerationOptions fields: a bare number is the scale ("2"), else
    `key=value` items separated by commas (keys: HIRES_KEYS; a prompt may hold commas). Errors name the
    option and the bad key or value."""
    text = text.strip()
    try:
        return {"hires_scale": float(text)}
    except ValueError:
        pass
    fields: dict[str, Any] = {}
    for item in _ITEM_START.split(text):
        key, sep, value = item.partition("=")
        key, value = key.strip().casefold(), value.strip()
        if not sep or key not in HIRES_KEYS:
            raise InvalidRequest(
                option, f"{item.strip()!r} is not KEY=VALUE with a key of {', '.join(HIRES_KEYS)}"
            )
        if HIRES_KEYS[key] in fields:
            raise InvalidRequest(option, f"{key} is given twice")
        if key in _NUMBERS:
            try:
                fields[HIRES_KEYS[key]] = _NUMBERS[key](value)
            except ValueError:
                kind = "a whole number" if _NUMBERS[key] is int else "a number"
                raise InvalidRequest(option, f"{key}={value!r} is not {kind}") from None
        else:
            fields[HIRES_KEYS[key]] = value
    if "hires_scale" not in fields and "hires_resize" not in fields:
        fields["hires_scale"] = 2.0  # A1111's default "Upscale by"
    return fields


def hires_suggestions(current: str, limit: int = 25) -> list[str]:
    """Autocomplete for a hires text: what was typed, followed by each key not yet given (`…,denoise=`)."""
    typed = current.rstrip()
    given = {m.casefold() for m in re.findall(r"(?:^|,)\s*(\w+)\s*=", typed)}
    head, comma, last = typed.rpartition(",")
    if "=" in last:  # the last item is complete: the next one starts after a comma
        base, stem = f"{typed},", ""
    else:
        base, stem = head + comma, last.strip().casefold()
    suggestions = [typed] if typed else []
    suggestions += [f"{base}{key}=" for key in HIRES_KEYS if key not in given and key.startswith(stem)]
    return [s[:100] for s in dict.fromkeys(suggestions)][:limit]


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
        upscaler = hires_upscaler(options.hires_upscaler)  # a model upscaler's name: the queue checks it
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
