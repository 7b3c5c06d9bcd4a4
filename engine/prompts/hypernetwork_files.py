"""A1111 hypernetwork files: reading and writing the dictionary A1111's `Hypernetwork.save` writes, its option
keys and layer names (old files' included), and the few recently used files kept loaded.

`.pt` files are read only through `torch.load(weights_only=True)` (engine/models/model_files.py) and written
as A1111 can load them (engine/models/pt_files.py); `.safetensors` files use the flat layout described at
`write_safetensors`. Every value read is checked before a network is built from it.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

from core.errors import UnsafeModelFile
from core.files import atomic_write_with
from engine.models.model_files import load_weights, safetensors_metadata
from engine.models.pt_files import write_a1111_pt
from engine.models.registry import ModelEntry
from engine.prompts.hypernetwork import (
    Hypernetwork,
    HypernetworkModule,
    HypernetworkOptions,
    check_options,
    check_size,
)

MAX_LOADED = 4  # hypernetworks kept loaded by a HypernetworkCache
# Flat `.safetensors` keys: "<width>.<0 for keys, 1 for values>.<A1111 state-dict key>".
_FLAT_KEY = re.compile(r"^(\d+)\.([01])\.(.+)$")
# The options A1111's `Hypernetwork.save` writes next to the size entries, in its order.
OPTION_KEYS = (
    "step",
    "name",
    "layer_structure",
    "activation_func",
    "is_layer_norm",
    "weight_initialization",
    "sd_checkpoint",
    "sd_checkpoint_name",
    "activate_output",
    "use_dropout",
    "dropout_structure",
    "last_layer_dropout",
    "optional_info",
)
# Pre-October-2022 files named their two layers linear1/linear2 (A1111 `fix_old_state_dict`).
_OLD_KEYS = {
    "linear1.bias": "linear.0.bias",
    "linear1.weight": "linear.0.weight",
    "linear2.bias": "linear.1.bias",
    "linear2.weight": "linear.1.weight",
}


def parse_dropout_structure(
    layer_structure: Sequence[float], use_dropout: bool, last_layer_dropout: bool
) -> tuple[float, ...]:
    """A1111's `parse_dropout_structure`: the dropout after each layer for files that predate the option."""
    if not use_dropout:
        return (0.0,) * len(layer_structure)
    middle = [0.3] * (len(layer_structure) - 3)
    return (0.0, *middle, 0.3 if last_layer_dropout else 0.0, 0.0)


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number_tuple(path: object, key: str, value: object) -> tuple[float, ...]:
    """A list of numbers from the file, or a refusal naming its key."""
    if not isinstance(value, list | tuple) or not all(_is_number(v) for v in value):
        raise UnsafeModelFile(path, f"{key} must be a list of numbers, not {value!r}")
    return tuple(value)


def _optional_str(path: object, data: dict, key: str, default: str | None) -> str | None:
    """A string option (or None) from the file, `default` when absent."""
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        raise UnsafeModelFile(path, f"{key} must be a string, not {type(value).__name__}")
    return value


def options_from_dict(path: object, data: dict) -> HypernetworkOptions:
    """The options of an A1111 file, with A1111 `Hypernetwork.load`'s defaults for missing keys."""
    structure = _number_tuple(path, "layer_structure", data.get("layer_structure", [1, 2, 1]))
    dropout_raw = data.get("dropout_structure")
    dropout = None if dropout_raw is None else _number_tuple(path, "dropout_structure", dropout_raw)
    use_dropout = True if dropout is not None and any(dropout) else bool(data.get("use_dropout", False))
    if dropout is None:
        dropout = parse_dropout_structure(structure, use_dropout, bool(data.get("last_layer_dropout", False)))
    options = HypernetworkOptions(
        layer_structure=structure,
        activation_func=_optional_str(path, data, "activation_func", None),
        weight_initialization=_optional_str(path, data, "weight_initialization", "Normal"),
        is_layer_norm=bool(data.get("is_layer_norm", False)),
        use_dropout=use_dropout,
        activate_output=bool(data.get("activate_output", True)),
        dropout_structure=dropout,
    )
    check_options(path, options)
    return options


def _state_dict(path: object, size: int, raw: object) -> dict[str, torch.Tensor]:
    """One MLP's state dict from the file, with A1111's old layer names renamed."""
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()
    ):
        raise UnsafeModelFile(path, f"entry {size} must hold two dictionaries of tensors")
    return {_OLD_KEYS.get(k, k): v for k, v in raw.items()}


def _loaded_module(path: object, size: int, options: HypernetworkOptions, raw: object) -> HypernetworkModule:
    """Build the MLP without allocating (meta device), then take the file's tensors as its weights."""
    state = _state_dict(path, size, raw)
    with torch.device("meta"):
        module = HypernetworkModule(size, options)
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise UnsafeModelFile(path, f"the weights of width {size} do not fit its options: {exc}") from exc
    return module.float()


def _layers(path: object, data: dict, options: HypernetworkOptions) -> dict[int, tuple]:
    """The (keys, values) MLPs of every int key of the file, as A1111 loads them."""
    layers = {}
    for size, pair in data.items():
        if type(size) is not int:  # A1111 takes exactly the int keys as widths
            continue
        check_size(path, size)
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise UnsafeModelFile(path, f"entry {size} must be a (keys, values) pair of state dicts")
        layers[size] = (
            _loaded_module(path, size, options, pair[0]),
            _loaded_module(path, size, options, pair[1]),
        )
    if not layers:
        raise UnsafeModelFile(path, "not an A1111 hypernetwork: no layer entries (integer keys such as 768)")
    return layers


