"""What one Extras upscale does, without torch: "Scale by" or "Scale to" (with "Crop to fit"), a second
upscaler blended in by its visibility, the sizes each step makes and A1111's postprocessing keys.

Facts from A1111 (scripts/postprocessing_upscale.py and modules/upscaler.py, commit 984b952e):

- "Scale to" (`resize_mode` 1) upscales by `max(width_to / width, height_to / height)`, so the picture covers
  the target; with "Crop to fit" it is then pasted centred on a canvas of the target's size (a centre crop:
  the offset is `target // 2 − side // 2`). Without crop the covering picture is kept whole.
- The second upscaler runs on the same input with the same resize (and crop) and `Image.blend` mixes the two
  results by its visibility (0: only the first); it runs only when its visibility is above 0.
- The keys, in A1111's order: `Postprocess upscale by` or `Postprocess upscale to` (`WxH`), `Postprocess crop
  to` (`WxH`, with crop), `Postprocess upscaler`, `Postprocess upscaler 2` (when it ran).

Salon's one deliberate difference: A1111 rounds each side of an upscale down to a multiple of 8, which can
leave the covering picture a pixel short of a target and a black line after the crop; Salon's covering size is
`int(side × scale)` but never below the target (the "Scale by" sizes stay `int(side × scale)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import InvalidRequest
from engine.infotext import quote
from engine.upscaling.extras import DEFAULT_SCALE, MAX_SIDE, check_scale, format_number, target_size

MIN_TARGET_SIDE = 64  # A1111's "Scale to" sliders: 64..8192
NO_UPSCALER = ("", "None")
RESIZERS = ("Lanczos", "Nearest")  # A1111's upscalers that are plain resizes (no model file)


def resizer(name: str) -> str | None:
    """`Lanczos` or `Nearest` (any case) as A1111 spells them; None for a model upscaler's name."""
    return next((known for known in RESIZERS if known.casefold() == name.strip().casefold()), None)


@dataclass(frozen=True)
class ExtrasPlan:
    """The upscale of one Extras run. `to` set: "Scale to" (`crop`: "Crop to fit"); else "Scale by" `scale`.
    `upscaler_2` runs only when `visibility_2` is above 0."""

    upscaler: str
    scale: float = DEFAULT_SCALE
    to: tuple[int, int] | None = None
    crop: bool = False
    upscaler_2: str | None = None
    visibility_2: float = 0.0

    @property
    def second(self) -> str | None:
        """The second upscaler's name when it takes part (A1111: named, and visibility above 0)."""
        return self.upscaler_2 if self.upscaler_2 and self.visibility_2 > 0 else None

    def upscale_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size each upscaler makes from an input of `size` (before any crop); no upscaler (face
        restoration alone): `size`."""
        if not self.upscaler:
            return size
        if self.to is None:
            return target_size(size, self.scale)
        factor = max(self.to[0] / size[0], self.to[1] / size[1])
        width, height = target_size(size, factor)
        return max(width, self.to[0]), max(height, self.to[1])

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The result's size: the target with crop, else the upscaled size."""
        if self.to is not None and self.crop:
            return self.to
        return self.upscale_size(size)

    def check(self, size: tuple[int, int] | None = None) -> ExtrasPlan:
        """The plan if its values are allowed (and, for an input of `size`, every picture within MAX_SIDE);
        InvalidRequest names the option (`scale`, `to`, `upscaler_2_visibility`)."""
        if not 0.0 <= self.visibility_2 <= 1.0:
            raise InvalidRequest("upscaler_2_visibility", f"{self.visibility_2:g} is outside 0..1")
        if self.to is None:
            check_scale(self.scale, size)
            return self
        check_target(self.to)
        if size is not None:
            width, height = self.upscale_size(size)
            if max(width, height) > MAX_SIDE:
                raise InvalidRequest(
                    "to",
                    f"{size[0]}x{size[1]} scaled to cover {self.to[0]}x{self.to[1]} is {width}x{height}; "
                    f"the largest side allowed is {MAX_SIDE} (use crop, or a target nearer the picture's shape)",
                )
        return self

    def info(self) -> dict[str, str]:
        """A1111's postprocessing keys of this upscale, in its order (none without an upscaler: A1111's
        upscale step does nothing when `upscaler_1` is None)."""
        items: dict[str, str] = {}
        if not self.upscaler:
            return items
        if self.to is None:
            items["Postprocess upscale by"] = format_number(self.scale)
        else:
            items["Postprocess upscale to"] = f"{self.to[0]}x{self.to[1]}"
            if self.crop:
                items["Postprocess crop to"] = f"{self.to[0]}x{self.to[1]}"
        items["Postprocess upscaler"] = self.upscaler
        if self.second:
            items["Postprocess upscaler 2"] = self.second
        return items

    def to_params(self) -> dict[str, Any]:
        """The plan as a job's JSON parameters."""
        return {
            "upscaler": self.upscaler,
            "scale": self.scale,
            "to": list(self.to) if self.to else None,
            "crop": self.crop,
            "upscaler_2": self.upscaler_2,
            "upscaler_2_visibility": self.visibility_2,
        }


def check_target(to: tuple[int, int]) -> tuple[int, int]:
    """A "Scale to" size within A1111's bounds (64..8192 a side)."""
    width, height = to
    if not (MIN_TARGET_SIDE <= width <= MAX_SIDE and MIN_TARGET_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest("to", f"{width}x{height}: each side must lie in {MIN_TARGET_SIDE}..{MAX_SIDE}")
    return to


def plan_from_params(params: dict[str, Any]) -> ExtrasPlan:
    """A plan from a job's JSON parameters (older jobs hold only `upscaler` and `scale`); types are checked,
    bounds are not (ExtrasPlan.check). InvalidRequest names the option."""
    try:
        scale = float(params.get("scale") or DEFAULT_SCALE)
    except (TypeError, ValueError):
        raise InvalidRequest("scale", f"{params.get('scale')!r} is not a number") from None
    to = params.get("to")
    if to is not None:
        if not (isinstance(to, list | tuple) and len(to) == 2 and all(isinstance(v, int) for v in to)):
            raise InvalidRequest("to", f"{to!r} is not a width and a height")
        to = (int(to[0]), int(to[1]))
    second = params.get("upscaler_2")
    if second is not None and not isinstance(second, str):
        raise InvalidRequest("upscaler_2", f"{second!r} is not an upscaler's name")
    second = None if second is None or second.strip() in NO_UPSCALER else second.strip()
    try:
        visibility = float(params.get("upscaler_2_visibility") or 0.0)
    except (TypeError, ValueError):
        raise InvalidRequest("upscaler_2_visibility", "is not a number") from None
    return ExtrasPlan(
        str(params.get("upscaler") or "").strip(),
        scale,
        to,
        bool(params.get("crop")),
        second,
        visibility,
    )


def format_info(items: dict[str, str]) -> str:
    """Postprocessing keys as A1111 joins them ("Key: value, …", values quoted when needed)."""
    return ", ".join(f"{key}: {quote(value)}" for key, value in items.items())
