"""Training on the demo model: learning-rate schedules, LoRA in kohya format, resuming exactly where it stopped."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

from core.errors import InvalidRequest
from engine.training.loop import LoopOptions, NoiseObjective, encode_examples, parse_learning_rate, rate_at
from engine.training.lora import LoraOptions, check_lora_options, save_lora, train_lora_slice
from tests.engine.helpers import pixels, request
from tools.demo_model.shapes import Scene, ShapeSpec, render


def test_a1111_learning_rate_schedules():
    schedule = parse_learning_rate("0.005:100, 1e-3:1000, 1e-5", 3000)
    assert schedule == [(0.005, 100), (1e-3, 1000), (1e-5, 3000)]
    assert [rate_at(schedule, s) for s in (1, 100, 101, 1000, 1001, 3000)] == [
        0.005,
        0.005,
        1e-3,
        1e-3,
        1e-5,
        1e-5,
    ]
    assert parse_learning_rate("1e-4", 50) == [(1e-4, 50)]
    for bad, message in (
        ("", "empty"),
        ("fast", "is not RATE or RATE:STEP"),
        ("0.1:100, 0.2", None),
        ("0.1, 0.2:300", "only the last rate may leave out its step"),
        ("0.1:300, 0.2:100", "does not come after step 300"),
        ("2", "is not above 0 and at most 1"),
    ):
        if message is None:
            parse_learning_rate(bad, 500)
            continue
        with pytest.raises(InvalidRequest, match=message):
            parse_learning_rate(bad, 500)


def test_bad_lora_options_are_refused_by_name():
    loop = LoopOptions(steps=10, learning_rate="1e-4")
    with pytest.raises(InvalidRequest, match="rank: 0 is not from 1 to 256"):
        check_lora_options(LoraOptions("x", loop, rank=0))
    with pytest.raises(InvalidRequest, match="resolution"):
        check_lora_options(LoraOptions("x", loop, resolution=100))
    with pytest.raises(InvalidRequest, match="steps"):
        check_lora_options(LoraOptions("x", LoopOptions(steps=0, learning_rate="1e-4")))


@pytest.fixture(scope="module")
def green_stars(engine):
    """Four drawings of one large green star on white, captioned with a made-up word."""
    rng = random.Random(0)
    scene = Scene((ShapeSpec("star", "green", "center", "large"),), "white")
    return encode_examples(engine.load(None), [(render(scene, rng), "zkw style") for _ in range(4)], 64)


def _options(steps: int) -> LoraOptions:
    return LoraOptions(
        "zkw", LoopOptions(steps=steps, learning_rate="5e-3", batch_size=2), rank=4, resolution=64
    )


def test_lora_learns_saves_a_kohya_file_and_loads_back(engine, settings, green_stars, tmp_path):
    model = engine.load(None)
    state, trainer = train_lora_slice(model, green_stars, _options(16), tmp_path / "work", lambda: False)
    assert state.step == 16 and len(state.losses) == 16
    objective = NoiseObjective(model, 0)
    states = trainer.states(["zkw style"] * len(green_stars))
    before, after = (objective.evaluate(unet, green_stars, states) for unet in (model.unet, trainer.unet))
    assert after < before * 0.9  # the loss at fixed noise levels fell
    path = save_lora(trainer, settings.lora_dir / "zkw.safetensors", state, len(green_stars))
    with safe_open(str(path), "pt") as file:
        keys, metadata = set(file.keys()), file.metadata()
    assert (
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight" in keys
        or any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in keys)
    )
    assert all(k.startswith("lora_unet_") for k in keys)
    assert {k.rsplit(".", 2)[-2] + "." + k.rsplit(".", 1)[-1] for k in keys} >= {
        "lora_down.weight",
        "lora_up.weight",
    }
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "4"
    assert metadata["ss_output_name"] == "zkw" and metadata["ss_steps"] == "16"
    engine.registry.refresh()
    try:
        base = engine.txt2img(request("zkw style", steps=8)).images[0].image
        trained = engine.txt2img(request("zkw style <lora:zkw:1>", steps=8)).images[0].image
        off = engine.txt2img(request("zkw style <lora:zkw:0>", steps=8)).images[0].image
        assert np.abs(pixels(base) - pixels(trained)).mean() > 5
        # Weight 0 runs the base layers: the untouched model's pixels, up to the rounding of peft's wrapped
        # layers (at most a level or two), and exactly what the same model gives without the tag.
        assert np.abs(pixels(base) - pixels(off)).max() <= 2
        assert np.array_equal(
            pixels(off), pixels(engine.txt2img(request("zkw style", steps=8)).images[0].image)
        )
    finally:
        path.unlink()
        engine.registry.refresh()


def test_training_in_slices_ends_where_one_run_ends(engine, green_stars, tmp_path):
    model = engine.load(None)
    _, whole = train_lora_slice(model, green_stars, _options(6), tmp_path / "whole", lambda: False)
    first, _ = train_lora_slice(model, green_stars, _options(6), tmp_path / "sliced", lambda: True)
    assert first.step == 1  # should_stop is asked after every step
    calls = iter([False, True, False, False, False])
    second, _ = train_lora_slice(model, green_stars, _options(6), tmp_path / "sliced", lambda: next(calls))
    assert second.step == 3
    third, sliced = train_lora_slice(model, green_stars, _options(6), tmp_path / "sliced", lambda: False)
    assert third.step == 6
    for name, parameter in whole.parameters.items():
        assert torch.equal(parameter, sliced.parameters[name]), name


def test_an_embedding_learns_and_is_used_by_its_name(engine, settings, tmp_path):
    from engine.training.embedding import (
        DEFAULT_TEMPLATE,
        EmbeddingOptions,
        EmbeddingTrainer,
        captions,
        save_embedding,
        train_embedding_slice,
    )

    model = engine.base_model(None)
    rng = random.Random(0)
    scene = Scene((ShapeSpec("star", "green", "center", "large"),), "white")
    texts = captions(DEFAULT_TEMPLATE, "gstr", ["", "", "", ""])
    assert texts[0] == "a picture of gstr"
    examples = encode_examples(model, [(render(scene, rng), text) for text in texts], 64)
    loop = LoopOptions(steps=16, learning_rate="5e-2", batch_size=2)
    options = EmbeddingOptions("gstr", loop, init_text="shape", vectors=2, resolution=64)
    untrained = EmbeddingTrainer(model, options)
    objective = NoiseObjective(model, 0)
    before_prompt = engine.txt2img(request("a picture of gstr", steps=8)).images[0].image
    plain_before = engine.txt2img(request("a red circle", steps=8)).images[0].image
    state, trainer = train_embedding_slice(model, examples, options, tmp_path / "work", lambda: False)
    assert state.step == 16

    def loss_with(t) -> float:
        from engine.training.loop import caption_states

        states = torch.cat([caption_states(t.slot, t.chunker, e.caption) for e in examples])
        return objective.evaluate(model.unet, examples, states)

    assert loss_with(trainer) < loss_with(untrained)
    path = save_embedding(trainer, settings.embeddings_path / "gstr.pt", state)
    data = torch.load(path, weights_only=True)
    assert {
        "string_to_token",
        "string_to_param",
        "name",
        "step",
        "sd_checkpoint",
        "sd_checkpoint_name",
    } <= set(data)
    assert (
        data["name"] == "gstr"
        and data["step"] == 16
        and data["string_to_param"]["*"].shape == (2, model.pipe.text_encoder.config.hidden_size)
    )
    engine.registry.refresh()
    try:
        after_prompt = engine.txt2img(request("a picture of gstr", steps=8)).images[0]
        assert "TI hashes" in after_prompt.infotext
        assert np.abs(pixels(before_prompt) - pixels(after_prompt.image)).mean() > 1
        plain_after = engine.txt2img(request("a red circle", steps=8)).images[0].image
        assert np.array_equal(pixels(plain_before), pixels(plain_after))  # no name: the untouched model
    finally:
        path.unlink()
        engine.registry.refresh()


def test_a_hypernetwork_learns_and_is_saved_in_a1111_layout(engine, settings, green_stars, tmp_path):
    from engine.training.hypernetwork import (
        HypernetworkTraining,
        attention_widths,
        save_trained,
        train_hypernetwork_slice,
    )

    model = engine.base_model(None)
    options = HypernetworkTraining(
        "zkwnet", LoopOptions(steps=12, learning_rate="2e-3", batch_size=2), resolution=64
    )
    before = engine.txt2img(request("zkw style", steps=8)).images[0].image
    state, trainer = train_hypernetwork_slice(model, green_stars, options, tmp_path / "work", lambda: False)
    assert state.step == 12
    objective = NoiseObjective(model, 0)
    states = trainer.encode(["zkw style"])[0].expand(len(green_stars), -1, -1)
    from engine.prompts.hypernetwork_attention import applied_hypernetworks

    plain = objective.evaluate(model.unet, green_stars, states)
    with applied_hypernetworks(model.unet, [(trainer.hypernetwork, 1.0)]):
        trained = objective.evaluate(model.unet, green_stars, states)
    assert trained < plain
    path = save_trained(trainer, settings.hypernetworks_dir / "zkwnet.pt", state)
    data = torch.load(path, weights_only=True)
    assert {
        "layer_structure",
        "activation_func",
        "is_layer_norm",
        "weight_initialization",
        "use_dropout",
    } <= set(data)
    assert set(attention_widths(model.unet)) <= set(data) and data["step"] == 12
    engine.registry.refresh()
    try:
        applied = engine.txt2img(request("zkw style <hypernet:zkwnet:1>", steps=8)).images[0].image
        off = engine.txt2img(request("zkw style <hypernet:zkwnet:0>", steps=8)).images[0].image
        assert np.abs(pixels(before) - pixels(applied)).mean() > 1
        assert np.array_equal(pixels(before), pixels(off))
    finally:
        path.unlink()
        engine.registry.refresh()


def test_png_transparency_becomes_the_loss_weight(engine):
    from PIL import Image

    image = Image.new("RGBA", (64, 64), (200, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 32, 64))  # the left half is transparent
    [weighted] = encode_examples(engine.base_model(None), [(image, "x")], 64, alpha_weight=True)
    [plain] = encode_examples(engine.base_model(None), [(image, "x")], 64)
    assert plain.weight is None
    assert weighted.weight.shape == weighted.latents.shape[-2:]
    width = weighted.weight.shape[-1]
    assert float(weighted.weight[:, : width // 2 - 1].max()) < 0.05
    assert abs(float(weighted.weight.mean()) - 1.0) < 1e-5


def _stripes(shift: int):
    """Magenta diagonal stripes on white: a pattern the demo model never drew, so its loss starts high."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(image)
    for x in range(-64, 64, 12):
        draw.polygon(
            [(x + shift, 0), (x + shift + 6, 0), (x + shift + 70, 64), (x + shift + 64, 64)], (200, 30, 160)
        )
    return image


