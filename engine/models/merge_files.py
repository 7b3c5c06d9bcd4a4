"""The checkpoint merger's files: inputs read one tensor at a time, the output written one tensor at a time,
and A1111's merge metadata.

An input is an A1111 single-file `.safetensors` (gated, then opened with safetensors' `safe_open`, so a tensor
is read only when the merger asks for it) or a diffusers folder (loaded on the CPU and converted to the LDM
layout with `engine.models.ldm_conversion`: that one is held whole in memory). The output is written by
`write_streaming`: the safetensors header is known before any tensor is computed (names, dtypes, shapes), so
each tensor goes to disk as soon as it is made and two SDXL checkpoints never need twice their size in RAM.
The metadata is A1111's (`modules/extras.py`, `run_modelmerger`): `format`, `sd_merge_recipe` and
`sd_merge_models` keyed by each input's sha256 with its name, legacy hash and own recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InvalidRequest
from core.files import sync_folder
from engine.models.model_files import (
    METADATA_KEY,
    UNET_CONV_IN,
    CheckpointKind,
    check_safetensors,
    detect_checkpoint_kind,
)
from engine.models.registry import ModelEntry

if TYPE_CHECKING:
    import torch

# torch dtype name → safetensors dtype, for every dtype a checkpoint holds in practice.
SAFETENSORS_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}  # fmt: skip
TORCH_DTYPES = {value: key for key, value in SAFETENSORS_DTYPES.items()}
LEGACY_HASH_OFFSET, LEGACY_HASH_BYTES = 0x100000, 0x10000  # A1111's old 8-hex `model_hash`


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's safetensors dtype and shape, known before its values."""

    dtype: str  # "F32", "F16", …
    shape: tuple[int, ...]


