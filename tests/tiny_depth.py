"""A tiny random-weight Depth Anything model (transformers), saved as the local folder a user would put in
`models/Deforum`: config.json, model.safetensors and the DPT image processor's preprocessor_config.json."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor


def build_tiny_depth_anything(path: Path, seed: int = 0) -> Path:
    """Write the folder at `path` (about 170 kB; 28×28 input, so it runs in milliseconds on a CPU)."""
    torch.manual_seed(seed)
    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        patch_size=14,
        image_size=28,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        patch_size=14,
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        head_hidden_size=8,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(path, safe_serialization=True)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False).save_pretrained(path)
    return path
