"""Deforum's hybrid video basics in 2D mode: the input video's frames blended into the previous frame
(`hybrid_composite`) and the video's own motion applied to it (`hybrid_motion`), before each diffused frame.

As Deforum's render loop (scripts/deforum_helpers/render.py, hybrid_video.py), for diffused frame k after the
first, after the camera move: "Before Motion" composites, then the video's motion from its frame k−1 to k moves
the frame (Affine: OpenCV's `estimateAffinePartial2D`, Perspective: `findHomography` with RANSAC, both from SIFT
matches passing Lowe's ratio test at 0.75, the identity with 8 matches or fewer, warped with a reflected border;
Optical Flow: the dense flow between the two video frames, engine/animation/flow.py, × `hybrid_flow_factor_schedule`),
then "Normal" composites; "After Generation" composites the img2img result instead. Compositing without a mask is
`Image.blend(previous, video frame, alpha)` with alpha from `hybrid_comp_alpha_schedule`.

Built: those options. Refused by name (`NOT_BUILT`, read by engine/animation/deforum_files.py): composite
masks, motion from the previous image, the flow consistency check, the init image instead of the video, human
masks; and hybrid motion with diffusion cadence above 1 (Deforum moves the cadence frames too; Salon does not).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.flow import check_method, move_along, optical_flow
from engine.animation.schedules import schedule_values

COMPOSITES = ("None", "Normal", "Before Motion", "After Generation")
MOTIONS = ("None", "Optical Flow", "Perspective", "Affine")
# Deforum's hybrid options Salon does not build, each with the value that leaves it off.
NOT_BUILT: dict[str, Any] = {
    "hybrid_comp_mask_type": "None",
    "hybrid_motion_use_prev_img": False,
    "hybrid_flow_consistency": False,
    "hybrid_use_init_image": False,
    "hybrid_generate_human_masks": "None",
}


def uses_video(settings) -> bool:
    return settings.hybrid_composite != "None" or settings.hybrid_motion != "None"


def check_hybrid(settings) -> None:
    """The hybrid options in range (InvalidRequest names the option)."""
    if settings.hybrid_composite not in COMPOSITES:
        raise InvalidRequest(
            "hybrid_composite", f"{settings.hybrid_composite!r} is not one of: {', '.join(COMPOSITES)}"
        )
    if settings.hybrid_motion not in MOTIONS:
        raise InvalidRequest(
            "hybrid_motion", f"{settings.hybrid_motion!r} is not one of: {', '.join(MOTIONS)}"
        )
    if settings.hybrid_motion == "Optical Flow":
        check_method("hybrid_flow_method", settings.hybrid_flow_method, allow_none=False)
    if not uses_video(settings):
        return
    if settings.animation_mode != "2D":
        raise InvalidRequest("hybrid_composite", "hybrid video is built for 2D mode only")
    if settings.hybrid_motion != "None" and settings.diffusion_cadence > 1:
        raise InvalidRequest("hybrid_motion", "is not built with diffusion_cadence above 1 in Salon yet")


class Hybrid:
    """What hybrid video does to one animation's frames; `video` gives the input frame of an animation frame."""

    def __init__(self, settings, video, seed: int) -> None:
        self.settings = settings
        self.video = video
        n = settings.max_frames
        self.alpha = schedule_values(
            settings.hybrid_comp_alpha_schedule, "hybrid_comp_alpha_schedule", n, seed
        )
        self.flow_factor = schedule_values(
            settings.hybrid_flow_factor_schedule, "hybrid_flow_factor_schedule", n, seed
        )
        bad = [(i, v) for i, v in enumerate(self.alpha) if not 0 <= v <= 1]
        if bad:
            frame, value = bad[0]
            raise InvalidRequest(
                "hybrid_comp_alpha_schedule", f"is {value:g} at frame {frame}; it must be from 0 to 1"
            )

    def before_diffusion(self, moved: Image.Image, frame: int) -> Image.Image:
        """The moved previous frame of diffused frame `frame`, composited and moved as the video moves."""
        s = self.settings
        if s.hybrid_composite == "Before Motion":
            moved = self._composite(moved, frame)
        if s.hybrid_motion in ("Affine", "Perspective"):
            matrix = video_matrix(self.video.frame(frame - 1), self.video.frame(frame), s.hybrid_motion)
            moved = _warp_matrix(moved, matrix, s.hybrid_motion)
        elif s.hybrid_motion == "Optical Flow":
            flow = optical_flow(self.video.frame(frame - 1), self.video.frame(frame), s.hybrid_flow_method)
            moved = move_along(moved, flow, self.flow_factor[frame])
        if s.hybrid_composite == "Normal":
            moved = self._composite(moved, frame)
        return moved

    def after_generation(self, image: Image.Image, frame: int) -> Image.Image:
        if self.settings.hybrid_composite == "After Generation":
            return self._composite(image, frame)
        return image

    def _composite(self, image: Image.Image, frame: int) -> Image.Image:
        return Image.blend(image.convert("RGB"), self.video.frame(frame), self.alpha[frame])


class NoHybrid:
    """An animation without hybrid video: frames pass unchanged."""

    def before_diffusion(self, moved: Image.Image, frame: int) -> Image.Image:
        return moved

    def after_generation(self, image: Image.Image, frame: int) -> Image.Image:
        return image


def video_matrix(first: Image.Image, second: Image.Image, motion: str) -> np.ndarray:
    """Deforum's RANSAC matrix of the motion from `first` to `second` (2×3 Affine, 3×3 Perspective)."""
    import cv2

    identity = np.eye(3) if motion == "Perspective" else np.eye(3)[:2]
    grey = [cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY) for image in (first, second)]
    sift = cv2.SIFT_create()
    (points1, described1), (points2, described2) = (sift.detectAndCompute(g, None) for g in grey)
    if described1 is None or described2 is None or len(points1) < 2 or len(points2) < 2:
        return identity
    pairs = cv2.BFMatcher().knnMatch(described1, described2, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) <= 8:
        return identity
    source = np.float32([points1[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    target = np.float32([points2[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    if motion == "Perspective":
        matrix, _ = cv2.findHomography(source, target, cv2.RANSAC, 5.0)
    else:
        matrix, _ = cv2.estimateAffinePartial2D(source, target)
    return identity if matrix is None else matrix


def _warp_matrix(image: Image.Image, matrix: np.ndarray, motion: str) -> Image.Image:
    import cv2

    pixels = np.asarray(image.convert("RGB"))
    size = (pixels.shape[1], pixels.shape[0])
    if motion == "Perspective":
        moved = cv2.warpPerspective(pixels, matrix, size, borderMode=cv2.BORDER_REFLECT_101)
    else:
        moved = cv2.warpAffine(pixels, matrix, size, borderMode=cv2.BORDER_REFLECT_101)
    return Image.fromarray(moved)
