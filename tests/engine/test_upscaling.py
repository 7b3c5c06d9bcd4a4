"""Model upscalers (engine/upscaling) on tiny random-weight models built from spandrel's own architectures:
detection through the gates, refusals (a pickle with code, a 1× restorer, what spandrel does not know), the
tiled run against an untiled one, the memory of a 4× of 1024², A1111's postprocessing text, and a model
upscaler as the hires fix's upscaler with its infotext read back."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import ModelNotFound, ModelRefused
from engine.hires_infotext import hires_from_infotext
from engine.infotext import parse_infotext
from engine.models.registry import HashCache, ModelKind, ModelRegistry, sha256_file
from engine.requests import HiresFix, HiresUpscaler, hires_upscaler
from engine.upscaling.extras import (
    check_scale,
    postprocess_infotext,
    read_postprocessing,
    save_extras_png,
    target_size,
)
from engine.upscaling.files import UpscalerCache
from engine.upscaling.tiles import run_tiled, tile_starts
from engine.upscaling.upscale import model_pass, upscale_to
from tests.engine.helpers import request
from tests.tiny_upscalers import save_upscaler, tiny_dncnn, tiny_esrgan, tiny_swinir


def _registry(models: Path) -> ModelRegistry:
    folders = {ModelKind.CHECKPOINT: models / "Stable-diffusion", ModelKind.UPSCALER: models / "ESRGAN"}
    more = {ModelKind.UPSCALER: (models / "RealESRGAN", models / "SwinIR", models / "DAT")}
    return ModelRegistry(folders, HashCache(models / "hashes.json"), more_folders=more)


def _picture(size: tuple[int, int] = (40, 28), seed: int = 3) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


class _Canary:
    """Unpickling this creates `marker`: if the file ever appears, untrusted code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_upscalers_in_each_folder_are_found_listed_with_hashes_and_detected(tmp_path):
    save_upscaler(tiny_esrgan(4), tmp_path / "ESRGAN" / "4x-Tiny.pth")
    save_upscaler(tiny_esrgan(2, seed=1), tmp_path / "RealESRGAN" / "2x-Real.safetensors")
    save_upscaler(tiny_swinir(2), tmp_path / "SwinIR" / "2x-Swin.safetensors")
    registry = _registry(tmp_path)
    assert sorted(registry.names(ModelKind.UPSCALER)) == ["2x-Real", "2x-Swin", "4x-Tiny"]
    entry = registry.find(ModelKind.UPSCALER, "4x-tiny")  # names match regardless of case, as models do
    assert registry.short_hash(entry) == sha256_file(entry.path)[:10]
    cache = UpscalerCache()
    loaded = {name: cache.load(registry, name) for name in ("4x-Tiny", "2x-Real", "2x-Swin")}
    assert [(u.architecture, u.scale) for u in loaded.values()] == [
        ("ESRGAN", 4),
        ("ESRGAN", 2),
        ("SwinIR", 2),
    ]
    with pytest.raises(ModelNotFound, match="installed: .*4x-Tiny"):
        cache.load(registry, "4x-UltraSharp")


def test_a_pth_with_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "ESRGAN" / "4x-Evil.pth"
    path.parent.mkdir(parents=True)
    torch.save({"params_ema": _Canary(marker)}, path)
    (tmp_path / "ESRGAN" / "4x-Raw.pth").write_bytes(pickle.dumps({"x": _Canary(marker)}))
    registry = _registry(tmp_path)
    for name in ("4x-Evil", "4x-Raw"):
        with pytest.raises(ModelRefused, match="weights_only"):
            UpscalerCache().load(registry, name)
    assert not marker.exists()


def test_what_is_not_an_upscaler_is_refused_with_the_reason(tmp_path):
    save_upscaler(tiny_dncnn(), tmp_path / "ESRGAN" / "1x-Denoise.safetensors")
    save_upscaler(tiny_esrgan(1), tmp_path / "ESRGAN" / "1x-Esrgan.pth")
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(4, 4)}, str(tmp_path / "ESRGAN" / "Mystery.safetensors"))
    (tmp_path / "ESRGAN" / "Old.ckpt").write_bytes(b"\x80\x04K\x01.")
    registry = _registry(tmp_path)
    with pytest.raises(ModelRefused, match="1× restoration model .*not an upscaler .*DnCNN"):
        UpscalerCache().load(registry, "1x-Denoise")
    with pytest.raises(ModelRefused, match="1× restoration model"):
        UpscalerCache().load(registry, "1x-Esrgan")
    with pytest.raises(ModelRefused, match="spandrel detects no architecture"):
        UpscalerCache().load(registry, "Mystery")
    assert [r.path.name for r in registry.refused] == ["Old.ckpt"]


