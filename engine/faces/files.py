"""Face restorer and face detector files, loaded from a state dict through the same gates as upscalers
(`engine.upscaling.files.state_dict_of`: safetensors, or `torch.load(weights_only=True)`), never unpickled.

spandrel detects GFPGAN and RestoreFormer; CodeFormer is in `spandrel_extra_arches` (as A1111 loads it), added
to a registry of this module's own so that spandrel's main registry stays as the upscalers know it. What is
not a face restorer (an upscaler in models/GFPGAN) is refused saying what it is. Each restorer runs on the
512×512 aligned face in [-1, 1] (A1111's normalisation) through its own module, not spandrel's call: CodeFormer
takes its fidelity `weight`; GFPGAN runs with the noise kept in its file (`randomize_noise=False`: A1111 draws
new noise each call; Salon keeps a seed's image the same); RestoreFormer's module takes [-1, 1] as well.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

import torch

from core.errors import ModelRefused, UnsafeModelFile
from engine.faces.naming import OPTION, detector_entry, family, restorer_entry
from engine.faces.retinaface import DETECT_SHORT_SIDE, RetinaFace, detector_state, empty_retinaface
from engine.models.registry import ModelEntry, ModelRegistry
from engine.upscaling.files import state_dict_of

KNOWN = "GFPGAN, CodeFormer, RestoreFormer"


@dataclass(frozen=True)
class FaceRestorer:
    """A loaded restorer: the name written in the infotext, its file's stem, spandrel's architecture and the
    module."""

    name: str
    file: str
    architecture: str
    module: torch.nn.Module

    def restore(self, face: torch.Tensor, weight: float) -> torch.Tensor:
        """A (1, 3, 512, 512) face in [-1, 1] restored, in [-1, 1]; `weight`: CodeFormer's fidelity."""
        if self.architecture == "CodeFormer":
            return self.module(face, weight=weight)[0]
        if self.architecture == "GFPGAN":
            return self.module(face, return_rgb=False, randomize_noise=False)[0]
        return self.module(face)[0]


def _face_arches():
    from spandrel import MAIN_REGISTRY, ArchRegistry
    from spandrel_extra_arches import EXTRA_REGISTRY

    registry = ArchRegistry()
    registry.add(*MAIN_REGISTRY, *(a for a in EXTRA_REGISTRY if a.architecture.id == "CodeFormer"))
    return registry


def describe_restorer(entry: ModelEntry, state: dict[str, Any], name: str) -> FaceRestorer:
    """spandrel's face restorer for a state dict, or ModelRefused saying what the file is instead."""
    from spandrel import ModelLoader, UnsupportedModelError, canonicalize_state_dict

    try:
        model = ModelLoader(registry=_face_arches()).load_from_state_dict(canonicalize_state_dict(state))
    except UnsupportedModelError:
        raise ModelRefused(
            OPTION, f"{entry.path.name}: spandrel detects no architecture it knows in it ({KNOWN} are known)"
        ) from None
    except (KeyError, ValueError, RuntimeError, AssertionError) as exc:
        raise ModelRefused(OPTION, f"{entry.path.name}: spandrel cannot load it ({exc})") from None
    arch = model.architecture.name
    if model.purpose != "FaceSR":
        what = (
            f"an upscaler ({arch}, ×{model.scale})" if model.purpose == "SR" else f"a {model.purpose} model"
        )
        raise ModelRefused(OPTION, f"{entry.path.name} is {what}, not a face restorer ({KNOWN})")
    return FaceRestorer(name, entry.name, model.architecture.id, model.model.eval())


def load_detector(entry: ModelEntry) -> RetinaFace:
    """The RetinaFace-ResNet50 of `detection_Resnet50_Final.pth` (its keys, `module.` or not)."""
    net = empty_retinaface()
    try:
        net.load_state_dict(detector_state(state_dict_of(entry)), strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelRefused(
            OPTION, f"{entry.path.name} is not RetinaFace-ResNet50's state dict ({first})"
        ) from None
    return net.eval()


class FaceModels:
    """The last restorer and the detector loaded, kept while their files are unchanged, and the shorter side
    the detector sees a picture at (`short_side`: A1111's 640; tests make it smaller, for time)."""

    def __init__(self, short_side: int = DETECT_SHORT_SIDE) -> None:
        self.short_side = short_side
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[tuple[object, ...], Any]] = {}

    def _load(self, slot: str, entry: ModelEntry, device: str, make) -> Any:
        key = (entry.path, entry.size, entry.mtime_ns, device)
        with self._lock:
            hit = self._cached.get(slot)
            if hit is not None and hit[0] == key:
                return hit[1]
            try:
                value = make()
            except UnsafeModelFile as exc:
                raise ModelRefused(OPTION, f"{entry.path.name} is refused: {exc.reason}") from None
            value_module = value.module if isinstance(value, FaceRestorer) else value
            value_module.to(device)
            self._cached[slot] = (key, value)
            return value

    def restorer(self, registry: ModelRegistry, name: str, device: str = "cpu") -> FaceRestorer:
        """The restorer `name` means (A1111's GFPGAN / CodeFormer, or a file's stem) on `device`."""
        entry = restorer_entry(registry, name)
        label = family(name) or entry.name
        restorer = self._load(
            "restorer", entry, device, lambda: describe_restorer(entry, state_dict_of(entry), label)
        )
        return restorer if restorer.name == label else replace(restorer, name=label)

    def detector(self, registry: ModelRegistry, device: str = "cpu") -> RetinaFace:
        """The face detector on `device` (ModelNotFound saying where it goes when missing)."""
        entry = detector_entry(registry)
        return self._load("detector", entry, device, lambda: load_detector(entry))


FACES = FaceModels()  # the process's one cache (the GPU thread loads; tests may make their own)
