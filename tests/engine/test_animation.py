"""Deforum-style animation on the demo model: 2D moves, colour coherence, cadence, interpolation, videos, files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.animate import (
    AnimationRenderer,
    AnimationSettings,
    frame_path,
    plan_frames,
    prompt_keyframes,
    remake_frame,
    units,
)
from engine.animation.deforum_files import export_deforum, import_deforum
from engine.animation.frame_ops import color_drift, match_colors, motion_matrix, warp
from engine.animation.video import read_video, write_videos
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.requests import PromptBlend
from tests.engine.helpers import pixels, request

DATA = Path(__file__).parent / "data"
SMALL = dict(width=64, height=64, steps=8, seed=3, max_frames=12)


def _render(engine, folder: Path, **options) -> list[Image.Image]:
    settings = AnimationSettings(**{**SMALL, **options})
    renderer = AnimationRenderer(engine, settings, settings.seed, folder)
    for index in range(len(renderer.units)):
        renderer.render_unit(index)
    return [Image.open(frame_path(folder, frame)).convert("RGB") for frame in range(settings.max_frames)]


def test_the_warp_is_opencvs():
    """Reference frames made once with OpenCV's warpPerspective (the call Deforum makes), stored in data/."""
    data = np.load(DATA / "warp_opencv.npz")
    image = Image.fromarray(data["input"])
    cases = [(1.05, 10, 3.5, -2, 0.5, 0.5, "replicate"), (0.9, -30, -10, 7, 0.3, 0.6, "wrap")]
    for index, (zoom, angle, tx, ty, cx, cy, border) in enumerate(cases):
        mine = np.asarray(warp(image, motion_matrix(32, 24, zoom, angle, tx, ty, cx, cy), border), dtype=int)
        assert np.abs(mine - data[f"case{index}"].astype(int)).max() <= 1


def test_moves_and_borders():
    gradient = Image.fromarray(
        np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))[..., None].repeat(3, -1)
    )
    same = warp(gradient, motion_matrix(32, 32))
    assert np.array_equal(np.asarray(same), np.asarray(gradient))
    shifted = np.asarray(warp(gradient, motion_matrix(32, 32, translation_x=4)))[..., 0]
    assert np.array_equal(shifted[:, 4:], np.asarray(gradient)[:, :-4, 0])
    assert (shifted[:, :4] == 0).all()  # replicate: the left edge column repeated
    wrapped = np.asarray(warp(gradient, motion_matrix(32, 32, translation_x=4), "wrap"))[..., 0]
    assert np.array_equal(wrapped[:, :4], np.asarray(gradient)[:, -4:, 0])


def test_histogram_matching_gives_the_reference_colours():
    rng = np.random.default_rng(0)
    dark = Image.fromarray((rng.random((32, 32, 3)) * 80).astype(np.uint8))
    bright = Image.fromarray((rng.random((32, 32, 3)) * 120 + 130).astype(np.uint8))
    for mode in ("RGB", "LAB", "HSV"):
        matched = match_colors(dark, bright, mode)
        assert color_drift(matched, bright) < color_drift(dark, bright) / 4, mode
    assert match_colors(dark, bright, "None") is dark


def test_a_2d_animation_writes_a_video_a_gif_and_frames_with_infotext(engine, tmp_path):
    frames = _render(
        engine,
        tmp_path / "frames",
        prompts={"0": "a red circle on a blue background", "6": "a green star on a white background"},
        zoom="0:(1.04)",
        translation_x="0:(2)",
        fps=12,
        blend_prompts=True,
    )
    assert len(frames) == 12 and all(f.size == (64, 64) for f in frames)
    videos = write_videos(frames, tmp_path, "animation", 12, ["mp4", "gif", "webp"])
    decoded, fps = read_video(videos[0])
    assert len(decoded) == 12 and decoded[0].size == (64, 64) and fps == 12
    with Image.open(videos[1]) as gif:
        assert gif.n_frames == 12 and gif.size == (64, 64)
    with Image.open(videos[2]) as webp:
        assert webp.n_frames == 12
    texts = [parse_infotext(read_infotext(frame_path(tmp_path / "frames", i))) for i in range(12)]
    assert texts[0].prompt == "a red circle on a blue background" and texts[0].seed == 3
    assert [t.seed for t in texts] == list(range(3, 15))  # seed behaviour "iter"
    assert texts[3].params["Blend prompt"] == "a green star on a white background"
    assert texts[3].params["Blend weight"] == "0.5" and texts[3].denoising_strength == 0.35
    assert texts[7].prompt == "a green star on a white background" and "Blend weight" not in texts[7].params
    assert texts[5].params["Animation"] == "2D frame 5 of 12"


