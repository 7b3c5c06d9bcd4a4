"""A1111 hypernetworks: the module architecture, and new ones as A1111's "Create hypernetwork" makes them.

Semantics follow AUTOMATIC1111's `modules/hypernetworks/hypernetwork.py` (1.x). A hypernetwork holds, per
context width (768, 320, 640, 1280, …), two small MLPs: one for the context a transformer attention layer
turns into keys, one for values. The MLP's `torch.nn.Sequential` indices are A1111's (Linear, then
activation, LayerNorm, Dropout), so files load both ways. The file format is in `hypernetwork_files.py`;
using them as `<hypernet:name:strength>` (the attention layers' hooks) in `hypernetwork_attention.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from core.errors import InvalidRequest, UnsafeModelFile
from engine.models.trained_files import HYPERNETWORK_WEIGHT_INITS


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
WEIGHT_INITS = HYPERNETWORK_WEIGHT_INITS  # Normal, KaimingUniform, KaimingNormal, XavierUniform, XavierNormal
MAX_CONTEXT_WIDTH = 16384
MAX_LAYER_FACTOR = 64.0


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


def check_size(path: object, size: object) -> None:
    """A layer width: a positive int key no larger than MAX_CONTEXT_WIDTH."""
    if type(size) is not int or not 0 < size <= MAX_CONTEXT_WIDTH:
        raise UnsafeModelFile(
            path, f"layer width {size!r} is not a whole number from 1 to {MAX_CONTEXT_WIDTH}"
        )


def check_options(path: object, options: HypernetworkOptions) -> None:
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
        check_options(name, options)
        for size in sizes:
            check_size(name, int(size))
    except UnsafeModelFile as exc:
        raise InvalidRequest("hypernetwork", exc.reason) from exc
    layers = {
        int(s): (_new_module(int(s), options, generator), _new_module(int(s), options, generator))
        for s in sizes
    }
    return Hypernetwork(name, options, layers).eval()
