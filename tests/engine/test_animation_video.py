"""Optical-flow cadence, video input and hybrid video (engine/animation/flow.py, video_input.py, hybrid.py):
Deforum's keys read from settings files, frames chosen as Deforum's vid2frames chooses them, hostile video
files refused before they cost much, and animations rendered on the demo model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.animate import AnimationRenderer, AnimationSettings, check_settings, frame_path, units
from engine.animation.deforum_files import export_deforum, import_deforum
from engine.animation.flow import cadence_frame, optical_flow
from engine.animation.frame_ops import blend
from engine.animation.hybrid import video_matrix
from engine.animation.video import write_mp4
from engine.animation.video_input import (
    MAX_SOURCE_PIXELS,
    VideoFrames,
    decode_frames,
    fit_max_frames,
    needed_source_frames,
    probe,
    video_file,
)
from engine.infotext_files import read_infotext

SMALL = dict(width=64, height=64, steps=6, seed=3)


def disc(x: float, size: int = 64) -> Image.Image:
    """A textured background with a yellow disc centred at (x, 32)."""
    ys, xs = np.mgrid[0:size, 0:size]
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[..., 0] = 40 + (xs * 2) % 60
    pixels[..., 2] = 60 + (ys * 3) % 90
    pixels[(xs - x) ** 2 + (ys - 32) ** 2 < 100] = (230, 200, 60)
    return Image.fromarray(pixels)


def difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).mean())


def numbered_frames(count: int, size: int = 64) -> list[Image.Image]:
    """Frames whose grey level says their index (10 × index), to see which ones were kept."""
    return [Image.new("RGB", (size, size), (10 * i, 10 * i, 10 * i)) for i in range(count)]


def index_of(image: Image.Image) -> int:
    return round(float(np.asarray(image, dtype=float).mean()) / 10)


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "videos"
    folder.mkdir(parents=True)
    return folder


# ----- optical flow -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["Farneback", "DIS Medium", "DIS Fine"])
def test_flow_cadence_slides_what_moved_where_a_cross_fade_shows_it_twice(method):
    first, second, middle = disc(24), disc(36), disc(30)
    flow = optical_flow(first, second, method)
    assert abs(float(np.median(flow[26:38, 20:28, 0])) - 12) < 3  # the disc moved 12 pixels right
    faded = cadence_frame(first, second, 0.5, "None")
    assert faded.tobytes() == blend(first, second, 0.5).tobytes()
    slid = cadence_frame(first, second, 0.5, method)
    assert difference(slid, middle) < difference(faded, middle) / 4
    assert difference(cadence_frame(first, second, 1.0, method), second) < 1


def test_raft_and_unknown_flow_methods_are_refused_by_name():
    with pytest.raises(InvalidRequest, match="optical_flow_cadence: RAFT needs torchvision"):
        check_settings(AnimationSettings(optical_flow_cadence="RAFT", diffusion_cadence=2))
    with pytest.raises(InvalidRequest, match="optical_flow_cadence: 'Fast' is not one of"):
        check_settings(AnimationSettings(optical_flow_cadence="Fast"))
    with pytest.raises(InvalidRequest, match="hybrid_flow_method: RAFT needs torchvision"):
        check_settings(
            AnimationSettings(
                hybrid_motion="Optical Flow", hybrid_flow_method="RAFT", video_init_path="a.mp4"
            )
        )


def test_cadence_frames_follow_the_flow_and_the_diffused_frames_do_not_change(engine, tmp_path):
    settings = AnimationSettings(
        **SMALL, max_frames=3, diffusion_cadence=2, zoom="0:(1.0)", translation_x="0:(3)"
    )
    frames = {}
    for method in ("None", "Farneback"):
        folder = tmp_path / method
        renderer = AnimationRenderer(engine, replace(settings, optical_flow_cadence=method), 3, folder)
        for index in range(len(renderer.units)):
            renderer.render_unit(index)
        frames[method] = [Image.open(frame_path(folder, i)).convert("RGB") for i in range(3)]
    plain, flowed = frames["None"], frames["Farneback"]
    assert plain[0].tobytes() == flowed[0].tobytes() and plain[2].tobytes() == flowed[2].tobytes()
    assert plain[1].tobytes() != flowed[1].tobytes()
    assert "blended from frames 0 and 2" in read_infotext(frame_path(tmp_path / "Farneback", 1))


# ----- Deforum settings files ---------------------------------------------------------------------------------


def test_deforum_files_carry_the_flow_video_and_hybrid_keys():
    saved = {
        "animation_mode": "Video Input",
        "video_init_path": "clip.mp4",
        "extract_nth_frame": "2",
        "extract_from_frame": 4,
        "extract_to_frame": 40,
        "optical_flow_cadence": "DIS Fine",
        "hybrid_composite": "None",
        "hybrid_motion": "None",
        "hybrid_flow_method": "RAFT",
        "prompts": {"0": "a cat"},
    }
    imported = import_deforum(json.dumps(saved))
    s = imported.settings
    assert (s.animation_mode, s.video_init_path, s.extract_nth_frame, s.extract_from_frame) == (
        "Video Input",
        "clip.mp4",
        2,
        4,
    )
    assert s.extract_to_frame == 40 and s.optical_flow_cadence == "DIS Fine"
    check_settings(s)  # RAFT is named, but hybrid motion is off: not used
    again = import_deforum(json.dumps(export_deforum(s)))
    assert again.settings == s and again.warnings == ()
    assert all(unit.frames == (unit.key,) for unit in units(replace(s, diffusion_cadence=3, max_frames=5)))


def test_hybrid_options_salon_does_not_build_are_refused_by_name():
    base = {"animation_mode": "2D", "hybrid_composite": "Normal", "video_init_path": "clip.mp4"}
    for key, value in (
        ("hybrid_comp_mask_type", "Difference"),
        ("hybrid_motion_use_prev_img", True),
        ("hybrid_flow_consistency", True),
        ("hybrid_use_init_image", True),
    ):
        with pytest.raises(InvalidRequest, match=f"^{key}: "):
            import_deforum(json.dumps({**base, key: value}))
    # off, or hybrid video unused: read and ignored
    import_deforum(json.dumps({**base, "hybrid_comp_mask_type": "None"}))
    import_deforum(json.dumps({"hybrid_comp_mask_type": "Difference"}))
    with pytest.raises(InvalidRequest, match="hybrid_motion: is not built with diffusion_cadence"):
        check_settings(
            AnimationSettings(hybrid_motion="Affine", diffusion_cadence=2, video_init_path="a.mp4")
        )
    with pytest.raises(InvalidRequest, match="hybrid_composite: 'Sometimes' is not one of"):
        check_settings(AnimationSettings(hybrid_composite="Sometimes"))


# ----- the input video: which frames, and hostile files -------------------------------------------------------


def test_frames_are_kept_as_deforums_vid2frames_keeps_them(videos):
    write_mp4(numbered_frames(20), videos / "count.mp4", fps=10, crf=0)
    path = video_file("count.mp4", videos.parent)
    kept: list[int] = []
    got = decode_frames(path, 4, 3, 4, -1, lambda n, image: kept.append(index_of(image)))
    assert got == 4 and kept == [6, 9, 12, 15]  # index ≥ 4 and index % 3 == 0
    kept.clear()
    assert decode_frames(path, 10, 2, 0, 7, lambda n, image: kept.append(index_of(image))) == 4
    assert kept == [0, 2, 4, 6]  # up to extract_to_frame 7
    assert needed_source_frames(4, 3, 4, -1) == 16 and needed_source_frames(10, 2, 0, 7) == 8
    assert probe(path, enough=5).frames == 5  # counting stops at what the animation needs
    settings = AnimationSettings(animation_mode="Video Input", video_init_path="count.mp4", max_frames=50)
    assert fit_max_frames(settings, videos.parent) == 20
    assert fit_max_frames(replace(settings, extract_nth_frame=7, extract_from_frame=1), videos.parent) == 2


def test_only_local_files_in_the_videos_folder_are_read(videos, tmp_path):
    (tmp_path / "secret.mp4").write_bytes(b"x")
    for given, message in (
        ("https://deforum.github.io/a1/V1.mp4", "is a URL"),
        ("file://" + str(tmp_path / "secret.mp4"), "is a URL"),
        ("../../secret.mp4", "is not in"),
        (str(tmp_path / "secret.mp4"), "is not in"),
        ("missing.mp4", "there is no file"),
    ):
        with pytest.raises(InvalidRequest, match=f"^video_init_path: .*{message}"):
            video_file(given, videos.parent)
    with pytest.raises(InvalidRequest, match="video_init_path: is a URL"):
        check_settings(AnimationSettings(animation_mode="Video Input", video_init_path="http://x/v.mp4"))


def test_hostile_video_files_are_refused_before_much_is_decoded(videos):
    (videos / "notes.mp4").write_text("not a video at all\n" * 50)
    (videos / "noise.mkv").write_bytes(np.random.default_rng(1).bytes(20_000))
    for name in ("notes.mp4", "noise.mkv"):
        with pytest.raises(
            InvalidRequest, match="video_init_path: .*not a readable video|has no video stream"
        ):
            probe(videos / name)
    write_mp4(numbered_frames(12), videos / "whole.mp4", fps=10)
    data = (videos / "whole.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is written last: gone
    with pytest.raises(InvalidRequest, match="video_init_path: cut.mp4 is not a readable video"):
        probe(videos / "cut.mp4")
    # A raw YUV4MPEG2 file declaring 100000×100000 frames: refused from its header, nothing decoded.
    (videos / "huge.y4m").write_bytes(
        b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(64)
    )
    assert 100000 * 100000 > MAX_SOURCE_PIXELS
    with pytest.raises(InvalidRequest, match="over 16,777,216 pixels|not a readable video"):
        probe(videos / "huge.y4m")
    # Frames cut off part way: what decodes is used, and an animation that needs more says so.
    header = b"YUV4MPEG2 W64 H64 F10:1 Ip A1:1 C420jpeg\n"
    frame = b"FRAME\n" + bytes(64 * 64 * 3 // 2)
    (videos / "short.y4m").write_bytes(header + frame * 5 + frame[:100])
    settings = AnimationSettings(
        **SMALL, animation_mode="Video Input", video_init_path="short.y4m", max_frames=8
    )
    with pytest.raises(InvalidRequest, match="only 5 of the 8 frames needed could be decoded"):
        VideoFrames(settings, videos.parent, videos.parent / "input").extract()


# ----- rendering with the demo model --------------------------------------------------------------------------


class _DataEngine:
    """The session's engine, seen with another data folder (where this test's videos are)."""

    def __init__(self, engine, data_dir: Path) -> None:
        self._engine, self.settings = engine, replace_data_dir(engine.settings, data_dir)

    def __getattr__(self, name):
        return getattr(self._engine, name)


def replace_data_dir(settings, data_dir: Path):
    return settings.model_copy(update={"data_dir": data_dir})


def test_video_input_frames_start_from_their_video_frames(engine, videos, tmp_path):
    source = [disc(20 + 8 * i) for i in range(4)]
    write_mp4(source, videos / "moving.mp4", fps=10, crf=0)
    settings = AnimationSettings(
        **SMALL,
        max_frames=3,
        animation_mode="Video Input",
        video_init_path="moving.mp4",
        strength_schedule="0:(0.9)",
        noise_schedule="0:(0)",
        color_coherence="None",
    )
    check_settings(settings)
    renderer = AnimationRenderer(_DataEngine(engine, videos.parent), settings, 3, tmp_path / "frames")
    assert [unit.frames for unit in renderer.units] == [(0,), (1,), (2,)]
    for index in range(3):
        renderer.render_unit(index)
    for index in range(3):
        made = Image.open(frame_path(tmp_path / "frames", index)).convert("RGB")
        distances = [difference(made, frame) for frame in source[:3]]
        assert int(np.argmin(distances)) == index  # each frame is nearest its own video frame
        text = read_infotext(frame_path(tmp_path / "frames", index))
        assert f"Animation init: input video frame {index}" in text and "Animation motion" not in text


def test_hybrid_composite_blends_the_video_frame_in_and_motion_follows_the_video(engine, videos, tmp_path):
    source = [disc(20 + 8 * i) for i in range(3)]
    write_mp4(source, videos / "moving.mp4", fps=10, crf=0)
    matrix = video_matrix(source[0], source[1], "Affine")
    assert matrix.shape == (2, 3)
    settings = AnimationSettings(
        **SMALL,
        max_frames=3,
        video_init_path="moving.mp4",
        hybrid_composite="Normal",
        hybrid_comp_alpha_schedule="0:(1)",  # the previous frame replaced by the video frame
        hybrid_motion="Optical Flow",
        hybrid_flow_method="Farneback",
        strength_schedule="0:(0.9)",
        noise_schedule="0:(0)",
        color_coherence="None",
        zoom="0:(1.0)",
    )
    check_settings(settings)
    renderer = AnimationRenderer(_DataEngine(engine, videos.parent), settings, 3, tmp_path / "frames")
    for index in range(len(renderer.units)):
        renderer.render_unit(index)
    for index in (1, 2):
        made = Image.open(frame_path(tmp_path / "frames", index)).convert("RGB")
        assert int(np.argmin([difference(made, frame) for frame in source])) == index
    with pytest.raises(InvalidRequest, match="hybrid_comp_alpha_schedule: is 2 at frame 0"):
        AnimationRenderer(
            _DataEngine(engine, videos.parent),
            replace(settings, hybrid_comp_alpha_schedule="0:(2)"),
            3,
            tmp_path / "bad",
        )
