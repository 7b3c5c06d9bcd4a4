"""The `salon` command line on the tiny model: imagine, img2img, inpaint, pnginfo, models, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.models.registry import ModelKind, ModelRegistry
from tests.corpus import CORPUS


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("cli") / "salon.toml"
    path.write_text(f'data_dir = "{data_dir}"\ndefault_model = "salon-demo-shapes"\n')
    return path


def salon(config_file, *args: str) -> int:
    return main(["--config", str(config_file), *args])


def test_imagine_writes_a_png_whose_infotext_reads_back(config_file, tmp_path, capsys, settings):
    args = [
        "imagine",
        "a cat, (sitting:1.2)",
        "--negative",
        "blurry, dark",
        "--seed",
        "5",
        "--steps",
        "4",
        "--size",
        "64x64",
        "--model",
        "tiny",
        "--sampler",
        "Euler a",
        "--cfg",
        "6.5",
    ]
    assert salon(config_file, *args, "--output", str(tmp_path / "a")) == 0
    assert salon(config_file, *args, "--output", str(tmp_path / "b")) == 0
    first, second = tmp_path / "a" / "00000-5.png", tmp_path / "b" / "00000-5.png"
    out = capsys.readouterr().out
    assert str(first) in out and "Steps: 4, Sampler: Euler a, Schedule type: Uniform, CFG scale: 6.5" in out
    info = parse_infotext(read_infotext(first))
    registry = ModelRegistry.from_settings(settings)
    tiny = registry.find(ModelKind.CHECKPOINT, "tiny")
    assert (info.prompt, info.negative_prompt) == ("a cat, (sitting:1.2)", "blurry, dark")
    assert (info.steps, info.sampler, info.schedule_type, info.cfg_scale, info.seed) == (
        4,
        "Euler a",
        "Uniform",
        6.5,
        5,
    )
    assert (info.width, info.height, info.model, info.model_hash) == (
        64,
        64,
        "tiny",
        registry.short_hash(tiny),
    )
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))


def test_batches_are_numbered_like_a1111(config_file, tmp_path):
    assert (
        salon(
            config_file,
            "imagine",
            "a dog",
            "--seed",
            "7",
            "--steps",
            "2",
            "--size",
            "64x64",
            "--batch",
            "2",
            "-o",
            str(tmp_path),
        )
        == 0
    )
    assert (
        salon(
            config_file,
            "imagine",
            "a dog",
            "--seed",
            "9",
            "--steps",
            "2",
            "--size",
            "64x64",
            "-o",
            str(tmp_path),
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["00000-7.png", "00001-8.png", "00002-9.png"]


def test_img2img_and_inpaint_from_files(config_file, tmp_path):
    source = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(source)
    assert (
        salon(
            config_file,
            "img2img",
            str(source),
            "a blue square",
            "--strength",
            "0.5",
            "--steps",
            "4",
            "--size",
            "64x64",
            "--seed",
            "1",
            "-o",
            str(tmp_path / "i2i"),
        )
        == 0
    )
    assert parse_infotext(read_infotext(tmp_path / "i2i" / "00000-1.png")).denoising_strength == 0.5
    assert (
        salon(
            config_file,
            "inpaint",
            str(source),
            "a green circle",
            "--region",
            "0,0,32,64",
            "--steps",
            "4",
            "--size",
            "64x64",
            "--seed",
            "1",
            "--mask-blur",
            "0",
            "-o",
            str(tmp_path / "inp"),
        )
        == 0
    )
    result = np.asarray(Image.open(tmp_path / "inp" / "00000-1.png").convert("RGB"))
    assert (result[:, 32:] == [200, 40, 40]).all()


def test_pnginfo_prints_parameters(config_file, capsys):
    corpus = CORPUS / "AUTOMATIC1111" / "automatic1111_cropped.png"
    assert salon(config_file, "pnginfo", str(corpus)) == 0
    out = capsys.readouterr().out
    assert "prompt: 'photo of a duck'" in out and "Seed: 235284042" in out


def test_models_lists_hashes(config_file, capsys):
    assert salon(config_file, "models") == 0
    assert "tiny" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["imagine", "a cat", "--size", "100x64"], "width: 100 is not a multiple of 8"),
        (["imagine", "a cat", "--steps", "0"], "steps: 0 is out of range"),
        (["imagine", "a cat", "--sampler", "Euler z"], "sampler: unknown sampler 'Euler z'"),
        (
            ["imagine", "a cat <lora:../x:1>", "--size", "64x64", "--steps", "1"],
            "lora: name '../x' is not allowed",
        ),
        (["imagine", "a cat", "--model", "nope", "--size", "64x64"], "model: no checkpoint named 'nope'"),
        (["run"], "DISCORD_TOKEN is not set"),
    ],
)
def test_bad_input_exits_2_with_a_message(config_file, capsys, monkeypatch, args, message):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert salon(config_file, *args) == 2
    assert message in capsys.readouterr().err


def test_quick_start_uses_the_demo_model_with_nothing_configured(tmp_path):
    """The README's first command in a fresh process and an empty folder: the demo model draws the prompt."""
    from tools.demo_model.evaluate import read_image

    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "imagine", "a red circle on a blue background", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("SALON_")},
    )
    assert done.returncode == 0, done.stderr
    [path] = (tmp_path / "salon-data" / "outputs" / "txt2img-images").glob("*/*-0-3.png")  # job-index-seed
    info = parse_infotext(read_infotext(path))
    assert info.model == "salon-demo-shapes" and (info.width, info.height) == (64, 64)
    reading = read_image(Image.open(path))
    assert (reading.background, reading.colour) == ("blue", "red")


