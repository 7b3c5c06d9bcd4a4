"""The animation options of optical-flow cadence, video input and hybrid video (Deforum's names and defaults),
kept apart from engine/animation/animate.py: `AnimationSettings` inherits them, and its check calls
`check_video_settings`. The work itself is in flow.py, video_input.py and hybrid.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidRequest
from engine.animation.flow import check_method
from engine.animation.hybrid import Hybrid, NoHybrid, check_hybrid, uses_video
from engine.animation.video_input import VideoFrames, check_video_options


@dataclass(frozen=True)
class VideoOptions:
    """Deforum's keys: cadence frames moved along the flow between diffused frames (None: a cross-fade), the
    input video (a file in the data folder's videos/ folder) and its extraction, and hybrid compositing and
    motion."""

    optical_flow_cadence: str = "None"  # None, DIS Medium, DIS Fine, Farneback (RAFT is refused)
    video_init_path: str = ""
    extract_nth_frame: int = 1
    extract_from_frame: int = 0
    extract_to_frame: int = -1  # −1: to the end
    hybrid_composite: str = "None"  # None, Normal, Before Motion, After Generation
    hybrid_comp_alpha_schedule: str = "0:(0.5)"
    hybrid_motion: str = "None"  # None, Optical Flow, Perspective, Affine
    hybrid_flow_method: str = "DIS Medium"  # Deforum's default is RAFT, which Salon refuses
    hybrid_flow_factor_schedule: str = "0:(1)"


def needs_video(settings) -> bool:
    """Whether the animation reads an input video (video input mode, or hybrid video in 2D)."""
    return settings.animation_mode == "Video Input" or (
        settings.animation_mode == "2D" and uses_video(settings)
    )


def check_video_settings(settings) -> None:
    """The options of this module in range; InvalidRequest names the option (the file is checked by the job)."""
    if not isinstance(settings.optical_flow_cadence, str):
        raise InvalidRequest(
            "optical_flow_cadence", f"{settings.optical_flow_cadence!r} is not a method name"
        )
    check_method("optical_flow_cadence", settings.optical_flow_cadence)
    check_hybrid(settings)
    if needs_video(settings):
        check_video_options(settings)


def video_source(settings, engine, frames_folder: Path) -> VideoFrames | None:
    """The input frames of an animation that needs them (decoded into `<frames>-input/` beside its frames)."""
    if not needs_video(settings):
        return None
    return VideoFrames(
        settings, engine.settings.data_dir, frames_folder.with_name(frames_folder.name + "-input")
    )


def hybrid_of(settings, video: VideoFrames | None, seed: int) -> Hybrid | NoHybrid:
    """What hybrid video does to a 2D animation's diffused frames (nothing, without it)."""
    if video is None or settings.animation_mode != "2D":
        return NoHybrid()
    return Hybrid(settings, video, seed)
