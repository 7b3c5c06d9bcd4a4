"""Hypernetwork training (A1111's Train tab): small networks that reshape the context each attention layer's
keys and values see, learned while the model stays frozen; saved in A1111's `.pt` layout.

Read top to bottom: the options (layer structure, activation, initialization, layer norm, dropout), a fresh
hypernetwork for every attention width of the model (`HypernetworkTrainer.__init__`), the loss with it applied
at strength 1 (`loss`), resume or start (`train_hypernetwork_slice`), and the file (`save_trained`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from core.errors import InvalidRequest
from engine.models.loading import LoadedModel
from engine.prompts.conditioning import PromptChunker
from engine.prompts.hypernetwork import ACTIVATIONS, WEIGHT_INITS, new_hypernetwork
from engine.prompts.hypernetwork_attention import applied_hypernetworks
from engine.prompts.hypernetwork_files import save_hypernetwork
from engine.training.captions import Encoding, encode_captions, encoder_slots
from engine.training.loop import (
    Example,
    LoopOptions,
    LoopState,
    NoiseObjective,
    check_loop_options,
    prompt_encodings,
    render_preview,
    train_slice,
)


@dataclass(frozen=True)
class HypernetworkTraining:
    """What a hypernetwork run builds and learns (A1111's "Create hypernetwork" plus training options)."""

    name: str
    loop: LoopOptions
    layer_structure: tuple[float, ...] = (1, 2, 1)
    activation: str = "linear"
    weight_init: str = "Normal"
    layer_norm: bool = False
    dropout: tuple[float, ...] | None = None  # e.g. (0, 0.3, 0): dropout after each layer; None = none
    resolution: int = 512
    seed: int = 0


def check_hypernetwork_options(options: HypernetworkTraining) -> None:
    check_loop_options(options.loop)
    structure = options.layer_structure
    if (
        len(structure) < 2
        or structure[0] != 1
        or structure[-1] != 1
        or any(not 0 < s <= 8 for s in structure)
    ):
        raise InvalidRequest("layer_structure", f"{structure} must start and end with 1, e.g. 1, 2, 1")
    dropout = options.dropout
    if dropout is not None and (len(dropout) != len(structure) or any(not 0 <= d < 1 for d in dropout)):
        raise InvalidRequest(
            "dropout_structure", f"give one dropout from 0 to <1 per layer ({len(structure)} values)"
        )
    if dropout is not None and (dropout[0] != 0 or dropout[-1] != 0):
        raise InvalidRequest("dropout_structure", "must start and end with 0 (A1111), e.g. 0, 0.3, 0")
    if options.resolution % 8 or not 64 <= options.resolution <= 2048:
        raise InvalidRequest("resolution", f"{options.resolution} is not a multiple of 8 from 64 to 2048")
    if options.activation != "linear" and options.activation not in ACTIVATIONS:
        raise InvalidRequest(
            "activation", f"{options.activation!r} is not one of: linear, {', '.join(ACTIVATIONS)}"
        )
    if options.weight_init not in WEIGHT_INITS:
        raise InvalidRequest(
            "weight_init", f"{options.weight_init!r} is not one of: {', '.join(WEIGHT_INITS)}"
        )


def attention_widths(unet: torch.nn.Module) -> list[int]:
    """The context widths the UNet's attention layers take (the text width for cross-attention, the
    feature widths for self-attention): one key/value module pair per width, as A1111 sizes them."""
    widths = {int(module.to_k.in_features) for module in unet.modules() if hasattr(module, "to_k")}
    return sorted(widths)


class HypernetworkTrainer:
    """A new hypernetwork for the model's widths, trained through the frozen text encoder and UNet."""

    def __init__(self, model: LoadedModel, options: HypernetworkTraining) -> None:
        self.model = model
        self.options = options
        model.unet.requires_grad_(False)
        generator = torch.Generator().manual_seed(options.seed)
        self.hypernetwork = (
            new_hypernetwork(
                options.name,
                attention_widths(model.unet),
                options.layer_structure,
                options.activation,
                options.layer_norm,
                options.weight_init,
                use_dropout=options.dropout is not None and any(options.dropout),
                dropout_structure=options.dropout,
                generator=generator,
            )
            .to(model.device)
            .train()
        )
        self.parameters = {f"p{i}": p for i, p in enumerate(self.hypernetwork.parameters())}
        for parameter in self.parameters.values():
            parameter.requires_grad_(True)
        # SDXL: both text encoders, as generation uses them (the widths include 2048)
        self.slots = encoder_slots(model)
        self.slot = self.slots[0]
        self.chunker = PromptChunker(model.pipe.tokenizer, {})
        self._encoded: dict[str, Encoding] = {}

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The captions' cross-attention states (cached: the text encoders do not learn) and SDXL's pooled."""
        return encode_captions(self.slots, self.chunker, captions, self._encoded)

    def loss(self, objective: NoiseObjective, batch: Sequence[Example]) -> torch.Tensor:
        states, pooled = self.encode([example.caption for example in batch])
        with applied_hypernetworks(self.model.unet, [(self.hypernetwork, 1.0)]):
            return objective.loss(self.model.unet, batch, states, pooled=pooled)

    def preview(self, prompt: str, seed: int, steps: int):
        """An image of `prompt` with the hypernetwork as it is now, at strength 1 (inference mode)."""
        (states, pooled), (negative, negative_pooled) = prompt_encodings(self.slots, self.chunker, prompt)
        pair = (pooled, negative_pooled) if pooled is not None else None
        self.hypernetwork.eval()
        try:
            with applied_hypernetworks(self.model.unet, [(self.hypernetwork, 1.0)]):
                return render_preview(
                    self.model, self.model.unet, states, negative, seed, steps, self.options.resolution, pair
                )
        finally:
            self.hypernetwork.train()

    def save(self, path: Path, state: LoopState, images: int) -> Path:
        """The file as it is used (inference mode); training goes on in training mode afterwards."""
        try:
            return save_trained(self, path, state)
        finally:
            self.hypernetwork.train()


# One slice of this trainer: see engine.training.loop.train_slice (returns the loop state and the trainer).
train_hypernetwork_slice = partial(train_slice, HypernetworkTrainer)


def save_trained(trainer: HypernetworkTrainer, path: Path, state: LoopState) -> Path:
    """The A1111 `.pt` (layer structure, activation, initialization, per-width module pairs, step, checkpoint)."""
    trainer.hypernetwork.eval()  # saved as it is used: inference mode
    return save_hypernetwork(path, trainer.hypernetwork, state.step, trainer.model.name, trainer.model.hash)
