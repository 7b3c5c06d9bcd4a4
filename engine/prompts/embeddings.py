"""Textual inversion embeddings in A1111's formats, used in prompts by their file name.

Readers accept A1111 `.pt` (`string_to_param`), `.safetensors` (`emb_params` or one tensor), diffusers
concept files (`{token: tensor}`) and SDXL files with `clip_l`/`clip_g` vectors. `.pt`/`.bin` files are
read with `torch.load(weights_only=True)` and never unpickled otherwise. Like A1111, every embedding whose
width fits the loaded model is available; others are skipped (and listed as such). A one-encoder embedding
of another width on a one-encoder model (SD 1.x's 768 on SD 2.x's 1024, or the reverse) is also a `misfit`:
a prompt that names it is refused by name, rather than reading its name as words.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.errors import UnsafeModelFile
from engine.models.model_files import load_weights
from engine.models.registry import ModelEntry, ModelKind, ModelRegistry

log = logging.getLogger(__name__)

ANY_ENCODER = "*"  # a single-encoder embedding, matched to the model's encoder by width


@dataclass(frozen=True)
class Embedding:
    """One embedding: its name (file stem) and vectors per text encoder, each of shape (n_vectors, width)."""

    name: str
    vectors: dict[str, torch.Tensor] = field(compare=False)
    entry: ModelEntry

    @property
    def n_vectors(self) -> int:
        return next(iter(self.vectors.values())).shape[0]


def read_embedding_vectors(path: Path) -> dict[str, torch.Tensor]:
    """The vectors stored in an embedding file, keyed by encoder ("clip_l", "clip_g") or ANY_ENCODER."""
    data = load_weights(path, allow_legacy_pt=True)
    if not isinstance(data, dict):
        raise UnsafeModelFile(path, "not an embedding: expected a dictionary of tensors")
    if "string_to_param" in data:
        params = data["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            raise UnsafeModelFile(path, "A1111 embedding must hold exactly one entry in string_to_param")
        return {ANY_ENCODER: _as_matrix(path, next(iter(params.values())))}
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if "clip_l" in tensors and "clip_g" in tensors:
        return {"clip_l": _as_matrix(path, tensors["clip_l"]), "clip_g": _as_matrix(path, tensors["clip_g"])}
    if "emb_params" in tensors:
        return {ANY_ENCODER: _as_matrix(path, tensors["emb_params"])}
    if len(tensors) == 1:
        return {ANY_ENCODER: _as_matrix(path, next(iter(tensors.values())))}
    raise UnsafeModelFile(path, f"unknown embedding layout with keys {sorted(data)[:8]}")


def _as_matrix(path: Path, tensor: object) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (1, 2) or tensor.numel() == 0:
        raise UnsafeModelFile(path, "embedding vectors must be a non-empty 1-D or 2-D tensor")
    matrix = tensor.detach().float()
    return matrix.unsqueeze(0) if matrix.ndim == 1 else matrix


class EmbeddingLibrary:
    """Loads embeddings from the registry (cached by path and mtime) and picks those a model can use."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._cache: dict[tuple[Path, int], dict[str, torch.Tensor]] = {}
        self.skipped: dict[str, str] = {}
        self.misfits: dict[str, str] = {}  # name → why a prompt naming it is refused (see the docstring)

    def for_encoders(self, widths: dict[str, int]) -> dict[str, Embedding]:
        """Embeddings usable with text encoders of these widths ({"clip_l": 768} or with "clip_g": 1280)."""
        usable: dict[str, Embedding] = {}
        self.skipped, self.misfits = {}, {}
        for entry in self.registry.entries(ModelKind.EMBEDDING):
            try:
                vectors = self._vectors(entry)
            except UnsafeModelFile as exc:
                self.skipped[entry.name] = exc.reason
                log.warning("embedding %s skipped: %s", entry.path, exc.reason)
                continue
            matched = _match_encoders(vectors, widths)
            if matched is None:
                self.skipped[entry.name] = "its vector width does not fit the loaded model"
                misfit = _other_family(entry.name, vectors, widths)
                if misfit is not None:
                    self.misfits[entry.name] = misfit
            else:
                usable[entry.name] = Embedding(entry.name, matched, entry)
        return usable

    def _vectors(self, entry: ModelEntry) -> dict[str, torch.Tensor]:
        key = (entry.path, entry.mtime_ns)
        if key not in self._cache:
            self._cache[key] = read_embedding_vectors(entry.path)
        return self._cache[key]


_FAMILY_OF_WIDTH = {768: "SD 1.x", 1024: "SD 2.x"}


def _other_family(name: str, vectors: dict[str, torch.Tensor], widths: dict[str, int]) -> str | None:
    """Why a one-encoder embedding cannot serve this one-encoder model (another width), or None."""
    if ANY_ENCODER not in vectors or len(widths) != 1:
        return None
    have, want = int(vectors[ANY_ENCODER].shape[1]), next(iter(widths.values()))
    if have == want:
        return None
    family = _FAMILY_OF_WIDTH.get(have, f"a {have}-wide text encoder")
    model = _FAMILY_OF_WIDTH.get(want, f"{want}-wide")
    return (
        f"embedding {name} is for {family} ({have}-wide vectors); this model's text encoder is {model} "
        f"({want}-wide): use an embedding trained for this model's family"
    )


def _match_encoders(
    vectors: dict[str, torch.Tensor], widths: dict[str, int]
) -> dict[str, torch.Tensor] | None:
    if ANY_ENCODER in vectors:
        if len(widths) != 1:
            return None
        ((encoder, width),) = widths.items()
        tensor = vectors[ANY_ENCODER]
        return {encoder: tensor} if tensor.shape[1] == width else None
    if set(vectors) != set(widths) or len({v.shape[0] for v in vectors.values()}) != 1:
        return None
    return vectors if all(vectors[k].shape[1] == w for k, w in widths.items()) else None
