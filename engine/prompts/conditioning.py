"""A1111 prompts to text-encoder conditioning: attention weights, BREAK, 75-token chunks, embeddings, clip skip.

The algorithm follows A1111's `FrozenCLIPEmbedderWithCustomWords`: the prompt is parsed into weighted
fragments, tokenized, and cut into chunks of 75 tokens (moving the tail after the last comma to the next
chunk when it is within 20 tokens, and starting a new chunk at BREAK). Each chunk is framed by start and end
tokens, encoded, multiplied by its token weights and rescaled to its original mean ("Original" emphasis).
Chunks are concatenated along the sequence, and the positive and negative sides are padded to the same
number of chunks with empty ones. Embeddings are found by their token sequence and replace the token
vectors inside the encoder's input embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from core.errors import InvalidRequest
from engine.prompts.embeddings import Embedding
from engine.prompts.prompt_syntax import is_break, parse_prompt_attention

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20  # A1111 "comma_padding_backtrack": move at most this many tokens to the next chunk


@dataclass
class PromptChunk:
    """Up to 75 tokens with their weights and the embeddings to splice in (offset into the tokens)."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[tuple[int, Embedding]] = field(default_factory=list)


@dataclass(frozen=True)
class EncoderSlot:
    """One text encoder of a model with the facts conditioning needs about it."""

    key: str  # "clip_l" or "clip_g": which vectors of an SDXL embedding it takes
    tokenizer: object
    encoder: torch.nn.Module
    pad_id: int
    sdxl: bool  # SDXL reads the penultimate layer without the final norm


@dataclass(frozen=True)
class Conditioning:
    """Cross-attention states for the positive and negative prompt (same length), plus SDXL's pooled vectors."""

    cond: torch.Tensor
    uncond: torch.Tensor
    pooled_cond: torch.Tensor | None = None
    pooled_uncond: torch.Tensor | None = None
    embeddings_used: tuple[Embedding, ...] = ()


class PromptChunker:
    """Turns prompt text into A1111 chunks with one tokenizer and a set of known embeddings."""

    def __init__(
        self, tokenizer, embeddings: dict[str, Embedding], misfits: dict[str, str] | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.comma_id = tokenizer.convert_tokens_to_ids(",</w>")
        self._lookup = self._embedding_lookup(embeddings)
        # embeddings of another family a prompt may not name (EmbeddingLibrary.misfits): name → refusal
        misfits = misfits or {}
        names = self._token_ids(list(misfits)) if misfits else []
        self._misfits = {
            tuple(ids): reason for ids, reason in zip(names, misfits.values(), strict=True) if ids
        }

    def _embedding_lookup(
        self, embeddings: dict[str, Embedding]
    ) -> dict[int, list[tuple[list[int], Embedding]]]:
        lookup: dict[int, list[tuple[list[int], Embedding]]] = {}
        for name, embedding in embeddings.items():
            ids = self._token_ids([name])[0]
            if ids:
                lookup.setdefault(ids[0], []).append((ids, embedding))
        for candidates in lookup.values():
            candidates.sort(key=lambda pair: len(pair[0]), reverse=True)
        return lookup

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=False, add_special_tokens=False)["input_ids"]

    def chunks(self, prompt: str) -> list[PromptChunk]:
        """The prompt's chunks (at least one)."""
        fragments = parse_prompt_attention(prompt)
        texts = [text for text, weight in fragments if not is_break((text, weight))]
        token_lists = iter(self._token_ids(texts)) if texts else iter(())
        builder = _ChunkBuilder(self.comma_id)
        for text, weight in fragments:
            if is_break((text, weight)):
                builder.close()
                continue
            tokens = next(token_lists)
            position = 0
            while position < len(tokens):
                found = self._embedding_at(tokens, position)
                if found is None:
                    self._refuse_misfit(tokens, position)
                    builder.add_token(tokens[position], weight)
                    position += 1
                else:
                    ids, embedding = found
                    builder.add_embedding(embedding, weight)
                    position += len(ids)
        return builder.finish()

    def _refuse_misfit(self, tokens: list[int], position: int) -> None:
        for ids, reason in self._misfits.items():
            if tuple(tokens[position : position + len(ids)]) == ids:
                raise InvalidRequest("prompt", reason)

    def _embedding_at(self, tokens: list[int], position: int) -> tuple[list[int], Embedding] | None:
        for ids, embedding in self._lookup.get(tokens[position], ()):
            if tokens[position : position + len(ids)] == ids:
                return ids, embedding
        return None