def test_queue_lists_jobs_and_cancel_and_worker_act_on_them(tmp_path, capsys):
    """A job submitted elsewhere (e.g. the bot) shows in `salon queue`; `cancel` and `worker` act on it."""
    import asyncio

    from config import load_settings
    from engine.requests import GenerationRequest
    from tests.queues import open_queue

    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')

    async def submit_two():
        queue = await open_queue(load_settings(config))
        try:
            return [
                (
                    await queue.submit(
                        GenerationRequest(f"a {c} circle", seed=1, width=64, height=64, steps=2), "ann"
                    )
                ).id
                for c in ("red", "blue")
            ]
        finally:
            await queue.close()

    first, second = asyncio.run(submit_two())
    assert salon(config, "queue") == 0
    listing = capsys.readouterr().out
    assert "a red circle" in listing and "a blue circle" in listing and listing.count("queued") == 2
    assert salon(config, "cancel", str(second)) == 0
    assert f"job {second}: cancelled" in capsys.readouterr().out
    assert salon(config, "cancel", "99") == 2
    assert "job: there is no job 99" in capsys.readouterr().err
    assert salon(config, "worker", "--exit-when-idle") == 0
    assert salon(config, "queue") == 0
    cells = [[cell.strip() for cell in line.split("│")] for line in capsys.readouterr().out.splitlines()]
    rows = {row[1]: row for row in cells if len(row) > 2 and row[1].isdigit()}
    assert "done" in rows[str(first)] and "cancelled" in rows[str(second)]


def test_import_browse_and_check_the_catalog(tmp_path, capsys):
    import shutil

    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    shutil.copytree(CORPUS, tmp_path / "corpus")
    assert salon(config, "import", str(tmp_path / "corpus"), "--author", "ann") == 0
    out = capsys.readouterr()
    assert "with generation info" in out.out and "skipped" in out.err and "empty_file.png" in out.err
    assert salon(config, "browse", "duck", "--page-size", "1") == 0
    out = capsys.readouterr().out
    assert "duck" in out and "page 1 of 3 (3 images)" in out
    assert salon(config, "browse", "--rank", "6") == 2
    assert "rank: '6' is not all, none, a score 1–5" in capsys.readouterr().err
    assert salon(config, "browse", "--page", "9") == 2
    assert "page: page 9 does not exist" in capsys.readouterr().err
    assert salon(config, "catalog", "check") == 0
    assert "rows without files: 0" in capsys.readouterr().out
    # The same catalog through SQLite's word index: the same answer.
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[catalog]\ntext_index = "sqlite"\n')
    assert salon(config, "browse", "duck", "--page-size", "1") == 0
    assert "page 1 of 3 (3 images)" in capsys.readouterr().out


def test_train_dreambooth_from_a_folder_with_class_images_and_previews(tmp_path, capsys):
    from tools.demo_model.shapes import Scene, ShapeSpec, render

    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ndefault_model = "salon-demo-shapes"\n')
    images = tmp_path / "images"
    images.mkdir()
    rng = __import__("random").Random(0)
    scene = Scene((ShapeSpec("star", "green", "center", "large"),), "white")
    for index in range(2):
        render(scene, rng).save(images / f"star {index}.png")
    (images / "star 0.txt").write_text("big green star")
    args = ["train", "dreambooth", str(images), "--name", "dbstar", "--steps", "3", "--resolution", "64"]
    args += ["--class-prompt", "a star", "--class-images", "2", "--class-steps", "2"]
    args += ["--preview-every", "3", "--preview-steps", "2", "--instance-prompt", "dbs [filewords]"]
    assert salon(config, *args) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "data" / "models" / "Stable-diffusion" / "dbstar"
    assert str(folder) in out and "--model dbstar" in out
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "data" / "training" / "dbstar" / "dbstar-00003.png").is_file()
    assert salon(config, "train", "dreambooth", str(images), "--name", "dbstar", "--steps", "3") == 2
    assert "you already trained 'dbstar'; set overwrite to replace it" in capsys.readouterr().err
    assert salon(config, "train", "dreambooth", str(images), "--name", "salon-demo-shapes") == 2
    assert "'salon-demo-shapes' is an installed model" in capsys.readouterr().err
    assert (
        salon(
            config,
            "train",
            "dreambooth",
            str(images),
            "--name",
            "x",
            "--class-prompt",
            "a",
            "--class-images",
            "0",
        )
        == 2
    )
    assert "class_images: 0 is not from 1 to 1000" in capsys.readouterr().err


