"""Deforum's 3D mode: each frame the previous one is moved by the frame's camera through its depth
(engine/animation/warp3d.py), then made into the next frame as in 2D mode (colour match, contrast, noise,
img2img at 1 − strength, colour match again: `AnimationRenderer.diffuse_from`).

Depth is predicted from the image about to be moved, every frame, by the model in `models/Deforum`
(engine/animation/depth.py), or flat with `use_depth_warping` off; `save_depth_maps` writes each frame's depth
as a grey PNG in `<frames>/depth`. With diffusion cadence N the frames between two diffused ones are the last
diffused frame moved on frame by frame (Deforum also blends in the diffused frame before it, moved the same
way; Salon does not); the next diffused frame starts from the last of them, as in Deforum. Each frame's
infotext records its camera ("Animation 3D camera") and the depth model used; such a frame cannot be remade
from its infotext alone (remaking needs the same depth).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.animation.animate import AnimationRenderer, AnimationSettings
from engine.animation.camera3d import plan_cameras
from engine.animation.color_sample import ColorMatch
from engine.infotext import format_infotext, parse_infotext
from engine.requests import RunControl

_DEPTH_MODELS: dict[tuple, object] = {}  # the last depth model loaded, kept between a job's slices


def make_renderer(engine, settings: AnimationSettings, seed: int, folder: Path, depth_model=None):
    """The renderer for the settings' mode (3D: `AnimationRenderer3D`)."""
    if settings.animation_mode == "3D":
        return AnimationRenderer3D(engine, settings, seed, folder, depth_model)
    return AnimationRenderer(engine, settings, seed, folder)


def cached_depth_model(engine):
    """The engine's depth model from `models/Deforum`, loaded once per folder and device."""
    from engine.animation.depth import DepthEstimator
    from engine.animation.depth_files import find_depth_model

    found = find_depth_model(engine.settings.models_path)
    weights = sorted((p.name, p.stat().st_mtime_ns) for p in found.path.glob("*.safetensors"))
    key = (str(found.path), str(engine.device), tuple(weights))
    if key not in _DEPTH_MODELS:
        _DEPTH_MODELS.clear()
        allow = engine.settings.models.allow_links_outside
        _DEPTH_MODELS[key] = DepthEstimator(found, engine.device, allow)
    return _DEPTH_MODELS[key]


class AnimationRenderer3D(AnimationRenderer):
    """Renders a 3D animation's units (see the module's docstring)."""

    def __init__(
        self, engine, settings: AnimationSettings, seed: int, folder: Path, depth_model=None
    ) -> None:
        super().__init__(engine, settings, seed, folder)
        self.cameras = plan_cameras(settings, seed)
        self._depth_model = depth_model

    @property
    def depth_model(self):
        if self._depth_model is None and self.settings.needs_depth_model:
            self._depth_model = cached_depth_model(self.engine)
        return self._depth_model

    def move(self, image: Image.Image, frame: int) -> Image.Image:
        """`image` (the frame before `frame`) seen by frame `frame`'s camera; saves its depth map if asked."""
        from engine.animation.warp3d import depth_to_z, warp_3d

        s = self.settings
        depth = self.depth_model.predict(image) if self.depth_model is not None else None
        if depth is not None and s.save_depth_maps:
            from engine.animation.depth import depth_image
            from engine.infotext_files import save_image_with_infotext

            params = {
                "Animation": f"3D depth of frame {frame}",
                "Animation depth": self.depth_model.folder.path.name,
                "Size": f"{image.width}x{image.height}",
            }
            text = format_infotext(f"depth of frame {frame}", "", params)
            save_image_with_infotext(depth_image(depth), self.depth_path(frame), text)
        z = depth_to_z(depth, self.depth_model.inverse) if depth is not None and s.use_depth_warping else None
        return warp_3d(image, self.cameras[frame], z, s.padding_mode, s.sampling_mode)

    def depth_path(self, frame: int) -> Path:
        return self.folder / "depth" / f"{frame:05d}.png"

    def render_unit(self, index: int, control: RunControl | None = None) -> list[int]:
        unit = self.units[index]
        if unit.key == 0:
            return super().render_unit(index, control)
        self.folder.mkdir(parents=True, exist_ok=True)
        control = control or RunControl()
        image = self._load(unit.frames[0] - 1)
        for frame in unit.frames:
            image = self.move(image, frame)
            if frame == unit.key:  # already moved: diffused in place (the identity move)
                diffused, text = self.diffuse_from(image, np.eye(3), self.plan[frame], control)
                self._save(frame, diffused, text)
            else:
                self._save(frame, image, self._between_text(frame, frame - 1, None))
        return list(unit.frames)

    def _reference(self, match: ColorMatch) -> Image.Image:
        if match.moved_to is None:
            return super()._reference(match)
        key = (match.source, match.moved_to)
        if key not in self._references:
            image = self._load(match.source)
            for frame in range(match.source + 1, match.moved_to + 1):
                image = self.move(image, frame)
            self._references[key] = image
        return self._references[key]

    def _depth_name(self) -> str:
        model = self._depth_model
        return "flat" if model is None or not self.settings.use_depth_warping else model.folder.path.name

    def _with_camera(self, text: str, frame: int) -> str:
        info = parse_infotext(text)
        params = dict(info.params)
        version = params.pop("Version", None)
        for key in ("Animation motion", "Animation border"):
            params.pop(key, None)
        params["Animation 3D camera"] = self.cameras[frame].as_text()
        params["Animation 3D warp"] = f"padding {self.settings.padding_mode}, {self.settings.sampling_mode}"
        params["Animation depth"] = self._depth_name()
        if version:
            params["Version"] = version
        return format_infotext(info.prompt, info.negative_prompt, params)

    def _frame_text(self, infotext, plan, matrix, match=None) -> str:
        text = super()._frame_text(infotext, plan, matrix, match)
        return self._with_camera(text, plan.frame) if matrix is not None else text

    def _between_text(self, frame: int, before: int, after: int | None) -> str:
        return self._with_camera(super()._between_text(frame, before, after), frame)
