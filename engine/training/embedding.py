"""Textual inversion (A1111's Train tab): new token vectors learned so that a name in a prompt stands for what
the training images show; the model itself does not change.

Read top to bottom: the options and captions from a prompt template (`[name]`, `[filewords]`), the vectors
started from the initialization text (`EmbeddingTrainer.__init__`), the loss through the frozen text encoder
and UNet (`loss`), resume or start (`train_embedding_slice`), and the A1111 file (`save_embedding`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from core.errors import InvalidRequest
from core.files import atomic_write_with
from engine.models.loading import LoadedModel
from engine.models.pt_files import write_a1111_pt
from engine.models.registry import ModelEntry, ModelKind
from engine.prompts.conditioning import PromptChunker
from engine.prompts.embeddings import Embedding
from engine.training.captions import SLOT_KEYS, encode_captions, encoder_slots, text_encoders, text_tokenizers
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

DEFAULT_TEMPLATE = "a picture of [name], [filewords]"  # like A1111's style_filewords/subject_filewords


@dataclass(frozen=True)
class EmbeddingOptions:
    """What a textual-inversion run learns (SPEC §5, A1111's Train tab)."""

    name: str
    loop: LoopOptions
    init_text: str = "*"
    vectors: int = 1
    template: str = DEFAULT_TEMPLATE  # one caption per line; [name] and [filewords] are filled in
    resolution: int = 512
    seed: int = 0


def check_embedding_options(options: EmbeddingOptions) -> None:
    check_loop_options(options.loop)
    if not 1 <= options.vectors <= 75:
        raise InvalidRequest("vectors", f"{options.vectors} is not from 1 to 75 vectors per token")
    if not options.init_text.strip() or len(options.init_text) > 300:
        raise InvalidRequest(
            "init_text", "give 1 to 300 characters of initialization text (e.g. a similar word)"
        )
    if "[name]" not in options.template or len(options.template) > 4000:
        raise InvalidRequest("template", "the prompt template must contain [name] (and may use [filewords])")
    if options.resolution % 8 or not 64 <= options.resolution <= 2048:
        raise InvalidRequest("resolution", f"{options.resolution} is not a multiple of 8 from 64 to 2048")


def captions(template: str, name: str, filewords: Sequence[str]) -> list[str]:
    """Each image's training prompt: the template's lines in turn, [name] and [filewords] filled in."""
    lines = [line.strip() for line in template.splitlines() if line.strip()]
    return [
        lines[index % len(lines)].replace("[name]", name).replace("[filewords]", words).strip(" ,")
        for index, words in enumerate(filewords)
    ]


class EmbeddingTrainer:
    """Trainable vectors spliced into the prompt wherever the name appears, through the model's own encoder;
    SDXL: one set per text encoder (`clip_l` 768 wide, `clip_g` 1280), both learning, as A1111 loads them."""

    def __init__(self, model: LoadedModel, options: EmbeddingOptions) -> None:
        pipe = model.pipe
        self.model = model
        self.options = options
        encoders, tokenizers = text_encoders(model), text_tokenizers(model)
        model.unet.requires_grad_(False)  # only the vectors learn; gradients still flow through both models
        for encoder in encoders:
            encoder.requires_grad_(False)
        keys = SLOT_KEYS[: len(encoders)]
        self.vector_sets = {
            key: torch.nn.Parameter(self._initial_vectors(encoder, tokenizer))
            for key, encoder, tokenizer in zip(keys, encoders, tokenizers, strict=True)
        }
        self.vectors = self.vector_sets["clip_l"]
        self.parameters = {"vectors": self.vectors}
        if model.sdxl:
            self.parameters["vectors_g"] = self.vector_sets["clip_g"]
        entry = ModelEntry(ModelKind.EMBEDDING, options.name, Path(f"{options.name}.pt"), 0, 0)
        self.embedding = Embedding(options.name, dict(self.vector_sets), entry)
        self.slots = encoder_slots(model)
        self.slot = self.slots[0]
        self.chunker = PromptChunker(pipe.tokenizer, {options.name: self.embedding})

    def _initial_vectors(self, encoder, tokenizer) -> torch.Tensor:
        """A1111's start: the initialization text's token vectors, repeated to fill the vectors."""
        ids = tokenizer(self.options.init_text, add_special_tokens=False).input_ids or [
            tokenizer.unk_token_id
        ]
        table = encoder.get_input_embeddings().weight.detach().float().cpu()
        return torch.stack([table[ids[i % len(ids)]] for i in range(self.options.vectors)]).clone()

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The captions' cross-attention states with the vectors as they are (and SDXL's pooled vectors)."""
        return encode_captions(self.slots, self.chunker, captions)

    def loss(self, objective: NoiseObjective, batch: Sequence[Example]) -> torch.Tensor:
        states, pooled = self.encode([e.caption for e in batch])
        return objective.loss(self.model.unet, batch, states, pooled=pooled)

    def preview(self, prompt: str, seed: int, steps: int):
        """An image of `prompt` with the vectors as they are now (the name in the prompt uses them)."""
        (states, pooled), (negative, negative_pooled) = prompt_encodings(self.slots, self.chunker, prompt)
        pair = (pooled, negative_pooled) if pooled is not None else None
        return render_preview(
            self.model, self.model.unet, states, negative, seed, steps, self.options.resolution, pair
        )

    def save(self, path: Path, state: LoopState, images: int) -> Path:
        return save_embedding(self, path, state)


# One slice of this trainer: see engine.training.loop.train_slice (returns the loop state and the trainer).
train_embedding_slice = partial(train_slice, EmbeddingTrainer)


def save_embedding(trainer: EmbeddingTrainer, path: Path, state: LoopState) -> Path:
    """A1111's embedding file: `.pt` with string_to_token/string_to_param, name, step and the checkpoint it
    was trained on, or `.safetensors` with `emb_params`; SDXL: `clip_l` and `clip_g` (written atomically)."""
    vectors = trainer.vectors.detach().float().cpu().contiguous()
    if trainer.model.sdxl:  # A1111 and kohya: exactly the two tensors, `clip_l` and `clip_g`
        both = {key: v.detach().float().cpu().contiguous() for key, v in trainer.vector_sets.items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            metadata = {"name": trainer.options.name, "step": str(state.step)}
            return atomic_write_with(path, lambda temp: save_file(both, str(temp), metadata=metadata))
        return atomic_write_with(path, lambda temp: write_a1111_pt(both, temp))
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {"name": trainer.options.name, "step": str(state.step)}
        return atomic_write_with(
            path, lambda temp: save_file({"emb_params": vectors}, str(temp), metadata=metadata)
        )
    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vectors},
        "name": trainer.options.name,
        "step": state.step,
        "sd_checkpoint": trainer.model.hash,
        "sd_checkpoint_name": trainer.model.name,
    }
    return atomic_write_with(path, lambda temp: write_a1111_pt(data, temp))
