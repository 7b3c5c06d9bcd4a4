"""Deforum's settings files (`settings.txt`, JSON) read into Salon's animation settings and written back.

Deforum (sd-webui-deforum) saves every option of a run under its own key names; Salon reads the ones it shares
(schedules, prompts, seed behaviour, size, steps, sampler, frames, fps, colour coherence, border, cadence) and
lists the rest as ignored. Writing gives the same keys, so Deforum loads a Salon animation (missing keys take
Deforum's defaults).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from engine.animation import AnimationSettings
from engine.errors import InvalidRequest

# Deforum key → Salon field, for the keys that carry over unchanged.
SHARED_KEYS = {
    "W": "width",
    "H": "height",
    "seed": "seed",
    "sampler": "sampler",
    "steps": "steps",
    "seed_behavior": "seed_behavior",
    "seed_iter_N": "seed_iter_n",
    "animation_prompts_positive": "positive_prompt",
    "animation_prompts_negative": "negative_prompt",
    "animation_mode": "animation_mode",
    "max_frames": "max_frames",
    "border": "border",
    "angle": "angle",
    "zoom": "zoom",
    "translation_x": "translation_x",
    "translation_y": "translation_y",
    "transform_center_x": "transform_center_x",
    "transform_center_y": "transform_center_y",
    "noise_schedule": "noise_schedule",
    "strength_schedule": "strength_schedule",
    "contrast_schedule": "contrast_schedule",
    "cfg_scale_schedule": "cfg_scale_schedule",
    "enable_steps_scheduling": "enable_steps_scheduling",
    "steps_schedule": "steps_schedule",
    "seed_schedule": "seed_schedule",
    "color_coherence": "color_coherence",
    "diffusion_cadence": "diffusion_cadence",
    "fps": "fps",
}
_INTEGERS = {"width", "height", "seed", "steps", "seed_iter_n", "max_frames", "diffusion_cadence"}
_UNSUPPORTED_MODES = {"3D": "3D (depth-based) animation", "Video Input": "video input"}
MAX_SETTINGS_BYTES = 1_000_000


@dataclass(frozen=True)
class DeforumImport:
    settings: AnimationSettings
    ignored: tuple[str, ...]  # Deforum keys Salon does not use
    warnings: tuple[str, ...]  # values Salon changed or could not use


def import_deforum(text: str | bytes) -> DeforumImport:
    """Read a Deforum settings file; InvalidRequest names what cannot be used."""
    if len(text) > MAX_SETTINGS_BYTES:
        raise InvalidRequest("settings_file", f"is larger than {MAX_SETTINGS_BYTES:,} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("settings_file", f"is not a Deforum settings file (JSON): {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("settings_file", "is not a Deforum settings file (a JSON object)")
    warnings: list[str] = []
    values: dict[str, Any] = {}
    for key, field_name in SHARED_KEYS.items():
        if key in data and data[key] is not None:
            values[field_name] = _convert(field_name, data[key])
    mode = values.get("animation_mode", "2D")
    if mode in _UNSUPPORTED_MODES:
        raise InvalidRequest(
            "animation_mode", f"{_UNSUPPORTED_MODES[mode]} is not built in Salon yet; use 2D or Interpolation"
        )
    if values.get("color_coherence") in ("Video Input", "Image"):
        warnings.append(f"color_coherence {values['color_coherence']!r} needs a video or image; using LAB")
        values["color_coherence"] = "LAB"
    prompts = data.get("prompts", data.get("animation_prompts"))
    if isinstance(prompts, str):
        try:
            prompts = json.loads(prompts)
        except ValueError:
            raise InvalidRequest("prompts", "the prompt schedule is not JSON") from None
    if prompts is not None:
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise InvalidRequest(
                "prompts", 'the prompt schedule must map frames to text, e.g. {"0": "a cat"}'
            )
        values["prompts"] = {str(k): v for k, v in prompts.items()}
    if data.get("sd_model_name"):
        warnings.append(
            f"model {data['sd_model_name']!r} is not chosen from the file; pick it with the model option"
        )
    known = {*SHARED_KEYS, "prompts", "animation_prompts"}
    ignored = tuple(sorted(k for k in data if k not in known))
    return DeforumImport(AnimationSettings(**values), ignored, tuple(warnings))


def _convert(field_name: str, value: Any) -> Any:
    try:
        if field_name in _INTEGERS:
            return int(float(value))
        if field_name == "fps":
            return float(value)
        if field_name == "enable_steps_scheduling":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        return str(value)
    except (TypeError, ValueError):
        raise InvalidRequest(field_name, f"{value!r} is not a number") from None


def export_deforum(settings: AnimationSettings, seed: int | None = None) -> dict[str, Any]:
    """The animation under Deforum's keys (the start seed given, when the settings said −1 = random)."""
    by_field = {field_name: key for key, field_name in SHARED_KEYS.items()}
    out: dict[str, Any] = {}
    for item in fields(AnimationSettings):
        value = getattr(settings, item.name)
        if item.name == "prompts":
            out["prompts"] = dict(value)
        elif item.name in by_field:
            out[by_field[item.name]] = value
    if seed is not None:
        out["seed"] = seed
    if settings.model:
        out["sd_model_name"] = settings.model
    return out
