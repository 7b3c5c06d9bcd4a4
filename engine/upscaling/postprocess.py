"""Running an Extras plan (engine/upscaling/plan.py) on one picture: the first upscaler to the plan's size, the
centre crop of "Crop to fit", and the second upscaler's result (same input, same size and crop) blended in by
its visibility, as A1111's Extras tab does. `Lanczos` and `Nearest` are A1111's plain resizes, no model."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from engine.upscaling.files import Upscaler
from engine.upscaling.plan import ExtrasPlan, resizer
from engine.upscaling.upscale import upscale_to


def crop_center(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The centre `size` of `image` (which covers it), offset as A1111 pastes: `side // 2 − target // 2`."""
    left = image.width // 2 - size[0] // 2
    top = image.height // 2 - size[1] // 2
    return image.crop((left, top, left + size[0], top + size[1]))


def run_plan(
    plan: ExtrasPlan,
    image: Image.Image,
    load: Callable[[str], Upscaler],
    *,
    on_tile: Callable[[str, int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Image.Image:
    """`image` upscaled as `plan` says; `load(name)` gives an upscaler (loaded one after the other, so the
    one-model cache holds each in turn); `on_tile(name, done, total)` after each tile. A plan without an
    upscaler (face restoration alone) leaves the picture as it is."""
    image = image.convert("RGB")
    if not plan.upscaler:
        return image
    size = plan.upscale_size(image.size)

    def one(name: str) -> Image.Image:
        plain = resizer(name)
        if plain is not None:
            method = Image.Resampling.LANCZOS if plain == "Lanczos" else Image.Resampling.NEAREST
            result = image.resize(size, method)
        else:
            upscaler = load(name)
            report = None if on_tile is None else (lambda done, total: on_tile(upscaler.name, done, total))
            result = upscale_to(upscaler, image, size, on_tile=report, cancelled=cancelled)
        if plan.to is not None and plan.crop:
            result = crop_center(result, plan.to)
        return result

    result = one(plan.upscaler)
    second = plan.second
    if second is not None:
        result = Image.blend(result, one(second), plan.visibility_2)
    return result
