"""One `.safetensors` file for a checkpoint whose design has no A1111 layout (the demo model's text-conditioned
UNet): every component's diffusers weights under its component name (`unet.conv_in.weight`,
`text_encoder.text_model.…`, `vae.…`), marked in the metadata, with its diffusers configs in the
`<name>.config/` folder beside it (as for other single files of designs beyond SD 1.5 and SDXL).

Salon loads such a file as it loads any single file; A1111 cannot (it has no loader for these designs at all).
A model A1111's layout can hold is always written in A1111's layout instead (engine/models/ldm_conversion.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from core.errors import InvalidRequest
from core.files import atomic_write_with

LAYOUT_KEY = "salon_layout"  # in the metadata: "diffusers"
LAYOUT = "diffusers"
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def is_diffusers_file(header: Mapping[str, Any]) -> bool:
    """Whether a checked safetensors header (engine.models.model_files.check_safetensors) is this layout."""
    metadata = header.get("__metadata__") or {}
    return isinstance(metadata, dict) and metadata.get(LAYOUT_KEY) == LAYOUT


def save_diffusers_file(components: Mapping[str, Any], path: Path, metadata: Mapping[str, str]) -> Path:
    """Write the networks of `components` (a pipeline's) into one file, atomically."""
    from safetensors.torch import save_file

    tensors = {
        f"{name}.{key}": value.detach().to("cpu").contiguous()
        for name in COMPONENTS
        if isinstance(components.get(name), torch.nn.Module)
        for key, value in components[name].state_dict().items()
    }
    marked = {**metadata, LAYOUT_KEY: LAYOUT}
    return atomic_write_with(path, lambda temp: save_file(tensors, str(temp), metadata=marked))


def load_diffusers_file(path: Path, dtype: torch.dtype):
    """The pipeline of such a file: each network built from the sidecar's config and given the file's weights
    (every weight must fit: a missing or unexpected one is refused), the tokenizer shipped with Salon.
    Returns (pipeline, sdxl)."""
    from diffusers import (
        AutoencoderKL,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from engine.configs import CLIP_TOKENIZER

    configs = path.with_name(path.stem + ".config")
    if not (configs / "model_index.json").is_file():
        raise InvalidRequest("model", f"{path.name} needs its configs in {configs.name}/ beside it")
    index = json.loads((configs / "model_index.json").read_text(encoding="utf-8"))
    sdxl = "XL" in str(index.get("_class_name", ""))
    weights = load_file(str(path))
    parts: dict[str, Any] = {
        "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")),
        "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")),
        "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")),
        "tokenizer": CLIPTokenizer.from_pretrained(CLIP_TOKENIZER),
    }
    if sdxl:
        config = CLIPTextConfig.from_pretrained(configs / "text_encoder_2")
        parts["text_encoder_2"] = CLIPTextModelWithProjection(config)
        parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, pad_token="!")
    for name in COMPONENTS:
        if name in parts:
            state = {k[len(name) + 1 :]: v for k, v in weights.items() if k.startswith(name + ".")}
            try:
                parts[name].load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise InvalidRequest(
                    "model", f"{path.name}: its {name} does not fit its config: {exc}"
                ) from None
            parts[name].to(dtype)
    parts["scheduler"] = _scheduler(configs, index)
    cls = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    extra = (
        {} if sdxl else {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    )
    return cls(**parts, **extra), sdxl


def _scheduler(configs: Path, index: Mapping[str, Any]):
    """The scheduler the configs name (a diffusers class), from its saved config."""
    import diffusers

    name = (index.get("scheduler") or [None, "PNDMScheduler"])[1]
    cls = getattr(diffusers, str(name), None)
    if cls is None or not str(name).endswith("Scheduler"):
        raise InvalidRequest("model", f"unknown scheduler {name!r} in {configs.name}/model_index.json")
    return cls.from_config(cls.load_config(configs / "scheduler"))
