"""ControlNet models from `models/ControlNet`: which base model a file is for, and loading it (offline).

sd-webui-controlnet's single files (lllyasviel's `control_model.*` layout, or diffusers' layout in one file)
load through diffusers' `ControlNetModel.from_single_file` with the configs shipped in `engine/configs` (or a
`<name>.config/` folder with a `config.json` beside the file, for other architectures); diffusers folders
(`config.json` + weights) load as they are. Every weight file passes the safetensors gate first. A ControlNet
made for another base model (SDXL for an SD 1.x checkpoint, or an SD 2.x one) is refused before it runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.errors import InvalidRequest
from engine.configs import CONTROLNET_SD15_CONFIG, CONTROLNET_SDXL_CONFIG
from engine.models.model_files import check_safetensors, load_safetensors
from engine.models.registry import ModelEntry

log = logging.getLogger(__name__)

OPTION = "controlnet"
_CONTROL_KEYS = ("zero_convs.", "controlnet_down_blocks.")  # what every ControlNet has, in either layout
_SDXL_KEYS = ("label_emb.", "add_embedding.")  # SDXL's pooled-text and size embedding


@dataclass
class LoadedControlNet:
    """A ControlNet in memory, with its registry entry and the hash its infotext title carries."""

    entry: ModelEntry
    hash: str
    model: Any  # diffusers.ControlNetModel
    sdxl: bool

    @property
    def title(self) -> str:
        """sd-webui-controlnet's "name [hash]"."""
        return f"{self.entry.name} [{self.hash}]"

    @property
    def hint_factor(self) -> int:
        """Pixels of control image per latent pixel: the conditioning embedding's downsampling (8 in SD)."""
        return 2 ** (len(self.model.config.conditioning_embedding_out_channels) - 1)


def header_family(header: Mapping[str, Any], name: str) -> bool:
    """Whether a single file's safetensors header is an SDXL ControlNet (False: SD 1.x/2.x); refuses files
    that are no ControlNet (a LoRA, a T2I adapter, a checkpoint put in the wrong folder)."""
    keys = [k for k in header if k != "__metadata__"]
    if not any(part in key for key in keys for part in _CONTROL_KEYS):
        raise InvalidRequest(
            OPTION,
            f"{name} is not a ControlNet model (it has no zero_convs / controlnet_down_blocks weights)",
        )
    return any(part in key for key in keys for part in _SDXL_KEYS)


def load_controlnet(
    entry: ModelEntry, model_hash: str, device: torch.device, dtype: torch.dtype
) -> LoadedControlNet:
    """Load `entry` (a single file or a diffusers folder) onto `device` in `dtype`, in eval mode."""
    from diffusers import ControlNetModel

    if entry.is_diffusers_folder:
        for weights in entry.path.rglob("*.safetensors"):
            check_safetensors(weights)
        model = ControlNetModel.from_pretrained(
            entry.path, local_files_only=True, use_safetensors=True, torch_dtype=dtype
        )
    else:
        model = _from_single_file(entry, dtype)
    model.to(device).eval().requires_grad_(False)
    sdxl = model.config.addition_embed_type == "text_time"
    log.info("loaded ControlNet %s [%s] (%s)", entry.name, model_hash, "SDXL" if sdxl else "SD1")
    return LoadedControlNet(entry, model_hash, model, sdxl)


def _from_single_file(entry: ModelEntry, dtype: torch.dtype):
    """A single file through diffusers' ControlNet key conversion (plus SDXL's `label_emb`, which it leaves
    out), loaded strictly: a file that does not match its config is refused, naming a key that differs."""
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    sdxl = header_family(check_safetensors(entry.path), entry.name)
    config = json.loads((_single_file_config(entry.path, sdxl) / "config.json").read_text(encoding="utf-8"))
    state = load_safetensors(entry.path)
    model = ControlNetModel.from_config(config)
    try:
        converted = convert_controlnet_checkpoint(state, config)
        for index, linear in ((0, "linear_1"), (2, "linear_2")):
            for leaf in ("weight", "bias"):
                for prefix in ("control_model.", ""):
                    if f"{prefix}label_emb.0.{index}.{leaf}" in state:
                        converted[f"add_embedding.{linear}.{leaf}"] = state[
                            f"{prefix}label_emb.0.{index}.{leaf}"
                        ]
        model.load_state_dict({k: v for k, v in converted.items() if v is not None}, strict=True)
    except (RuntimeError, KeyError, ValueError, IndexError) as exc:
        first = str(exc).split("\n\t", 2)[1][:300] if "\n\t" in str(exc) else str(exc)[:300]
        raise InvalidRequest(
            OPTION,
            f"{entry.name} does not match the {'SDXL' if sdxl else 'SD 1.x'} ControlNet layout "
            f"(made for another base model?): {first}",
        ) from None
    return model if dtype == torch.float32 else model.to(dtype=dtype)


def _single_file_config(path: Path, sdxl: bool) -> Path:
    sidecar = path.with_name(path.stem + ".config")
    if (sidecar / "config.json").is_file():
        return sidecar
    return CONTROLNET_SDXL_CONFIG if sdxl else CONTROLNET_SD15_CONFIG


def check_fits(control: LoadedControlNet, unet: Any, model_name: str, sdxl: bool) -> None:
    """Refuse a ControlNet made for another base model than the checkpoint's UNet."""
    if control.sdxl != sdxl:
        family = "SDXL" if control.sdxl else "SD 1.x"
        raise InvalidRequest(
            OPTION,
            f"{control.entry.name} is an {family} ControlNet; the model {model_name} is "
            f"{'SDXL' if sdxl else 'SD 1.x'}: choose a ControlNet made for it",
        )
    ours, theirs = control.model.config, unet.config
    for key in ("cross_attention_dim", "block_out_channels"):
        if _listed(getattr(ours, key)) != _listed(getattr(theirs, key)):
            raise InvalidRequest(
                OPTION,
                f"{control.entry.name} does not fit the model {model_name} ({key} "
                f"{getattr(ours, key)} vs {getattr(theirs, key)}): it was made for another base model",
            )


def _listed(value: object) -> object:
    return list(value) if isinstance(value, (list, tuple)) else value


class ControlNetCache:
    """Loaded ControlNets by entry (a file changed on disk is a new entry), kept while they are used."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._loaded: dict[tuple[ModelEntry, torch.device, torch.dtype], LoadedControlNet] = {}

    def get(self, entry: ModelEntry, model_hash: str, device: torch.device, dtype: torch.dtype):
        key = (entry, device, dtype)
        if key not in self._loaded:
            while len(self._loaded) >= self.keep:
                self._loaded.pop(next(iter(self._loaded)))
            self._loaded[key] = load_controlnet(entry, model_hash, device, dtype)
        return self._loaded[key]