def _int(path: object, value: object, key: str) -> int:
    """An integer option from the file, or a refusal naming its key."""
    if type(value) is not int:
        raise UnsafeModelFile(path, f"{key} must be an integer, not {value!r}")
    return value


def hypernetwork_from_dict(path: object, data: object, default_name: str) -> Hypernetwork:
    """A Hypernetwork from the dictionary A1111 saves (as read back by torch.load or our safetensors reader)."""
    if not isinstance(data, dict):
        raise UnsafeModelFile(path, "not an A1111 hypernetwork: expected a dictionary")
    options = options_from_dict(path, data)
    return Hypernetwork(
        name=_optional_str(path, data, "name", default_name) or default_name,
        options=options,
        layers=_layers(path, data, options),
        step=_int(path, data.get("step", 0) or 0, "step"),
        sd_checkpoint=_optional_str(path, data, "sd_checkpoint", None),
        sd_checkpoint_name=_optional_str(path, data, "sd_checkpoint_name", None),
        optional_info=_optional_str(path, data, "optional_info", None),
    ).eval()


def _dict_from_safetensors(path: Path) -> dict:
    """Our flat `.safetensors` layout turned back into A1111's dictionary."""
    data: dict[object, object] = {}
    for key, text in safetensors_metadata(path).items():
        if key in OPTION_KEYS:
            try:
                data[key] = json.loads(text)
            except ValueError as exc:
                raise UnsafeModelFile(path, f"metadata {key} is not JSON") from exc
    pairs: dict[int, tuple[dict, dict]] = {}
    for key, tensor in load_weights(path).items():  # type: ignore[union-attr]
        match = _FLAT_KEY.match(key)
        if match is None:
            raise UnsafeModelFile(path, f"unexpected tensor name {key!r}")
        pair = pairs.setdefault(int(match.group(1)), ({}, {}))
        pair[int(match.group(2))][match.group(3)] = tensor
    return {**data, **dict(sorted(pairs.items()))}


def read_hypernetwork(path: Path) -> Hypernetwork:
    """Read an A1111 `.pt` (weights-only unpickling) or our flat `.safetensors` hypernetwork file."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        data: object = _dict_from_safetensors(path)
    else:
        data = load_weights(path, allow_legacy_pt=True)
    return hypernetwork_from_dict(path, data, path.stem)


def load_hypernetwork(entry: ModelEntry) -> Hypernetwork:
    """The hypernetwork of a registry entry; like A1111 its name is the one stored inside, else the file stem."""
    return read_hypernetwork(entry.path)


class HypernetworkCache:
    """Hypernetworks read from the registry, the few most recently used kept (a changed file is re-read)."""

    def __init__(self, capacity: int = MAX_LOADED) -> None:
        self.capacity = capacity
        self._loaded: OrderedDict[ModelEntry, Hypernetwork] = OrderedDict()

    def get(self, entry: ModelEntry) -> Hypernetwork:
        """The loaded hypernetwork of `entry` (its path, size and mtime are part of the key)."""
        if entry in self._loaded:
            self._loaded.move_to_end(entry)
        else:
            self._loaded[entry] = load_hypernetwork(entry)
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
        return self._loaded[entry]


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------


def _cpu_state(module: HypernetworkModule) -> dict[str, torch.Tensor]:
    """An MLP's tensors on the CPU, ready to save."""
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def to_a1111_dict(hypernetwork: Hypernetwork) -> dict:
    """The dictionary A1111's `Hypernetwork.save` writes: `{width: (keys, values)}` plus its option keys."""
    o = hypernetwork.options
    data: dict[object, object] = {
        size: (_cpu_state(k), _cpu_state(v)) for size, (k, v) in hypernetwork.layers.items()
    }
    data.update(
        step=hypernetwork.step,
        name=hypernetwork.name,
        layer_structure=list(o.layer_structure),
        activation_func=o.activation_func,
        is_layer_norm=o.is_layer_norm,
        weight_initialization=o.weight_initialization,
        sd_checkpoint=hypernetwork.sd_checkpoint,
        sd_checkpoint_name=hypernetwork.sd_checkpoint_name,
        activate_output=o.activate_output,
        use_dropout=o.use_dropout,
        dropout_structure=list(o.dropout_structure),
        last_layer_dropout=o.last_layer_dropout,
        optional_info=hypernetwork.optional_info,
    )
    return data


def write_safetensors(path: Path, data: dict) -> Path:
    """Flat layout: tensors `<width>.<0|1>.<key>` (0 = keys MLP, 1 = values), each option as JSON metadata."""
    from safetensors.torch import save_file

    tensors = {
        f"{size}.{index}.{key}": tensor
        for size, pair in data.items()
        if type(size) is int
        for index, state in enumerate(pair)
        for key, tensor in state.items()
    }
    metadata = {key: json.dumps(data[key]) for key in OPTION_KEYS}
    return atomic_write_with(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))


def save_hypernetwork(
    path: Path,
    hypernetwork: Hypernetwork,
    step: int,
    checkpoint_name: str | None,
    checkpoint_hash: str | None,
) -> Path:
    """Record the step and checkpoint as A1111's trainer does, then write `.pt` (A1111's) or `.safetensors`."""
    hypernetwork.step = step
    hypernetwork.sd_checkpoint = checkpoint_hash
    hypernetwork.sd_checkpoint_name = checkpoint_name
    data = to_a1111_dict(hypernetwork)
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return write_safetensors(path, data)
    return atomic_write_with(path, lambda temp: write_a1111_pt(data, temp))
