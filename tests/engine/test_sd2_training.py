"""Training on Stable Diffusion 2.x (tiny random SD 2-shaped 768-v model): kohya's SD 2 metadata on a LoRA,
Dreambooth (the folder and the A1111 single file draw alike and stay v-prediction), and an embedding in A1111's
file with the text encoder's width, used by its name."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from engine.infotext import parse_infotext
from engine.training.loop import LoopOptions, NoiseObjective, encode_examples
from tests.engine.helpers import pixels, request
from tests.engine.test_sd2_generate import V_BIAS
from tests.tiny_sd2 import TEXT_WIDTH, build_tiny_sd2, save_tiny_sd2_file

# kohya-ss/sd-scripts at 48d368fa557731ad0488c07304dfeba8c07910eb: library/model_util.py
# `get_model_version_str_for_sd1_sd2(v2, v_parameterization)` = "sd" + "_v2"/"_v1" + "_v" when v; train_network.py
# writes it as "ss_base_model_version" beside "ss_v2": bool(args.v2), every value through str() (so "True");
# library/sdxl_model_util.py MODEL_VERSION_SDXL_BASE_V1_0 = "sdxl_base_v1-0". There is no "ss_v_parameterization".
KOHYA_VERSIONS = [
    ((False, False, "epsilon"), "sd_v1"),
    ((False, False, "v_prediction"), "sd_v1_v"),
    ((False, True, "epsilon"), "sd_v2"),
    ((False, True, "v_prediction"), "sd_v2_v"),
    ((True, False, "epsilon"), "sdxl_base_v1-0"),
]


@pytest.mark.parametrize(("kind", "expected"), KOHYA_VERSIONS)
def test_the_base_model_version_is_kohyas(kind, expected) -> None:
    from engine.training.lora import base_model_version

    sdxl, sd2, prediction = kind
    scheduler = SimpleNamespace(config={"prediction_type": prediction})
    model = SimpleNamespace(sdxl=sdxl, sd2=sd2, pipe=SimpleNamespace(scheduler=scheduler))
    assert base_model_version(model) == expected


@pytest.fixture(scope="module")
def sd2_data(tmp_path_factory: pytest.TempPathFactory):
    """Tiny SD 2 models: 768-v as an A1111 file that passes A1111's v test (`sd2-file`) and as a folder of
    plain random weights (`sd2-v`; the test's output bias leaves the text vectors no gradient), and a 512-base
    folder (`sd2-base`)."""
    root = tmp_path_factory.mktemp("sd2-training")
    checkpoints = root / "models" / "Stable-diffusion"
    for sub in ("models/Lora", "embeddings"):
        (root / sub).mkdir(parents=True)
    folder = build_tiny_sd2(root / "v-folder", v_bias=V_BIAS)
    save_tiny_sd2_file(folder, checkpoints / "sd2-file.safetensors")
    build_tiny_sd2(checkpoints / "sd2-v", seed=2)
    build_tiny_sd2(checkpoints / "sd2-base", prediction_type="epsilon", seed=1)
    return root


@pytest.fixture(scope="module")
def sd2_engine(sd2_data):
    from config import load_settings
    from engine.runner import Engine

    return Engine(load_settings(None, data_dir=sd2_data, default_model="sd2-file"))


def _examples(model, caption: str = "zkw"):
    images = [
        Image.fromarray(np.uint8(np.indices((64, 64)).sum(0) % (8 + k) * 30)).convert("RGB") for k in range(2)
    ]
    return encode_examples(model, [(image, caption) for image in images], 64)


@pytest.mark.parametrize(("name", "version"), [("sd2-file", "sd_v2_v"), ("sd2-base", "sd_v2")])
def test_a_lora_trained_on_sd2_says_so_as_kohya(sd2_engine, sd2_data, name, version) -> None:
    from engine.training.lora import LoraOptions, save_lora, train_lora_slice

    model = sd2_engine.load(name)
    options = LoraOptions("m", LoopOptions(steps=1, learning_rate="1e-3"), rank=2, resolution=64)
    state, trainer = train_lora_slice(model, _examples(model), options, sd2_data / f"w-{name}", lambda: False)
    path = save_lora(trainer, sd2_data / "models" / "Lora" / f"meta-{name}.safetensors", state, 2)
    with safe_open(str(path), "pt") as file:
        metadata = file.metadata()
    assert (metadata["ss_base_model_version"], metadata["ss_v2"]) == (version, "True")


def test_sd2_dreambooth_learns_and_its_folder_and_a1111_file_draw_alike_as_v_models(sd2_engine, sd2_data):
    """The single file keeps its base's v-prediction (remembered beside it: these random weights fail A1111's
    test, which a real 768-v model's fine-tune passes)."""
    from engine.models.sd2_family import memo_path
    from engine.training.dreambooth import DreamboothOptions, checkpoint_path, train_dreambooth_slice

    model = sd2_engine.load("sd2-v")
    examples = _examples(model)
    options = DreamboothOptions(
        "db2", LoopOptions(steps=6, learning_rate="1e-4", batch_size=2), instance_prompt="zkw", resolution=64,
        train_text_encoder=True,
    )  # fmt: skip
    state, trainer = train_dreambooth_slice(model, examples, options, sd2_data / "w-db", lambda: False)
    objective = NoiseObjective(model, 0)
    states, pooled = trainer.encode(["zkw"] * 2)
    before, after = (
        objective.evaluate(u, examples, states, pooled=pooled) for u in (model.unet, trainer.unet)
    )
    assert after < before
    folder = trainer.save(
        checkpoint_path(sd2_engine.settings.checkpoints_dir, "db2-dir", model, "diffusers"), state, 2
    )
    file = trainer.save(
        checkpoint_path(sd2_engine.settings.checkpoints_dir, "db2-file", model, "safetensors"), state, 2
    )
    with safe_open(str(file), "pt") as opened:  # SD 2's OpenCLIP text encoder in A1111's layout
        assert any(key.startswith("cond_stage_model.model.transformer.") for key in opened.keys())
    sd2_engine.registry.refresh()
    try:
        from_folder = sd2_engine.txt2img(request("zkw", model="db2-dir")).images[0].image
        from_file = sd2_engine.txt2img(request("zkw", model="db2-file")).images[0]
        base = sd2_engine.txt2img(request("zkw", model="sd2-v")).images[0].image
        assert np.abs(pixels(from_folder).astype(int) - pixels(from_file.image)).max() <= 1
        assert not np.array_equal(pixels(from_folder), pixels(base))
        for name in ("db2-dir", "db2-file"):
            assert sd2_engine.load(name).pipe.scheduler.config.prediction_type == "v_prediction"
            assert sd2_engine.load(name).sd2
        assert "Model: db2-file" in from_file.infotext
        assert '"decided_by": "base model"' in memo_path(file).read_text()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(file.with_name("db2-file.config"), ignore_errors=True)
        memo_path(file).unlink(missing_ok=True)
        file.unlink(missing_ok=True)
        sd2_engine.registry.refresh()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_an_sd2_embedding_learns_is_saved_as_a1111_and_used_by_its_name(sd2_engine, sd2_data, suffix) -> None:
    from engine.models.model_files import load_weights
    from engine.training.embedding import (
        EmbeddingOptions,
        EmbeddingTrainer,
        save_embedding,
        train_embedding_slice,
    )

    model = sd2_engine.load("sd2-v")
    name = f"sdti{suffix[1:3]}"
    options = EmbeddingOptions(
        name, LoopOptions(steps=8, learning_rate="5e-2", batch_size=2), init_text="star", vectors=2,
        resolution=64, template="[name]",
    )  # fmt: skip
    examples = _examples(model, name)
    untrained = EmbeddingTrainer(model, options)
    state, trainer = train_embedding_slice(model, examples, options, sd2_data / f"w-{name}", lambda: False)
    objective = NoiseObjective(model, 0)
    before, after = (
        objective.evaluate(model.unet, examples, t.encode([e.caption for e in examples])[0])
        for t in (untrained, trainer)
    )
    assert after < before
    path = save_embedding(trainer, sd2_engine.settings.embeddings_path / f"{name}{suffix}", state)
    data = load_weights(path, allow_legacy_pt=True)
    vectors = data["emb_params"] if suffix == ".safetensors" else data["string_to_param"]["*"]
    assert vectors.shape == (2, TEXT_WIDTH)  # the OpenCLIP encoder's width (1024 in SD 2.x)
    if suffix == ".pt":
        assert data["string_to_token"] == {"*": 265} and data["sd_checkpoint_name"] == "sd2-v"
    sd2_engine.registry.refresh()
    try:
        # drawn by `sd2-file` (the same width; this folder's random weights draw black at these few steps)
        used = sd2_engine.txt2img(request(f"a {name}")).images[0]
        plain = sd2_engine.txt2img(request("a star")).images[0].image
        assert parse_infotext(used.infotext).params["TI hashes"].startswith(f"{name}: ")
        assert not np.array_equal(pixels(used.image), pixels(plain))
    finally:
        path.unlink()
        sd2_engine.registry.refresh()
