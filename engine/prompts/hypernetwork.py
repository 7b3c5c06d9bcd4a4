"""A1111 hypernetworks: the file format, the module architecture and their use as `<hypernet:name:strength>`.

Semantics follow AUTOMATIC1111's `modules/hypernetworks/hypernetwork.py` (1.x). A hypernetwork holds, per
context width (768, 320, 640, 1280, …), two small MLPs: one for the context a transformer attention layer
turns into keys, one for values. Every UNet attention layer (self-attention `attn1` and cross-attention
`attn2`, as A1111 patches every ldm CrossAttention) whose key input has such a width computes
`to_k(context + mlp_k(context) * strength)` and `to_v(context + mlp_v(context) * strength)`; several
hypernetworks apply one after the other. The MLP's `torch.nn.Sequential` indices are A1111's (Linear, then
activation, LayerNorm, Dropout), so files load both ways. `.pt` files are read only through
`torch.load(weights_only=True)`; `.safetensors` files use the flat layout described at `write_safetensors`.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.errors import InvalidRequest, UnsafeModelFile
from core.files import atomic_write_with
from engine.models.model_files import load_weights, safetensors_metadata
from engine.models.pt_files import write_a1111_pt
from engine.models.registry import ModelEntry


def _activation_classes() -> dict[str, type[torch.nn.Module]]:
    """A1111's `HypernetworkModule.activation_dict`: its named few, then every torch activation by lower name."""
    classes: dict[str, type[torch.nn.Module]] = {
        "linear": torch.nn.Identity,
        "relu": torch.nn.ReLU,
        "leakyrelu": torch.nn.LeakyReLU,
        "elu": torch.nn.ELU,
        "swish": torch.nn.Hardswish,  # sic: A1111's "swish" is Hardswish
        "tanh": torch.nn.Tanh,
        "sigmoid": torch.nn.Sigmoid,
    }
    module = torch.nn.modules.activation
    for name, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ == module.__name__:
            classes[name.lower()] = cls
    return classes


ACTIVATIONS = _activation_classes()
WEIGHT_INITS = ("Normal", "XavierUniform", "XavierNormal", "KaimingUniform", "KaimingNormal")
MAX_CONTEXT_WIDTH = 16384
MAX_LAYER_FACTOR = 64.0
MAX_LOADED = 4
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


@dataclass(frozen=True)
class HypernetworkOptions:
    """The architecture options A1111 stores in a hypernetwork file (its key names in the comments)."""

    layer_structure: tuple[float, ...] = (1, 2, 1)  # layer_structure: widths as multiples of the context
    activation_func: str | None = None  # activation_func: a key of ACTIVATIONS; None/"linear" = none
    weight_initialization: str | None = "Normal"  # weight_initialization: only used to create new ones
    is_layer_norm: bool = False  # is_layer_norm: a LayerNorm after each Linear
    use_dropout: bool = False  # use_dropout
    activate_output: bool = False  # activate_output: the activation also after the last Linear
    dropout_structure: tuple[float, ...] = (0.0, 0.0, 0.0)  # dropout_structure: dropout after layer i

    @property
    def last_layer_dropout(self) -> bool:
        """What A1111 saves as `last_layer_dropout`: whether the layer before the output has dropout."""
        return self.dropout_structure[-2] != 0


