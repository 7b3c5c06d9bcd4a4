"""Deforum's settings files (`settings.txt`, JSON) read into Salon's animation settings and written back.

Deforum (sd-webui-deforum) saves every option of a run under its own key names; Salon reads the ones it shares
(schedules, prompts, seed behaviour, size, steps, sampler, frames, fps, colour coherence and its legacy mode,
noise type and Perlin options, noise multiplier, border, cadence) and lists the rest as ignored, with a warning
for each option that changes frames and that Salon does not have (anti-blur, perspective flip, optical flow redo,
masks, ControlNet, …); a file using hybrid video with a hybrid option Salon does not build is refused by name.

A key missing from a file is not "Deforum's default": Deforum's loader (settings.py `load_args`) keeps the value
its interface shows for any key the file leaves out, and its deprecated-settings handler
(deprecation_utils.py) sets `legacy_colormatch` to true when that key is missing. So writing gives every shared
key, Salon's own `salon_blend_prompts`, and every Deforum option that changes frames set to what Salon does
(off, or A1111's value that Salon uses); reading a file without `legacy_colormatch` takes true, as Deforum does.
Deforum's loader skips `perlin_w` and `perlin_h` (its interface hides them at 8), so only Salon reads those back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from core.errors import InvalidRequest
from engine.animation.animate import AnimationSettings
from engine.animation.camera3d import Settings3D
from engine.animation.hybrid import NOT_BUILT as HYBRID_NOT_BUILT
from engine.animation.schedules import schedule_values
from engine.animation.video_options import VideoOptions

THREE_D_KEYS = tuple(Settings3D.__dataclass_fields__)  # Deforum's 3D keys, Salon's names too
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
    "legacy_colormatch": "legacy_colormatch",
    "noise_type": "noise_type",
    "perlin_w": "perlin_w",
    "perlin_h": "perlin_h",
    "perlin_octaves": "perlin_octaves",
    "perlin_persistence": "perlin_persistence",
    "enable_noise_multiplier_scheduling": "enable_noise_multiplier_scheduling",
    "noise_multiplier_schedule": "noise_multiplier_schedule",
    "diffusion_cadence": "diffusion_cadence",
    "fps": "fps",
    "salon_blend_prompts": "blend_prompts",  # Salon's own key (Deforum ignores keys it does not know)
    **{key: key for key in THREE_D_KEYS},  # 3D mode: engine/animation/camera3d.py
    **{key: key for key in VideoOptions.__dataclass_fields__},  # flow cadence, video input, hybrid video
}
_INTEGERS = {
    "width",
    "height",
    "seed",
    "steps",
    "seed_iter_n",
    "max_frames",
    "diffusion_cadence",
    "perlin_w",
    "perlin_h",
    "perlin_octaves",
    "extract_nth_frame",
    "extract_from_frame",
    "extract_to_frame",
}
_FLOATS = {"fps", "perlin_persistence", "midas_weight"}
_BOOLEANS = {
    "enable_steps_scheduling",
    "legacy_colormatch",
    "enable_noise_multiplier_scheduling",
    "blend_prompts",
    "aspect_ratio_use_old_formula",
    "use_depth_warping",
    "save_depth_maps",
}
# Deforum options (args.py) that change the frames or the video and that Salon does not have, at the value that
# leaves them off: export writes them, import warns about a file that turns one on.
OFF: dict[str, Any] = {
    "tiling": False,
    "restore_faces": False,
    "seed_resize_from_w": 0,
    "seed_resize_from_h": 0,
    "use_init": False,
    "use_mask": False,
    "use_mask_video": False,
    "use_noise_mask": False,
    "reroll_blank_frames": "ignore",
    "motion_preview_mode": False,
    "enable_perspective_flip": False,
    "enable_subseed_scheduling": False,
    "enable_sampler_scheduling": False,
    "enable_checkpoint_scheduling": False,
    "color_force_grayscale": False,
    "optical_flow_redo_generation": "None",
    "diffusion_redo": "0",
    "resume_from_timestring": False,
    "use_looper": False,
    "parseq_manifest": None,
    **{f"cn_{i}_enabled": False for i in range(1, 6)},
    "frame_interpolation_engine": "None",
    "r_upscale_video": False,
    "add_soundtrack": "None",
}
# Schedules with the constant value that matches Salon, and the switch that makes Deforum use them (None: always
# used). Without their switch Deforum takes CLIP skip and eta from A1111's settings, which may not be Salon's.
OFF_SCHEDULES: dict[str, tuple[str | None, float, str]] = {
    "amount_schedule": (None, 0.0, "anti-blur (unsharp mask)"),
    "clipskip_schedule": ("enable_clipskip_scheduling", 1.0, "CLIP skip"),
    "ancestral_eta_schedule": ("enable_ancestral_eta_scheduling", 1.0, "ancestral eta"),
    "ddim_eta_schedule": ("enable_ddim_eta_scheduling", 0.0, "DDIM eta"),
}
# Deforum's deprecated-settings handler: old values it rewrites before loading.
_OLD_COLOR_COHERENCE = {f"Match Frame 0 {mode}": mode for mode in ("HSV", "LAB", "RGB")}
_OLD_SWITCHES = {
    "hybrid_composite": "Normal",
    "optical_flow_redo_generation": "DIS Fine",
    "optical_flow_cadence": "DIS Fine",
}
_UNSUPPORTED_MODES: dict[str, str] = {}  # every Deforum animation mode is built
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
    data = _deprecated(data)
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
    _refuse_hybrid_options(data, values)
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
    unsupported, agreeing = _other_options(data, values.get("max_frames", AnimationSettings.max_frames))
    warnings.extend(unsupported)
    known = {*SHARED_KEYS, "prompts", "animation_prompts", *agreeing}
    ignored = tuple(sorted(k for k in data if k not in known))
    return DeforumImport(AnimationSettings(**values), ignored, tuple(warnings))


def _refuse_hybrid_options(data: dict[str, Any], values: dict[str, Any]) -> None:
    """A file using hybrid video with an option of it Salon does not build is refused, naming the option."""
    if values.get("hybrid_composite", "None") == "None" and values.get("hybrid_motion", "None") == "None":
        return
    for key, off in HYBRID_NOT_BUILT.items():
        if key in data and not _is_off(data[key], off):
            raise InvalidRequest(key, f"{data[key]!r} is not built in Salon's hybrid video (only {off!r})")


def _convert(field_name: str, value: Any) -> Any:
    try:
        if field_name in _INTEGERS:
            return int(float(value))
        if field_name in _FLOATS:
            return float(value)
        if field_name in _BOOLEANS:
            return _true(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(field_name, f"{value!r} is not a number") from None


def _true(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


def _deprecated(data: dict[str, Any]) -> dict[str, Any]:
    """What Deforum's deprecated-settings handler does to the keys Salon reads or checks."""
    data = dict(data)
    data.setdefault("legacy_colormatch", True)  # files older than the option were made in legacy mode
    if data.get("color_coherence") in _OLD_COLOR_COHERENCE:
        data["color_coherence"] = _OLD_COLOR_COHERENCE[data["color_coherence"]]
    if "flip_2d_perspective" in data:
        data["enable_perspective_flip"] = data.pop("flip_2d_perspective")
    for key, on in _OLD_SWITCHES.items():
        if isinstance(data.get(key), bool):
            data[key] = on if data[key] else "None"
    return data


