"""`salon merge` end to end on tiny random-weight SD 1.x models: a diffusers folder (A) and an A1111 single file
(B) merged by a queue job, listed by `salon models` with its hash, loaded by Salon's own loader and used to
generate an image whose infotext names it."""

from __future__ import annotations

import json
import shutil

import torch
from safetensors import safe_open

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.models.ldm_conversion import diffusers_to_ldm
from engine.models.registry import ModelKind, ModelRegistry, sha256_file
from tests.tiny_models import build_tiny_sd1


def test_merge_runs_as_a_job_and_the_result_loads_and_generates(tmp_path, tiny_sd1_dir, capsys):
    from diffusers import DiffusionPipeline

    from config import load_settings
    from engine.models.ldm_conversion import save_single_file

    data = tmp_path / "data"
    checkpoints = data / "models" / "Stable-diffusion"
    shutil.copytree(tiny_sd1_dir, checkpoints / "tiny-a")
    other = build_tiny_sd1(tmp_path / "tiny-b-folder", seed=1)
    save_single_file(DiffusionPipeline.from_pretrained(other), checkpoints / "tiny-b.safetensors")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{data}"\ndefault_model = "tiny-a"\n')

    args = ["merge", "tiny-a", "tiny-b", "--multiplier", "0.5", "--name", "mixed"]
    assert main(["--config", str(config), *args]) == 0
    out = capsys.readouterr().out
    merged = checkpoints / "mixed.safetensors"
    assert str(merged) in out and f"mixed [{sha256_file(merged)[:10]}]" in out
    assert (checkpoints / "mixed.config" / "unet" / "config.json").is_file()  # A's design goes with it

    # the weights are A1111's weighted sum of the two, in the LDM layout
    def ldm(folder):
        pipe = DiffusionPipeline.from_pretrained(folder)
        return diffusers_to_ldm(pipe.unet, pipe.vae, pipe.text_encoder)

    a, b = ldm(tiny_sd1_dir), ldm(other)
    with safe_open(str(merged), "pt") as file:
        key = "model.diffusion_model.input_blocks.1.1.proj_in.weight"
        assert torch.allclose(file.get_tensor(key), 0.5 * a[key] + 0.5 * b[key])
        recipe = json.loads(file.metadata()["sd_merge_recipe"])
    assert recipe["interp_method"] == "Weighted sum" and recipe["multiplier"] == 0.5

    assert main(["--config", str(config), *args]) == 2  # refused: never overwrites
    assert "mixed.safetensors already exists; a merge never overwrites" in capsys.readouterr().err

    assert main(["--config", str(config), "models"]) == 0
    listed = capsys.readouterr().out
    settings = load_settings(config)
    registry = ModelRegistry.from_settings(settings)
    entry = registry.find(ModelKind.CHECKPOINT, "mixed")
    assert "mixed" in listed and registry.short_hash(entry) in listed

    image_args = ["imagine", "a red circle", "--model", "mixed", "--steps", "2", "--size", "64x64"]
    assert main(["--config", str(config), *image_args, "--seed", "3", "--output", str(tmp_path / "o")]) == 0
    info = parse_infotext(read_infotext(tmp_path / "o" / "00000-3.png"))
    assert (info.model, info.model_hash) == ("mixed", registry.short_hash(entry))