def test_a_frame_is_made_again_from_its_infotext_and_the_previous_frame(engine, tmp_path):
    frames = _render(
        engine, tmp_path, prompts={"0": "a yellow square on a black background"}, max_frames=4, angle="0:(3)"
    )
    text = read_infotext(frame_path(tmp_path, 3))
    again = remake_frame(engine, text, frames[2], frames[0])
    assert np.array_equal(pixels(again), pixels(frames[3]))
    with pytest.raises(InvalidRequest, match="colour coherence LAB needs its reference, frame 0"):
        remake_frame(engine, text, frames[2])


def test_the_same_settings_and_seed_give_the_same_frames(engine, tmp_path):
    options = dict(prompts={"0": "a blue triangle"}, max_frames=5, zoom="0:(1.03)", seed_behavior="random")
    first = _render(engine, tmp_path / "a", **options)
    second = _render(engine, tmp_path / "b", **options)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, second, strict=True))
    other = _render(engine, tmp_path / "c", **{**options, "seed": 4})
    assert not np.array_equal(pixels(first[0]), pixels(other[0]))


def test_colour_coherence_holds_the_first_frames_colours(engine, tmp_path):
    # A contrast of 1.3 on every frame (with strength 0.8, most of each frame carried on) brightens the picture
    # step by step; matching each moved frame to the first frame's histogram before the contrast keeps the
    # colours near where they started (seeds 1–4 measured: 55–82 without, 11–20 with LAB).
    options = dict(
        prompts={"0": "a yellow square on a black background"},
        zoom="0:(1.04)",
        translation_x="0:(2)",
        strength_schedule="0:(0.8)",
        noise_schedule="0:(0.02)",
        contrast_schedule="0:(1.3)",
    )
    drift = {}
    for mode in ("None", "LAB"):
        frames = _render(engine, tmp_path / mode, color_coherence=mode, **options)
        drift[mode] = sum(color_drift(frame, frames[0]) for frame in frames[1:]) / 11
    assert drift["LAB"] < drift["None"] / 2, drift


def test_cadence_3_diffuses_a_third_of_the_frames(engine, tmp_path):
    settings = AnimationSettings(**{**SMALL, "diffusion_cadence": 3})
    assert [u.key for u in units(settings)] == [0, 3, 6, 9, None]
    frames = _render(engine, tmp_path, prompts={"0": "a red circle"}, zoom="0:(1.05)", diffusion_cadence=3)
    texts = [parse_infotext(read_infotext(frame_path(tmp_path, i))) for i in range(12)]
    diffused = [i for i, t in enumerate(texts) if "Steps" in t.params]
    assert diffused == [0, 3, 6, 9]
    assert texts[4].params["Animation frame source"] == "blended from frames 3 and 6"
    assert texts[11].params["Animation frame source"] == "moved from frame 9"
    # Frame 4 = ⅔ of frame 3 moved on one frame + ⅓ of frame 6 moved back two frames: both at frame 4's camera.
    step = motion_matrix(64, 64, zoom=1.05)
    forward = warp(frames[3], step)
    back = warp(frames[6], np.linalg.inv(step @ step))
    expected = np.asarray(forward, dtype=float) * (2 / 3) + np.asarray(back, dtype=float) / 3
    assert np.abs(np.asarray(frames[4], dtype=float) - expected).max() <= 1


def test_interpolation_moves_noise_and_prompt_between_keyframes(engine, tmp_path):
    prompts = {"0": "a red circle on a blue background", "4": "a green star on a white background"}
    frames = _render(engine, tmp_path, prompts=prompts, animation_mode="Interpolation", max_frames=5)
    start = engine.txt2img(request(prompts["0"], steps=8, seed=3, sampler="Euler a")).images[0].image
    end = engine.txt2img(request(prompts["4"], steps=8, seed=7, sampler="Euler a")).images[0].image
    assert np.array_equal(pixels(frames[0]), pixels(start))
    assert np.array_equal(pixels(frames[4]), pixels(end))  # iter seeds: frame 4's seed is 3 + 4
    middle = parse_infotext(read_infotext(frame_path(tmp_path, 2)))
    assert middle.params["Variation seed"] == "7" and middle.params["Variation seed strength"] == "0.5"
    assert middle.params["Blend weight"] == "0.5"


