"""LoRAs from `<lora:name:weight>` in kohya/A1111 format, applied through diffusers' LoRA loading (peft).

Files are read through the safetensors gate and handed to `load_lora_weights` as state dicts; diffusers
converts kohya key names. Loaded adapters stay in memory (a few, least recently used dropped) and each run
activates exactly the ones its prompt names with their weights; weight 0 or no LoRA disables them all, so
the base model runs untouched.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from engine.errors import InvalidRequest
from engine.model_files import load_safetensors
from engine.registry import ModelEntry

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
        state_dict = load_safetensors(use.entry.path)
        if not any(k.startswith(LORA_KEY_PREFIXES) for k in state_dict):
            raise InvalidRequest("lora", f"{use.entry.name}: not a LoRA file (no LoRA weight names inside)")
        try:
            self.pipe.load_lora_weights(state_dict, adapter_name=name)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise InvalidRequest("lora", f"{use.entry.name} does not fit this model: {exc}") from exc
        self._loaded[name] = use.short_hash
        while len(self._loaded) > MAX_LOADED_ADAPTERS:
            old, _ = self._loaded.popitem(last=False)
            self.pipe.delete_adapters(old)
        log.info("loaded LoRA %s [%s]", use.entry.name, use.short_hash)
        return name
