"""Loading checkpoints: diffusers folders and A1111 single-file `.safetensors` (SD 1.x, 2.x, SDXL), offline.

Every weight file passes the safetensors gate (`engine.models.model_files`) before diffusers sees it. Single files
are converted with the configs shipped in `engine/configs` (or a `<name>.config/` diffusers folder beside the
file, for architectures other than the published SD 1.5, SD 2.1 and SDXL), and the CLIP tokenizer shipped beside
them. An SD 2.x file's v-prediction or epsilon is decided as A1111 decides (`engine.models.sd2_loading`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.errors import InvalidRequest
from engine.configs import CLIP_TOKENIZER, SD2_CONFIG, SD2_V_CONFIG, SD15_CONFIG, SDXL_CONFIG
from engine.models.diffusers_file import is_diffusers_file, load_diffusers_file
from engine.models.flow_files import FLOW_FAMILIES, flow_kind
from engine.models.flow_loading import load_flow_model
from engine.models.model_files import SD2_KINDS, CheckpointKind, check_safetensors, detect_checkpoint_kind
from engine.models.registry import ModelEntry
from engine.models.sd2_family import V_PREDICTION, is_openclip_text_config, known_prediction

if TYPE_CHECKING:
    from engine.speed.fast_path import FastPath
    from engine.speed.token_merging import LatentGrid

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A checkpoint in memory: its diffusers pipeline (a container of components) and what it is."""

    name: str
    hash: str
    entry: ModelEntry
    pipe: object  # StableDiffusionPipeline or StableDiffusionXLPipeline
    sdxl: bool
    device: torch.device
    dtype: torch.dtype
    fast: FastPath | None = None  # set by the engine in the speed modes "max" and "balanced"
    token_grid: LatentGrid | None = None  # set when token merging is on (engine.speed.token_merging)
    family: str = ""  # "sd1", "sdxl" (from `sdxl` when not given), "sd3" or "flux" (engine.models.flow_files)

    def __post_init__(self) -> None:
        self.family = self.family or ("sdxl" if self.sdxl else "sd1")

    @property
    def unet(self):  # the denoiser: SD 3.5's and Flux's is a transformer
        return self.pipe.transformer if self.family in FLOW_FAMILIES else self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def inpainting(self) -> bool:
        """True for inpainting checkpoints whose UNet also takes the mask and the masked image (9 channels)."""
        return int(self.unet.config.in_channels) == self.latent_channels * 2 + 1

    @property
    def sd2(self) -> bool:
        """True for SD 2.x: one OpenCLIP-H text encoder (A1111 ignores CLIP skip on it: always penultimate)."""
        encoder = getattr(self.pipe, "text_encoder", None)
        if self.sdxl or encoder is None:
            return False
        config = encoder.config
        return is_openclip_text_config({"hidden_size": config.hidden_size, "hidden_act": config.hidden_act})

    @property
    def aesthetic_score(self) -> bool:
        """True for an SDXL refiner: its UNet's time ids end in an aesthetic score instead of the target size."""
        return bool(getattr(self.pipe.config, "requires_aesthetics_score", False))


def resolve_device(name: str) -> torch.device:
    """ "auto" → CUDA when present, else Apple MPS, else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "auto" → float16 on accelerators, float32 on the CPU (half precision is slow or missing there)."""
    if name != "auto":
        return getattr(torch, name)
    return torch.float32 if device.type == "cpu" else torch.float16


def load_model(entry: ModelEntry, model_hash: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """Load `entry` onto `device` in `dtype`, ready for inference (eval mode, no gradients)."""
    kind = flow_kind(entry.path, entry.is_diffusers_folder)
    if kind is not None:  # SD 3.5 and Flux: diffusers' own pipelines (engine.models.flow_loading)
        return LoadedModel(
            entry.name, model_hash, entry, *load_flow_model(entry, device, dtype), family=kind.family
        )
    if entry.is_diffusers_folder:
        pipe, sdxl = _load_folder(entry.path, dtype)
    else:
        pipe, sdxl = _load_single_file(entry.path, dtype)
    pipe.to(device)
    for module in _modules(pipe):
        module.eval().requires_grad_(False)
    if sdxl and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)  # SDXL's VAE overflows in float16
    pipe.set_progress_bar_config(disable=True)
    loaded = LoadedModel(entry.name, model_hash, entry, pipe, sdxl, device, dtype)
    family = "SDXL" if sdxl else ("SD2" if loaded.sd2 else "SD1")
    log.info("loaded model %s [%s] (%s) on %s as %s", entry.name, model_hash, family, device, dtype)
    return loaded


