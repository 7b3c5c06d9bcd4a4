"""Upscaler files loaded by spandrel from a state dict, never by spandrel's own file loader (which unpickles).

A `.safetensors` file goes through the safetensors gate (`engine.models.model_files.load_safetensors`); a
`.pth`/`.pt` file only through `torch.load(weights_only=True)` (`load_torch_weights_only`, the embeddings'
gate), so a pickle that carries code is refused before anything runs. The state dict is then canonicalized
(A1111's files wrap it in `params_ema`, `params` or `state_dict`) and handed to
`spandrel.ModelLoader().load_from_state_dict`, which detects the architecture from the tensor names and
shapes. What spandrel does not detect, and what is not a super-resolution model (a face restorer or an
inpainting model in an upscaler folder), is refused with the reason. The last model loaded stays cached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import ModelRefused, UnsafeModelFile
from engine.models.model_files import SAFETENSORS_SUFFIX, load_safetensors, load_torch_weights_only
from engine.models.registry import ModelEntry, ModelKind, ModelRegistry

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

OPTION = "upscaler"
PURPOSES = {
    "FaceSR": "a face restorer (e.g. GFPGAN, CodeFormer, RestoreFormer), not an upscaler",
    "Inpainting": "an inpainting model (e.g. LaMa), not an upscaler",
    "Restoration": "a 1× restoration model (denoising, deblurring, JPEG artefacts), not an upscaler",
}


@dataclass(frozen=True)
class Upscaler:
    """A loaded upscaler: its name (the file stem, what A1111 writes), spandrel's model and what it is."""

    name: str
    model: ImageModelDescriptor[Any]
    scale: int
    architecture: str


def state_dict_of(entry: ModelEntry) -> dict[str, Any]:
    """The file's tensors, through the gate of its format; anything else is an UnsafeModelFile."""
    if entry.path.suffix.lower() == SAFETENSORS_SUFFIX:
        loaded: object = load_safetensors(entry.path)
    else:
        loaded = load_torch_weights_only(entry.path)
    if not isinstance(loaded, dict):
        raise UnsafeModelFile(entry.path, f"holds a {type(loaded).__name__}, not a state dict")
    return loaded


def describe(entry: ModelEntry, state: dict[str, Any]) -> Upscaler:
    """spandrel's model for a state dict, or ModelRefused saying why it is not an upscaler."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError, canonicalize_state_dict

    try:
        model = ModelLoader().load_from_state_dict(canonicalize_state_dict(state))
    except UnsupportedModelError:
        raise ModelRefused(
            OPTION,
            f"{entry.path.name}: spandrel detects no architecture it knows in it "
            "(ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT, … are known)",
        ) from None
    except (KeyError, ValueError, RuntimeError, AssertionError) as exc:  # detected, but the tensors disagree
        raise ModelRefused(OPTION, f"{entry.path.name}: spandrel cannot load it ({exc})") from None
    purpose = model.purpose
    if purpose != "SR" or not isinstance(model, ImageModelDescriptor):
        what = PURPOSES.get(purpose, f"a {purpose} model, not an upscaler")
        raise ModelRefused(OPTION, f"{entry.path.name} is {what} ({model.architecture.name})")
    return Upscaler(entry.name, model.eval(), int(model.scale), model.architecture.name)


class UpscalerCache:
    """The last upscaler loaded, kept while its file is unchanged (one at a time: they are small)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._value: Upscaler | None = None

    def load(self, registry: ModelRegistry, name: str, device: str = "cpu") -> Upscaler:
        """The upscaler called `name` on `device` (ModelNotFound lists the installed ones)."""
        entry = registry.find_fresh(ModelKind.UPSCALER, name)
        key = (entry.path, entry.size, entry.mtime_ns, str(device))
        with self._lock:
            if self._key == key and self._value is not None:
                return self._value
            try:
                upscaler = describe(entry, state_dict_of(entry))
            except UnsafeModelFile as exc:
                raise ModelRefused(OPTION, f"{entry.path.name} is refused: {exc.reason}") from None
            upscaler.model.to(device)
            self._key, self._value = key, upscaler
            return upscaler


UPSCALERS = UpscalerCache()  # the process's one cache (the GPU thread loads; tests may make their own)
