"""Loading SD 3.5 and Flux checkpoints through diffusers' own pipelines, offline.

A diffusers folder (`model_index.json` says `StableDiffusion3Pipeline` or `FluxPipeline`) loads as it is. A
single file of the transformer (SAI's SD3 layout, BFL's Flux layout; diffusers' `from_single_file` converts
it) needs a `<name>.config/` diffusers folder beside it with the other components: text encoders, tokenizers,
VAE, scheduler, and the transformer's `config.json`. The T5 tokenizer cannot be shipped with Salon, so a
folder without one is refused with the files it needs. Every weight file passes the safetensors gate first.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from core.errors import InvalidRequest
from engine.configs import CLIP_TOKENIZER
from engine.models.flow_files import FLUX, SD3, FlowKind, folder_kind, header_kind, sidecar_folder
from engine.models.model_files import check_safetensors

# The tokenizer slots of each family: (CLIP slots Salon can fill with its shipped tokenizer, the T5 slot).
_CLIP_SLOTS = {SD3: ("tokenizer", "tokenizer_2"), FLUX: ("tokenizer",)}
_T5_SLOT = {SD3: "tokenizer_3", FLUX: "tokenizer_2"}
_T5_FILES = ("tokenizer.json", "spiece.model")

log = logging.getLogger(__name__)


def load_flow_model(
    entry, device: torch.device, dtype: torch.dtype
) -> tuple[object, bool, torch.device, torch.dtype]:
    """A registry entry's pipeline on `device`, ready for inference: (pipe, sdxl=False, device, dtype) for
    `LoadedModel`. float16 becomes bfloat16 on a GPU that has it (T5 and Flux overflow in float16)."""
    if dtype == torch.float16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    pipe, kind = load_flow_pipeline(entry.path, entry.is_diffusers_folder, dtype)
    pipe.to(device)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            module.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    log.info("loaded model %s (%s) on %s as %s", entry.name, kind.label, device, dtype)
    return pipe, False, device, dtype


def pipeline_class(family: str, img2img: bool = False):
    """diffusers' pipeline for a family (txt2img, or img2img sharing the same components)."""
    from diffusers import (
        FluxImg2ImgPipeline,
        FluxPipeline,
        StableDiffusion3Img2ImgPipeline,
        StableDiffusion3Pipeline,
    )
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # loading progress belongs to Salon's own log, not stderr bars
    transformers_logging.disable_progress_bar()

    if family == SD3:
        return StableDiffusion3Img2ImgPipeline if img2img else StableDiffusion3Pipeline
    return FluxImg2ImgPipeline if img2img else FluxPipeline


def _transformer_class(family: str):
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    return SD3Transformer2DModel if family == SD3 else FluxTransformer2DModel


def load_flow_pipeline(path: Path, is_folder: bool, dtype: torch.dtype) -> tuple[object, FlowKind]:
    """The txt2img pipeline of a flow checkpoint (folder or transformer single file), and its kind."""
    if is_folder:
        kind = folder_kind(path)
        if kind is None:
            raise InvalidRequest("model", f"{path.name}: not an SD 3.5 or Flux diffusers folder")
        folder, transformer = path, None
    else:
        kind = header_kind(check_safetensors(path))
        if kind is None:
            raise InvalidRequest("model", f"{path.name}: not an SD 3.5 or Flux transformer file")
        folder = sidecar_folder(path)
        if not (folder / "model_index.json").is_file():
            raise InvalidRequest(
                "model",
                f"{path.name}: a {kind.label} transformer file needs the diffusers folder {folder.name}/ beside "
                f"it (model_index.json, transformer/config.json, the text encoders, tokenizers, vae, "
                f"scheduler of the {kind.label} release)",
            )
    _check_folder(folder, kind, path.name)
    if not is_folder:
        transformer = _transformer_class(kind.family).from_single_file(
            str(path), config=str(folder), subfolder="transformer", local_files_only=True, dtype=dtype
        )
    components = _tokenizers(folder, kind)
    if transformer is not None:
        components["transformer"] = transformer
    pipe = pipeline_class(kind.family).from_pretrained(
        folder, local_files_only=True, use_safetensors=True, dtype=dtype, **components
    )
    return pipe, kind


def _check_folder(folder: Path, kind: FlowKind, name: str) -> None:
    """The gate on every weight file, and the T5 tokenizer Salon cannot ship (said with what it needs)."""
    for weights in folder.rglob("*.safetensors"):
        check_safetensors(weights)
    slot = _T5_SLOT[kind.family]
    if not any((folder / slot / f).is_file() for f in _T5_FILES):
        raise InvalidRequest(
            "model",
            f"{name}: the T5 tokenizer is missing: put the T5 tokenizer files of the {kind.label} release "
            f"(tokenizer.json or spiece.model, with tokenizer_config.json and special_tokens_map.json) in "
            f"{folder.name}/{slot}/ and name it in model_index.json as "
            f'"{slot}": ["transformers", "T5TokenizerFast"]',
        )
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    if (index.get(slot) or [None, None])[1] is None:
        raise InvalidRequest(
            "model",
            f'{name}: model_index.json names no "{slot}"; add "{slot}": ["transformers", "T5TokenizerFast"]',
        )


def _tokenizers(folder: Path, kind: FlowKind) -> dict[str, object]:
    """CLIP tokenizers a folder lacks, from the one Salon ships (the same vocabulary in every release; SD3's
    second, OpenCLIP's, pads with "!" as SDXL's does)."""
    from transformers import CLIPTokenizer

    missing = [s for s in _CLIP_SLOTS[kind.family] if not (folder / s / "vocab.json").is_file()]
    pads = {"tokenizer_2": {"pad_token": "!"}} if kind.family == SD3 else {}
    return {slot: CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, **pads.get(slot, {})) for slot in missing}


def img2img_pipeline(pipe: object, family: str) -> object:
    """The img2img pipeline over a loaded txt2img pipeline's components (no copy of the weights)."""
    return pipeline_class(family, img2img=True)(**pipe.components)
