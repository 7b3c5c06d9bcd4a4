"""LoRAs from `<lora:name:weight>` in kohya/A1111 format, applied through diffusers' LoRA loading (peft).

Files are read through the safetensors gate and handed to `load_lora_weights` as state dicts; diffusers
converts kohya key names. Two ways to apply them, one interface (`activate`):

- `LoraSet` (speed mode "off"): loaded adapters stay in memory (a few, least recently used dropped) and each
  run activates exactly the ones its prompt names with their weights; weight 0 or no LoRA disables them all,
  so the base model runs untouched.
- `FusedLoras` (the fast modes): the LoRAs are merged into the base weights in place and the adapter layers
  removed again, so the modules are the ones the compiled graphs were traced from and the weights live where
  the graphs read them: a LoRA change never recompiles. The original weights of every touched layer are kept
  and copied back when the LoRAs change (merging into half precision and subtracting again would drift).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import torch

from core.errors import InvalidRequest
from engine.models.model_files import load_safetensors
from engine.models.registry import ModelEntry

log = logging.getLogger(__name__)

MAX_LOADED_ADAPTERS = 8
# Key prefixes of LoRA files diffusers can read: kohya/A1111 (lora_unet_, lora_te_, lora_te1_, …), diffusers/peft.
LORA_KEY_PREFIXES = ("lora_", "unet.", "text_encoder")


@dataclass(frozen=True)
class LoraUse:
    """One LoRA a prompt asks for: the installed file, its A1111 short hash and its weight."""

    entry: ModelEntry
    short_hash: str
    weight: float


def kohya_key(prefix: str, module_path: str) -> str:
    """kohya's name for the LoRA of a module: prefix + its dotted path with dots as underscores."""
    return prefix + module_path.replace(".", "_")


def _checked_lora(use: LoraUse) -> dict[str, torch.Tensor]:
    state_dict = load_safetensors(use.entry.path)
    if not any(k.startswith(LORA_KEY_PREFIXES) for k in state_dict):
        raise InvalidRequest("lora", f"{use.entry.name}: not a LoRA file (no LoRA weight names inside)")
    return state_dict


def _load_adapter(pipe, use: LoraUse, state_dict: dict[str, torch.Tensor], name: str) -> None:
    try:
        pipe.load_lora_weights(dict(state_dict), adapter_name=name)  # a copy: the converter pops keys
    except (ValueError, KeyError, RuntimeError, AttributeError) as exc:  # AttributeError: a part it lacks
        raise InvalidRequest("lora", f"{use.entry.name} does not fit this model: {exc}") from exc


class LoraSet:
    """The adapters loaded into one model, and which of them are active."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self._loaded: OrderedDict[str, str] = OrderedDict()  # adapter name → file hash

    def activate(self, uses: list[LoraUse]) -> None:
        """Make exactly `uses` active with their weights (an empty list or all weights 0 disables LoRA)."""
        active = [u for u in uses if u.weight != 0]
        if not active:
            if self._loaded:
                self.pipe.disable_lora()
            return
        names = [self._ensure_loaded(u) for u in active]
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=[u.weight for u in active])

    def _ensure_loaded(self, use: LoraUse) -> str:
        name = f"lora_{use.short_hash}"
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return name
        _load_adapter(self.pipe, use, _checked_lora(use), name)
        self._loaded[name] = use.short_hash
        while len(self._loaded) > MAX_LOADED_ADAPTERS:
            old, _ = self._loaded.popitem(last=False)
            self.pipe.delete_adapters(old)
        log.info("loaded LoRA %s [%s]", use.entry.name, use.short_hash)
        return name


class FusedLoras:
    """LoRAs merged into the weights in place (for compiled models); see the module's docstring."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self._active: tuple[tuple[str, float], ...] = ()
        self._originals: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # touched weights, as they were

    @property
    def active(self) -> tuple[tuple[str, float], ...]:
        """(short hash, weight) of the LoRAs merged now."""
        return self._active

    def activate(self, uses: list[LoraUse]) -> None:
        """Make the weights those of the base model plus exactly `uses` (weight 0 uses are left out)."""
        active = [u for u in uses if u.weight != 0]
        key = tuple((u.short_hash, float(u.weight)) for u in active)
        if key == self._active:
            return
        self._restore()
        self._active = ()
        if active:
            self._merge(active)
            self._active = key

    def _restore(self) -> None:
        with torch.no_grad():
            for parameter, original in self._originals:
                parameter.copy_(original)
        self._originals.clear()

    def _merge(self, active: list[LoraUse]) -> None:
        from peft.tuners.lora import LoraLayer

        names = [f"fuse_{u.short_hash}" for u in active]
        try:
            for use, name in zip(active, names, strict=True):
                # Read again each time: diffusers' kohya conversion scales the tensors it is given in place.
                _load_adapter(self.pipe, use, _checked_lora(use), name)
            self.pipe.set_adapters(names, adapter_weights=[u.weight for u in active])
            layers = [m for part in self._parts() for m in part.modules() if isinstance(m, LoraLayer)]
            with torch.no_grad():
                for layer in layers:
                    self._merge_layer(layer, [n for n in names if n in layer.lora_A])
        except Exception:
            self._restore()
            raise
        finally:
            self.pipe.unload_lora_weights()  # the adapter layers go; the merged weights stay
        log.info("merged LoRA %s", ", ".join(f"{u.entry.name}:{u.weight:g}" for u in active))

    def _merge_layer(self, layer, names: list[str]) -> None:
        if any(layer.use_dora.get(n) or layer.lora_bias.get(n) for n in names):
            raise InvalidRequest(
                "lora", "DoRA and LoRA-bias files need speed mode off (they cannot be merged)"
            )
        weight = layer.get_base_layer().weight
        original = weight.detach().clone()
        self._originals.append((weight, original))
        merged = original.to(torch.float32, copy=True)  # .float() would alias a float32 original
        for name in names:
            merged += layer.get_delta_weight(name).float()
        weight.copy_(merged.to(weight.dtype))  # in place: compiled graphs keep reading this storage

    def _parts(self) -> list[torch.nn.Module]:
        names = ("unet", "text_encoder", "text_encoder_2")
        return [m for m in (getattr(self.pipe, n, None) for n in names) if isinstance(m, torch.nn.Module)]
