"""A tiny random Stable Diffusion 2.x-shaped pipeline: SD 2's design at toy sizes.

What makes it SD 2 rather than SD 1: the OpenCLIP text encoder as a CLIPTextModel with GELU (OpenAI CLIP uses
quick GELU), padded with "!", per-block attention heads and linear projections in the transformer blocks
(`use_linear_projection`), and the scheduler's prediction type (v-prediction for the 768 models). Its A1111
single file holds the text encoder in OpenCLIP's layout under `cond_stage_model.model.`, as SD 2.1's.

`v_bias`: the UNet's last convolution's bias, so a test can make a UNet that passes A1111's v-prediction test
(its output minus the input has a mean below −1 on the fixed test input) or one that does not.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
from transformers import CLIPTextModel, CLIPTokenizer

from engine.models.ldm_conversion import save_single_file
from tests.tiny_models import SCHEDULER_CONFIG, TOKENIZER_DIR, _vae, saved, text_config, tiny_unet

TEXT_WIDTH = 48  # stands for 1024: distinct from the tiny SD 1 model's 32


def _scheduler(prediction_type: str) -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(**{**SCHEDULER_CONFIG, "prediction_type": prediction_type})


def tiny_sd2_pipeline(
    seed: int = 0, prediction_type: str = "v_prediction", v_bias: float = 0.0, in_channels: int = 4
) -> StableDiffusionPipeline:
    """The tiny SD 2-shaped pipeline in memory (VAE factor 2: 64 px → 32 latents)."""
    torch.manual_seed(seed)
    unet = tiny_unet(
        in_channels=in_channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
    )
    with torch.no_grad():
        unet.conv_out.bias.fill_(v_bias)
    text = CLIPTextModel(text_config(TEXT_WIDTH, hidden_act="gelu", pad_token_id=0))
    vae = _vae()
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR, pad_token="!")
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sd2(path: Path, **kwargs) -> Path:
    """Write the tiny SD 2-shaped pipeline as a diffusers folder at `path`."""
    return saved(tiny_sd2_pipeline(**kwargs), path)


def save_tiny_sd2_file(folder: Path, file: Path, *, with_configs: bool = True) -> Path:
    """The folder as an A1111 single file; with its configs in `<name>.config/` beside it (the shipped SD 2.1
    configs describe the full-size model, not this tiny one), without the scheduler's: A1111's rule decides
    v or epsilon, not a config."""
    save_single_file(StableDiffusionPipeline.from_pretrained(folder), file)
    if with_configs:
        target = file.with_name(file.stem + ".config")
        for source in folder.rglob("*.json"):
            if "tokenizer" in source.parts[-2]:
                continue
            dest = target / source.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, dest)
        scheduler = target / "scheduler" / "scheduler_config.json"
        text = scheduler.read_text(encoding="utf-8").replace('"v_prediction"', '"epsilon"')
        scheduler.write_text(text, encoding="utf-8")
    return file
