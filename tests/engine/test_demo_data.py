"""The demo model's data set, its evaluation from pixels, the tokenizer files and the training script."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from engine.configs import CLIP_TOKENIZER
from engine.prompts.clip_vocab import build_vocab
from tools.demo_model.evaluate import read_image, score
from tools.demo_model.shapes import (
    COLOURS,
    SHAPES,
    Scene,
    ShapeSpec,
    held_out,
    held_out_scenes,
    random_scene,
    render,
    training_example,
)


def test_examples_are_deterministic_by_seed():
    a_image, a_caption = training_example(123)
    b_image, b_caption = training_example(123)
    assert a_caption == b_caption and a_image.tobytes() == b_image.tobytes()
    assert training_example(124)[1] != a_caption or training_example(124)[0].tobytes() != a_image.tobytes()


def test_captions_read_like_the_spec():
    scene = Scene((ShapeSpec("circle", "red", "left", "small"),), "blue")
    assert scene.caption(0) == "a small red circle on the left, blue background"
    assert scene.caption(2) == "a red circle on a blue background"
    two = Scene(
        (ShapeSpec("star", "orange", "top", "large"), ShapeSpec("square", "white", "bottom", "small")),
        "black",
    )
    assert (
        two.caption(1)
        == "a large orange star at the top and a small white square at the bottom on a black background"
    )


def test_held_out_combinations_never_appear_in_training():
    held = held_out_scenes()
    assert len(held) >= 50
    for seed in range(3000):
        scene = random_scene(random.Random(seed))
        if len(scene.shapes) == 1:
            assert not held_out(scene.shapes[0], scene.background)
        assert all(spec.colour != scene.background for spec in scene.shapes)


def test_evaluation_reads_the_drawings_exactly():
    """The pixel analysis used to score the model is right on the data set's own drawings."""
    for seed in range(300):
        rng = random.Random(seed)
        scene = random_scene(rng, two_shape_probability=0)
        assert all(score(read_image(render(scene, rng)), scene).values()), scene


def test_evaluation_sees_a_wrong_picture_as_wrong():
    asked = Scene((ShapeSpec("circle", "red", "left", "large"),), "blue")
    drawn = Scene((ShapeSpec("star", "green", "right", "large"),), "yellow")
    assert not any(score(read_image(render(drawn)), asked).values())
    empty = render(Scene((), "white"))
    assert read_image(empty).colour is None


def test_shipped_tokenizer_is_clip_bpe_rebuilt_from_its_merges():
    vocab = json.loads((CLIP_TOKENIZER / "vocab.json").read_text(encoding="utf-8"))
    merge_lines = (CLIP_TOKENIZER / "merges.txt").read_text(encoding="utf-8").split("\n")
    rebuilt, merges = build_vocab(merge_lines)
    assert len(rebuilt) == 49408 and rebuilt == vocab and len(merges) == 48894


def test_vocabulary_of_the_data_set_is_single_tokens():
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER)
    for word in [
        *COLOURS,
        *SHAPES,
        "background",
        "left",
        "right",
        "top",
        "bottom",
        "center",
        "small",
        "large",
    ]:
        assert len(tokenizer.tokenize(word)) == 1, word


@pytest.mark.parametrize("steps", [2])
def test_training_script_end_to_end_on_a_tiny_budget(tmp_path, steps):
    """The real script, cut to a few steps: it renders, trains both stages, saves, and the engine loads it."""
    from config import load_settings
    from engine.requests import GenerationRequest
    from engine.runner import Engine
    from tools.demo_model.train import TrainConfig, train

    out = tmp_path / "models" / "Stable-diffusion" / "tiny-demo"
    cfg = TrainConfig(
        examples=48, vae_steps=steps, vae_batch=4, unet_steps=steps, unet_batch=4, checkpoint_every=1
    )
    stats = train(cfg, out)
    assert (out / "checkpoints" / "step-1" / "model_index.json").is_file()
    assert stats["scaling_factor"] > 0 and np.isfinite(stats["unet_final_loss"])
    card = json.loads((out / "training.json").read_text())
    assert card["config"]["unet_steps"] == steps
    engine = Engine(load_settings(None, data_dir=tmp_path, default_model="tiny-demo"))
    image = (
        engine.txt2img(GenerationRequest("a red circle", width=64, height=64, steps=2, seed=1))
        .images[0]
        .image
    )
    assert image.size == (64, 64)
