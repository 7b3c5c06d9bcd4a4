"""Animation options from any front end: prompts and schedules checked before anything is queued, a plot of the
numeric schedules to show the user, and the queue job (`LongJob`)."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

from PIL import Image, ImageDraw

from commands.generation import LongJob
from core.errors import InvalidRequest
from engine.animation.animate import AnimationSettings, check_settings, plan_frames, resolve_seed
from jobs.records import JobKind

PLOTTED = (
    ("zoom", "zoom"),
    ("angle", "angle"),
    ("translation_x", "translation x"),
    ("translation_y", "translation y"),
    ("strength", "strength"),
    ("noise", "noise"),
    ("cfg_scale", "cfg scale"),
)


def parse_prompts(text: str) -> dict[str, str]:
    """A prompt schedule as Deforum writes it (`{"0": "a cat", "30": "a dog --neg blurry"}`), or one prompt
    for every frame, or `0: a cat | 30: a dog` (handy on a command line or in a Discord option)."""
    stripped = text.strip()
    if not stripped:
        raise InvalidRequest("prompts", 'give a prompt, or a schedule like {"0": "a cat", "30": "a dog"}')
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise InvalidRequest("prompts", f"is not a JSON prompt schedule: {exc}") from None
        if not isinstance(data, dict) or not data or not all(isinstance(v, str) for v in data.values()):
            raise InvalidRequest("prompts", 'a JSON schedule maps frames to prompts, e.g. {"0": "a cat"}')
        return {str(k): v for k, v in data.items()}
    if "|" in stripped or _keyed(stripped):
        out = {}
        for part in stripped.split("|"):
            frame, colon, prompt = part.partition(":")
            if not colon or not frame.strip():
                raise InvalidRequest("prompts", f"{part.strip()!r} is not FRAME: PROMPT (e.g. 30: a dog)")
            out[frame.strip().strip('"')] = prompt.strip()
        return out
    return {"0": stripped}


def _keyed(text: str) -> bool:
    head = text.partition(":")[0].strip()
    return head.isdigit()


def animation_settings(base: AnimationSettings | None = None, **options: Any) -> AnimationSettings:
    """Settings from options (None = keep the base's, e.g. from an imported Deforum file), checked."""
    chosen = {k: v for k, v in options.items() if v is not None}
    settings = replace(base or AnimationSettings(), **chosen)
    check_settings(settings)
    return settings


def animation_job(
    settings: AnimationSettings, formats: list[str], seed: int | None = None, limits=None
) -> tuple[LongJob, int]:
    """The queue job, with the start seed fixed now (−1 = a random one); every schedule is computed first."""
    fixed = resolve_seed(settings.seed) if seed is None else seed
    if limits is not None:
        check_settings(settings, max(limits.max_width, limits.max_height), limits.max_steps)
    plan_frames(settings, fixed)
    return LongJob(
        JobKind.ANIMATE, {"settings": settings.to_json(), "seed": fixed, "formats": formats}
    ), fixed


def schedule_plot(settings: AnimationSettings, seed: int, width: int = 480) -> bytes:
    """A small PNG: one strip per numeric schedule that changes over the animation (constant ones are listed
    with their value at the bottom), frame 0 on the left."""
    plan = plan_frames(settings, seed)
    series = {label: [float(getattr(p, name)) for p in plan] for name, label in PLOTTED}
    if settings.animation_mode == "Interpolation":
        series = {"prompt blend": [p.blend.weight if p.blend else 0.0 for p in plan]}
    moving = {label: values for label, values in series.items() if max(values) != min(values)}
    still = {label: values[0] for label, values in series.items() if label not in moving}
    strip, margin = 56, 8
    height = margin + strip * len(moving) + 18 * (1 + bool(still))
    image = Image.new("RGB", (width, max(height, 40)), "white")
    draw = ImageDraw.Draw(image)
    left, right = 92, width - margin
    for row, (label, values) in enumerate(moving.items()):
        top = margin + row * strip
        low, high = min(values), max(values)
        draw.text((4, top + 4), label, fill="black")
        draw.text((4, top + 18), f"{high:.4g}", fill="gray")
        draw.text((4, top + 34), f"{low:.4g}", fill="gray")
        draw.rectangle((left, top, right, top + strip - 10), outline=(210, 210, 210))
        span = (high - low) or 1.0
        last = max(1, len(values) - 1)
        points = [
            (left + (right - left) * i / last, top + strip - 12 - (strip - 14) * (v - low) / span)
            for i, v in enumerate(values)
        ]
        draw.line(points, fill=(40, 90, 200), width=2)
    bottom = margin + strip * len(moving)
    draw.text(
        (4, bottom), f"{len(plan)} frames at {settings.fps:g} fps, frames 0 to {len(plan) - 1}", fill="black"
    )
    if still:
        draw.text((4, bottom + 16), ", ".join(f"{k} {v:.4g}" for k, v in still.items()), fill="gray")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def describe(settings: AnimationSettings, seed: int) -> str:
    """One line about an animation for progress and result messages."""
    seconds = settings.max_frames / settings.fps
    return (
        f"{settings.animation_mode}, {settings.max_frames} frames ({seconds:.1f} s at {settings.fps:g} fps), "
        f"{settings.width}×{settings.height}, seed {seed}"
        + (f", cadence {settings.diffusion_cadence}" if settings.diffusion_cadence > 1 else "")
    )
