"""Tiny random-weight face models for the tests: restorers built from spandrel's own architectures (small
RestoreFormer settings; GFPGAN and CodeFormer at the sizes spandrel's loaders assume), and RetinaFace
detectors: one of seeded random weights (the state dict pinned against facexlib's own class), and one whose
heads fire on a single prior of a chosen level, so that exactly one face with chosen landmarks is found.

The detector's ResNet-50 at A1111's 640 takes seconds a call on a busy CPU: tests that go through the engine
let the process's face models see pictures at a shorter side of SMALL_SIDE (`detect_small`);
tests/engine/test_face_detector.py keeps A1111's 640."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from engine.faces.restore import FACE_TEMPLATE
from engine.faces.retinaface import DETECT_SHORT_SIDE, MIN_SIZES, empty_retinaface

SMALL_SIDE = 128  # the detector's view in tests that go through the engine (A1111's is 640)


def detect_small(monkeypatch) -> float:
    """The process's face models (engine.faces.files.FACES) see pictures at a shorter side of SMALL_SIDE for
    this test; returns the factor a `one_face_detector` side written for A1111's 640 view is multiplied by."""
    from engine.faces.files import FACES

    monkeypatch.setattr(FACES, "short_side", SMALL_SIDE)
    return SMALL_SIDE / DETECT_SHORT_SIDE


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def save_state(state: dict[str, torch.Tensor], path: Path) -> Path:
    """`.safetensors` or a `.pth` state dict (wrapped in `params_ema` for `.pth`, as GFPGAN's files are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"params_ema": state}, path)
    return path


def tiny_restoreformer(seed: int = 0) -> torch.nn.Module:
    """RestoreFormer with 32 channels at every one of its six levels (the mid attention at 16×16)."""
    from spandrel.architectures.RestoreFormer import RestoreFormer

    torch.manual_seed(seed)
    return RestoreFormer(
        n_embed=16, embed_dim=32, ch=32, ch_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1, z_channels=32
    ).eval()


def tiny_codeformer(seed: int = 0) -> torch.nn.Module:
    """CodeFormer with a small transformer (its VQ autoencoder is the fixed 512 one spandrel assumes)."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    torch.manual_seed(seed)
    return CodeFormer(dim_embd=16, n_head=8, n_layers=1, codebook_size=16, connect_list=["32"]).eval()


def gfpgan(seed: int = 0) -> torch.nn.Module:
    """GFPGANv1Clean at spandrel's fixed size (512, channel multiplier 2)."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    return GFPGAN().eval()


def random_detector(seed: int = 0) -> dict[str, torch.Tensor]:
    """A RetinaFace-ResNet50 state dict of seeded random values, key by key in sorted order: convolutions
    He-normal, batch norms with random statistics, the heads scaled so that their outputs stay near 1."""
    shapes = {k: v.shape for k, v in empty_retinaface().state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean") or key.endswith(".bias"):
            state[key] = (torch.rand(shape, generator=gen) - 0.5) * 0.2
        elif len(shape) == 1:  # batch norm weights
            state[key] = torch.rand(shape, generator=gen) * 0.5 + 0.75
        else:
            fan_in = int(np.prod(shape[1:]))
            scale = (2.0 / fan_in) ** 0.5 * (2e-6 if "Head" in key else 1.0)
            state[key] = torch.randn(shape, generator=gen) * scale
    return state


def one_face_detector(side: float = 100.0, level: int = 2, anchor: int = 1) -> dict[str, torch.Tensor]:
    """A state dict whose heads ignore the picture: every prior of `anchor` at `level` says "face" alike, each
    box huge (so NMS keeps exactly one), the 5 landmarks FFHQ's for a face of `side` pixels (in the picture
    the detector sees) centred on that prior."""
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in empty_retinaface().state_dict().items()}
    for key in state:
        if key.endswith("running_var") or (key.endswith(".weight") and state[key].ndim == 1):
            state[key] = torch.ones_like(state[key])
    for lvl in range(3):
        state[f"ClassHead.{lvl}.conv1x1.bias"].copy_(torch.tensor([20.0, -20.0] * 2))  # "background"
    state[f"ClassHead.{level}.conv1x1.bias"][anchor * 2 : anchor * 2 + 2] = torch.tensor([-20.0, 20.0])
    state[f"BboxHead.{level}.conv1x1.bias"][anchor * 4 + 2 : anchor * 4 + 4] = 20.0
    points = (FACE_TEMPLATE - 256.0) * (side / 512.0)
    offsets = torch.from_numpy(points.reshape(-1)) / (0.1 * MIN_SIZES[level][anchor])
    state[f"LandmarkHead.{level}.conv1x1.bias"][anchor * 10 : anchor * 10 + 10] = offsets
    return state