def test_tiles_cover_the_image_and_the_tiled_result_matches_an_untiled_run(tmp_path):
    assert tile_starts(100, 48, 16) == [0, 32, 52]
    assert tile_starts(40, 48, 16) == [0]
    save_upscaler(tiny_esrgan(2), tmp_path / "ESRGAN" / "2x-Tiny.safetensors")
    upscaler = UpscalerCache().load(_registry(tmp_path), "2x-Tiny")
    picture = _picture((72, 56))
    whole = model_pass(upscaler, picture, tile=512, overlap=0)
    tiled = model_pass(upscaler, picture, tile=32, overlap=12)
    assert whole.size == tiled.size == (144, 112)
    difference = np.abs(np.asarray(whole, dtype=np.int16) - np.asarray(tiled, dtype=np.int16))
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 8


def test_a_4x_of_1024_squared_runs_in_bounded_tiles():
    """Every model call sees at most one tile; memory is the output and its weights (4096² × 4 floats)."""
    seen: list[tuple[int, ...]] = []

    def model(piece: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(piece.shape))
        return torch.nn.functional.interpolate(piece, scale_factor=4, mode="nearest")

    image = torch.rand(1, 3, 1024, 1024)
    out = run_tiled(model, image, 4, tile=192, overlap=16)
    assert out.shape == (1, 3, 4096, 4096)
    assert (
        max(h * w for _, _, h, w in seen) <= 192 * 192 and len(seen) == len(tile_starts(1024, 192, 16)) ** 2
    )
    expected = torch.nn.functional.interpolate(image, scale_factor=4, mode="nearest")
    assert torch.allclose(out, expected, atol=1e-5)  # the blended seams of a local model are exact


def test_another_scale_runs_the_model_then_resizes_and_writes_a1111s_text(tmp_path):
    save_upscaler(tiny_esrgan(4), tmp_path / "ESRGAN" / "4x-Tiny.pth")
    upscaler = UpscalerCache().load(_registry(tmp_path), "4x-Tiny")
    picture = _picture((30, 20))
    assert upscale_to(upscaler, picture, target_size(picture.size, 2.5)).size == (75, 50)
    assert upscale_to(upscaler, picture, target_size(picture.size, 8)).size == (240, 160)  # two passes
    text = postprocess_infotext(4.0, "4x-Tiny")
    assert text == "Postprocess upscale by: 4, Postprocess upscaler: 4x-Tiny"
    out = save_extras_png(picture, tmp_path / "out.png", "a cat\nSteps: 20, Seed: 1", text)
    with Image.open(out) as saved:
        saved.load()
        assert saved.info["parameters"].startswith("a cat") and saved.info["extras"] == text
    assert read_postprocessing(out) == text
    with pytest.raises(ValueError, match="scale: 9 is outside 1..8"):
        check_scale(9)
    with pytest.raises(ValueError, match="largest side allowed is 8192"):
        check_scale(8, (1536, 1024))


def test_hires_fix_with_a_model_upscaler_records_it_and_reads_it_back(engine, settings):
    folder = settings.models_path / "ESRGAN"
    save_upscaler(tiny_esrgan(2, seed=5), folder / "2x-HiresTest.safetensors")
    assert (
        hires_upscaler("lanczos") is HiresUpscaler.LANCZOS
        and hires_upscaler("2x-HiresTest") == "2x-HiresTest"
    )
    hires = HiresFix(scale=2.0, steps=2, upscaler="2x-HiresTest")
    generated = engine.txt2img(request(hires=hires)).images[0]
    assert generated.image.size == (128, 128)
    info = parse_infotext(generated.infotext)
    assert info.params["Hires upscaler"] == "2x-HiresTest"
    notes: list[str] = []
    back = hires_from_infotext(info.params, info.denoising_strength, notes, {"2x-hirestest"})
    assert back.upscaler == "2x-hirestest" and not notes
    missing = hires_from_infotext(info.params, info.denoising_strength, notes, set())
    assert missing.upscaler is HiresUpscaler.LATENT and "not available" in notes[0]
    with pytest.raises(ModelNotFound, match="no upscaler named 'Nope'"):
        engine.txt2img(request(hires=HiresFix(scale=2.0, steps=2, upscaler="Nope")))