class HypernetworkModule(torch.nn.Module):
    """One MLP of a hypernetwork, built exactly as A1111's `HypernetworkModule` so its state dict matches."""

    def __init__(self, dim: int, options: HypernetworkOptions) -> None:
        super().__init__()
        widths = [int(dim * factor) for factor in options.layer_structure]
        layers: list[torch.nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
            last = i >= len(widths) - 2
            if options.activation_func not in (None, "linear") and (options.activate_output or not last):
                layers.append(ACTIVATIONS[options.activation_func]())
            if options.is_layer_norm:
                layers.append(torch.nn.LayerNorm(widths[i + 1]))
            if options.dropout_structure[i + 1] > 0:
                layers.append(torch.nn.Dropout(p=options.dropout_structure[i + 1]))
        self.linear = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        """A1111: `x + linear(x) * multiplier`, the multiplier taken as 1 while training."""
        return x + self.linear(x) * (1.0 if self.training else multiplier)


@dataclass
class Hypernetwork:
    """A loaded or new hypernetwork: its A1111 name, options, record of training, and (key, value) MLPs per width."""

    name: str
    options: HypernetworkOptions
    layers: dict[int, tuple[HypernetworkModule, HypernetworkModule]] = field(repr=False)
    step: int = 0
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    optional_info: str | None = None

    def modules(self) -> list[HypernetworkModule]:
        """Every MLP, keys and values of each width."""
        return [module for pair in self.layers.values() for module in pair]

    def parameters(self) -> list[torch.nn.Parameter]:
        """The weights a trainer optimises (A1111 `Hypernetwork.weights`)."""
        return [p for module in self.modules() for p in module.parameters()]

    def train(self, mode: bool = True) -> Hypernetwork:
        """Training mode (dropout on, multiplier 1, gradients) or, with False, inference mode."""
        for module in self.modules():
            module.train(mode)
            module.requires_grad_(mode)
        return self

    def eval(self) -> Hypernetwork:
        """Inference mode: no dropout, the strength applies, no gradients (how files load)."""
        return self.train(False)

    def to(self, device: torch.device | str) -> Hypernetwork:
        """Move every MLP to `device`, in place (they stay float32 as in A1111)."""
        for module in self.modules():
            module.to(device)
        return self


# ----------------------------------------------------------------------------------------------------------
# Creating
# ----------------------------------------------------------------------------------------------------------


def _init_layer(
    layer: torch.nn.Module, weight_init: str, activation: str | None, generator: torch.Generator | None
) -> None:
    """A1111's initialisation of one Linear/LayerNorm (LayerNorms always get the Normal one, as in A1111)."""
    init = torch.nn.init
    weight, bias = layer.weight.data, layer.bias.data
    if weight_init == "Normal" or isinstance(layer, torch.nn.LayerNorm):
        init.normal_(weight, mean=0.0, std=0.01, generator=generator)
    elif weight_init == "XavierUniform":
        init.xavier_uniform_(weight, generator=generator)
    elif weight_init == "XavierNormal":
        init.xavier_normal_(weight, generator=generator)
    else:
        kaiming = init.kaiming_uniform_ if weight_init == "KaimingUniform" else init.kaiming_normal_
        kaiming(
            weight, nonlinearity="leaky_relu" if activation == "leakyrelu" else "relu", generator=generator
        )
    init.zeros_(bias)


def _new_module(
    dim: int, options: HypernetworkOptions, generator: torch.Generator | None
) -> HypernetworkModule:
    """A fresh MLP with A1111's initialisation of its Linear and LayerNorm layers."""
    module = HypernetworkModule(dim, options)
    for layer in module.linear:
        if type(layer) in (torch.nn.Linear, torch.nn.LayerNorm):
            _init_layer(layer, options.weight_initialization or "Normal", options.activation_func, generator)
    return module


def new_hypernetwork(
    name: str,
    sizes: Sequence[int],
    layer_structure: Sequence[float] = (1, 2, 1),
    activation: str = "linear",
    layer_norm: bool = False,
    weight_init: str = "Normal",
    use_dropout: bool = False,
    dropout_structure: Sequence[float] | None = None,
    activate_output: bool = False,
    generator: torch.Generator | None = None,
) -> Hypernetwork:
    """A fresh hypernetwork as A1111's "Create hypernetwork" makes it (dropout only when use_dropout)."""
    dropout = tuple(dropout_structure) if use_dropout and dropout_structure else (0,) * len(layer_structure)
    options = HypernetworkOptions(
        tuple(layer_structure), activation, weight_init, layer_norm, use_dropout, activate_output, dropout
    )
    if weight_init not in WEIGHT_INITS:
        raise InvalidRequest("weight_init", f"{weight_init!r} is not one of {', '.join(WEIGHT_INITS)}")
    try:
        _check_options(name, options)
        for size in sizes:
            _check_size(name, int(size))
    except UnsafeModelFile as exc:
        raise InvalidRequest("hypernetwork", exc.reason) from exc
    layers = {
        int(s): (_new_module(int(s), options, generator), _new_module(int(s), options, generator))
        for s in sizes
    }
    return Hypernetwork(name, options, layers).eval()


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


def _check_size(path: object, size: object) -> None:
    """A layer width: a positive int key no larger than MAX_CONTEXT_WIDTH."""
    if type(size) is not int or not 0 < size <= MAX_CONTEXT_WIDTH:
        raise UnsafeModelFile(
            path, f"layer width {size!r} is not a whole number from 1 to {MAX_CONTEXT_WIDTH}"
        )


def _check_options(path: object, options: HypernetworkOptions) -> None:
    """The checks A1111 asserts, plus bounds, so no file builds an unusable or huge network."""
    structure, dropout = options.layer_structure, options.dropout_structure
    if len(structure) < 2 or structure[0] != 1 or structure[-1] != 1:
        raise UnsafeModelFile(path, f"layer_structure {list(structure)} must start and end with 1")
    if not all(0 < factor <= MAX_LAYER_FACTOR for factor in structure):
        raise UnsafeModelFile(
            path, f"layer_structure {list(structure)}: factors must be in (0, {MAX_LAYER_FACTOR:g}]"
        )
    if len(dropout) < len(structure) or not all(0 <= p < 1 for p in dropout):
        raise UnsafeModelFile(
            path, f"dropout_structure {list(dropout)} needs {len(structure)} values in [0, 1)"
        )
    activation = options.activation_func
    if activation is not None and activation not in ACTIVATIONS:
        raise UnsafeModelFile(path, f"unsupported activation function {activation!r}")
    try:
        ACTIVATIONS[activation or "linear"]()
    except TypeError as exc:  # e.g. Threshold or MultiheadAttention: not usable without arguments
        raise UnsafeModelFile(path, f"activation function {activation!r} cannot be used here: {exc}") from exc


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
    _check_options(path, options)
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
        _check_size(path, size)
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


# ----------------------------------------------------------------------------------------------------------
# Applying
# ----------------------------------------------------------------------------------------------------------

# (keys MLP, values MLP, strength) of one hypernetwork at one width.
Stage = tuple[HypernetworkModule, HypernetworkModule, float]


def _transform(module: HypernetworkModule, x: torch.Tensor, strength: float) -> torch.Tensor:
    """Run one MLP in its own dtype (float32) and hand back the context's dtype."""
    dtype = module.linear[0].weight.dtype
    return module(x.to(dtype), strength).to(x.dtype)


def _through(stages: Sequence[Stage], index: int, context: torch.Tensor) -> torch.Tensor:
    """The context for keys (index 0) or values (index 1): through each stage's MLP in order."""
    for stage in stages:
        context = _transform(stage[index], context, stage[2])  # type: ignore[arg-type]
    return context


@contextmanager
def _input_transform(
    layer: torch.nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """While active, `layer` sees `transform(input)` instead of its input."""
    handle = layer.register_forward_pre_hook(lambda _m, args: (transform(args[0]), *args[1:]), prepend=True)
    try:
        yield
    finally:
        handle.remove()


class HypernetworkAttnProcessor(torch.nn.Module):
    """Wraps an attention layer's processor: `to_k` and `to_v` see their hypernetwork-transformed contexts.

    A torch Module (like diffusers' IP-Adapter processors), so the MLPs count as part of the UNet while applied.
    """

    def __init__(self, original: object, stages: list[Stage]) -> None:
        super().__init__()
        self.original = original
        self.stages = stages
        self.mlps = torch.nn.ModuleList([m for stage in stages for m in stage[:2]])

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: object,
        **kwargs: object,
    ) -> torch.Tensor:
        """The original processor's computation, with each context transformed before its projection."""
        keys = _input_transform(attn.to_k, lambda context: _through(self.stages, 0, context))
        values = _input_transform(attn.to_v, lambda context: _through(self.stages, 1, context))
        with keys, values:
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )


