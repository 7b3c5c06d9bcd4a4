"""sd-webui-controlnet's API: `alwayson_scripts: {"controlnet": {"args": [unit, …]}}` into Salon's units.

Each unit is a dict with sd-webui-controlnet's field names (`image` base64, `module`, `model`, `weight`,
`resize_mode` by name or 0–2, `processor_res`, `threshold_a`, `threshold_b`, `guidance_start`,
`guidance_end`, `control_mode` by name or 0–2, `enabled`). A unit without `enabled` counts as enabled; one
with `enabled: false` is skipped. Fields Salon cannot honour (pixel perfect, masks) are refused by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from core.errors import InvalidRequest
from engine.controlnet.unit_text import control_mode, resize_mode, with_defaults
from engine.requests import ControlMode, ControlNetUnit, ControlResize

SCRIPT_NAMES = ("controlnet",)  # the always-on script's key, matched casefolded (A1111 does)
_NUMBERED_RESIZE = list(ControlResize)
_NUMBERED_MODES = list(ControlMode)
_IGNORED = {"low_vram", "lowvram", "save_detected_map", "hr_option", "input_mode", "is_ui", "loopback"}
_REFUSED = {"mask", "mask_image", "effective_region_mask", "advanced_weighting", "ipadapter_input"}
_NUMBERS = ("weight", "guidance_start", "guidance_end", "threshold_a", "threshold_b")


def script_units(scripts: dict[str, Any], decode) -> tuple[ControlNetUnit, ...]:
    """The enabled units of a body's `alwayson_scripts` ControlNet entry (none: ()); `decode(data, field)`
    turns a base64 image into a checked PIL image."""
    key = next((k for k in scripts if k.casefold() in SCRIPT_NAMES), None)
    if key is None:
        return ()
    entry = scripts[key]
    args = entry.get("args") if isinstance(entry, dict) else None
    if not isinstance(args, list):
        raise InvalidRequest(f"alwayson_scripts.{key}.args", "send a list of ControlNet units")
    units = []
    for number, raw in enumerate(args):
        field = f"alwayson_scripts.{key}.args.{number}"
        if not isinstance(raw, dict):
            raise InvalidRequest(field, "each unit is an object with sd-webui-controlnet's fields")
        if raw.get("enabled", True) is False:
            continue
        units.append(_unit(raw, field, decode))
    return tuple(units)


def _unit(raw: dict[str, Any], field: str, decode) -> ControlNetUnit:
    for name in raw:
        if name in _REFUSED and raw[name] not in (None, "", []):
            raise InvalidRequest(f"{field}.{name}", "Salon's ControlNet units take no masks or extra inputs")
    if raw.get("pixel_perfect"):
        raise InvalidRequest(f"{field}.pixel_perfect", "not supported: send processor_res instead")
    values: dict[str, Any] = {}
    for name in _NUMBERS:
        if raw.get(name) is not None:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequest(f"{field}.{name}", f"{value!r} is not a number")
            values[name] = float(value)
    if raw.get("processor_res") not in (None, -1):
        values["processor_res"] = int(raw["processor_res"])
    values["resize_mode"] = _choice(
        raw.get("resize_mode", 1), _NUMBERED_RESIZE, resize_mode, f"{field}.resize_mode"
    )
    values["control_mode"] = _choice(
        raw.get("control_mode", 0), _NUMBERED_MODES, control_mode, f"{field}.control_mode"
    )
    model = raw.get("model")
    if not isinstance(model, str) or model in ("", "None") or "/" in model or "\\" in model:
        raise InvalidRequest(f"{field}.model", "name a ControlNet of /controlnet/model_list (not a path)")
    image = raw.get("image", raw.get("input_image"))
    if isinstance(image, dict):
        image = image.get("image")
    unit = ControlNetUnit(model=model, module=str(raw.get("module") or "none"), **values)
    if image:
        unit = dataclasses.replace(unit, image=decode(image, f"{field}.image"))
    return with_defaults(unit, field)


def _choice(value: object, numbered: list, by_name, field: str):
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(numbered):
            return numbered[value]
        raise InvalidRequest(field, f"{value} is not one of 0–{len(numbered) - 1}")
    if isinstance(value, str):
        return by_name(value, field)
    raise InvalidRequest(field, f"{value!r} is neither a name nor a number")