def test_dreambooth_learns_its_token_keeps_its_class_and_saves_a_checkpoint(engine, settings, tmp_path):
    from engine.models.registry import ModelKind
    from engine.training.dreambooth import (
        DreamboothOptions,
        check_can_save,
        checkpoint_path,
        train_dreambooth_slice,
    )

    model = engine.base_model(None)
    instance = encode_examples(model, [(_stripes(k), "zkw") for k in range(4)], 64)
    class_images = [engine.txt2img(request("a star", seed=i, steps=8)).images[0].image for i in range(4)]
    prior = encode_examples(model, [(image, "a star") for image in class_images], 64)
    base_zkw = engine.txt2img(request("zkw", steps=8)).images[0].image
    options = DreamboothOptions(
        "zkwdb",
        LoopOptions(steps=24, learning_rate="3e-5", batch_size=2),
        instance_prompt="zkw",
        class_prompt="a star",
        class_images=4,
        resolution=64,
    )
    state, trainer = train_dreambooth_slice(
        model, instance, options, tmp_path / "w", lambda: False, class_examples=prior
    )
    assert state.step == 24
    objective = NoiseObjective(model, 0)

    def before_after(examples, caption):
        states = trainer.states([caption] * len(examples))
        return [objective.evaluate(unet, examples, states) for unet in (model.unet, trainer.unet)]

    before, after = before_after(instance, "zkw")
    assert after < before * 0.5  # the token learned the stripes
    before, after = before_after(prior, "a star")
    assert after < before * 1.05  # prior preservation: the class did not drift away
    folder = trainer.save(checkpoint_path(settings.checkpoints_dir, "zkwdb", model), state, len(instance))
    assert folder.is_dir() and (folder / "model_index.json").is_file()  # "auto": the demo model's own form
    engine.registry.refresh()
    try:
        assert "zkwdb" in engine.registry.names(ModelKind.CHECKPOINT)
        trained = engine.txt2img(request("zkw", steps=8, model="zkwdb")).images[0]
        assert np.abs(pixels(base_zkw) - pixels(trained.image)).mean() > 1
        assert "Model: zkwdb" in trained.infotext and "Model hash: " in trained.infotext
        untouched = engine.txt2img(request("zkw", steps=8)).images[0].image
        assert np.array_equal(pixels(base_zkw), pixels(untouched))  # the base model did not change
    finally:
        import shutil

        shutil.rmtree(folder)
        engine.registry.refresh()
    check_can_save(model, settings.checkpoints_dir / "zkwdb.safetensors")  # in diffusers' names: see below


