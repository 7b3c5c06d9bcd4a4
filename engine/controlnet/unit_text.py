"""ControlNet units as text, no torch: the preprocessors' settings, the CLI's `key=value` unit, and the
`ControlNet N` infotext value exactly as sd-webui-controlnet writes and reads it.

sd-webui-controlnet writes each enabled unit as `ControlNet 0: "Module: canny, Model: name [hash], Weight: 1.0,
Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0,
Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"` (its fields in this order, values as Python's
`str`). The control image is not in it: repeating such an image needs the control image given again. With
pixel perfect, `Processor Res` is the resolution it gave, as the extension writes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import InvalidRequest
from engine.requests import ControlMode, ControlNetUnit, ControlResize

OPTION = "controlnet"
INFOTEXT_PREFIX = "ControlNet "
MAX_UNITS = 4  # units of one request (sd-webui-controlnet shows 3 by default)
UNUSED = -1.0  # a setting the module does not have (written as sd-webui-controlnet's API default, -1)


@dataclass(frozen=True)
class Preprocessor:
    """A preprocessor that needs no weights: its resolution use and its two settings' defaults and ranges."""

    name: str
    uses_resolution: bool
    threshold_a: tuple[float, float, float] | None = None  # (default, minimum, maximum)
    threshold_b: tuple[float, float, float] | None = None


PREPROCESSORS: dict[str, Preprocessor] = {
    p.name: p
    for p in (
        Preprocessor("none", False),
        Preprocessor("invert", False),
        Preprocessor("canny", True, (100.0, 1.0, 255.0), (200.0, 1.0, 255.0)),
        Preprocessor("scribble_xdog", True, (32.0, 1.0, 64.0)),
    )
}
# sd-webui-controlnet's labels (its UI names, which its API takes too) of the preprocessors whose name differs
LABELS = {"invert (from white bg & black line)": "invert"}
# Preprocessors whose models sd-webui-controlnet downloads; Salon has none of them.
NEEDS_MODEL = ("depth", "normal", "openpose", "lineart", "softedge", "seg", "mlsd", "hed", "pidinet")

