"""The Extras tab's "Scale to" (with and without "Crop to fit") and second upscaler (engine/upscaling/plan.py,
postprocess.py) on tiny random-weight ESRGANs: the sizes, A1111's centre crop and blend, the postprocessing
keys in A1111's order, and the bounds refused by name.

A1111's facts pinned here: scripts/postprocessing_upscale.py and modules/upscaler.py at commit
984b952eb30798ea478cb97b7ca79ff32196f4ce ("Scale to" upscales by max(w_to / w, h_to / h); the crop pastes the
upscaled picture at (w_to // 2 − w // 2, h_to // 2 − h // 2) on a canvas of the target; `Image.blend(first,
second, visibility)`; the keys `Postprocess upscale to`, `Postprocess crop to`, `Postprocess upscaler`,
`Postprocess upscaler 2`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidRequest
from engine.models.registry import HashCache, ModelKind, ModelRegistry
from engine.upscaling.files import UpscalerCache
from engine.upscaling.plan import ExtrasPlan, format_info, plan_from_params
from engine.upscaling.postprocess import crop_center, run_plan
from engine.upscaling.upscale import upscale_to
from tests.tiny_upscalers import save_upscaler, tiny_esrgan


def _registry(models: Path) -> ModelRegistry:
    folders = {ModelKind.CHECKPOINT: models / "Stable-diffusion", ModelKind.UPSCALER: models / "ESRGAN"}
    return ModelRegistry(folders, HashCache(models / "hashes.json"))


def _picture(size: tuple[int, int], seed: int = 3) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _a1111_paste(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """What A1111's crop does: the picture pasted centred on a black canvas of the target's size."""
    canvas = Image.new("RGB", size)
    canvas.paste(image, box=(size[0] // 2 - image.width // 2, size[1] // 2 - image.height // 2))
    return canvas


def test_scale_to_covers_the_target_and_crop_takes_its_centre():
    plan = ExtrasPlan("4x-Tiny", to=(1920, 1080))
    assert plan.upscale_size((640, 480)) == plan.output_size((640, 480)) == (1920, 1440)  # by 3: covers
    assert plan.upscale_size((480, 640)) == (1920, 2560)
    cropped = ExtrasPlan("4x-Tiny", to=(1920, 1080), crop=True)
    assert cropped.output_size((640, 480)) == (1920, 1080)
    # 1000 / 76 × 76 is 999.99…: A1111's rounding falls a pixel short; Salon's covering size never does
    assert ExtrasPlan("x", to=(1000, 1000)).upscale_size((76, 77)) == (1000, 1013)
    for size, target in (((37, 23), (30, 20)), ((64, 64), (64, 64)), ((101, 80), (64, 79))):
        picture = _picture(size)
        assert np.array_equal(
            np.asarray(crop_center(picture, target)), np.asarray(_a1111_paste(picture, target))
        )


def test_the_keys_are_a1111s_in_its_order():
    assert format_info(ExtrasPlan("4x-Tiny", 2.5).info()) == (
        "Postprocess upscale by: 2.5, Postprocess upscaler: 4x-Tiny"
    )
    plan = ExtrasPlan("4x-Tiny", to=(1920, 1080), crop=True, upscaler_2="2x-Other", visibility_2=0.3)
    assert format_info(plan.info()) == (
        "Postprocess upscale to: 1920x1080, Postprocess crop to: 1920x1080, Postprocess upscaler: 4x-Tiny, "
        "Postprocess upscaler 2: 2x-Other"
    )
    unseen = ExtrasPlan("4x-Tiny", to=(512, 512), upscaler_2="2x-Other", visibility_2=0.0)
    assert list(unseen.info()) == ["Postprocess upscale to", "Postprocess upscaler"]  # visibility 0: not run
    assert format_info({"Postprocess upscaler": "a, b"}) == 'Postprocess upscaler: "a, b"'
    assert plan_from_params(plan.to_params()) == plan
    assert plan_from_params({"upscaler": "4x-Tiny", "scale": 3}) == ExtrasPlan("4x-Tiny", 3.0)  # older jobs


def test_bounds_are_refused_by_name():
    with pytest.raises(InvalidRequest, match=r"^to: 32x1080: each side must lie in 64..8192"):
        ExtrasPlan("x", to=(32, 1080)).check()
    with pytest.raises(InvalidRequest, match=r"^to: 100x10 scaled to cover 8192x8192 is 81920x8192"):
        ExtrasPlan("x", to=(8192, 8192)).check((100, 10))
    assert ExtrasPlan("x", to=(8192, 64), crop=True).check((100, 100)).to == (8192, 64)
    with pytest.raises(InvalidRequest, match=r"^upscaler_2_visibility: 1.5 is outside 0..1"):
        ExtrasPlan("x", upscaler_2="y", visibility_2=1.5).check()
    with pytest.raises(InvalidRequest, match=r"^scale: 9 is outside 1..8"):
        ExtrasPlan("x", 9).check()
    with pytest.raises(InvalidRequest, match=r"^to: "):
        plan_from_params({"upscaler": "x", "to": ["wide", 3]})


def test_crop_and_the_second_upscaler_blend_as_a1111(tmp_path):
    save_upscaler(tiny_esrgan(2, seed=1), tmp_path / "ESRGAN" / "2x-One.safetensors")
    save_upscaler(tiny_esrgan(4, seed=2), tmp_path / "ESRGAN" / "4x-Two.safetensors")
    cache, registry = UpscalerCache(), _registry(tmp_path)
    loads: list[str] = []

    def load(name: str):
        loads.append(name)
        return cache.load(registry, name)

    picture = _picture((30, 20))
    plan = ExtrasPlan("2x-One", to=(64, 64), crop=True)
    result = run_plan(plan, picture, load)
    assert result.size == (64, 64) and loads == ["2x-One"]
    first = upscale_to(cache.load(registry, "2x-One"), picture, (96, 64))  # covers 64x64 by 3.2
    assert np.array_equal(np.asarray(result), np.asarray(_a1111_paste(first, (64, 64))))

    second = upscale_to(cache.load(registry, "4x-Two"), picture, (96, 64))
    blended = run_plan(ExtrasPlan("2x-One", 3.2, upscaler_2="4x-Two", visibility_2=0.3), picture, load)
    assert np.array_equal(np.asarray(blended), np.asarray(Image.blend(first, second, 0.3)))
    assert not np.array_equal(np.asarray(blended), np.asarray(first))
    only_second = run_plan(ExtrasPlan("2x-One", 3.2, upscaler_2="4x-Two", visibility_2=1.0), picture, load)
    assert np.array_equal(np.asarray(only_second), np.asarray(second))

    lanczos = run_plan(ExtrasPlan("lanczos", 2, upscaler_2="Nearest", visibility_2=0.5), picture, load)
    plain = Image.blend(
        picture.resize((60, 40), Image.Resampling.LANCZOS),
        picture.resize((60, 40), Image.Resampling.NEAREST),
        0.5,
    )
    assert np.array_equal(np.asarray(lanczos), np.asarray(plain)) and loads.count("2x-One") == 3  # no model
