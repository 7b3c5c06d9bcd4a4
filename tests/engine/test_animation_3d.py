"""Deforum's 3D mode end to end: settings files with 3D keys read and written, the depth model from
`models/Deforum` (a tiny random Depth Anything), refusals, and a 3D animation rendered on the demo model whose
per-frame camera is the file's schedules frame by frame.

Deforum facts (sd-webui-deforum at commit 322426851408ebca2cd49492bfeb1ec86e1dc869): args.py names the 3D keys
(translation_z, rotation_3d_x/y/z, fov_schedule, near_schedule, far_schedule, aspect_ratio_schedule,
aspect_ratio_use_old_formula, use_depth_warping, depth_algorithm, midas_weight, padding_mode, sampling_mode,
save_depth_maps); animation.py `anim_frame_warp_3d` reads each schedule's value at the frame index; render.py
predicts depth when 3D warping is on or depth maps are saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.animate import AnimationSettings, check_settings, frame_path, plan_frames
from engine.animation.camera3d import Camera, plan_cameras
from engine.animation.deforum_files import export_deforum, import_deforum
from engine.animation.depth import DepthEstimator
from engine.animation.depth_files import find_depth_model
from engine.animation.remake import remake_frame
from engine.animation.render3d import AnimationRenderer3D, make_renderer
from engine.animation.schedules import schedule_values
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from jobs.animation import AnimateTask
from tests.tiny_depth import build_tiny_depth_anything

DEFORUM_3D_FILE = {
    "W": 64, "H": 64, "seed": 11, "sampler": "Euler a", "steps": 6, "seed_behavior": "iter",
    "prompts": {"0": "a red circle on a blue background"}, "animation_mode": "3D", "max_frames": 5,
    "translation_x": "0: (0), 4: (8)", "translation_y": "0: (-2)", "translation_z": "0: (10), 2: (0.5*t)",
    "rotation_3d_x": "0: (0)", "rotation_3d_y": "0: (1.5)", "rotation_3d_z": "0: (3*sin(t))",
    "fov_schedule": "0: (70), 4: (50)", "near_schedule": "0: (200)", "far_schedule": "0: (10000)",
    "padding_mode": "reflection", "sampling_mode": "bilinear", "depth_algorithm": "Midas-3-Hybrid",
    "midas_weight": 0.3, "save_depth_maps": True, "use_depth_warping": True, "diffusion_cadence": "2",
    "strength_schedule": "0: (0.6)", "color_coherence": "LAB", "legacy_colormatch": False, "noise_type": "uniform",
    "zoom": "0: (1.0)", "angle": "0: (0)", "fps": 10,
}  # fmt: skip


@pytest.fixture(scope="module")
def depth_models(tmp_path_factory) -> Path:
    """A models/ folder with the tiny depth model in models/Deforum."""
    models = tmp_path_factory.mktemp("models")
    build_tiny_depth_anything(models / "Deforum" / "tiny-depth-anything")
    return models


def test_a_3d_file_is_read_with_every_3d_key_and_written_back():
    imported = import_deforum(json.dumps(DEFORUM_3D_FILE))
    s = imported.settings
    assert s.animation_mode == "3D" and s.translation_z == "0: (10), 2: (0.5*t)"
    assert (s.rotation_3d_y, s.rotation_3d_z, s.fov_schedule) == (
        "0: (1.5)",
        "0: (3*sin(t))",
        "0: (70), 4: (50)",
    )
    assert (s.padding_mode, s.sampling_mode, s.midas_weight, s.save_depth_maps) == (
        "reflection",
        "bilinear",
        0.3,
        True,
    )
    assert s.depth_algorithm == "Midas-3-Hybrid" and s.use_depth_warping is True
    for key in ("translation_z", "rotation_3d_x", "near_schedule", "padding_mode", "midas_weight"):
        assert key not in imported.ignored
    check_settings(s)
    again = import_deforum(json.dumps(export_deforum(s, 11)))
    assert again.settings == s and again.warnings == ()


@pytest.mark.parametrize(
    "change, option",
    [
        ({"padding_mode": "wrap"}, "padding_mode"),
        ({"sampling_mode": "area"}, "sampling_mode"),
        ({"depth_algorithm": "Midas+AdaBins (old)"}, "depth_algorithm"),
        ({"depth_algorithm": "Marigold"}, "depth_algorithm"),
        ({"fov_schedule": "0: (0)"}, "fov_schedule"),
        ({"near_schedule": "0: (200)", "far_schedule": "0: (100)"}, "near_schedule"),
        ({"rotation_3d_x": "0: (1"}, "rotation_3d_x"),
    ],
)
def test_unusable_3d_values_are_refused_naming_the_option(change, option):
    settings = import_deforum(json.dumps({**DEFORUM_3D_FILE, **change})).settings
    with pytest.raises(InvalidRequest) as caught:
        plan_frames(settings, 11)
    assert caught.value.option == option


def test_the_camera_of_every_frame_is_the_files_schedules():
    settings = import_deforum(json.dumps(DEFORUM_3D_FILE)).settings
    cameras = plan_cameras(settings, 11)
    for name, field in (
        ("translation_z", "translation_z"),
        ("rotation_3d_z", "rotation_z"),
        ("fov_schedule", "fov"),
    ):
        assert [getattr(c, field) for c in cameras] == schedule_values(DEFORUM_3D_FILE[name], name, 5, 11)
    # Deforum's inbetweens: numbers interpolated, expressions computed at t from their keyframe on
    assert [c.translation_x for c in cameras] == [0, 2, 4, 6, 8]
    assert [c.translation_z for c in cameras] == [10, 5.5, 1.0, 1.5, 2.0]
    assert [c.fov for c in cameras] == [70, 65, 60, 55, 50]
    wide = {**DEFORUM_3D_FILE, "aspect_ratio_use_old_formula": True, "W": 128}
    old = plan_cameras(import_deforum(json.dumps(wide)).settings, 1)
    assert old[0].aspect_ratio == 2.0


def test_without_a_depth_model_a_3d_job_is_refused_naming_the_folder(settings, tmp_path, depth_models):
    task = AnimateTask()
    animation = import_deforum(json.dumps(DEFORUM_3D_FILE)).settings
    params = {"settings": animation.to_json(), "seed": 11, "formats": ["gif"]}
    bare = settings.model_copy(update={"models_dir": tmp_path})
    with pytest.raises(InvalidRequest, match=r"needs a depth model.*Deforum") as caught:
        task.check(params, bare)
    assert caught.value.option == "depth model"
    (tmp_path / "Deforum" / "not-depth").mkdir(parents=True)
    (tmp_path / "Deforum" / "not-depth" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(InvalidRequest, match="not-depth: model_type 'bert' is not a depth model"):
        task.check(params, bare)
    flat = {
        **params,
        "settings": {**params["settings"], "use_depth_warping": False, "save_depth_maps": False},
    }
    assert task.check(flat, bare)["settings"]["animation_mode"] == "3D"  # a flat depth needs no model
    assert task.check(params, settings.model_copy(update={"models_dir": depth_models}))["seed"] == 11


def test_a_3d_animation_renders_with_the_files_camera_on_every_frame(engine, tmp_path, depth_models):
    settings = import_deforum(json.dumps(DEFORUM_3D_FILE)).settings
    found = find_depth_model(depth_models)
    assert found.kind == "depth_anything" and found.inverse
    depth = DepthEstimator(found)
    renderer = make_renderer(engine, settings, 11, tmp_path / "frames", depth)
    assert isinstance(renderer, AnimationRenderer3D)
    for index in range(len(renderer.units)):
        renderer.render_unit(index)
    frames = [Image.open(frame_path(tmp_path / "frames", f)) for f in range(5)]
    assert all(f.size == (64, 64) for f in frames)
    texts = [parse_infotext(read_infotext(frame_path(tmp_path / "frames", f))) for f in range(5)]
    values = {
        name: schedule_values(DEFORUM_3D_FILE[name], name, 5, 11)
        for name in ("translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
                     "rotation_3d_z", "fov_schedule", "near_schedule", "far_schedule")
    }  # fmt: skip
    for frame in range(1, 5):
        recorded = dict(item.split("=") for item in texts[frame].params["Animation 3D camera"].split())
        expected = Camera(*(values[name][frame] for name in values), aspect_ratio=1.0)
        assert {k: float(v) for k, v in recorded.items()} == vars(expected), frame
        assert texts[frame].params["Animation depth"] == "tiny-depth-anything"
        assert texts[frame].params["Animation 3D warp"] == "padding reflection, bilinear"
        assert "Animation motion" not in texts[frame].params
        assert (tmp_path / "frames" / "depth" / f"{frame:05d}.png").is_file()
    assert texts[0].params["Animation"] == "3D frame 0 of 5" and "Animation 3D camera" not in texts[0].params
    assert texts[1].params["Animation frame source"] == "moved from frame 0"  # cadence 2: moved only
    assert texts[2].denoising_strength == pytest.approx(0.4) and texts[2].seed == 12
    with pytest.raises(InvalidRequest, match="3D animation frame cannot be remade"):
        remake_frame(engine, read_infotext(frame_path(tmp_path / "frames", 2)), frames[1])


def test_a_3d_animation_without_depth_warping_runs_flat(engine, tmp_path):
    settings = AnimationSettings(
        animation_mode="3D", width=64, height=64, steps=4, seed=2, max_frames=2, noise_type="uniform",
        use_depth_warping=False, translation_z="0: (20)", prompts={"0": "a yellow square"},
    )  # fmt: skip
    renderer = make_renderer(engine, settings, 2, tmp_path)
    for index in range(len(renderer.units)):
        renderer.render_unit(index)
    text = parse_infotext(read_infotext(frame_path(tmp_path, 1)))
    assert (
        text.params["Animation depth"] == "flat"
        and "translation_z=20.0" in text.params["Animation 3D camera"]
    )