def test_a_prompt_blend_mixes_conditionings(engine):
    plain = engine.txt2img(request("a red circle", steps=6)).images[0]
    none = engine.txt2img(
        request("a red circle", steps=6, blend=PromptBlend("a green star", "", 0.0))
    ).images[0]
    assert np.array_equal(pixels(plain.image), pixels(none.image)) and "Blend" not in none.infotext
    long_other = "a green star, " + ", ".join(["on a white background"] * 20)  # more than 75 tokens
    half = engine.txt2img(
        request("a red circle", steps=6, blend=PromptBlend(long_other, "blurry", 0.5))
    ).images[0]
    assert not np.array_equal(pixels(plain.image), pixels(half.image))
    assert "Blend weight: 0.5" in half.infotext and "Blend negative prompt: blurry" in half.infotext


def test_schedules_and_prompts_are_checked_before_anything_runs():
    with pytest.raises(InvalidRequest, match="zoom: is 0 at frame 5; it must be from 0.01 to 100"):
        plan_frames(AnimationSettings(max_frames=10, zoom="0:(1), 5:(0), 6:(1)"), 1)
    with pytest.raises(InvalidRequest, match="strength_schedule at frame 0: position 6: expected a number"):
        plan_frames(AnimationSettings(max_frames=10, strength_schedule="0:(0.5 +)"), 1)
    with pytest.raises(InvalidRequest, match="animation_mode: '4D' is not one of: 2D, 3D, Interpolation"):
        plan_frames(AnimationSettings(animation_mode="4D"), 1)
    with pytest.raises(InvalidRequest, match="no prompt keyframe falls within the 10 frames"):
        plan_frames(AnimationSettings(max_frames=10, prompts={"20": "late"}), 1)
    assert prompt_keyframes({"0": "a cat --neg blurry", "max_f": "a dog"}, 10, 0) == [
        (0, "a cat", "blurry"),
        (9, "a dog", ""),
    ]


def test_2d_prompts_hold_until_the_next_keyframe_as_deforum_unless_blended():
    """Deforum's 2D mode (render.py, commit 322426851408ebca2cd49492bfeb1ec86e1dc869): the prompt series is each
    keyframe's prompt forward-filled, so frames 1 and 2 use frame 0's prompt unchanged. Salon's blend
    (blend_prompts) gives them the next keyframe's conditioning at 1/3 and 2/3."""
    settings = AnimationSettings(max_frames=5, prompts={"0": "a cat", "3": "a dog"})
    held = plan_frames(settings, 1)
    assert [p.prompt for p in held] == ["a cat"] * 3 + ["a dog"] * 2
    assert all(p.blend is None for p in held)
    blended = plan_frames(replace(settings, blend_prompts=True), 1)
    assert [p.prompt for p in blended] == ["a cat"] * 3 + ["a dog"] * 2
    assert [p.blend.weight if p.blend else 0 for p in blended] == [0, 0.333333, 0.666667, 0, 0]
    interpolation = plan_frames(replace(settings, animation_mode="Interpolation"), 1)
    assert interpolation[1].blend is not None  # Deforum's interpolation mode blends keyframes


def test_prompt_math_and_neg_as_deforum_composes_them():
    """Deforum: args.py process_args makes each prompt `{positive} {prompt} --neg {negative}` (--neg only if the
    prompt has none), prompt.py prepare_prompt computes `…` at the frame (t, max_f = frames − 1) and takes all
    text after `--neg` as the negative. The values were printed by Deforum's prepare_prompt and
    split_weighted_subprompts (numexpr), whose negatives differ only in spaces the tokenizer drops
    (' blurry 10  ugly')."""
    settings = AnimationSettings(
        max_frames=20,
        prompts={"0": "a (cat:`(0.5+0.5*sin(t/10))`) --neg blurry `t*2`", "10": "a dog"},
        positive_prompt="masterpiece,",
        negative_prompt="ugly --neg",
    )
    plan = plan_frames(settings, 1)
    assert plan[5].prompt == "masterpiece, a (cat:0.7397127693021015)"
    assert plan[5].negative_prompt == "blurry 10 ugly"
    assert plan[0].prompt == "masterpiece, a (cat:0.5)" and plan[0].negative_prompt == "blurry 0 ugly"
    assert plan[12].prompt == "masterpiece, a dog" and plan[12].negative_prompt == "ugly"
    with pytest.raises(InvalidRequest, match=r"prompts at frame 0, `sqrt\(t` at frame 0: position 7"):
        plan_frames(replace(settings, prompts={"0": "a `sqrt(t` cat"}), 1)
    with pytest.raises(InvalidRequest, match="cannot be computed at frame 0: float division by zero"):
        plan_frames(replace(settings, prompts={"0": "a `1/t` cat"}), 1)