_MODES = {
    "balanced": ControlMode.BALANCED,
    "prompt": ControlMode.PROMPT,
    "control": ControlMode.CONTROL,
    **{m.value.casefold(): m for m in ControlMode},
}
_RESIZES = {
    "just": ControlResize.JUST_RESIZE,
    "resize": ControlResize.JUST_RESIZE,
    "crop": ControlResize.CROP_AND_RESIZE,
    "fill": ControlResize.RESIZE_AND_FILL,
    # sd-webui-controlnet's older names, which its API still accepts
    "inner fit (scale to fit)": ControlResize.CROP_AND_RESIZE,
    "outer fit (shrink to fit)": ControlResize.RESIZE_AND_FILL,
    "scale to fit (inner fit)": ControlResize.CROP_AND_RESIZE,
    "envelope (outer fit)": ControlResize.RESIZE_AND_FILL,
    **{r.value.casefold(): r for r in ControlResize},
}
_CLI_KEYS = {
    "model": "model",
    "module": "module",
    "weight": "weight",
    "start": "guidance_start",
    "end": "guidance_end",
    "mode": "control_mode",
    "resize": "resize_mode",
    "res": "processor_res",
    "a": "threshold_a",
    "low": "threshold_a",
    "b": "threshold_b",
    "high": "threshold_b",
    "pp": "pixel_perfect",
    "pixel_perfect": "pixel_perfect",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_INFOTEXT_FIELDS = (
    ("Module", "module"),
    ("Model", "model"),
    ("Weight", "weight"),
    ("Resize Mode", "resize_mode"),
    ("Processor Res", "processor_res"),
    ("Threshold A", "threshold_a"),
    ("Threshold B", "threshold_b"),
    ("Guidance Start", "guidance_start"),
    ("Guidance End", "guidance_end"),
    ("Pixel Perfect", "pixel_perfect"),
    ("Control Mode", "control_mode"),
)


def pixel_perfect_resolution(image: tuple[int, int], target: tuple[int, int], resize: ControlResize) -> int:
    """sd-webui-controlnet's pixel perfect (internal_controlnet/external_code.py `pixel_perfect_resolution`):
    the control image's short side scaled by the larger of the two factors to the generation size (the smaller
    for "Resize and Fill"), rounded half to even as numpy rounds; sizes are (width, height)."""
    (raw_w, raw_h), (target_w, target_h) = image, target
    k0, k1 = target_h / raw_h, target_w / raw_w
    factor = min(k0, k1) if resize is ControlResize.RESIZE_AND_FILL else max(k0, k1)
    return round(factor * min(raw_h, raw_w))


def with_pixel_perfect(
    unit: ControlNetUnit, image: tuple[int, int], target: tuple[int, int]
) -> ControlNetUnit:
    """The unit with its processor resolution from pixel perfect (when it asks for it), kept within 64–2048."""
    if not unit.pixel_perfect:
        return unit
    resolution = pixel_perfect_resolution(image, target, unit.resize_mode)
    return dataclasses.replace(unit, processor_res=min(2048, max(64, resolution)))


def preprocessor(module: str, option: str = OPTION) -> Preprocessor:
    """The preprocessor called `module`, or a refusal naming what there is."""
    key = module.strip().casefold()
    found = PREPROCESSORS.get(LABELS.get(key, key))
    if found is not None:
        return found
    known = ", ".join(PREPROCESSORS)
    if module.strip().casefold().startswith(NEEDS_MODEL):
        raise InvalidRequest(
            option,
            f"module {module!r} needs a preprocessor model, which Salon does not have; give an already "
            f"processed control image with module=none (available modules: {known})",
        )
    raise InvalidRequest(option, f"unknown module {module!r}; available: {known}")


def control_mode(text: str, option: str = OPTION) -> ControlMode:
    try:
        return _MODES[text.strip().casefold()]
    except KeyError:
        raise InvalidRequest(option, f"mode {text!r}: use balanced, prompt or control") from None


def resize_mode(text: str, option: str = OPTION) -> ControlResize:
    try:
        return _RESIZES[text.strip().casefold()]
    except KeyError:
        raise InvalidRequest(option, f"resize {text!r}: use just, crop or fill") from None


def with_defaults(unit: ControlNetUnit, option: str = OPTION) -> ControlNetUnit:
    """The unit with its module's default thresholds filled in, checked: weight 0–2, 0 ≤ start ≤ end ≤ 1,
    thresholds in their module's range, processor resolution 64–2048."""
    pre = preprocessor(unit.module, option)
    values = {"module": pre.name}
    for name, spec in (("threshold_a", pre.threshold_a), ("threshold_b", pre.threshold_b)):
        given = getattr(unit, name)
        if spec is None:
            values[name] = UNUSED
        elif given is None or given == UNUSED:
            values[name] = spec[0]
        elif not spec[1] <= given <= spec[2]:
            raise InvalidRequest(
                option, f"{name} {given:g} is outside {spec[1]:g}–{spec[2]:g} for {pre.name}"
            )
    if not 0.0 <= unit.weight <= 2.0:
        raise InvalidRequest(option, f"weight {unit.weight:g} is outside 0–2")
    if not 0.0 <= unit.guidance_start <= unit.guidance_end <= 1.0:
        raise InvalidRequest(
            option, f"start {unit.guidance_start:g} and end {unit.guidance_end:g}: need 0 ≤ start ≤ end ≤ 1"
        )
    if pre.uses_resolution and not 64 <= unit.processor_res <= 2048:
        raise InvalidRequest(option, f"res {unit.processor_res} is outside 64–2048")
    if not unit.model.strip():
        raise InvalidRequest(option, "model is empty; name a models/ControlNet file")
    return dataclasses.replace(unit, **values)


def missing_image_message(number: int) -> str:
    """Why unit `number` cannot run: it has no control image (and no img2img input to fall back on)."""
    return (
        f"ControlNet unit {number} has no control image: give one (the CLI's --control-image, /imagine's "
        "control_image, the API unit's image), or use img2img, whose input image it then reads. An infotext "
        "does not hold the control image: repeating an image made with ControlNet needs it given again"
    )


def check_units(units: tuple[ControlNetUnit, ...], has_input_image: bool) -> None:
    """What the queue checks of a request's units: how many, each unit's values, and that each has an image."""
    if len(units) > MAX_UNITS:
        raise InvalidRequest(OPTION, f"{len(units)} units; at most {MAX_UNITS}")
    for number, unit in enumerate(units):
        with_defaults(unit, f"{OPTION} unit {number}")
        if unit.image is None and not has_input_image:
            raise InvalidRequest("control_image", missing_image_message(number))


def parse_unit(text: str, option: str = OPTION) -> ControlNetUnit:
    """A unit from the CLI's `model=NAME,module=canny,weight=0.8,start=0,end=1,mode=balanced,resize=crop`
    (also res=, low=/a=, high=/b=); each bad field is named in the refusal."""
    fields: dict[str, object] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().casefold(), value.strip()
        if not sep or key not in _CLI_KEYS:
            keys = ", ".join(k for k in _CLI_KEYS if k not in ("a", "b"))
            raise InvalidRequest(option, f"{item.strip()!r} in {text!r}: use key=value with keys {keys}")
        fields[_CLI_KEYS[key]] = _typed(_CLI_KEYS[key], key, value, option)
    if "model" not in fields:
        raise InvalidRequest(option, f"{text!r} names no model= (a models/ControlNet file)")
    return with_defaults(ControlNetUnit(**fields), option)  # type: ignore[arg-type]


def _typed(field: str, key: str, value: str, option: str) -> object:
    if field == "control_mode":
        return control_mode(value, option)
    if field == "resize_mode":
        return resize_mode(value, option)
    if field in ("model", "module"):
        return value
    if field == "pixel_perfect":
        if value.casefold() not in (*_TRUE, *_FALSE):
            raise InvalidRequest(option, f"{key}={value!r}: use true or false")
        return value.casefold() in _TRUE
    try:
        return int(value) if field == "processor_res" else float(value)
    except ValueError:
        kind = "a whole number" if field == "processor_res" else "a number"
        raise InvalidRequest(option, f"{key}={value!r} is not {kind}") from None


def infotext_value(unit: ControlNetUnit, model_title: str) -> str:
    """sd-webui-controlnet's `ControlNet N` value of a unit; `model_title` is "name [hash]"."""
    values = {
        "module": unit.module,
        "model": model_title,
        "weight": str(float(unit.weight)),
        "resize_mode": unit.resize_mode.value,
        "processor_res": str(unit.processor_res if preprocessor(unit.module).uses_resolution else -1),
        "threshold_a": str(float(unit.threshold_a if unit.threshold_a is not None else UNUSED)),
        "threshold_b": str(float(unit.threshold_b if unit.threshold_b is not None else UNUSED)),
        "guidance_start": str(float(unit.guidance_start)),
        "guidance_end": str(float(unit.guidance_end)),
        "control_mode": unit.control_mode.value,
        "pixel_perfect": str(bool(unit.pixel_perfect)),
    }
    return ", ".join(f"{label}: {values[f]}" for label, f in _INFOTEXT_FIELDS)


def infotext_params(units: list[tuple[ControlNetUnit, str]]) -> dict[str, str]:
    """The `ControlNet 0`, `ControlNet 1`, … infotext keys of (unit, model title) pairs."""
    return {f"{INFOTEXT_PREFIX}{i}": infotext_value(unit, title) for i, (unit, title) in enumerate(units)}


def units_from_infotext(params: Mapping[str, str]) -> tuple[ControlNetUnit, ...]:
    """The units of an infotext's `ControlNet N` keys, in order, without their control images."""
    numbered = []
    for key, value in params.items():
        number = key.removeprefix(INFOTEXT_PREFIX)
        if key.startswith(INFOTEXT_PREFIX) and number.isdigit():
            numbered.append((int(number), _unit_of_value(key, value)))
    return tuple(unit for _, unit in sorted(numbered, key=lambda pair: pair[0]))


def _unit_of_value(key: str, value: str) -> ControlNetUnit:
    read: dict[str, str] = {}
    for item in value.split(","):
        label, sep, text = item.strip().partition(": ")
        if not sep:
            raise InvalidRequest("image", f"its {key} value {value!r} is not sd-webui-controlnet's format")
        read[label] = text
    fields = {f: read[label] for label, f in _INFOTEXT_FIELDS if label in read}
    if "model" not in fields:
        raise InvalidRequest("image", f"its {key} value names no Model")
    option = f"image's {key}"

    def number(field: str, default: str) -> float:
        return float(_typed(field, field, fields.get(field, default), option))  # type: ignore[arg-type]

    unit = ControlNetUnit(
        model=fields["model"],
        module=fields.get("module", "none"),
        weight=number("weight", "1.0"),
        guidance_start=number("guidance_start", "0.0"),
        guidance_end=number("guidance_end", "1.0"),
        control_mode=control_mode(fields.get("control_mode", "Balanced"), option),
        resize_mode=resize_mode(fields.get("resize_mode", "Crop and Resize"), option),
        processor_res=int(float(fields.get("processor_res", "512"))),
        threshold_a=number("threshold_a", "-1"),
        threshold_b=number("threshold_b", "-1"),
        pixel_perfect=fields.get("pixel_perfect", "False").strip() == "True",
    )
    if unit.processor_res < 64:
        unit = dataclasses.replace(unit, processor_res=512)
    return with_defaults(unit, option)
