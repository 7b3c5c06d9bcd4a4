"""`salon train` options beyond the basics: hypernetwork initialization and dropout, Dreambooth concepts lists."""

from __future__ import annotations

import random

import pytest
import torch

from cli.main import main
from tools.demo_model.shapes import Scene, ShapeSpec, render


def salon(config_file, *args: str) -> int:
    return main(["--config", str(config_file), *args])


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "salon.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\ndefault_model = "salon-demo-shapes"\n')
    return path


def shapes(folder, shape: str, colour: str, count: int = 2):
    """`count` drawings of one shape in `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(len(shape) + count)
    scene = Scene((ShapeSpec(shape, colour, "center", "large"),), "white")
    for index in range(count):
        render(scene, rng).save(folder / f"{shape} {index}.png")
    return folder


def test_hypernetwork_weight_init_and_dropout_from_the_command_line(config, tmp_path, capsys):
    images = shapes(tmp_path / "images", "star", "green")
    args = ["train", "hypernetwork", str(images), "--name", "hn", "--steps", "2", "--resolution", "64"]
    args += ["--activation", "relu", "--weight-init", "KaimingNormal", "--dropout-structure", "0, 0.2, 0"]
    assert salon(config, *args) == 0
    path = tmp_path / "data" / "models" / "hypernetworks" / "hn.pt"
    assert str(path) in capsys.readouterr().out
    data = torch.load(path, weights_only=True)
    assert data["weight_initialization"] == "KaimingNormal" and data["activation_func"] == "relu"
    assert data["use_dropout"] is True and data["dropout_structure"] == [0.0, 0.2, 0.0]
    for structure, message in (("0, x, 0", "not numbers"), ("0.1, 0.2, 0", "start and end with 0")):
        bad = ["train", "hypernetwork", str(images), "--name", "hn2", "--dropout-structure", structure]
        assert salon(config, *bad) == 2
        err = capsys.readouterr().err
        assert "dropout_structure" in err and message in err, err
    with pytest.raises(SystemExit):
        salon(config, "train", "hypernetwork", str(images), "--name", "hn3", "--weight-init", "Uniform")
    assert "KaimingUniform" in capsys.readouterr().err


def test_dreambooth_concepts_list_trains_every_concept_with_its_class_images_and_samples(
    config, tmp_path, capsys
):
    import json

    shapes(tmp_path / "data-in" / "stars", "star", "green")
    shapes(tmp_path / "data-in" / "circles", "circle", "red")
    shapes(tmp_path / "data-in" / "class-shapes", "square", "blue", count=1)
    concepts = [
        {
            "instance_data_dir": "data-in/stars",
            "instance_prompt": "zks [filewords]",
            "class_data_dir": "data-in/class-shapes",
            "class_prompt": "a shape",
            "num_class_images_per": 2,  # one found in the folder, one generated
            "class_infer_steps": 2,
            "save_sample_prompt": "zks",
            "n_save_sample": 2,
            "save_infer_steps": 2,
            "is_valid": True,
            "instance_token": "zks",
            "sparkle": 1,
        },
        {
            "instance_data_dir": str(tmp_path / "data-in" / "circles"),
            "instance_prompt": "zkc",
            "save_sample_prompt": "zkc",
            "save_sample_negative_prompt": "blurry",
            "sample_seed": 7,
            "save_infer_steps": 2,
            "save_guidance_scale": 3,
        },
    ]
    file = tmp_path / "concepts.json"
    file.write_text(json.dumps(concepts))
    args = ["train", "dreambooth", "--concepts", str(file), "--name", "dbc", "--steps", "2"]
    assert salon(config, *args, "--resolution", "64") == 0
    captured = capsys.readouterr()
    assert "concepts[0]: unknown key 'sparkle' ignored" in captured.err
    assert "concepts[0].instance_token is not used by Salon" in captured.err
    class_folder = tmp_path / "data-in" / "class-shapes"
    assert f"concepts[0]: 1 generated class image(s) will be written into {class_folder}" in captured.err
    generated = [p for p in class_folder.glob("*.png") if p.name != "square 0.png"]
    assert len(generated) == 1 and len(generated[0].stem) == 40  # named by its SHA-1, as the extension does
    assert generated[0].with_suffix(".txt").read_text() == "a shape"
    assert sorted(p.name for p in class_folder.iterdir()) == sorted(
        ["square 0.png", generated[0].name, generated[0].stem + ".txt"]
    )  # nothing else: no temp file left behind
    assert "trained dreambooth 'dbc' on 4 images" in captured.out
    assert (tmp_path / "data" / "models" / "Stable-diffusion" / "dbc" / "model_index.json").is_file()
    samples = sorted(p.name for p in (tmp_path / "data" / "training" / "dbc").iterdir())
    assert samples == ["dbc-c0-00002-0.png", "dbc-c0-00002-1.png", "dbc-c1-00002-0.png"]
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "queue.db") as db:
        (text,) = db.execute("SELECT request FROM jobs WHERE kind = 'train' ORDER BY id DESC").fetchone()
    request = json.loads(text)
    assert [(i["concept"], i["caption"].split()[0]) for i in request["images"]] == [
        (0, "star"), (0, "star"), (1, "circle"), (1, "circle")
    ]  # fmt: skip
    assert len(request["concepts"][0]["class_files"]) == 1 and request["concepts"][1]["class_files"] == []
    assert request["concepts"][0]["class_folder"] == str(class_folder)

    del concepts[1]["instance_data_dir"]
    file.write_text(json.dumps(concepts))
    assert salon(config, *args, "--overwrite") == 2
    assert "concepts[1].instance_data_dir: is missing" in capsys.readouterr().err
    assert salon(config, "train", "lora", "--concepts", str(file), "--name", "x") == 2
    assert "concepts: a concepts list trains a Dreambooth checkpoint" in capsys.readouterr().err