def test_seed_behaviours_follow_deforum():
    def seeds(behaviour, **options):
        settings = AnimationSettings(max_frames=6, seed_behavior=behaviour, **options)
        return [p.seed for p in plan_frames(settings, 10)]

    assert seeds("iter") == [10, 11, 12, 13, 14, 15]
    assert seeds("iter", seed_iter_n=2) == [10, 11, 11, 12, 12, 13]
    assert seeds("fixed") == [10] * 6
    assert seeds("ladder") == [10, 12, 11, 13, 12, 14]
    assert seeds("alternate") == [10, 11, 10, 11, 10, 11]
    assert seeds("schedule", seed_schedule="0:(s), 2:(s+100), 4:(5)") == [10, 10, 110, 110, 5, 5]
    assert seeds("random") == seeds("random") and len(set(seeds("random"))) == 6
    assert seeds("iter", diffusion_cadence=2) == [10, 11, 11, 12, 12, 13]  # only diffused frames advance


# A Deforum settings file as sd-webui-deforum writes it (keys of its args.py, values as it saves them).
DEFORUM_FILE = {
    "W": 64,
    "H": 64,
    "seed": 42,
    "sampler": "Euler a",
    "steps": 6,
    "seed_behavior": "iter",
    "seed_iter_N": 1,
    "prompts": {
        "0": "a red circle on a blue background",
        "2": "a green star on a white background --neg blurry",
    },
    "animation_prompts_positive": "",
    "animation_prompts_negative": "ugly",
    "animation_mode": "2D",
    "max_frames": 4,
    "border": "wrap",
    "angle": "0: (0)",
    "zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))",
    "translation_x": "0: (0), 2: (3)",
    "translation_y": "0: (0)",
    "translation_z": "0: (1.75)",
    "transform_center_x": "0: (0.5)",
    "transform_center_y": "0: (0.5)",
    "rotation_3d_x": "0: (0)",
    "noise_schedule": "0: (0.065)",
    "strength_schedule": "0: (0.65)",
    "contrast_schedule": "0: (1.0)",
    "cfg_scale_schedule": "0: (7)",
    "enable_steps_scheduling": False,
    "steps_schedule": "0: (25)",
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "color_coherence": "LAB",
    "diffusion_cadence": "1",
    "fps": 15,
    "make_gif": False,
    "sd_model_name": "v1-5-pruned-emaonly.safetensors",
}


def test_a_deforum_settings_file_imports_animates_and_exports_back(engine, tmp_path):
    imported = import_deforum(json.dumps(DEFORUM_FILE))
    assert "make_gif" in imported.ignored and "translation_z" not in imported.ignored  # 3D keys are read
    assert any("v1-5-pruned-emaonly" in w for w in imported.warnings)
    settings = imported.settings
    assert settings.width == 64 and settings.border == "wrap" and settings.diffusion_cadence == 1
    renderer = AnimationRenderer(engine, settings, 42, tmp_path)
    for index in range(len(renderer.units)):
        renderer.render_unit(index)
    first = parse_infotext(read_infotext(frame_path(tmp_path, 3)))
    assert first.prompt == "a green star on a white background" and first.negative_prompt == "blurry ugly"
    exported = export_deforum(settings, 42)
    for key, value in DEFORUM_FILE.items():
        if key in exported and key != "diffusion_cadence":
            assert exported[key] == value, key
    assert exported["diffusion_cadence"] == 1
    again = import_deforum(json.dumps(exported)).settings
    assert again == settings
    three_d = import_deforum(json.dumps({**DEFORUM_FILE, "animation_mode": "3D"})).settings  # read now
    assert three_d.animation_mode == "3D" and three_d.translation_z == DEFORUM_FILE["translation_z"]
    with pytest.raises(InvalidRequest, match="settings_file: is not a Deforum settings file"):
        import_deforum(b"\x89PNG not json")


def test_a_video_over_the_limit_is_re_encoded_smaller(tmp_path):
    from engine.animation.video import shrink_mp4, write_mp4

    rng = np.random.default_rng(1)
    frames = [Image.fromarray((rng.random((128, 128, 3)) * 255).astype(np.uint8)) for _ in range(8)]
    video = write_mp4(frames, tmp_path / "noisy.mp4", 8)
    size = video.stat().st_size
    smaller, note = shrink_mp4(video, size // 2)
    assert smaller.stat().st_size <= size // 2 and "re-encoded smaller" in note
    decoded, fps = read_video(smaller)
    assert len(decoded) == 8 and fps == 8
    assert shrink_mp4(video, 100) is None  # nothing fits in 100 bytes
