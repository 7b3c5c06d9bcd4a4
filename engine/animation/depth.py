"""Depth of a frame for 3D animation: the depth-estimation model from `models/Deforum`
(engine/animation/depth_files.py says which) loaded offline with transformers' `AutoModelForDepthEstimation`
after every weight file passed the safetensors gate, run on the previous frame and resized to the frame's size
(bicubic, as Deforum resizes MiDaS's output). Depth maps are saved as 8-bit greys, each normalised to its own
range (Deforum normalises by the range seen so far in the run, which a resumed job could not repeat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.depth_files import OPTION, DepthModelFolder, depth_folder, find_depth_model
from engine.models.model_gate import ModelGate


class DepthEstimator:
    """A loaded depth model: `predict(image)` gives its raw output at the image's size, (height, width)."""

    def __init__(
        self, found: DepthModelFolder, device: torch.device | str = "cpu", allow_links: bool = False
    ):
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        gate = ModelGate([found.path.parent], allow_links_outside=allow_links)
        refusal = gate.folder_refusal(found.path)
        if refusal is not None:
            raise InvalidRequest(OPTION, f"{found.path.name} cannot be used: {refusal}")
        self.folder = found
        self.device = torch.device(device)
        try:
            self.processor = AutoImageProcessor.from_pretrained(found.path, local_files_only=True)
            self.model = AutoModelForDepthEstimation.from_pretrained(
                found.path, local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise InvalidRequest(OPTION, f"{found.path.name} does not load: {exc}") from None
        self.model.to(self.device).eval().requires_grad_(False)

    @property
    def inverse(self) -> bool:
        return self.folder.inverse

    @torch.no_grad()
    def predict(self, image: Image.Image) -> torch.Tensor:
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        depth = self.model(**inputs).predicted_depth.to(torch.float32)
        resized = torch.nn.functional.interpolate(
            depth.reshape(1, 1, *depth.shape[-2:]), size=(image.height, image.width), mode="bicubic"
        )
        return resized[0, 0].cpu()


def load_depth_model(models_path: Path, device: torch.device | str = "cpu", allow_links: bool = False):
    """The depth model in `models/Deforum`, loaded; InvalidRequest names the folder when there is none."""
    return DepthEstimator(find_depth_model(models_path), device, allow_links)


def depth_image(depth: torch.Tensor) -> Image.Image:
    """A depth map as an 8-bit grey image, its lowest value black and its highest white."""
    values = depth.detach().to(torch.float64).cpu().numpy()
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / max(1e-8, high - low) * 255
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8)).convert("RGB")


__all__ = ["DepthEstimator", "depth_folder", "depth_image", "load_depth_model"]