@dataclass
class MergeInput:
    """One checkpoint to merge: its family, its tensors' specs, and its tensors read on demand."""

    entry: ModelEntry
    kind: CheckpointKind
    specs: dict[str, TensorSpec]
    read: Callable[[str], torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None

    @property
    def sdxl(self) -> bool:
        return self.kind in (CheckpointKind.SDXL, CheckpointKind.SDXL_INPAINT)

    @property
    def family(self) -> str:
        if self.kind in (CheckpointKind.SD2, CheckpointKind.SD2_INPAINT):
            return "SD 2.x"
        return "SDXL" if self.sdxl else "SD 1.x"

    @property
    def in_channels(self) -> int:
        spec = self.specs.get(UNET_CONV_IN)
        return spec.shape[1] if spec is not None and len(spec.shape) > 1 else -1


def open_input(entry: ModelEntry) -> MergeInput:
    """An installed checkpoint as a merge input: a single file streams, a diffusers folder is converted."""
    if entry.is_diffusers_folder:
        return _folder_input(entry)
    header = check_safetensors(entry.path)  # the gate: a renamed pickle or a truncated file stops here
    kind = detect_checkpoint_kind(header)
    specs = {
        name: TensorSpec(value["dtype"], tuple(value["shape"]))
        for name, value in header.items()
        if name != METADATA_KEY
    }
    from safetensors import safe_open

    handle = safe_open(str(entry.path), framework="pt", device="cpu")
    metadata = dict(header.get(METADATA_KEY) or {})
    return MergeInput(entry, kind, specs, handle.get_tensor, metadata, lambda: None)


def _folder_input(entry: ModelEntry) -> MergeInput:
    """A diffusers folder loaded on the CPU (its weight files gated by the loader) and converted to LDM names."""
    import torch

    from engine.models.ldm_conversion import diffusers_to_ldm
    from engine.models.loading import load_model

    model = load_model(entry, "", torch.device("cpu"), torch.float32)
    pipe = model.pipe
    state = diffusers_to_ldm(pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
    state = {key: value.detach().contiguous() for key, value in state.items()}
    inpainting = model.inpainting
    if model.sdxl:
        kind = CheckpointKind.SDXL_INPAINT if inpainting else CheckpointKind.SDXL
    elif model.sd2:
        kind = CheckpointKind.SD2_INPAINT if inpainting else CheckpointKind.SD2
    else:
        kind = CheckpointKind.SD1_INPAINT if inpainting else CheckpointKind.SD1
    specs = {key: spec_of(value) for key, value in state.items()}
    return MergeInput(entry, kind, specs, state.__getitem__, {}, state.clear)


def spec_of(tensor: torch.Tensor) -> TensorSpec:
    """The safetensors dtype and shape of a tensor."""
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in SAFETENSORS_DTYPES:
        raise InvalidRequest("models", f"a tensor of dtype {name} cannot be saved as safetensors")
    return TensorSpec(SAFETENSORS_DTYPES[name], tuple(tensor.shape))


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a safetensors dtype name."""
    import torch

    return getattr(torch, TORCH_DTYPES[dtype])


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's bytes in safetensors' layout (C order, little-endian, as on every machine Salon runs on)."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def write_streaming(
    path: Path,
    specs: Mapping[str, TensorSpec],
    tensors: Iterable[tuple[str, torch.Tensor]],
    metadata: Mapping[str, str],
) -> None:
    """Write a safetensors file whose header is `specs` (in order) from `tensors`, one at a time.

    Each tensor must arrive in the order of `specs` with exactly that dtype and shape (else ValueError: the
    file would be corrupt). The header starts with `__metadata__`, as A1111's reader expects (`{"`)."""
    import math

    from engine.models.model_files import DTYPE_SIZES

    header: dict[str, Any] = {METADATA_KEY: dict(metadata)}
    offset = 0
    for name, spec in specs.items():
        size = math.prod(spec.shape) * DTYPE_SIZES[spec.dtype]
        header[name] = {
            "dtype": spec.dtype,
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header so the data starts aligned
    expected = iter(specs.items())
    with open(path, "wb") as file:
        file.write(len(raw).to_bytes(8, "little"))
        file.write(raw)
        for name, tensor in tensors:
            wanted_name, wanted = next(expected, (None, None))
            if name != wanted_name or wanted is None or spec_of(tensor) != wanted:
                raise ValueError(
                    f"tensor {name!r} is {spec_of(tensor)}, the header says {wanted_name}: {wanted}"
                )
            file.write(_tensor_bytes(tensor))
        if next(expected, None) is not None:
            raise ValueError("fewer tensors than the header lists")


def place_without_overwrite(temp: Path, target: Path) -> None:
    """Move a finished temp file to `target`, failing (FileExistsError) if `target` exists: a hard link is
    created atomically or not at all, so a file that appeared meanwhile is never replaced."""
    with open(temp, "r+b") as file:
        os.fsync(file.fileno())
    os.chmod(temp, 0o644)
    try:
        os.link(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    sync_folder(target.parent)


def legacy_hash(path: Path) -> str | None:
    """A1111's old 8-hex model hash: sha256 of 64 KiB at 1 MiB into the file (None for a folder)."""
    if path.is_dir():
        return None
    with open(path, "rb") as file:
        file.seek(LEGACY_HASH_OFFSET)
        return hashlib.sha256(file.read(LEGACY_HASH_BYTES)).hexdigest()[:8]


def a1111_metadata(metadata: Mapping[str, str]) -> dict[str, Any]:
    """A file's metadata as A1111's `read_metadata_from_safetensors` gives it: values starting `{` as JSON."""
    result: dict[str, Any] = {}
    for key, value in metadata.items():
        result[key] = value
        if value.startswith("{"):
            try:
                result[key] = json.loads(value)
            except ValueError:
                pass
    return result


@dataclass(frozen=True)
class InputRecord:
    """What the merge metadata says of one input."""

    sha256: str
    name: str  # A1111's checkpoint name: the path under models/Stable-diffusion, with its extension
    legacy_hash: str | None
    metadata: Mapping[str, str]


def merge_models_entry(records: Iterable[InputRecord]) -> dict[str, Any]:
    """`sd_merge_models`: each input by sha256, then the models its own merge recipe names (A1111's order)."""
    models: dict[str, Any] = {}
    for record in records:
        parsed = a1111_metadata(record.metadata)
        models[record.sha256] = {
            "name": record.name,
            "legacy_hash": record.legacy_hash,
            "sd_merge_recipe": parsed.get("sd_merge_recipe"),
        }
        earlier = parsed.get("sd_merge_models")
        if isinstance(earlier, dict):
            models.update(earlier)
    return models
