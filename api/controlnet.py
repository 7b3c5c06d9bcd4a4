"""sd-webui-controlnet's API: `alwayson_scripts: {"controlnet": {"args": [unit, …]}}` into Salon's units.

Each unit is a dict with sd-webui-controlnet's field names (`image` base64, `module`, `model`, `weight`,
`resize_mode` by name or 0–2, `processor_res`, `threshold_a`, `threshold_b`, `guidance_start`,
`guidance_end`, `control_mode` by name or 0–2, `pixel_perfect`, `enabled`). A unit without `enabled` counts as
enabled; one with `enabled: false` is skipped. Fields Salon cannot honour (masks, extra inputs) are refused by
name. `pixel_perfect` is the unit's: the job sets the processor resolution from the control image (or img2img's
input image) and the generation size (engine.controlnet.unit_text.pixel_perfect_resolution).

Also the extension's listing routes: `/controlnet/version`, `/controlnet/model_list` (`"name [hash]"` as its
titles are, the 8-hex old A1111 hash), `/controlnet/module_list` (with `module_detail`: each preprocessor's
sliders) and `/controlnet/settings`, and `/controlnet/detect`: the preprocessors Salon has (all without weights: canny,
scribble_xdog, invert, none) run on the posted images in the API's process, as a job would run them.
Shapes and values from Mikubill/sd-webui-controlnet at 56cec5b2 (scripts/api.py,
internal_controlnet/external_code.py, scripts/supported_preprocessor.py,
scripts/preprocessor/model_free_preprocessors.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from core.errors import InvalidRequest
from engine.controlnet.unit_text import (
    LABELS,
    MAX_UNITS,
    PREPROCESSORS,
    control_mode,
    resize_mode,
    with_defaults,
)
from engine.models.registry import ModelKind, ModelRegistry
from engine.requests import ControlMode, ControlNetUnit, ControlResize

SCRIPT_NAMES = ("controlnet",)  # the always-on script's key, matched casefolded (A1111 does)
_NUMBERED_RESIZE = list(ControlResize)
_NUMBERED_MODES = list(ControlMode)
_IGNORED = {"low_vram", "lowvram", "save_detected_map", "hr_option", "input_mode", "is_ui", "loopback"}
_REFUSED = {"mask", "mask_image", "effective_region_mask", "advanced_weighting", "ipadapter_input"}
_NUMBERS = ("weight", "guidance_start", "guidance_end", "threshold_a", "threshold_b")


API_VERSION = 3  # external_code.get_api_version()
_RESOLUTION = {"name": "Resolution", "value": 512, "min": 64, "max": 2048, "step": 8}
# The preprocessors Salon has, in the extension's order (none first, then by sorting priority and label,
# highest first), with their labels (engine.controlnet.unit_text.LABELS where the name differs) and visible
# sliders as its module_detail gives them.
_SLIDERS: dict[str, list[dict[str, Any]]] = {
    "none": [_RESOLUTION],
    "canny": [
        _RESOLUTION,
        {"name": "Low Threshold", "value": 100, "min": 1, "max": 255, "step": 1},
        {"name": "High Threshold", "value": 200, "min": 1, "max": 255, "step": 1},
    ],
    "invert": [],
    "scribble_xdog": [
        _RESOLUTION,
        {"name": "XDoG Threshold", "value": 32, "min": 1, "max": 64, "step": 0.01},
    ],
}
_LABEL_OF = {name: label for label, name in LABELS.items()}
MODULES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    name: (_LABEL_OF.get(name, name), sliders) for name, sliders in _SLIDERS.items()
}
assert set(MODULES) == set(PREPROCESSORS), "every preprocessor Salon has is listed with its sliders"


def model_list(registry: ModelRegistry, update: bool) -> dict[str, list[str]]:
    if update:
        registry.refresh()
    entries = sorted(registry.entries(ModelKind.CONTROLNET), key=lambda e: e.name)
    return {"model_list": [f"{e.name} [{registry.short_hash(e)}]" for e in entries]}


def module_list(alias_names: bool) -> dict[str, Any]:
    names = [label if alias_names else name for name, (label, _) in MODULES.items()]
    detail = {
        (label if alias_names else name): {"model_free": False, "sliders": sliders}
        for name, (label, sliders) in MODULES.items()
    }
    return {"module_list": names, "module_detail": detail}


def add_controlnet_routes(app, service, decode_image) -> None:
    """sd-webui-controlnet's routes, behind the API's credentials like A1111's; `decode_image(data, limits,
    field)` reads a posted base64 image (api.translate.decode_image)."""
    import asyncio

    from fastapi import Depends

    from api.auth import caller

    def route(path: str):
        return app.get(f"/controlnet/{path}", dependencies=[Depends(caller)])

    @route("version")
    async def version() -> dict[str, int]:
        return {"version": API_VERSION}

    @route("model_list")
    async def models(update: bool = True) -> dict[str, list[str]]:
        return await asyncio.to_thread(model_list, service.registry, update)

    @route("module_list")
    async def modules(alias_names: bool = False) -> dict[str, Any]:
        return module_list(alias_names)

    @route("settings")
    async def controlnet_settings() -> dict[str, int]:
        return {"control_net_unit_count": MAX_UNITS}

    @app.post("/controlnet/detect", dependencies=[Depends(caller)])
    async def detect(body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(detected_maps, body, service.settings.limits, decode_image)


MAX_DETECT_IMAGES = 8  # images of one /controlnet/detect call


def detected_maps(body: dict[str, Any], limits, decode_image) -> dict[str, Any]:
    """`/controlnet/detect`: each posted image through one preprocessor, as base64 PNGs (the extension's
    `{"images": […], "info": "Success"}`); -1 for the resolution or a threshold means the module's default."""
    import base64
    import io

    from engine.controlnet.preprocess import detected_map

    if body.get("controlnet_masks"):
        raise InvalidRequest("controlnet_masks", "Salon's preprocessors take no masks")
    images = body.get("controlnet_input_images")
    if not isinstance(images, list) or not images:
        raise InvalidRequest("controlnet_input_images", "send at least one base64 image")
    if len(images) > MAX_DETECT_IMAGES:
        raise InvalidRequest("controlnet_input_images", f"at most {MAX_DETECT_IMAGES} images per call")
    values: dict[str, Any] = {}
    for name in ("processor_res", "threshold_a", "threshold_b"):
        value = body.get(f"controlnet_{name}", -1)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"controlnet_{name}", f"{value!r} is not a number")
        if value != -1:
            values[name] = int(value) if name == "processor_res" else float(value)
    module = body.get("controlnet_module", "none")
    if not isinstance(module, str):
        raise InvalidRequest("controlnet_module", "name a module of /controlnet/module_list")
    # A unit only for its preprocessor's settings (checked as a job's are); no ControlNet model runs.
    unit = with_defaults(ControlNetUnit(model="(detect)", module=module, **values), "controlnet_module")
    maps = []
    for number, data in enumerate(images):
        field = f"controlnet_input_images.{number}"
        if not isinstance(data, str):
            raise InvalidRequest(field, "is not a base64 image")
        buffer = io.BytesIO()
        detected_map(unit, decode_image(data, limits, field)).save(buffer, format="PNG")
        maps.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return {"images": maps, "info": "Success"}


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
    pixel_perfect = raw.get("pixel_perfect", False)
    if not isinstance(pixel_perfect, bool):
        raise InvalidRequest(f"{field}.pixel_perfect", f"{pixel_perfect!r} is not true or false")
    return with_defaults(dataclasses.replace(unit, pixel_perfect=pixel_perfect), field)


def _choice(value: object, numbered: list, by_name, field: str):
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(numbered):
            return numbered[value]
        raise InvalidRequest(field, f"{value} is not one of 0–{len(numbered) - 1}")
    if isinstance(value, str):
        return by_name(value, field)
    raise InvalidRequest(field, f"{value!r} is neither a name nor a number")
