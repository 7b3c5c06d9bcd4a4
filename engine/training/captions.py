"""The text side every trainer shares: the model's text encoders and tokenizers as encoder slots (SD 1.x and
2.x: one, SDXL: both, as generation uses them), and a batch of captions encoded into cross-attention states
and SDXL's pooled vectors, each caption encoded once while the text encoders do not learn."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.models.loading import LoadedModel
from engine.prompts.conditioning import EncoderSlot
from engine.training.loop import caption_encoding

SLOT_KEYS = ("clip_l", "clip_g")
Encoding = tuple[torch.Tensor, torch.Tensor | None]  # states, and SDXL's pooled vectors (None otherwise)


def text_encoders(model: LoadedModel) -> list[torch.nn.Module]:
    """The model's text encoders: one, or SDXL's two."""
    pipe = model.pipe
    return [pipe.text_encoder] + ([pipe.text_encoder_2] if model.sdxl else [])


def text_tokenizers(model: LoadedModel) -> list:
    pipe = model.pipe
    return [pipe.tokenizer] + ([pipe.tokenizer_2] if model.sdxl else [])


def encoder_slots(model: LoadedModel, encoders: Sequence[torch.nn.Module] | None = None) -> list[EncoderSlot]:
    """One slot per text encoder (`encoders`: the trainer's copies, else the model's own), keyed `clip_l` and
    `clip_g` as embeddings are."""
    encoders = text_encoders(model) if encoders is None else encoders
    return [
        EncoderSlot(key, tokenizer, encoder, tokenizer.pad_token_id, model.sdxl)
        for key, tokenizer, encoder in zip(SLOT_KEYS, text_tokenizers(model), encoders, strict=False)
    ]


def encode_captions(
    slots: Sequence[EncoderSlot], chunker, captions: Sequence[str], cache: dict[str, Encoding] | None = None
) -> Encoding:
    """The captions' states side by side (and pooled vectors): with `cache`, each caption once and without a
    graph (the text encoders and embeddings do not learn); without it, through the encoders with gradients."""
    if cache is None:
        pairs = [caption_encoding(slots, chunker, caption, grad=True) for caption in captions]
    else:
        for caption in captions:
            if caption not in cache:
                cache[caption] = caption_encoding(slots, chunker, caption)
        pairs = [cache[caption] for caption in captions]
    pooled = torch.cat([p[1] for p in pairs]) if pairs[0][1] is not None else None
    return torch.cat([p[0] for p in pairs]), pooled
