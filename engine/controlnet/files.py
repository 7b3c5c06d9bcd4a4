"""ControlNet models from `models/ControlNet`: which base model a file is for, and loading it (offline).

sd-webui-controlnet's single files (lllyasviel's `control_model.*` layout, or diffusers' layout in one file)
load through diffusers' `ControlNetModel.from_single_file` with the configs shipped in `engine/configs` (or a
`<name>.config/` folder with a `config.json` beside the file, for other architectures); diffusers folders
(`config.json` + weights) load as they are. Every weight file passes the safetensors gate first.

Each ControlNet is of a family, as its base model: SDXL (the pooled-text and size embedding), SD 2.x (linear
projections into its transformers, as SD 2's UNet: sd-webui-controlnet's `cldm_v21.yaml`, 1024-wide cross
attention) or SD 1.x (convolutions there, 768 wide). One made for another family than the checkpoint's is
refused by name before it runs.
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
from engine.configs import CONTROLNET_SD2_CONFIG, CONTROLNET_SD15_CONFIG, CONTROLNET_SDXL_CONFIG
from engine.models.model_files import check_safetensors, load_safetensors
from engine.models.registry import ModelEntry

log = logging.getLogger(__name__)

OPTION = "controlnet"
_CONTROL_KEYS = ("zero_convs.", "controlnet_down_blocks.")  # what every ControlNet has, in either layout
_SDXL_KEYS = ("label_emb.", "add_embedding.")  # SDXL's pooled-text and size embedding
SD1, SD2, SDXL = "sd1", "sd2", "sdxl"
FAMILY_NAMES = {SD1: "SD 1.x", SD2: "SD 2.x", SDXL: "SDXL"}
_CONFIGS = {SD1: CONTROLNET_SD15_CONFIG, SD2: CONTROLNET_SD2_CONFIG, SDXL: CONTROLNET_SDXL_CONFIG}


@dataclass
class LoadedControlNet:
    """A ControlNet in memory, with its registry entry and the hash its infotext title carries."""

    entry: ModelEntry
    hash: str
    model: Any  # diffusers.ControlNetModel
    family: str  # SD1, SD2 or SDXL

    @property
    def sdxl(self) -> bool:
        return self.family == SDXL

    @property
    def title(self) -> str:
        """sd-webui-controlnet's "name [hash]"."""
        return f"{self.entry.name} [{self.hash}]"

    @property
    def hint_factor(self) -> int:
        """Pixels of control image per latent pixel: the conditioning embedding's downsampling (8 in SD)."""
        return 2 ** (len(self.model.config.conditioning_embedding_out_channels) - 1)


def header_family(header: Mapping[str, Any], name: str) -> str:
    """The family of a single file's safetensors header: SDXL, SD2 (its transformers' `proj_in` is a linear
    layer: a 2-D weight) or SD1 (a 1×1 convolution); refuses files that are no ControlNet (a LoRA, a T2I
    adapter, a checkpoint put in the wrong folder)."""
    keys = [k for k in header if k != "__metadata__"]
    if not any(part in key for key in keys for part in _CONTROL_KEYS):
        raise InvalidRequest(
            OPTION,
            f"{name} is not a ControlNet model (it has no zero_convs / controlnet_down_blocks weights)",
        )
    if any(part in key for key in keys for part in _SDXL_KEYS):
        return SDXL
    linear = any(key.endswith("proj_in.weight") and len(header[key].get("shape", ())) == 2 for key in keys)
    return SD2 if linear else SD1


def config_family(config: Any) -> str:
    """The family of a diffusers ControlNet config (as `header_family` decides for a file)."""
    if config.addition_embed_type == "text_time":
        return SDXL
    return SD2 if config.use_linear_projection else SD1


def model_family(model: Any) -> str:
    """The ControlNet family a loaded checkpoint takes (engine.models.loading.LoadedModel)."""
    return SDXL if model.sdxl else SD2 if model.sd2 else SD1


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
    family = config_family(model.config)
    log.info("loaded ControlNet %s [%s] (%s)", entry.name, model_hash, FAMILY_NAMES[family])
    return LoadedControlNet(entry, model_hash, model, family)


def _from_single_file(entry: ModelEntry, dtype: torch.dtype):
    """A single file through diffusers' ControlNet key conversion (plus SDXL's `label_emb`, which it leaves
    out), loaded strictly: a file that does not match its config is refused, naming a key that differs."""
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    family = header_family(check_safetensors(entry.path), entry.name)
    config = json.loads((_single_file_config(entry.path, family) / "config.json").read_text(encoding="utf-8"))
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
            f"{entry.name} does not match the {FAMILY_NAMES[family]} ControlNet layout "
            f"(made for another base model?): {first}",
        ) from None
    return model if dtype == torch.float32 else model.to(dtype=dtype)


def _single_file_config(path: Path, family: str) -> Path:
    sidecar = path.with_name(path.stem + ".config")
    if (sidecar / "config.json").is_file():
        return sidecar
    return _CONFIGS[family]


def check_fits(control: LoadedControlNet, unet: Any, model_name: str, family: str) -> None:
    """Refuse a ControlNet made for another base model (`family`: the checkpoint's) than the checkpoint's UNet."""
    if control.family != family:
        raise InvalidRequest(
            OPTION,
            f"{control.entry.name} is an {FAMILY_NAMES[control.family]} ControlNet; the model {model_name} is "
            f"{FAMILY_NAMES[family]}: choose a ControlNet made for it",
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
