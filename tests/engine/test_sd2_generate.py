"""Stable Diffusion 2.x end to end on tiny random SD 2-shaped models: the single file generates the folder's
pixels, txt2img and img2img, CLIP skip as A1111 (ignored), LoRAs, embeddings (another family's refused by
name), hypernetworks, a LoRA trained on it, the infotext, `salon models` and `--from-png`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.models.registry import sha256_file
from engine.requests import Img2ImgRequest
from tests.engine.helpers import mean_difference, pixels, request
from tests.engine.test_hypernetwork import a1111_file
from tests.engine.test_lora_embeddings import write_kohya_lora
from tests.tiny_sd2 import TEXT_WIDTH, build_tiny_sd2, save_tiny_sd2_file

V_BIAS = -2.0


@pytest.fixture(scope="module")
def sd2_data(tmp_path_factory: pytest.TempPathFactory):
    """A data folder with a tiny SD 2 768-v model as a folder (`sd2-folder`) and as an A1111 file (`sd2-file`)."""
    root = tmp_path_factory.mktemp("sd2-data")
    checkpoints = root / "models" / "Stable-diffusion"
    for sub in ("models/Lora", "models/hypernetworks", "embeddings"):
        (root / sub).mkdir(parents=True)
    folder = build_tiny_sd2(checkpoints / "sd2-folder", v_bias=V_BIAS)
    save_tiny_sd2_file(folder, checkpoints / "sd2-file.safetensors")
    return root


@pytest.fixture(scope="module")
def sd2_engine(sd2_data):
    from config import load_settings
    from engine.runner import Engine

    return Engine(load_settings(None, data_dir=sd2_data, default_model="sd2-file"))


def test_the_single_file_generates_the_folders_pixels_with_a1111s_infotext(sd2_engine, sd2_data) -> None:
    from_folder = sd2_engine.txt2img(request("a red circle", model="sd2-folder")).images[0]
    from_file = sd2_engine.txt2img(request("a red circle", model="sd2-file")).images[0]
    assert np.array_equal(pixels(from_folder.image), pixels(from_file.image))
    assert sd2_engine.load("sd2-file").pipe.scheduler.config.prediction_type == "v_prediction"
    info = parse_infotext(from_file.infotext)
    single = sd2_data / "models" / "Stable-diffusion" / "sd2-file.safetensors"
    assert (info.model, info.model_hash) == ("sd2-file", sha256_file(single)[:10])


def test_v_prediction_matters_and_img2img_runs(sd2_engine) -> None:
    model = sd2_engine.load("sd2-file")
    v = sd2_engine.txt2img(request("a red circle")).images[0].image
    scheduler = model.pipe.scheduler
    try:
        model.pipe.scheduler = type(scheduler).from_config(scheduler.config, prediction_type="epsilon")
        as_epsilon = sd2_engine.txt2img(request("a red circle")).images[0].image
    finally:
        model.pipe.scheduler = scheduler
    assert mean_difference(v, as_epsilon) > 1
    moved = sd2_engine.img2img(Img2ImgRequest(request("a blue square"), v, 0.6)).images[0]
    assert moved.image.size == (64, 64) and mean_difference(moved.image, v) > 0.5


def test_clip_skip_is_ignored_on_sd2_as_in_a1111(sd2_engine) -> None:
    one = sd2_engine.txt2img(request("a red circle")).images[0]
    two = sd2_engine.txt2img(request("a red circle", clip_skip=2)).images[0]
    assert np.array_equal(pixels(one.image), pixels(two.image))
    assert parse_infotext(two.infotext).params["Clip skip"] == "2"  # written as A1111 writes it


def test_a_kohya_lora_applies(sd2_engine, sd2_data) -> None:
    model = sd2_engine.load(None)
    path = sd2_data / "models" / "Lora" / "sd2_style.safetensors"
    write_kohya_lora(path, model.unet, model.pipe.text_encoder)
    sd2_engine.registry.refresh()
    base = sd2_engine.txt2img(request("a red circle")).images[0]
    styled = sd2_engine.txt2img(request("a red circle <lora:sd2_style:1>")).images[0]
    assert mean_difference(base.image, styled.image) > 1
    assert "sd2_style: " in parse_infotext(styled.infotext).params["Lora hashes"]
    assert any(key.startswith("lora_te_text_model_encoder_layers_") for key in _keys(path))


def _keys(path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as file:
        return list(file.keys())


def test_an_sd2_embedding_applies_and_another_familys_is_refused_by_name(sd2_engine, sd2_data) -> None:
    generator = torch.Generator().manual_seed(3)
    folder = sd2_data / "embeddings"
    save_file(
        {"emb_params": torch.randn(2, TEXT_WIDTH, generator=generator) * 3},
        str(folder / "sd2word.safetensors"),
    )
    save_file(
        {"emb_params": torch.randn(2, 32, generator=generator) * 3}, str(folder / "sd1word.safetensors")
    )
    sd2_engine.registry.refresh()
    used = sd2_engine.txt2img(request("a sd2word circle")).images[0]
    assert parse_infotext(used.infotext).params["TI hashes"].startswith("sd2word: ")
    with pytest.raises(
        InvalidRequest, match=f"embedding sd1word is for a 32-wide text encoder .*{TEXT_WIDTH}-wide"
    ):
        sd2_engine.txt2img(request("a sd1word circle"))
    plain = sd2_engine.txt2img(request("a red circle")).images[0]  # an unnamed misfit is no obstacle
    assert "TI hashes" not in parse_infotext(plain.infotext).params


def test_a_hypernetwork_of_sd2_widths_applies(sd2_engine, sd2_data) -> None:
    torch.save(a1111_file(TEXT_WIDTH, 1, scale=0.5), sd2_data / "models" / "hypernetworks" / "sd2_hn.pt")
    sd2_engine.registry.refresh()
    base = sd2_engine.txt2img(request("a red circle")).images[0]
    shaped = sd2_engine.txt2img(request("a red circle <hypernet:sd2_hn:1>")).images[0]
    assert mean_difference(base.image, shaped.image) > 0.5


def test_a_lora_trains_on_sd2_with_the_v_target_and_loads(sd2_engine, sd2_data) -> None:
    from engine.training.loop import LoopOptions, NoiseObjective, encode_examples
    from engine.training.lora import LoraOptions, save_lora, train_lora_slice

    model = sd2_engine.base_model(None)
    assert model.pipe.scheduler.config.prediction_type == "v_prediction"
    images = [
        Image.fromarray(np.uint8(np.indices((64, 64)).sum(0) % (8 + k) * 30)).convert("RGB") for k in range(2)
    ]
    examples = encode_examples(model, [(image, "zkw") for image in images], 64)
    options = LoraOptions(
        "s2", LoopOptions(steps=12, learning_rate="1e-2", batch_size=2), rank=4, resolution=64
    )
    state, trainer = train_lora_slice(model, examples, options, sd2_data / "work", lambda: False)
    objective = NoiseObjective(model, 0)
    states, pooled = trainer.encode(["zkw"] * 2)
    before, after = (
        objective.evaluate(u, examples, states, pooled=pooled) for u in (model.unet, trainer.unet)
    )
    assert after < before
    save_lora(trainer, sd2_data / "models" / "Lora" / "s2.safetensors", state, 2)
    sd2_engine.registry.refresh()
    trained = sd2_engine.txt2img(request("zkw <lora:s2:1>")).images[0]
    assert 'Lora hashes: "s2:' in trained.infotext


def test_salon_models_names_the_family_and_from_png_repeats_the_image(
    sd2_data, tmp_path, capsys, monkeypatch
):
    import cli.output
    from cli.main import main
    from engine.infotext_files import read_infotext

    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{sd2_data}"\ndefault_model = "sd2-file"\n')
    fast = ("--steps", "2", "--size", "64x64", "--seed", "4")
    assert main(["--config", str(config), "imagine", "a red circle", *fast, "-o", str(tmp_path / "a")]) == 0
    png = tmp_path / "a" / "00000-4.png"
    assert main(["--config", str(config), "imagine", "--from-png", str(png), "-o", str(tmp_path / "b")]) == 0
    again = tmp_path / "b" / "00000-4.png"
    assert read_infotext(again) == read_infotext(png)
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(png)))
    capsys.readouterr()
    monkeypatch.setattr(cli.output.console, "_width", 400)
    assert main(["--config", str(config), "models"]) == 0
    listed = capsys.readouterr().out
    assert "SD2 768-v" in listed and "sd2-file" in listed


def test_xyz_checkpoint_name_runs_across_families(sd2_engine, tiny_sd1_dir, sd2_data, tmp_path) -> None:
    """The X/Y/Z plot's "Checkpoint name" axis over an SD 1 and an SD 2 checkpoint: each cell on its model."""
    from commands.xyz import build_plot, parse_axis
    from engine.requests import GenerationRequest
    from jobs.codec import request_from_json
    from jobs.records import JobKind

    shutil.copytree(tiny_sd1_dir, sd2_data / "models" / "Stable-diffusion" / "tiny-sd1", dirs_exist_ok=True)
    sd2_engine.registry.refresh()
    base = GenerationRequest("a red circle", seed=7, width=64, height=64, steps=2, model="sd2-file")
    nothing = parse_axis("y", None)
    plot = build_plot(
        base, parse_axis("x", "Checkpoint name=tiny-sd1,sd2-file"), nothing, parse_axis("z", None)
    )
    cells = [request_from_json(JobKind.IMAGINE, plot["cells"][i], tmp_path) for i in plot["order"]]
    infos = [parse_infotext(sd2_engine.txt2img(cell).images[0].infotext) for cell in cells]
    assert [info.model for info in infos] == ["tiny-sd1", "sd2-file"]
    assert sd2_engine.load("tiny-sd1").sd2 is False and sd2_engine.load("sd2-file").sd2 is True
