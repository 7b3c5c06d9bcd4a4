"""Deforum's 3D mode without torch: its settings (names and defaults as Deforum's interface shows them), the
camera of every frame computed from the schedules, and their checks.

The camera of frame t is what Deforum's `anim_frame_warp_3d` (scripts/deforum_helpers/animation.py) reads at
t: translation x/y/z, rotation 3D x/y/z (degrees), the field of view (degrees), near, far and the depth
aspect ratio. The warp itself (torch) is engine/animation/warp3d.py; depth comes from a depth-estimation model
in `models/Deforum` (engine/animation/depth.py).

`depth_algorithm` says which kind of depth Deforum's transform expects ("Midas…": inverse depth, near is
large; "Zoe", "AdaBins", "Leres": depth, far is large). Salon takes the kind from the installed model itself
(DPT and Depth Anything give inverse depth, ZoeDepth and metric Depth Anything give depth) and reads the
setting for the file's sake; Deforum's "(old)" algorithms, which blend MiDaS with AdaBins by `midas_weight`,
are refused. `midas_weight` only acts in those, in Deforum too: Salon reads and keeps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import InvalidRequest
from engine.animation.schedules import ScheduleError, schedule_values

PADDING_MODES = ("border", "reflection", "zeros")  # torch grid_sample's padding_mode
SAMPLING_MODES = ("bicubic", "bilinear", "nearest")  # and its mode
DEPTH_ALGORITHMS = ("Midas-3-Hybrid", "Midas-3.1-BeitLarge", "Zoe", "AdaBins", "Leres")
OLD_DEPTH_ALGORITHMS = ("Midas+AdaBins (old)", "Zoe+AdaBins (old)")
# Salon field → the camera value it schedules (the 2D translation schedules are shared with 2D mode)
CAMERA_SCHEDULES = (
    ("translation_x", "translation_x"),
    ("translation_y", "translation_y"),
    ("translation_z", "translation_z"),
    ("rotation_3d_x", "rotation_x"),
    ("rotation_3d_y", "rotation_y"),
    ("rotation_3d_z", "rotation_z"),
    ("fov_schedule", "fov"),
    ("near_schedule", "near"),
    ("far_schedule", "far"),
    ("aspect_ratio_schedule", "aspect_ratio"),
)


@dataclass(frozen=True)
class Settings3D:
    """Deforum's 3D options with the values its interface shows (args.py); the base of AnimationSettings."""

    translation_z: str = "0: (1.75)"
    rotation_3d_x: str = "0: (0)"
    rotation_3d_y: str = "0: (0)"
    rotation_3d_z: str = "0: (0)"
    fov_schedule: str = "0: (70)"
    near_schedule: str = "0: (200)"
    far_schedule: str = "0: (10000)"
    aspect_ratio_schedule: str = "0: (1)"
    aspect_ratio_use_old_formula: bool = False  # width / height instead of the schedule
    use_depth_warping: bool = True  # False: a flat depth (no depth model needed)
    depth_algorithm: str = "Midas-3-Hybrid"
    midas_weight: float = 0.2
    padding_mode: str = "border"
    sampling_mode: str = "bicubic"
    save_depth_maps: bool = False

    @property
    def needs_depth_model(self) -> bool:
        return self.use_depth_warping or self.save_depth_maps


@dataclass(frozen=True)
class Camera:
    """One frame's camera move, as Deforum reads it from its schedules (degrees; translation in Deforum's
    units, divided by 200 in the warp)."""

    translation_x: float = 0.0
    translation_y: float = 0.0
    translation_z: float = 0.0
    rotation_x: float = 0.0
    rotation_y: float = 0.0
    rotation_z: float = 0.0
    fov: float = 70.0
    near: float = 200.0
    far: float = 10000.0
    aspect_ratio: float = 1.0

    def as_text(self) -> str:
        """The camera in a frame's infotext: every value, exactly."""
        return " ".join(f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__)


def check_3d(settings) -> None:
    """The 3D options' values (the schedules are checked by `plan_cameras`); InvalidRequest names the option."""
    for option, allowed in (("padding_mode", PADDING_MODES), ("sampling_mode", SAMPLING_MODES)):
        if getattr(settings, option) not in allowed:
            raise InvalidRequest(option, f"{getattr(settings, option)!r} is not one of: {', '.join(allowed)}")
    if settings.depth_algorithm in OLD_DEPTH_ALGORITHMS:
        raise InvalidRequest(
            "depth_algorithm",
            f"{settings.depth_algorithm!r} (MiDaS blended with AdaBins) is not built in Salon; "
            f"use one of: {', '.join(DEPTH_ALGORITHMS)}",
        )
    if settings.depth_algorithm not in DEPTH_ALGORITHMS:
        raise InvalidRequest(
            "depth_algorithm", f"{settings.depth_algorithm!r} is not one of: {', '.join(DEPTH_ALGORITHMS)}"
        )
    weight = settings.midas_weight
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise InvalidRequest("midas_weight", f"{weight!r} is not a number")
    for option in ("aspect_ratio_use_old_formula", "use_depth_warping", "save_depth_maps"):
        if not isinstance(getattr(settings, option), bool):
            raise InvalidRequest(option, f"{getattr(settings, option)!r} is not true or false")


def inverse_depth(depth_algorithm: str) -> bool:
    """Whether Deforum's transform treats this algorithm's output as inverse depth (MiDaS: near is large)."""
    return depth_algorithm.lower().startswith("midas")


def plan_cameras(settings, seed: int) -> list[Camera]:
    """Every frame's camera from the schedules, as Deforum's keyframe series give them; a ScheduleError names
    the schedule and the frame of a value the warp cannot use."""
    check_3d(settings)
    n = settings.max_frames
    values = {
        field: schedule_values(getattr(settings, name), name, n, seed) for name, field in CAMERA_SCHEDULES
    }
    for frame in range(n):
        fov, near, far = values["fov"][frame], values["near"][frame], values["far"][frame]
        if not 0 < abs(fov) < 180:
            raise ScheduleError(
                "fov_schedule", f"is {fov:g} at frame {frame}; it must be from -180 to 180, not 0"
            )
        if near <= 0 or far <= near:
            raise ScheduleError(
                "near_schedule", f"near {near:g} and far {far:g} at frame {frame}: need 0 < near < far"
            )
        if not 0 < values["aspect_ratio"][frame] <= 100:
            raise ScheduleError(
                "aspect_ratio_schedule",
                f"is {values['aspect_ratio'][frame]:g} at frame {frame}; from 0 to 100",
            )
    cameras = [Camera(**{key: series[frame] for key, series in values.items()}) for frame in range(n)]
    if settings.aspect_ratio_use_old_formula:
        ratio = settings.width / settings.height
        cameras = [Camera(**{**c.__dict__, "aspect_ratio": ratio}) for c in cameras]
    return cameras
