"""Tiny random Stable Diffusion pipelines (SD 1.x and SDXL architecture) saved as diffusers folders.

They take the real code path (save, load, generate) in well under a second per image on a CPU. Weights are
random but seeded, so outputs are deterministic.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "engine" / "configs" / "clip_tokenizer"

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    prediction_type="epsilon",
)


def _tokenizer(pad_token: str | None = None) -> CLIPTokenizer:
    tok = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    if pad_token is not None:
        tok.pad_token = pad_token
    return tok


def text_config(hidden: int, projection: int | None = None, **changes) -> CLIPTextConfig:
    """A tiny CLIP text encoder's config, `hidden` wide (with a projection, as SDXL's second encoder), with
    `changes` (tests/tiny_sd2.py: OpenCLIP's GELU and padding)."""
    extra = {"projection_dim": projection} if projection else {}
    config = dict(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=3,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextConfig(**{**config, **extra, **changes})


def tiny_unet(**changes) -> UNet2DConditionModel:
    """A tiny UNet: two blocks of 32 and 64 channels over 16×16 latents, with `changes` (block types,
    attention, conditioning)."""
    config = dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
    )
    return UNet2DConditionModel(**{**config, **changes})


# SDXL's attention and text_time conditioning, at toy sizes (its UNets' and ControlNets').
_XL_ATTENTION = dict(
    attention_head_dim=(2, 4),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    transformer_layers_per_block=(1, 2),
)


def _xl_unet(time_and_text: int, cross_attention_dim: int) -> UNet2DConditionModel:
    """A tiny SDXL UNet (text_time conditioning), `time_and_text` wide time ids plus pooled text."""
    return tiny_unet(
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **_XL_ATTENTION,
        projection_class_embeddings_input_dim=time_and_text,
        cross_attention_dim=cross_attention_dim,
    )


def saved(model, path: Path) -> Path:
    """`model` (a pipeline or a model) saved as a diffusers folder at `path`, replacing what was there."""
    if path.exists():
        shutil.rmtree(path)
    model.save_pretrained(path, safe_serialization=True)
    return path


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )


def build_tiny_sd1(path: Path, seed: int = 0, in_channels: int = 4) -> Path:
    """Write a tiny SD 1.x-architecture diffusers folder at `path` (VAE factor 2, so 64px -> 32 latents)."""
    torch.manual_seed(seed)
    unet = tiny_unet(
        in_channels=in_channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    text_encoder = CLIPTextModel(text_config(32))
    pipe = StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        tokenizer=_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return saved(pipe, path)


def build_tiny_sdxl(path: Path, seed: int = 0) -> Path:
    """Write a tiny SDXL-architecture diffusers folder (two text encoders, text_time conditioning)."""
    torch.manual_seed(seed)
    # Time ids 6 * 8 + 40 pooled (projected) text; 32 + 48 wide text from the two text encoders.
    unet = _xl_unet(time_and_text=88, cross_attention_dim=80)
    pipe = StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(text_config(32)),
        # Widths differ, as in real SDXL (768 vs 1280): diffusers' single-file loader tells them apart by width.
        text_encoder_2=CLIPTextModelWithProjection(text_config(48, projection=40)),
        tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(pad_token="!"),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )
    return saved(pipe, path)


def build_tiny_sdxl_refiner(path: Path, seed: int = 1) -> Path:
    """Write a tiny SDXL refiner folder: the second text encoder only, time ids ending in an aesthetic score
    (`requires_aesthetics_score`), as stabilityai's refiner is saved (StableDiffusionXLImg2ImgPipeline)."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    torch.manual_seed(seed)
    # Time ids 5 * 8 (size, crop, aesthetic score) + 40 pooled text; the second text encoder alone (48).
    unet = _xl_unet(time_and_text=80, cross_attention_dim=48)
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=_vae(),
        text_encoder=None,
        text_encoder_2=CLIPTextModelWithProjection(text_config(48, projection=40)),
        tokenizer=None,
        tokenizer_2=_tokenizer(pad_token="!"),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )
    return saved(pipe, path)


def build_tiny_controlnet(path: Path, seed: int = 0, sdxl: bool = False) -> Path:
    """Write a tiny random ControlNet (diffusers folder) for the tiny SD 1.x (or SDXL) UNet above. Its
    conditioning embedding is SD's (8× downsampling): the control image is 8× the latent size."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    extra: dict = (
        dict(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            **_XL_ATTENTION,
            projection_class_embeddings_input_dim=88,
            cross_attention_dim=80,
        )
        if sdxl
        else dict(
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
        )
    )
    model = ControlNetModel(
        in_channels=4, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, **extra
    )
    # Random zero convolutions: a real ControlNet's are trained away from zero, so the residuals matter.
    with torch.no_grad():
        for conv in [*model.controlnet_down_blocks, model.controlnet_mid_block]:
            conv.weight.normal_(0, 0.5)
            conv.bias.normal_(0, 0.1)
    return saved(model, path)


def save_ldm_controlnet(folder: Path, file: Path) -> Path:
    """Write the diffusers ControlNet `folder` as one lllyasviel-layout file (`control_model.*`, as
    sd-webui-controlnet's files are), with its config in a `<stem>.config/` folder beside it."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from engine.models.ldm_conversion import ldm_unet_names

    model = ControlNetModel.from_pretrained(folder)
    state = model.state_dict()
    hint_blocks = len(model.controlnet_cond_embedding.blocks)
    names: dict[str, str] = {}
    for key in state:
        head, _, leaf = key.rpartition(".")
        parts = head.split(".")
        if head == "controlnet_cond_embedding.conv_in":
            names[key] = f"input_hint_block.0.{leaf}"
        elif head == "controlnet_cond_embedding.conv_out":
            names[key] = f"input_hint_block.{2 * (hint_blocks + 1)}.{leaf}"
        elif head.startswith("controlnet_cond_embedding.blocks."):
            names[key] = f"input_hint_block.{2 * (int(parts[2]) + 1)}.{leaf}"
        elif head.startswith("controlnet_down_blocks."):
            names[key] = f"zero_convs.{parts[1]}.0.{leaf}"
        elif head == "controlnet_mid_block":
            names[key] = f"middle_block_out.0.{leaf}"
    names.update(ldm_unet_names(model, [k for k in state if k not in names]))
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"control_model.{names[k]}": v.contiguous() for k, v in state.items()}, file)
    sidecar = file.with_name(file.stem + ".config")
    sidecar.mkdir(exist_ok=True)
    shutil.copy(folder / "config.json", sidecar / "config.json")
    return file
