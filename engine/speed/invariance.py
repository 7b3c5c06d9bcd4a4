"""Batch invariance on the CPU: an image comes out bit-identical whether it is denoised alone or in a batch.

Three CPU kernels give results that depend on the batch size: oneDNN's convolutions, NNPACK's (which
PyTorch picks from a batch of 16 rows, i.e. 8 images with CFG), and matrix products with
very few rows (MKL switches kernels for small M; the timestep and pooled-text embeddings have one row per
image). While `batch_invariant` is active, convolutions take PyTorch's own im2col path (per image, and no
slower here) and every Linear layer of the UNet and VAE is fed at least MIN_ROWS rows, padding with zeros, so
the same kernel computes each row whatever the batch. Other layers (attention, group norm, token-wise linear
layers) are already per-image. On GPUs this is not attempted: cuBLAS may differ in the last bits.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

MIN_ROWS = 64


def _pad_rows(module: torch.nn.Linear, args: tuple) -> tuple | None:
    (x,) = args
    rows = x.numel() // x.shape[-1]
    module._salon_shape = x.shape if rows < MIN_ROWS else None  # type: ignore[attr-defined]
    if module._salon_shape is None:  # type: ignore[attr-defined]
        return None
    flat = x.reshape(rows, x.shape[-1])
    return (torch.cat([flat, flat.new_zeros(MIN_ROWS - rows, x.shape[-1])]),)


def _unpad_rows(module: torch.nn.Linear, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
    shape = module._salon_shape  # type: ignore[attr-defined]
    if shape is None:
        return None
    rows = shape.numel() // shape[-1]
    return out[:rows].reshape(*shape[:-1], out.shape[-1])


@contextmanager
def batch_invariant(modules: list[torch.nn.Module], device: torch.device) -> Iterator[None]:
    """Make the given modules compute each batch row independently of the others (CPU only)."""
    if device.type != "cpu":
        yield
        return
    linears = [m for module in modules for m in module.modules() if isinstance(m, torch.nn.Linear)]
    handles = [m.register_forward_pre_hook(_pad_rows) for m in linears]
    handles += [m.register_forward_hook(_unpad_rows) for m in linears]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
            with torch.backends.mkldnn.flags(enabled=False), torch.backends.nnpack.flags(enabled=False):
                yield
    finally:
        for handle in handles:
            handle.remove()
