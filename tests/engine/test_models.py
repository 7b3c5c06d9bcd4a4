"""Loading: SDXL architecture, A1111 single-file checkpoints, the registry's names and hashes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from config import load_settings
from core.errors import InvalidRequest, ModelRefused, UnsafeModelFile
from engine.infotext import parse_infotext
from engine.models.ldm_conversion import save_single_file
from engine.models.model_files import load_safetensors
from engine.models.registry import ModelKind, sha256_file
from engine.requests import HiresFix, Img2ImgRequest
from engine.runner import Engine
from tests.engine.helpers import mean_difference, pixels, request


def _copy_configs(diffusers_dir, target):
    """The JSON files of a diffusers folder (no weights): a sidecar config for a single-file checkpoint."""
    for path in diffusers_dir.rglob("*.json"):
        if "tokenizer" not in path.parts[-2]:
            dest = target / path.relative_to(diffusers_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest)


@pytest.fixture(scope="module")
def sdxl_engine(tmp_path_factory, tiny_sdxl_dir):
    root = tmp_path_factory.mktemp("sdxl-data")
    shutil.copytree(tiny_sdxl_dir, root / "models/Stable-diffusion/tiny-xl")
    return Engine(load_settings(None, data_dir=root))


def test_sdxl_txt2img_is_deterministic_and_follows_the_prompt(sdxl_engine):
    model = sdxl_engine.load(None)
    assert model.sdxl
    first = sdxl_engine.txt2img(request("a red circle")).images[0]
    again = sdxl_engine.txt2img(request("a red circle")).images[0]
    other = sdxl_engine.txt2img(request("a blue square, (glossy:1.4)")).images[0]
    assert np.array_equal(pixels(first.image), pixels(again.image))
    assert mean_difference(first.image, other.image) > 0.1
    assert parse_infotext(first.infotext).model == "tiny-xl"


def test_sdxl_conditioning_concatenates_both_encoders_and_zeroes_an_empty_negative(sdxl_engine):
    model = sdxl_engine.load(None)
    cond = sdxl_engine._conditioning(model, "a cat " * 60, "", 1)
    assert cond.cond.shape == (1, 154, 80)  # two chunks of 77, 32 + 48 features
    assert cond.uncond.shape == cond.cond.shape and not cond.uncond.any()
    assert cond.pooled_cond.shape == (1, 40) and not cond.pooled_uncond.any()
    negative = sdxl_engine._conditioning(model, "a cat", "blurry", 1)
    assert negative.uncond.any() and negative.pooled_uncond.any()


def test_sdxl_hires_and_img2img(sdxl_engine):
    big = sdxl_engine.txt2img(request("a cat", hires=HiresFix(2.0, steps=2))).images[0]
    assert big.image.size == (128, 128)
    moved = sdxl_engine.img2img(Img2ImgRequest(request("a dog"), big.image.resize((64, 64)), 0.5)).images[0]
    assert moved.image.size == (64, 64)


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_single_file_checkpoint_generates_like_its_diffusers_folder(
    tmp_path, tiny_sd1_dir, tiny_sdxl_dir, arch
):
    from diffusers import DiffusionPipeline

    source = tiny_sd1_dir if arch == "sd1" else tiny_sdxl_dir
    checkpoints = tmp_path / "models" / "Stable-diffusion"
    shutil.copytree(source, checkpoints / "as-folder")
    single = save_single_file(DiffusionPipeline.from_pretrained(source), checkpoints / "as-file.safetensors")
    _copy_configs(source, checkpoints / "as-file.config")
    engine = Engine(load_settings(None, data_dir=tmp_path))
    from_folder = engine.txt2img(request("a red circle", model="as-folder")).images[0]
    from_file = engine.txt2img(request("a red circle", model="as-file")).images[0]
    assert np.array_equal(pixels(from_folder.image), pixels(from_file.image))
    info = parse_infotext(from_file.infotext)
    assert info.model == "as-file" and info.model_hash == sha256_file(single)[:10]


def test_pickled_checkpoint_is_listed_as_refused_and_a_fake_safetensors_is_refused(tmp_path):
    checkpoints = tmp_path / "models" / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    (checkpoints / "old.ckpt").write_bytes(b"\x80\x04pickle")
    (checkpoints / "fake.safetensors").write_bytes(b"\x80\x04\x95pickle-not-safetensors")
    engine = Engine(load_settings(None, data_dir=tmp_path))
    # The fake is refused from its header when the folder is scanned (issue 18 item 9), never listed as usable.
    assert [r.path.name for r in engine.registry.refused] == ["fake.safetensors", "old.ckpt"]
    assert engine.registry.names(ModelKind.CHECKPOINT) == ["salon-demo-shapes"]
    with pytest.raises(ModelRefused, match="model: 'fake' cannot be used: .*fake.safetensors is refused"):
        engine.load("fake")
    with pytest.raises(UnsafeModelFile):
        load_safetensors(checkpoints / "fake.safetensors")  # and the loader's own gate still refuses it


def test_unsupported_folder_architecture_is_refused(tmp_path):
    folder = tmp_path / "models" / "Stable-diffusion" / "kandinsky"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))
    engine = Engine(load_settings(None, data_dir=tmp_path))
    with pytest.raises(
        InvalidRequest, match="model: kandinsky: KandinskyV22Pipeline folders are not supported"
    ):
        engine.load("kandinsky")
    # An SD 3.5 folder loads through engine.models.flow_loading, which names what is missing.
    sd3 = tmp_path / "models" / "Stable-diffusion" / "sd3"
    sd3.mkdir()
    (sd3 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    with pytest.raises(InvalidRequest, match="model: sd3: the T5 tokenizer is missing"):
        engine.load("sd3")


def test_registry_hashes_are_a1111_and_cached(tmp_path):
    lora_dir = tmp_path / "models" / "Lora"
    lora_dir.mkdir(parents=True)
    import torch
    from safetensors.torch import save_file

    path = lora_dir / "detail.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.ones(2, 2)}, str(path), metadata={"ss_seed": "1"})
    settings = load_settings(None, data_dir=tmp_path)
    engine = Engine(settings)
    entry = engine.registry.find(ModelKind.LORA, "detail")
    header = int.from_bytes(path.read_bytes()[:8], "little")
    assert engine.registry.short_hash(entry) == sha256_file(path, skip_bytes=8 + header)[:12]
    cache = json.loads((settings.cache_dir / "hashes.json").read_text())
    assert any(key.startswith("addnet:") for key in cache)
    assert engine.registry.find(ModelKind.LORA, "detail [abc]") == entry  # A1111 title form
    assert engine.registry.find(ModelKind.LORA, engine.registry.sha256(entry)[:10]) == entry  # hash prefix