def _attention_layers(unet: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The transformer attention layers of a UNet (`attn1`, `attn2`): what A1111 patches as CrossAttention."""
    from diffusers.models.attention_processor import Attention

    for name, module in unet.named_modules():
        if isinstance(module, Attention) and name.rsplit(".", 1)[-1] in ("attn1", "attn2"):
            yield module


def _stages(uses: Sequence[tuple[Hypernetwork, float]], width: int) -> list[Stage]:
    """The stages of the hypernetworks that have MLPs for this width, in order."""
    return [(*h.layers[width], s) for h, s in uses if width in h.layers]  # type: ignore[misc]


def _check_processor(attn: torch.nn.Module) -> None:
    """Refuse layers whose processor this wrapper cannot wrap faithfully."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if not isinstance(attn.processor, AttnProcessor | AttnProcessor2_0) or attn.fused_projections:
        name = type(attn.processor).__name__
        raise InvalidRequest(
            "hypernet", f"hypernetworks cannot be combined with the attention processor {name}"
        )


@contextmanager
def applied_hypernetworks(unet: torch.nn.Module, uses: Sequence[tuple[Hypernetwork, float]]) -> Iterator[int]:
    """Apply hypernetworks (in order, with their strengths) to every matching attention layer; yields how many.

    Strength 0 or no hypernetwork leaves the UNet untouched. The original processors come back on exit. In
    training mode (`Hypernetwork.train()`) the MLPs use dropout and strength 1, as in A1111.
    """
    active = [(h.to(unet.device), float(s)) for h, s in uses if s != 0]
    originals: list[tuple[torch.nn.Module, object]] = []
    try:
        for attn in _attention_layers(unet) if active else ():
            stages = _stages(active, attn.to_k.in_features)
            if stages:
                _check_processor(attn)
                originals.append((attn, attn.processor))
                attn.set_processor(HypernetworkAttnProcessor(attn.processor, stages))
        yield len(originals)
    finally:
        for attn, processor in originals:
            attn.set_processor(processor)