def _modules(pipe) -> list[torch.nn.Module]:
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    return [m for m in (getattr(pipe, n, None) for n in names) if isinstance(m, torch.nn.Module)]


def _pipeline_classes(sdxl: bool, img2img: bool = False):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # loading progress belongs to Salon's own log, not stderr bars
    transformers_logging.disable_progress_bar()

    if sdxl and img2img:  # an SDXL refiner's folder: no first text encoder, aesthetic score conditioning
        return StableDiffusionXLImg2ImgPipeline
    return StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline


def import_libraries() -> None:
    """Import the diffusers and transformers classes a load needs (seconds on a busy machine), so that loading
    a checkpoint later takes only the load; the worker calls this before it takes its first job."""
    _pipeline_classes(False)
    _pipeline_classes(True)
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: F401


def _extra_kwargs(sdxl: bool) -> dict[str, object]:
    # SD 1.x pipelines carry a safety checker slot; Salon applies its own NSFW policy elsewhere.
    return (
        {} if sdxl else {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    )


def _load_folder(path: Path, dtype: torch.dtype):
    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    class_name = str(index.get("_class_name", ""))
    if "Depth2Img" in class_name:
        message = f"{path.name}: the Stable Diffusion 2 depth model ({class_name}) is not supported"
        raise InvalidRequest("model", message)
    if not class_name.startswith("StableDiffusion") or "3" in class_name or "Upscale" in class_name:
        raise InvalidRequest(
            "model",
            f"{path.name}: {class_name or 'unknown'} folders are not supported; use an SD 1.x or SDXL model",
        )
    for weights in path.rglob("*.safetensors"):
        check_safetensors(weights)
    sdxl = "XL" in class_name
    cls = _pipeline_classes(sdxl, img2img="Img2Img" in class_name)
    pipe = cls.from_pretrained(
        path, local_files_only=True, use_safetensors=True, dtype=dtype, **_extra_kwargs(sdxl)
    )
    return pipe, sdxl


def _load_single_file(path: Path, dtype: torch.dtype):
    from transformers import CLIPTokenizer

    header = check_safetensors(path)
    if is_diffusers_file(header):  # a design without A1111's layout (Dreambooth on the demo model)
        return load_diffusers_file(path, dtype)
    kind = detect_checkpoint_kind(header)
    sdxl = kind in (CheckpointKind.SDXL, CheckpointKind.SDXL_INPAINT)
    sd2 = kind in SD2_KINDS
    sidecar = path.with_name(path.stem + ".config")
    config = sidecar if (sidecar / "model_index.json").is_file() else _shipped_config(kind, path)
    # OpenCLIP pads with token 0, "!" in CLIP's vocabulary (SDXL's second encoder and SD 2.x's one)
    kwargs: dict[str, object] = {
        "tokenizer": CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, **({"pad_token": "!"} if sd2 else {}))
    }
    if sdxl:
        kwargs["tokenizer_2"] = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, pad_token="!")
    if kind in (CheckpointKind.SD1_INPAINT, CheckpointKind.SDXL_INPAINT, CheckpointKind.SD2_INPAINT):
        kwargs["num_in_channels"] = 9
    cls = _pipeline_classes(sdxl)
    pipe = cls.from_single_file(
        str(path), config=str(config), local_files_only=True, dtype=dtype, **kwargs, **_extra_kwargs(sdxl)
    )
    if sd2:
        from engine.models.sd2_loading import apply_prediction, decide_prediction

        apply_prediction(pipe, decide_prediction(pipe, path, inpainting=kind is CheckpointKind.SD2_INPAINT))
    return pipe, sdxl


def _shipped_config(kind: CheckpointKind, path: Path) -> Path:
    """The configs shipped for a single file's family (SD 2.x: the 768-v one when its yaml or memo says v)."""
    if kind in (CheckpointKind.SDXL, CheckpointKind.SDXL_INPAINT):
        return SDXL_CONFIG
    if kind is CheckpointKind.SD2:
        return SD2_V_CONFIG if known_prediction(path) == V_PREDICTION else SD2_CONFIG
    return SD2_CONFIG if kind is CheckpointKind.SD2_INPAINT else SD15_CONFIG