def test_dreambooth_saves_an_a1111_single_file_that_loads_like_its_folder(tmp_path, tiny_sd1_dir):
    import shutil

    from config import load_settings
    from engine.models.registry import ModelKind
    from engine.runner import Engine
    from engine.training.dreambooth import (
        DreamboothOptions,
        check_can_save,
        checkpoint_path,
        train_dreambooth_slice,
    )

    shutil.copytree(tiny_sd1_dir, tmp_path / "models" / "Stable-diffusion" / "tiny")
    engine = Engine(load_settings(None, data_dir=tmp_path, default_model="tiny"))
    model = engine.base_model(None)
    examples = encode_examples(model, [(_stripes(k), "zkw") for k in range(2)], 64)
    # A LoRA used for generation leaves peft layers in the live model; the checkpoint must not carry them.
    lora_options = LoraOptions("l", LoopOptions(steps=1, learning_rate="1e-3"), resolution=64)
    lora_state, lora = train_lora_slice(model, examples, lora_options, tmp_path / "l", lambda: False)
    save_lora(lora, engine.settings.lora_dir / "l.safetensors", lora_state, 2)
    engine.registry.refresh()
    engine.txt2img(request("zkw <lora:l:1>"))
    model = engine.base_model(None)
    options = DreamboothOptions(
        "db", LoopOptions(steps=3, learning_rate="1e-4"), instance_prompt="zkw", resolution=64
    )
    state, trainer = train_dreambooth_slice(model, examples, options, tmp_path / "w", lambda: False)
    folder_path = checkpoint_path(engine.settings.checkpoints_dir, "db-folder", model, "diffusers")
    file_path = checkpoint_path(engine.settings.checkpoints_dir, "db-file", model, "safetensors")
    check_can_save(model, file_path)
    trainer.save(folder_path, state, 2)
    trainer.save(file_path, state, 2)
    assert file_path.with_name("db-file.config").is_dir()  # the base's configs ride along
    engine.registry.refresh()
    assert {"db-folder", "db-file"} <= set(engine.registry.names(ModelKind.CHECKPOINT))
    assert "db-file.config" not in engine.registry.names(ModelKind.CHECKPOINT)
    from_folder = engine.txt2img(request("zkw", model="db-folder")).images[0].image
    from_file = engine.txt2img(request("zkw", model="db-file")).images[0].image
    base = engine.txt2img(request("zkw", model="tiny")).images[0].image
    assert np.array_equal(pixels(from_folder), pixels(from_file))  # the same weights in either form
    assert not np.array_equal(pixels(from_folder), pixels(base))


