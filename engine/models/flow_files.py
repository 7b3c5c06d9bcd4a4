"""SD 3.5 and Flux checkpoints (flow-matching transformers): which family an entry is, read without weights.

No torch here: the queue asks this (`engine.validation.check_model_family`) before a job runs, the registry
for a model's native size, `salon models` for the family it lists. A diffusers folder says its family in
`model_index.json`'s `_class_name`; a single file of the transformer (SAI's SD3 layout `joint_blocks.…`, BFL's
Flux layout `double_blocks.…`) says it in its tensor names, with a `<name>.config/` diffusers folder beside it
giving the other components (text encoders, tokenizers, VAE, scheduler).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import SalonError

SD3 = "sd3"
FLUX = "flux"
FLOW_FAMILIES = (SD3, FLUX)
FLOW_PIPELINES = {"StableDiffusion3Pipeline": SD3, "FluxPipeline": FLUX}
FAMILY_NAMES = {SD3: "SD 3.5", FLUX: "Flux"}
FLOW_SIDE = 1024  # the square both families are trained at (their default size)


@dataclass(frozen=True)
class FlowKind:
    """A flow-matching checkpoint: its family ("sd3", "flux") and variant (SD3 "large"/"medium", Flux
    "dev"/"schnell"), which decide its defaults."""

    family: str
    variant: str

    @property
    def label(self) -> str:
        return f"{FAMILY_NAMES[self.family]} {self.variant}"


def sidecar_folder(path: Path) -> Path:
    """The `<name>.config/` diffusers folder beside a single file (the loader's convention)."""
    return path.with_name(path.stem + ".config")


def flow_kind(path: Path, is_folder: bool) -> FlowKind | None:
    """The flow family of a checkpoint file or diffusers folder, or None (SD 1.x, SDXL, unknown)."""
    if is_folder:
        return folder_kind(path)
    if path.suffix.lower() != ".safetensors":
        return None
    from engine.models.model_files import check_safetensors  # header only; no weights are read

    return header_kind(check_safetensors(path))


def entry_kind(entry: Any) -> FlowKind | None:
    """`flow_kind` of a registry `ModelEntry` (path, is_diffusers_folder); None where it cannot be read."""
    try:
        return flow_kind(entry.path, entry.is_diffusers_folder)
    except (OSError, ValueError, SalonError):  # an unreadable file is refused by the gate, not here
        return None


def folder_kind(folder: Path) -> FlowKind | None:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    family = FLOW_PIPELINES.get(str(index.get("_class_name", "")).replace("Img2Img", ""))
    if family is None:
        return None
    try:
        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if family == SD3:
        return FlowKind(SD3, "medium" if config.get("dual_attention_layers") else "large")
    return FlowKind(FLUX, "dev" if config.get("guidance_embeds", True) else "schnell")


def header_kind(header: dict[str, Any]) -> FlowKind | None:
    """From a single file's tensor names: SAI's SD3 (`joint_blocks`; `.attn2.` in MMDiT-X: medium) or BFL's
    Flux (`double_blocks`; `guidance_in`: dev), with or without the `model.diffusion_model.` prefix."""
    names = [n for n in header if n != "__metadata__"]
    if any("joint_blocks." in n for n in names):
        return FlowKind(SD3, "medium" if any(".x_block.attn2." in n for n in names) else "large")
    if any(n.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for n in names):
        return FlowKind(FLUX, "dev" if any("guidance_in." in n for n in names) else "schnell")
    return None
