"""`models/VAE` files applied to a loaded checkpoint, as A1111's `sd_vae` does.

A VAE file is a `.safetensors` state dict in A1111's (LDM) key layout — `encoder.down.0.block.0.…`, optionally
under `first_stage_model.` — or in diffusers' layout (`encoder.down_blocks.0.resnets.0.…`). It passes the
safetensors gate, is converted to diffusers' names and must fit the checkpoint's VAE exactly (every key, every
shape): anything else is refused, naming the file. Applying one copies its weights into the checkpoint's VAE
module in place (so a compiled fast path keeps working); the checkpoint's own weights are kept on the CPU the
first time and copied back for "Automatic". Converted files are cached (a few, least recently used first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

from core.errors import InvalidRequest
from engine.models.loading import LoadedModel
from engine.models.model_files import load_safetensors
from engine.models.registry import ModelEntry

LDM_PREFIX = "first_stage_model."
_IGNORED = ("loss.", "model_ema.")  # A1111 drops these keys of a VAE file too
CACHED_VAES = 2


def _stripped(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VAE's own keys: the checkpoint prefix removed, training leftovers dropped."""
    prefixed = any(key.startswith(LDM_PREFIX) for key in tensors)
    state = {}
    for key, value in tensors.items():
        if prefixed:
            if not key.startswith(LDM_PREFIX):
                continue
            key = key[len(LDM_PREFIX) :]
        if not key.startswith(_IGNORED):
            state[key] = value
    return state


def _is_ldm(state: Mapping[str, Any]) -> bool:
    return any(
        key.startswith(("encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.")) for key in state
    )


def vae_state(entry: ModelEntry, config: Mapping[str, Any], expected: Mapping[str, torch.Tensor]):
    """A VAE file's weights under diffusers' names, checked against `expected` (the checkpoint's VAE state)."""
    state = _stripped(load_safetensors(entry.path))
    if _is_ldm(state):
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        try:
            state = convert_ldm_vae_checkpoint(state, dict(config))
        except (KeyError, IndexError, ValueError, RuntimeError) as error:
            raise InvalidRequest(
                "vae", f"{entry.path.name} is not a VAE in A1111's layout ({error})"
            ) from None
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        sample = ", ".join((missing or extra)[:3])
        what = "lacks" if missing else "has unknown"
        raise InvalidRequest(
            "vae",
            f"{entry.path.name} is not a VAE for this checkpoint: it {what} weights ({sample}"
            f"{', …' if len(missing or extra) > 3 else ''})",
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise InvalidRequest(
                "vae",
                f"{entry.path.name} does not fit this checkpoint's VAE: {key} is "
                f"{tuple(state[key].shape)}, expected {tuple(value.shape)}",
            )
        if not state[key].is_floating_point():
            raise InvalidRequest("vae", f"{entry.path.name}: {key} is not a floating-point tensor")
    return state


class VaeSwitch:
    """Which VAE each loaded checkpoint runs with: its own, or a `models/VAE` file (converted ones cached)."""

    def __init__(self, cache_size: int = CACHED_VAES) -> None:
        self._cache: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._cache_size = cache_size
        # Per loaded checkpoint (by identity): its own VAE weights (on the CPU) and the VAE file applied now.
        self._own: dict[int, dict[str, torch.Tensor]] = {}
        self._applied: dict[int, ModelEntry | None] = {}

    def applied(self, model: LoadedModel) -> ModelEntry | None:
        """The VAE file `model` runs with now (None: its own)."""
        return self._applied.get(id(model))

    def apply(self, model: LoadedModel, entry: ModelEntry | None) -> None:
        """Make `model` decode and encode with `entry`'s weights (None: the checkpoint's own)."""
        key = id(model)
        if self._applied.get(key) == entry:
            return
        vae = model.vae
        if key not in self._own:
            if entry is None:
                self._applied[key] = None
                return
            self._own[key] = {
                name: value.detach().to("cpu", copy=True) for name, value in vae.state_dict().items()
            }
        state = self._own[key] if entry is None else self._state(entry, model)
        with torch.no_grad():
            vae.load_state_dict(state, strict=True)
        self._applied[key] = entry

    def forget(self, model: LoadedModel) -> None:
        """Drop what is kept for a checkpoint that is unloaded."""
        self._own.pop(id(model), None)
        self._applied.pop(id(model), None)

    def _state(self, entry: ModelEntry, model: LoadedModel) -> dict[str, torch.Tensor]:
        config = model.vae.config
        cache_key = (entry.path, entry.size, entry.mtime_ns, tuple(config.block_out_channels))
        if cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        state = vae_state(entry, config, self._own[id(model)])
        self._cache[cache_key] = state
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return state