class _ChunkBuilder:
    """A1111's chunking state machine: fill 75 tokens, backtrack to the last comma, start anew at BREAK."""

    def __init__(self, comma_id: int) -> None:
        self.comma_id = comma_id
        self.done: list[PromptChunk] = []
        self.current = PromptChunk()
        self.last_comma = -1

    def close(self) -> None:
        self.done.append(self.current)
        self.current = PromptChunk()
        self.last_comma = -1

    def add_token(self, token: int, weight: float) -> None:
        chunk = self.current
        if token == self.comma_id:
            self.last_comma = len(chunk.tokens)
        elif (
            len(chunk.tokens) == CHUNK_LENGTH
            and self.last_comma != -1
            and len(chunk.tokens) - self.last_comma <= COMMA_BACKTRACK
        ):
            cut = self.last_comma + 1
            moved_tokens, moved_weights = chunk.tokens[cut:], chunk.multipliers[cut:]
            del chunk.tokens[cut:], chunk.multipliers[cut:]
            self.close()
            self.current.tokens, self.current.multipliers = moved_tokens, moved_weights
        if len(self.current.tokens) == CHUNK_LENGTH:
            self.close()
        self.current.tokens.append(token)
        self.current.multipliers.append(weight)

    def add_embedding(self, embedding: Embedding, weight: float) -> None:
        count = embedding.n_vectors
        if len(self.current.tokens) + count > CHUNK_LENGTH:
            self.close()
        self.current.fixes.append((len(self.current.tokens), embedding))
        self.current.tokens.extend([0] * count)
        self.current.multipliers.extend([weight] * count)

    def finish(self) -> list[PromptChunk]:
        if self.current.tokens or not self.done:
            self.close()
        return self.done


def pad_chunk_lists(a: list[PromptChunk], b: list[PromptChunk]) -> None:
    """Append empty chunks to the shorter list so cond and uncond have the same length (A1111 "pad conds")."""
    while len(a) < len(b):
        a.append(PromptChunk())
    while len(b) < len(a):
        b.append(PromptChunk())


def frame_chunk(chunk: PromptChunk, bos: int, eos: int, pad: int) -> tuple[list[int], list[float]]:
    """77 token ids and weights: start, the chunk's tokens padded to 75, end."""
    padding = CHUNK_LENGTH - len(chunk.tokens)
    tokens = [bos, *chunk.tokens, *([pad] * padding), eos]
    weights = [1.0, *chunk.multipliers, *([1.0] * padding), 1.0]
    return tokens, weights


