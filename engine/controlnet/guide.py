"""The ControlNet residuals of one denoising step: what the sampling loop's hook adds to the UNet.

Each unit whose guidance window holds the step (start ≤ step / steps ≤ end, as sd-webui-controlnet counts)
runs its ControlNet on the step's input with the step's text rows, and its residuals, scaled, are summed
over the units into diffusers' `down_block_additional_residuals` / `mid_block_additional_residual`.
Control modes follow sd-webui-controlnet: "Balanced" scales every residual by the weight; the two others
scale residual i of n by weight · 0.825^(12 − i) (SD 1.x's and 2.x's 13; SDXL keeps the first 10 of those 13);
"ControlNet is more important" also leaves the negative prompt's rows without residuals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from core.errors import InvalidRequest
from engine.controlnet.files import ControlNetCache, LoadedControlNet, check_fits, model_family
from engine.controlnet.preprocess import fitted
from engine.controlnet.unit_text import (
    infotext_params,
    missing_image_message,
    with_defaults,
    with_pixel_perfect,
)
from engine.models.loading import LoadedModel
from engine.models.registry import ModelKind, ModelRegistry
from engine.requests import ControlMode, ControlNetUnit

SOFT_BASE = 0.825  # sd-webui-controlnet's per-layer falloff of the non-balanced modes
SOFT_LAYERS = 13  # SD 1.x's residual count, which the falloff is written for


@dataclass
class ActiveUnit:
    """A unit with its loaded ControlNet and the image its preprocessor reads."""

    unit: ControlNetUnit
    control: LoadedControlNet
    image: Image.Image
    _hints: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def active_at(self, step: int, total: int) -> bool:
        fraction = step / max(total, 1)
        return self.unit.guidance_start <= fraction <= self.unit.guidance_end

    def hint(self, width: int, height: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The control image at width×height as a (1, 3, H, W) tensor in [0, 1], made once per size."""
        if (width, height) not in self._hints:
            pixels = np.asarray(fitted(self.unit, self.image, width, height), dtype=np.float32) / 255.0
            tensor = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
            self._hints[(width, height)] = tensor.to(device, dtype)
        return self._hints[(width, height)]


def layer_scales(unit: ControlNetUnit, count: int, sdxl: bool) -> list[float]:
    """The factor of each of `count` residuals (the down ones, then the middle one)."""
    if unit.control_mode is ControlMode.BALANCED:
        return [unit.weight] * count
    skipped = SOFT_LAYERS - count if sdxl else 0  # SDXL: the first `count` of SD's 13 factors
    return [unit.weight * SOFT_BASE ** float(count - 1 - i + skipped) for i in range(count)]


class ControlGuide:
    """The residual source of a run: `residuals` is called by the denoising loop at every step."""

    def __init__(self, units: list[ActiveUnit]) -> None:
        self.units = units

    def infotext(self) -> dict[str, str]:
        """sd-webui-controlnet's `ControlNet N` keys of the units."""
        return infotext_params([(a.unit, a.control.title) for a in self.units])

    def residuals(
        self,
        sample: torch.Tensor,
        t,
        step: int,
        total: int,
        text: dict[str, object],
        uncond_rows: int,
        latent_channels: int,
    ) -> dict[str, object]:
        """The UNet's extra keyword arguments at this step (empty when no unit is active)."""
        down: list[torch.Tensor] | None = None
        mid: torch.Tensor | None = None
        for active in self.units:
            if not active.active_at(step, total):
                continue
            unit_down, unit_mid = self._run(active, sample[:, :latent_channels], t, text, uncond_rows)
            down = unit_down if down is None else [a + b for a, b in zip(down, unit_down, strict=True)]
            mid = unit_mid if mid is None else mid + unit_mid
        if down is None:
            return {}
        return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}

    def _run(self, active: ActiveUnit, sample: torch.Tensor, t, text: dict[str, object], uncond_rows: int):
        control = active.control
        factor = control.hint_factor
        width, height = sample.shape[-1] * factor, sample.shape[-2] * factor
        hint = active.hint(width, height, sample.device, sample.dtype).expand(sample.shape[0], -1, -1, -1)
        kwargs = {"encoder_hidden_states": text["encoder_hidden_states"]}
        if "added_cond_kwargs" in text:
            kwargs["added_cond_kwargs"] = text["added_cond_kwargs"]
        with torch.no_grad():
            down, mid = control.model(sample, t, controlnet_cond=hint, return_dict=False, **kwargs)
        residuals = [*down, mid]
        scales = layer_scales(active.unit, len(residuals), control.sdxl)
        scaled = [r * s for r, s in zip(residuals, scales, strict=True)]
        if active.unit.control_mode is ControlMode.CONTROL and uncond_rows:
            keep = torch.ones(sample.shape[0], 1, 1, 1, device=sample.device, dtype=sample.dtype)
            keep[:uncond_rows] = 0
            scaled = [r * keep for r in scaled]
        return scaled[:-1], scaled[-1]


def prepare_guide(
    registry: ModelRegistry,
    cache: ControlNetCache,
    model: LoadedModel,
    units: Sequence[ControlNetUnit],
    init_image: Image.Image | None,
    target: tuple[int, int],
) -> ControlGuide | None:
    """The guide of a request's units, their ControlNets loaded and checked against the model; None without
    units. A unit without its own image reads `init_image` (img2img's input); a pixel-perfect unit's processor
    resolution comes from its image and `target`, the request's (width, height), as the extension's does
    (a hires pass reuses it)."""
    if not units:
        return None
    active = []
    for number, given in enumerate(units):
        unit = with_defaults(given, f"controlnet unit {number}")
        image = unit.image if unit.image is not None else init_image
        if image is None:
            raise InvalidRequest("control_image", missing_image_message(number))
        unit = with_pixel_perfect(unit, image.size, target)
        entry = registry.find_fresh(ModelKind.CONTROLNET, unit.model)
        loaded = cache.get(entry, registry.short_hash(entry), model.device, model.dtype)
        check_fits(loaded, model.unet, model.name, model_family(model))
        active.append(ActiveUnit(unit, loaded, image))
    return ControlGuide(active)