def test_animate_writes_videos_and_frames_and_plots_the_schedules(tmp_path, capsys):
    import json

    from engine.animation.video import read_video

    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ndefault_model = "salon-demo-shapes"\n')
    out = tmp_path / "out"
    args = [
        "animate",
        "0: a red circle | 4: a green star",
        "--frames",
        "6",
        "--size",
        "64x64",
        "--steps",
        "4",
    ]
    args += [
        "--seed",
        "2",
        "--zoom",
        "0:(1.02)",
        "--angle",
        "0:(2*sin(t))",
        "--formats",
        "mp4,webp",
        "--output",
        str(out),
        "--blend-prompts",
        "--noise-type",
        "uniform",
    ]
    assert salon(config, *args) == 0
    printed = capsys.readouterr().out
    assert (
        str(out / "animation.mp4") in printed and "2D, 6 frames (0.4 s at 15 fps), 64×64, seed 2" in printed
    )
    frames, fps = read_video(out / "animation.mp4")
    assert len(frames) == 6 and frames[0].size == (64, 64) and fps == 15
    assert len(list((out / "frames").glob("*.png"))) == 6 and (out / "animation.webp").is_file()
    exported = json.loads((out / "settings.txt").read_text())
    assert exported["angle"] == "0:(2*sin(t))" and exported["noise_type"] == "uniform"
    assert exported["salon_blend_prompts"] is True and exported["legacy_colormatch"] is False
    assert salon(config, "catalog", "check") == 0  # the frames in outputs/animations are not catalog orphans
    capsys.readouterr()
    # The exported settings animate again through --settings (Deforum's own file format).
    assert (
        salon(config, "animate", "--settings", str(out / "settings.txt"), "--plot", str(tmp_path / "p.png"))
        == 0
    )
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert salon(config, "animate", "a cat", "--zoom", "0:(1,") == 2
    assert "zoom" in capsys.readouterr().err


def test_warmup_compiles_the_buckets_and_says_when_there_is_nothing_to_compile(
    config_file, capsys, monkeypatch
):
    assert salon(config_file, "warmup") == 0  # auto on the CPU: off
    assert "nothing to compile" in capsys.readouterr().out
    monkeypatch.setenv("SALON_SPEED__COMPILER", "eager")  # dynamo's tracing without inductor: seconds
    assert salon(config_file, "warmup", "--mode", "max", "--batches", "2", "--sizes", "64x64") == 0
    out = capsys.readouterr().out
    assert (
        "warm-up 1/3: UNet 64x64 batch 2 (77 tokens)" in out
        and "warm-up 3/3: VAE decode 64x64 batch 2" in out
    )
    assert "warm-up done in" in out and "torch-compile" in out
    assert salon(config_file, "warmup", "--mode", "max", "--sizes", "60x60") == 2
    assert "speed.sizes" in capsys.readouterr().err
    assert salon(config_file, "warmup", "--mode", "max", "--model", "nope") == 2


@pytest.mark.parametrize(
    ("toml", "environment", "message"),
    [
        (
            "",
            {"SALON_LIMITS__MAX_STEPS": "0"},
            "limits.max_steps: Input should be greater than or equal to 1",
        ),
        ("", {"SALON_DISCORD__SHARDS": "many"}, "discord.shards: 'many': give \"auto\" or a positive number"),
        ('[queue]\nmax_attempts = "often"\n', {}, "queue.max_attempts: Input should be a valid integer"),
        ("[limits\nmax_steps = 3\n", {}, "is not valid TOML"),
    ],
)
def test_bad_settings_exit_2_with_one_line_naming_the_setting(
    tmp_path, capsys, monkeypatch, toml, environment, message
):
    """A bad value in salon.toml or a SALON_… variable is one line naming the setting, never a traceback."""
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n' + toml)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["--config", str(config), "queue"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