@contextmanager
def embedding_fixes(
    encoder: torch.nn.Module, fixes: Sequence[list[tuple[int, Embedding]]], key: str
) -> Iterator[None]:
    """While active, the encoder's token embeddings of row i get fixes[i]'s vectors at their offsets (+1 for BOS)."""
    if not any(fixes):
        yield
        return

    def splice(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for row, row_fixes in enumerate(fixes):
            for offset, embedding in row_fixes:
                vectors = embedding.vectors[key].to(output.device, output.dtype)
                output[row, offset + 1 : offset + 1 + vectors.shape[0]] = vectors
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(splice)
    try:
        yield
    finally:
        handle.remove()


def encode_chunks(
    slot: EncoderSlot, chunks: Sequence[PromptChunk], clip_skip: int, grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states (N, 77, width) of each chunk, emphasis applied, and pooled vectors if the encoder has them.

    `grad`: keep the graph (training an embedding or the text encoder)."""
    tok = slot.tokenizer
    framed = [frame_chunk(c, tok.bos_token_id, tok.eos_token_id, slot.pad_id) for c in chunks]
    device = slot.encoder.device
    ids = torch.tensor([tokens for tokens, _ in framed], device=device)
    weights = torch.tensor([w for _, w in framed], device=device)
    with torch.set_grad_enabled(grad), embedding_fixes(slot.encoder, [c.fixes for c in chunks], slot.key):
        out = slot.encoder(ids, output_hidden_states=True)
    if slot.sdxl:
        states = out.hidden_states[-(clip_skip + 1)]
    else:
        # transformers 5 flattened CLIPTextModel; the projection variant still nests it under text_model.
        final_norm = getattr(slot.encoder, "text_model", slot.encoder).final_layer_norm
        states = final_norm(out.hidden_states[-clip_skip])
    pooled = getattr(out, "text_embeds", None)
    return emphasized(states, weights), pooled


def emphasized(states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis: states (N, tokens, width) multiplied token by token by `weights` (N,
    tokens) and each row scaled back to its mean before. A row of weights 1 is returned as it is (A1111
    computes mean / mean, which is 1, but as a graph its gradient is noise when the mean is near 0 — states
    through a final LayerNorm without bias average to about 0 — and 0 / 0 is NaN); a weighted row whose new
    mean is exactly 0 keeps its scale."""
    weights = weights.to(device=states.device, dtype=states.dtype)
    original_mean = states.float().mean(dim=(1, 2), keepdim=True)
    weighted = states * weights.unsqueeze(-1)
    new_mean = weighted.float().mean(dim=(1, 2), keepdim=True)
    scaled = ((weights != 1).any(dim=1).reshape(-1, 1, 1)) & (new_mean != 0)
    ratio = torch.where(scaled, original_mean / torch.where(scaled, new_mean, 1.0), 1.0)
    return torch.where(scaled, weighted * ratio.to(states.dtype), states)


def encode_prompt_pair(
    slots: Sequence[EncoderSlot],
    chunker: PromptChunker,
    prompt: str,
    negative_prompt: str,
    clip_skip: int,
    zero_empty_negative: bool = False,
    min_chunks: int = 0,
) -> Conditioning:
    """Conditioning for CFG: both prompts through every encoder, features concatenated across encoders (padded
    with empty chunks to at least `min_chunks` × 77 tokens, so conditionings of two prompts can be mixed)."""
    cond_chunks = chunker.chunks(prompt)
    uncond_chunks = chunker.chunks(negative_prompt)
    pad_chunk_lists(cond_chunks, uncond_chunks)
    while len(cond_chunks) < min_chunks:
        cond_chunks.append(PromptChunk())
        uncond_chunks.append(PromptChunk())
    n = len(cond_chunks)
    states, pooled = [], None
    for slot in slots:
        hidden, slot_pooled = encode_chunks(slot, cond_chunks + uncond_chunks, clip_skip)
        states.append(hidden)
        if slot_pooled is not None:
            pooled = slot_pooled
    both = torch.cat(states, dim=-1)  # (2n, 77, sum of widths)
    width = both.shape[-1]
    cond = both[:n].reshape(1, n * 77, width)
    uncond = both[n:].reshape(1, n * 77, width)
    pooled_cond = pooled[:1] if pooled is not None else None
    pooled_uncond = pooled[n : n + 1] if pooled is not None else None
    if zero_empty_negative and not negative_prompt.strip():
        uncond = torch.zeros_like(uncond)
        pooled_uncond = torch.zeros_like(pooled_uncond) if pooled_uncond is not None else None
    used = {e.name: e for c in cond_chunks + uncond_chunks for _, e in c.fixes}
    return Conditioning(cond, uncond, pooled_cond, pooled_uncond, tuple(used.values()))


def blend_conditioning(a: Conditioning, b: Conditioning, weight: float) -> Conditioning:
    """(1 − weight) × a + weight × b, for the prompt and the negative prompt (states of the same length)."""

    def mix(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
        if x is None or y is None:
            return x if y is None else y
        return torch.lerp(x, y.to(x.dtype), weight)

    if a.cond.shape != b.cond.shape:
        raise ValueError("blend_conditioning needs states of one length (encode with min_chunks)")
    used = {e.name: e for e in (*a.embeddings_used, *b.embeddings_used)}
    return Conditioning(
        mix(a.cond, b.cond),
        mix(a.uncond, b.uncond),
        mix(a.pooled_cond, b.pooled_cond),
        mix(a.pooled_uncond, b.pooled_uncond),
        tuple(used.values()),
    )