@pytest.mark.parametrize("text_encoder", [False, True])
def test_an_sdxl_lora_learns_and_loads_as_a_kohya_file(tmp_path, tiny_sdxl_dir, text_encoder):
    import shutil

    from config import load_settings
    from engine.runner import Engine

    shutil.copytree(tiny_sdxl_dir, tmp_path / "models" / "Stable-diffusion" / "tiny-xl")
    engine = Engine(load_settings(None, data_dir=tmp_path, default_model="tiny-xl"))
    model = engine.base_model(None)
    assert model.sdxl
    examples = encode_examples(model, [(_stripes(k), "zkw") for k in range(2)], 64)
    options = LoraOptions(
        "xl", LoopOptions(steps=12, learning_rate="1e-2", batch_size=2), rank=4, resolution=64,
        train_text_encoder=text_encoder,
    )  # fmt: skip
    state, trainer = train_lora_slice(model, examples, options, tmp_path / "work", lambda: False)
    objective = NoiseObjective(model, 0)
    states, pooled = trainer.encode(["zkw"] * 2)
    before, after = (
        objective.evaluate(unet, examples, states, pooled=pooled) for unet in (model.unet, trainer.unet)
    )
    assert after < before
    path = save_lora(trainer, engine.settings.lora_dir / "xl.safetensors", state, 2)
    with safe_open(str(path), "pt") as file:
        keys, metadata = set(file.keys()), file.metadata()
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    prefixes = {key.split("_")[1] for key in keys}
    assert prefixes == ({"unet", "te1", "te2"} if text_encoder else {"unet"})
    engine.registry.refresh()
    base = engine.txt2img(request("zkw")).images[0].image
    trained = engine.txt2img(request("zkw <lora:xl:1>")).images[0]
    off = engine.txt2img(request("zkw <lora:xl:0>")).images[0].image
    assert np.abs(pixels(base) - pixels(trained.image)).mean() > 1 and 'Lora hashes: "xl:' in trained.infotext
    assert np.abs(pixels(base) - pixels(off)).max() <= 2
    assert trainer.preview("zkw", 0, 2).size == (64, 64)
