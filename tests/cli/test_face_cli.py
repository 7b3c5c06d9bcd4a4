"""Face restoration from the command line: `salon imagine --restore-faces / --face-restorer` (refused by name
without the detector, A1111's `Face restoration` infotext, repeated by `--from-png`), `salon models` listing
face restorers and the detector with their hashes, and `salon upscale --gfpgan / --codeformer` writing
A1111's Extras keys. Tiny random-weight RestoreFormer and a detector whose heads always find one face."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from PIL import Image

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.models.registry import sha256_file
from engine.upscaling.extras import read_postprocessing
from tests.tiny_faces import detect_small, one_face_detector, save_state, state_of, tiny_restoreformer
from tests.tiny_upscalers import save_upscaler, tiny_esrgan

FAST = ("--steps", "2", "--size", "64x64", "--seed", "5")


def test_imagine_restores_faces_and_from_png_repeats_it(tmp_path, tiny_sd1_dir, capsys, monkeypatch):
    shutil.copytree(tiny_sd1_dir, tmp_path / "models/Stable-diffusion/tiny")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path}"\ndefault_model = "tiny"\n')

    def salon(*args: str) -> int:
        return main(["--config", str(config), *args])

    restorer = save_state(
        state_of(tiny_restoreformer()), tmp_path / "models/GFPGAN/RestoreFormer.safetensors"
    )
    assert (
        salon("imagine", "a face", *FAST, "--face-restorer", "RestoreFormer", "-o", str(tmp_path / "x")) == 2
    )
    err = capsys.readouterr().err
    assert "detection_Resnet50_Final.pth" in err and "models/GFPGAN or models/Codeformer" in err
    assert salon("imagine", "a face", *FAST, "--restore-faces", "-o", str(tmp_path / "x")) == 2
    assert "CodeFormer needs a restorer file in models/Codeformer" in capsys.readouterr().err

    detector = tmp_path / "models/GFPGAN/detection_Resnet50_Final.pth"
    torch.save(one_face_detector(300.0 * detect_small(monkeypatch)), detector)
    assert salon("imagine", "a face", *FAST, "-o", str(tmp_path / "plain")) == 0
    assert (
        salon("imagine", "a face", *FAST, "--face-restorer", "restoreformer", "-o", str(tmp_path / "a")) == 0
    )
    png = tmp_path / "a" / "00000-5.png"
    info = parse_infotext(read_infotext(png))
    assert info.params["Face restoration"] == "RestoreFormer"
    plain = np.asarray(Image.open(tmp_path / "plain" / "00000-5.png"))
    assert not np.array_equal(np.asarray(Image.open(png)), plain)
    assert salon("imagine", "--from-png", str(png), "-o", str(tmp_path / "b")) == 0
    again = tmp_path / "b" / "00000-5.png"
    assert read_infotext(again) == read_infotext(png)
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(png)))

    capsys.readouterr()
    assert salon("models") == 0
    listed = capsys.readouterr().out
    assert "restorer" in listed and sha256_file(restorer)[:10] in listed  # the kind may wrap: "face restorer"
    assert "detector" in listed and sha256_file(detector)[:10] in listed


def test_upscale_runs_gfpgan_after_the_upscaler_and_writes_a1111s_keys(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    save_upscaler(tiny_esrgan(2), data / "models/ESRGAN/2x-Tiny.pth")
    save_state(state_of(tiny_restoreformer()), data / "models/GFPGAN/RestoreFormer.safetensors")
    detector = one_face_detector(400.0 * detect_small(monkeypatch))
    torch.save(detector, data / "models/GFPGAN/detection_Resnet50_Final.pth")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{data}"\n')
    source = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(source)
    base = ["--config", str(config), "upscale", str(source), "--upscaler", "2x-Tiny", "--scale", "2"]

    assert main([*base, "--gfpgan", "0.5", "--output", str(tmp_path / "o")]) == 0
    (result,) = (tmp_path / "o").iterdir()
    assert read_postprocessing(result) == (
        "Postprocess upscale by: 2, Postprocess upscaler: 2x-Tiny, GFPGAN visibility: 0.5"
    )
    assert main([*base, "--codeformer", "0.5"]) == 2
    assert "codeformer_visibility: CodeFormer needs a restorer file" in capsys.readouterr().err
    assert main([*base, "--gfpgan", "1.5"]) == 2
    assert "gfpgan_visibility: 1.5 is outside 0..1" in capsys.readouterr().err


def test_upscale_restores_faces_alone_at_the_pictures_size(tmp_path, capsys, monkeypatch):
    """A1111's Extras with upscaler None: no upscale, only the face restorer's keys. (A RestoreFormer file in
    models/Codeformer stands for CodeFormer: the folder's one file is what "CodeFormer" runs.)"""
    data = tmp_path / "data"
    save_state(state_of(tiny_restoreformer()), data / "models/Codeformer/RestoreFormerCF.safetensors")
    detector = one_face_detector(400.0 * detect_small(monkeypatch))
    torch.save(detector, data / "models/Codeformer/detection_Resnet50_Final.pth")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{data}"\n')
    source = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(source)
    base = ["--config", str(config), "upscale", str(source)]

    assert main([*base]) == 2
    assert "upscaler: name an upscaler" in capsys.readouterr().err
    assert main([*base, "--codeformer", "1", "--scale", "2"]) == 2
    assert "scale: resizes with an upscaler: name one with --upscaler" in capsys.readouterr().err
    assert main([*base, "--codeformer", "1", "--output", str(tmp_path / "o")]) == 0
    assert "restored the faces of the picture with CodeFormer" in capsys.readouterr().out
    (result,) = (tmp_path / "o").iterdir()
    assert read_postprocessing(result) == "CodeFormer visibility: 1.0, CodeFormer weight: 0.5"
    with Image.open(result) as out:
        assert out.size == (40, 48)
        assert not np.array_equal(np.asarray(out.convert("RGB")), np.asarray(Image.open(source)))
