"""Model files: the safetensors gate and checkpoint-kind detection.

Every user-supplied weight file passes `check_safetensors` before anything loads it: the decision is made from
the bytes (header length, JSON header, dtypes, shapes, offsets), never from the file name, so a pickle renamed
`.safetensors` is refused without being unpickled. Legacy `.pt` embeddings and hypernetworks go through
`torch.load(weights_only=True)` only, and only when the caller asks for it. The kind of a single-file
checkpoint is read from its header's tensor names and shapes. Torch and safetensors are imported inside
functions, so importing this is cheap. (The way back, diffusers → an A1111 single file, is
`engine/models/ldm_conversion.py`.)
"""

from __future__ import annotations

import json
import math
import re
import stat
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InvalidRequest, UnsafeModelFile

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself enforces
MIN_SAFE_TORCH = (2, 10)  # weights_only=True had known bypasses before 2.6 and again before 2.10
METADATA_KEY = "__metadata__"
SAFETENSORS_SUFFIX = ".safetensors"

# Bytes per element of every dtype the safetensors torch loader can map to a torch dtype.
DTYPE_SIZES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1,
    "BOOL": 1, "C64": 8,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,
}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# The safetensors gate
# ----------------------------------------------------------------------------------------------------------


def check_safetensors(path: Path) -> dict[str, Any]:
    """Validate a safetensors file from its header alone and return the parsed header; refuse all else."""
    path = Path(path)
    size = _regular_file_size(path)
    raw = _read_header_bytes(path, size)
    header = _parse_header(path, raw)
    _check_metadata(path, header.get(METADATA_KEY))
    data_len = size - 8 - len(raw)
    spans = [
        _check_entry(path, name, entry, data_len) for name, entry in header.items() if name != METADATA_KEY
    ]
    _check_layout(path, spans, data_len)
    return header


