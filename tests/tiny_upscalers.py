"""Tiny random-weight upscalers built from spandrel's own architectures (seeded, so deterministic), saved as
A1111 saves them: `.safetensors`, or a `.pth` state dict (here wrapped in `params_ema`, as Real-ESRGAN's files
are). Small enough that a 4× of a 64² picture takes well under a second on a CPU."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def tiny_esrgan(scale: int = 4, blocks: int = 1, filters: int = 8, seed: int = 0) -> torch.nn.Module:
    """ESRGAN (RRDBNet, old architecture) with `blocks` RRDB blocks of `filters` channels."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    return ESRGAN(in_nc=3, out_nc=3, num_filters=filters, num_blocks=blocks, scale=scale).eval()


def tiny_swinir(scale: int = 2, seed: int = 0) -> torch.nn.Module:
    """SwinIR, classical SR upsampler ("pixelshuffle"), one layer of depth 2, window 8."""
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    return SwinIR(
        img_size=32,
        embed_dim=12,
        depths=[2],
        num_heads=[2],
        window_size=8,
        mlp_ratio=2.0,
        upscale=scale,
        upsampler="pixelshuffle",
        resi_connection="1conv",
    ).eval()


def tiny_dncnn(seed: int = 0) -> torch.nn.Module:
    """DnCNN: a 1× denoiser (spandrel: purpose "Restoration"), not an upscaler."""
    from spandrel.architectures.DnCNN import DnCNN

    torch.manual_seed(seed)
    return DnCNN(in_nc=3, out_nc=3, nc=8, nb=10, act_mode="R").eval()


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def save_upscaler(model: torch.nn.Module, path: Path) -> Path:
    """`.safetensors` as is; `.pth`/`.pt` as `{"params_ema": state_dict}` written by torch.save."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = state_of(model)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"params_ema": state}, path)
    return path
