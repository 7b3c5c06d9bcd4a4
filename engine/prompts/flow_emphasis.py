"""Prompt emphasis `(word:1.2)` on SD 3.5 and Flux, the way Forge applies it ("Original" emphasis).

Each encoder that gives per-token states (Flux: T5; SD 3.5: CLIP-L, CLIP-G and T5) reads the prompt's
fragments tokenized one by one (no special tokens), its states are multiplied token by token by their
weights, and the whole is scaled back to its mean before the weighting — A1111's rule for CLIP
(modules/sd_emphasis.py `EmphasisOriginal`), which Forge's T5 text engine applies to T5 too. The pooled CLIP
vectors carry no emphasis (Forge's neither): they come from the plain text, as does everything of a prompt
without weights, so such a prompt gives exactly the pipeline's own embeddings. BREAK is dropped (the
pipelines have no chunks to start); the caller says so in a note.

The embeddings are built from the pipeline's own `encode_prompt` for the plain texts, with the per-token part
of each weighted prompt replaced: the same shapes (CLIP 77 tokens, T5 the pipeline's sequence length), so
nothing downstream (the compiled transformer among it) sees a difference but the values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.prompts.conditioning import emphasized
from engine.prompts.prompt_syntax import extract_extra_networks, is_break, parse_prompt_attention

Fragments = tuple[tuple[str, float], ...]  # (text, weight), BREAK removed

FLUX_T5_LENGTH = 512  # diffusers' FluxPipeline default max_sequence_length
SD3_T5_LENGTH = 256  # diffusers' StableDiffusion3Pipeline default
CLIP_LENGTH = 77


def prompt_fragments(prompt: str) -> tuple[str, Fragments, bool]:
    """A prompt's plain text (tags, weights and BREAK removed), its weighted fragments, and whether it had a
    BREAK."""
    text = extract_extra_networks(prompt)[0]
    parsed = parse_prompt_attention(text)
    fragments = tuple(f for f in parsed if not is_break(f) and f[0].strip())
    plain = " ".join(t.strip() for t, _ in fragments)
    return plain, fragments, any(is_break(f) for f in parsed)


def is_weighted(fragments: Fragments) -> bool:
    return any(weight != 1.0 for _, weight in fragments)


def _tokens(tokenizer, fragments: Fragments, room: int) -> tuple[list[int], list[float]]:
    """The fragments' token ids (each fragment tokenized alone, no special tokens) with each token's weight,
    cut to `room` tokens."""
    ids: list[int] = []
    weights: list[float] = []
    encoded = tokenizer([text for text, _ in fragments], add_special_tokens=False, truncation=False)
    for tokens, (_, weight) in zip(encoded["input_ids"], fragments, strict=True):
        ids += tokens
        weights += [weight] * len(tokens)
    return ids[:room], weights[:room]


def t5_states(tokenizer, encoder, fragments: Fragments, length: int, device) -> torch.Tensor:
    """T5's weighted states for one prompt: its tokens, the end token, padding to `length`."""
    ids, weights = _tokens(tokenizer, fragments, length - 1)
    ids, weights = ids + [tokenizer.eos_token_id], weights + [1.0]
    pad = length - len(ids)
    ids, weights = ids + [tokenizer.pad_token_id] * pad, weights + [1.0] * pad
    states = encoder(torch.tensor([ids], device=device), output_hidden_states=False)[0]
    return emphasized(states, torch.tensor([weights]))


def clip_states(tokenizer, encoder, fragments: Fragments, device) -> torch.Tensor:
    """A CLIP's weighted penultimate states (SD 3.5 reads layer -2) for one prompt: start token, up to 75
    tokens, end token, the tokenizer's padding to 77."""
    ids, weights = _tokens(tokenizer, fragments, CLIP_LENGTH - 2)
    ids = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    weights = [1.0, *weights, 1.0]
    pad = CLIP_LENGTH - len(ids)
    ids, weights = ids + [tokenizer.pad_token_id] * pad, weights + [1.0] * pad
    output = encoder(torch.tensor([ids], device=device), output_hidden_states=True)
    return emphasized(output.hidden_states[-2], torch.tensor([weights]))


def flux_embeddings(pipe, plain: Sequence[str], fragments: Sequence[Fragments]) -> tuple[torch.Tensor, ...]:
    """`prompt_embeds` and `pooled_prompt_embeds` for a Flux pipeline call, one row per prompt."""
    device = pipe._execution_device
    embeds, pooled, _ = pipe.encode_prompt(
        prompt=list(plain), prompt_2=None, device=device, max_sequence_length=FLUX_T5_LENGTH
    )
    for row, found in enumerate(fragments):
        if is_weighted(found):
            states = t5_states(pipe.tokenizer_2, pipe.text_encoder_2, found, embeds.shape[1], device)
            embeds[row] = states[0].to(embeds.dtype)
    return embeds, pooled


def sd3_embeddings(
    pipe,
    plain: Sequence[str],
    fragments: Sequence[Fragments],
    negative_plain: Sequence[str],
    negative_fragments: Sequence[Fragments],
) -> dict[str, torch.Tensor]:
    """The four embeddings of an SD 3.5 pipeline call with CFG, one row per prompt."""
    device = pipe._execution_device
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        prompt=list(plain),
        prompt_2=None,
        prompt_3=None,
        device=device,
        do_classifier_free_guidance=True,
        negative_prompt=list(negative_plain),
        max_sequence_length=SD3_T5_LENGTH,
    )
    for table, rows in ((embeds, fragments), (negative, negative_fragments)):
        for row, found in enumerate(rows):
            if is_weighted(found):
                _sd3_row(pipe, table, row, found, device)
    return {
        "prompt_embeds": embeds,
        "negative_prompt_embeds": negative,
        "pooled_prompt_embeds": pooled,
        "negative_pooled_prompt_embeds": negative_pooled,
    }


def _sd3_row(pipe, table: torch.Tensor, row: int, fragments: Fragments, device) -> None:
    """One prompt's row of SD 3.5's joint embeddings: [CLIP-L ‖ CLIP-G, zero-padded to T5's width] for the
    first 77 positions, then T5's (zeros when the model has no T5), each weighted."""
    clip = torch.cat(
        [
            clip_states(pipe.tokenizer, pipe.text_encoder, fragments, device),
            clip_states(pipe.tokenizer_2, pipe.text_encoder_2, fragments, device),
        ],
        dim=-1,
    )
    table[row, :CLIP_LENGTH, : clip.shape[-1]] = clip[0].to(table.dtype)
    if pipe.text_encoder_3 is not None:
        length = table.shape[1] - CLIP_LENGTH
        t5 = t5_states(pipe.tokenizer_3, pipe.text_encoder_3, fragments, length, device)
        table[row, CLIP_LENGTH:] = t5[0].to(table.dtype)