def _regular_file_size(path: Path) -> int:
    """Size of `path`, refusing directories, FIFOs and devices (reading a FIFO would block forever)."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeModelFile(path, "not a regular file")
    if info.st_size < 8:
        raise UnsafeModelFile(path, f"too short for safetensors ({info.st_size} bytes, need at least 8)")
    return info.st_size


def _read_header_bytes(path: Path, size: int) -> bytes:
    """Read the 8-byte little-endian header length and then exactly that many header bytes."""
    with path.open("rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        if length < 2 or length > MAX_HEADER_BYTES:
            raise UnsafeModelFile(
                path, f"not safetensors: header length {length} outside 2..{MAX_HEADER_BYTES}"
            )
        if 8 + length > size:
            raise UnsafeModelFile(
                path, f"not safetensors: header length {length} exceeds the file size {size}"
            )
        raw = fh.read(length)
    if len(raw) != length:
        raise UnsafeModelFile(path, "file changed while reading its header")
    return raw


def _parse_header(path: Path, raw: bytes) -> dict[str, Any]:
    """Decode the header as a UTF-8 JSON object without duplicate keys (parsers disagree on duplicates)."""
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnsafeModelFile(path, f"not safetensors: header is not UTF-8 JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise UnsafeModelFile(path, "not safetensors: header is not a JSON object")
    return header


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook that refuses a key given twice."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _check_metadata(path: Path, metadata: object) -> None:
    """The optional `__metadata__` entry must map strings to strings."""
    if metadata is None:
        return
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise UnsafeModelFile(path, "__metadata__ must be an object of string values")


def _is_int(value: object) -> bool:
    """A JSON integer (bool is an int subclass in Python but not an integer in the format)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(path: Path, name: str, entry: object, data_len: int) -> tuple[int, int, str]:
    """Check one tensor entry (dtype, shape, offsets, byte size) and return its (begin, end, name) span."""
    if not isinstance(entry, dict):
        raise UnsafeModelFile(path, f"tensor {name!r}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise UnsafeModelFile(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise UnsafeModelFile(path, f"tensor {name!r}: shape must be a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise UnsafeModelFile(path, f"tensor {name!r}: data_offsets must be two integers")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise UnsafeModelFile(
            path, f"tensor {name!r}: data_offsets {offsets} outside the {data_len}-byte data"
        )
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != expected:
        raise UnsafeModelFile(
            path, f"tensor {name!r}: {end - begin} bytes stored, {dtype}{shape} needs {expected}"
        )
    return begin, end, name


def _check_layout(path: Path, spans: list[tuple[int, int, str]], data_len: int) -> None:
    """Tensors must tile the data exactly: no overlap, gap or trailing bytes (as safetensors requires)."""
    position = 0
    for begin, end, name in sorted(spans):
        if begin < position:
            raise UnsafeModelFile(path, f"tensor {name!r}: data overlaps the previous tensor")
        if begin > position:
            raise UnsafeModelFile(path, f"tensor {name!r}: unused gap before its data")
        position = end
    if position != data_len:
        raise UnsafeModelFile(path, f"data is {data_len} bytes but the tensors use {position}")


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` strings of a safetensors file (empty when absent), read through the gate."""
    return dict(check_safetensors(path).get(METADATA_KEY) or {})


def load_safetensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Gate the file, then load every tensor with safetensors (no pickle anywhere on this path)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path), device=device)
    except SafetensorError as exc:  # the file changed after the gate, or a check we do not duplicate
        raise UnsafeModelFile(path, f"safetensors refused it: {exc}") from exc


def _torch_version() -> tuple[int, int]:
    """(major, minor) of the installed torch."""
    import torch

    match = re.match(r"(\d+)\.(\d+)", str(torch.__version__))
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def load_torch_weights_only(path: Path) -> object:
    """Load a legacy A1111 `.pt` embedding/hypernetwork with weights_only; refusals are UnsafeModelFile."""
    import torch

    if _torch_version() < MIN_SAFE_TORCH:
        wanted = ".".join(map(str, MIN_SAFE_TORCH))
        raise UnsafeModelFile(
            path, f"legacy .pt files need torch >= {wanted}; convert the file to .safetensors"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # UnpicklingError for forbidden globals; RuntimeError/EOFError if corrupt
        raise UnsafeModelFile(path, f"refused by torch.load(weights_only=True): {exc}") from exc


def load_weights(path: Path, *, allow_legacy_pt: bool = False) -> object:
    """Load weights: `.safetensors` (any case) through the gate; legacy pickles only when allowed."""
    path = Path(path)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return load_safetensors(path)
    if not allow_legacy_pt:
        raise UnsafeModelFile(path, f"only {SAFETENSORS_SUFFIX} files are accepted")
    return load_torch_weights_only(path)


# ----------------------------------------------------------------------------------------------------------
# Checkpoint kind from the header
# ----------------------------------------------------------------------------------------------------------


class CheckpointKind(StrEnum):
    """The single-file checkpoint families Salon loads."""

    SD1 = "sd1"
    SD1_INPAINT = "sd1-inpaint"
    SDXL = "sdxl"
    SDXL_INPAINT = "sdxl-inpaint"
    SD2 = "sd2"
    SD2_INPAINT = "sd2-inpaint"


SD2_KINDS = (CheckpointKind.SD2, CheckpointKind.SD2_INPAINT)


SUPPORTED_CHECKPOINTS = (
    "supported: SD 1.x, SD 2.x and SDXL base single-file checkpoints (normal or inpainting)"
)
UNET_PREFIX = "model.diffusion_model."
UNET_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
SD1_TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."
SDXL_REFINER_PREFIX = "conditioner.embedders.0.model."
SD2_DEPTH_PREFIX = "depth_model."  # SD 2 depth2img's MiDaS
SD2_UNCLIP_PREFIX = "embedder.model."  # SD 2.1 unCLIP's image encoder
VAE_PREFIX = "first_stage_model."
_VAE_ONLY_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
_LORA_MARKERS = (".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.", ".hada_w1_a", ".lokr_w1")


def detect_checkpoint_kind(header: Mapping[str, Any]) -> CheckpointKind:
    """Classify an A1111 single-file checkpoint from its tensor names and shapes (header only, no weights)."""
    names = [name for name in header if name != METADATA_KEY]
    _refuse_foreign_layouts(names, header)
    if any(n.startswith(SDXL_OPENCLIP_PREFIX) for n in names) and UNET_CONV_IN in header:
        return CheckpointKind.SDXL_INPAINT if _unet_in_channels(header) == 9 else CheckpointKind.SDXL
    if any(n.startswith(SD2_TEXT_PREFIX) for n in names) and UNET_CONV_IN in header:
        return CheckpointKind.SD2_INPAINT if _unet_in_channels(header) == 9 else CheckpointKind.SD2
    if any(n.startswith(SD1_TEXT_PREFIX) for n in names) and UNET_CONV_IN in header:
        return CheckpointKind.SD1_INPAINT if _unet_in_channels(header) == 9 else CheckpointKind.SD1
    raise InvalidRequest("model", f"unknown checkpoint layout{_layout_hint(names)}; {SUPPORTED_CHECKPOINTS}")


def _refuse_foreign_layouts(names: list[str], header: Mapping[str, Any]) -> None:
    """Refuse LoRAs, SD 2 depth/x4 upscaler/unCLIP, SDXL refiner, SD3, Flux and other UNets, by name."""
    refusal = _foreign_layout(names, header)
    if refusal:
        raise InvalidRequest("model", f"{refusal}; {SUPPORTED_CHECKPOINTS}")
    channels = _unet_in_channels(header)
    if UNET_CONV_IN in header and channels not in (4, 9):
        message = f"a UNet with {channels} input channels is not supported; {SUPPORTED_CHECKPOINTS}"
        raise InvalidRequest("model", message)


def _foreign_layout(names: list[str], header: Mapping[str, Any]) -> str | None:
    """A sentence naming the recognised-but-unsupported family of these tensor names, or None."""
    if any(n.startswith("lora_") or any(m in n for m in _LORA_MARKERS) for n in names):
        return "this is a LoRA file, not a checkpoint: put it in models/Lora and use <lora:name:weight>"
    if any("joint_blocks." in n for n in names):
        return "Stable Diffusion 3 checkpoints are not supported"
    if any("double_blocks." in n or "single_blocks." in n for n in names):
        return "Flux checkpoints are not supported"
    if any(n.startswith(SDXL_REFINER_PREFIX) for n in names):
        return "the SDXL refiner cannot be loaded as a checkpoint"
    if any(n.startswith(SD2_TEXT_PREFIX) for n in names):
        return _sd2_variant(names, header)
    if any(n.startswith(SD2_UNCLIP_PREFIX) for n in names):
        return "Stable Diffusion 2.1 unCLIP checkpoints are not supported"
    return None


def _sd2_variant(names: list[str], header: Mapping[str, Any]) -> str | None:
    """The SD 2.x variants that are not text-to-image models, named (depth2img, the x4 upscaler, unCLIP)."""
    channels = _unet_in_channels(header)
    if channels == 5 or any(n.startswith(SD2_DEPTH_PREFIX) for n in names):
        return "the Stable Diffusion 2 depth model (depth2img, 5 input channels) is not supported"
    if channels == 7:
        return "the Stable Diffusion x4 upscaler (7 input channels) is not supported; use a models/ESRGAN upscaler"
    if any(n.startswith(SD2_UNCLIP_PREFIX) for n in names):
        return "Stable Diffusion 2.1 unCLIP checkpoints are not supported"
    return None


def _layout_hint(names: list[str]) -> str:
    """A hint for well-known non-checkpoint files (a lone VAE, an embedding)."""
    if names and all(n.startswith(_VAE_ONLY_PREFIXES) for n in names):
        return " (this looks like a VAE: put it in models/VAE)"
    if any(n in ("emb_params", "string_to_param", "clip_l", "clip_g") for n in names):
        return " (this looks like an embedding: put it in embeddings/)"
    return ""


def _shape(entry: object) -> tuple[int, ...]:
    """Shape of a header entry (dict with 'shape') or of a tensor, so state dicts classify too."""
    if isinstance(entry, dict):
        return tuple(entry.get("shape") or ())
    shape = getattr(entry, "shape", None)
    return tuple(shape) if shape is not None else ()


def _unet_in_channels(header: Mapping[str, Any]) -> int:
    """Input channels of the UNet's first convolution (4 normal, 9 inpainting, 8 instruct-pix2pix)."""
    shape = _shape(header.get(UNET_CONV_IN))
    return shape[1] if len(shape) > 1 else -1