def _other_options(data: dict[str, Any], max_frames: Any) -> tuple[list[str], set[str]]:
    """A warning for each option of the file that changes frames and that Salon does not have, and the keys
    whose values are what Salon does anyway (not reported as ignored)."""
    found, agreeing = [], set()
    for key, off in OFF.items():
        if key in data:
            if _is_off(data[key], off):
                agreeing.add(key)
            else:
                found.append(f"{key} {data[key]!r}")
    for key, (switch, value, name) in OFF_SCHEDULES.items():
        used = switch is None or _true(data.get(switch, False))
        if key not in data:
            continue
        try:
            frames = max(1, min(int(float(max_frames)), 100_000))
            values = schedule_values(str(data[key]), key, frames)
        except (InvalidRequest, TypeError, ValueError, OverflowError):
            values = [float("nan")]
        if all(v == value for v in values):
            agreeing.update({key, switch} - {None})
        elif used:
            found.append(f"{name} ({key} {data[key]!r})")
    return [f"Salon does not have Deforum's {item}; it is ignored" for item in found], agreeing


def _is_off(value: Any, off: Any) -> bool:
    if off is None:
        return not value or not str(value).strip()
    if isinstance(off, bool):
        return _true(value) is off
    return str(value).strip() == str(off)


def export_deforum(settings: AnimationSettings, seed: int | None = None) -> dict[str, Any]:
    """The animation under Deforum's keys (the start seed given, when the settings said −1 = random), with
    every option that changes Deforum's frames set to what Salon does."""
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
    out.update(OFF)
    for key, (switch, value, _) in OFF_SCHEDULES.items():
        out[key] = f"0: ({value:g})"
        if switch is not None:
            out[switch] = True
    return out
