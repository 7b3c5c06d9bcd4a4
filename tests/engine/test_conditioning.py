"""A1111 prompt conditioning: 75-token chunks, BREAK, comma backtracking, weights, clip skip."""

from __future__ import annotations

import pytest
import torch

from engine.prompts.conditioning import CHUNK_LENGTH, EncoderSlot, PromptChunker, encode_prompt_pair
from engine.runner import Engine


@pytest.fixture(scope="module")
def model(engine: Engine):
    return engine.load(None)


@pytest.fixture(scope="module")
def chunker(model):
    return PromptChunker(model.pipe.tokenizer, {})


def test_short_prompt_is_one_chunk(chunker):
    chunks = chunker.chunks("a red circle")
    assert len(chunks) == 1 and len(chunks[0].tokens) == 3


def test_long_prompt_is_cut_into_chunks_of_75(chunker):
    chunks = chunker.chunks("cat " * 160)
    assert [len(c.tokens) for c in chunks] == [75, 75, 10]


def test_break_starts_a_new_chunk(chunker):
    chunks = chunker.chunks("a red circle BREAK blue background")
    assert [len(c.tokens) for c in chunks] == [3, 2]


def test_chunk_boundary_moves_back_to_the_last_comma(chunker):
    # 70 words, a comma, then 10 words: the 10 words move whole into the second chunk.
    chunks = chunker.chunks("cat " * 70 + ", " + "dog " * 10)
    assert [len(c.tokens) for c in chunks] == [71, 10]
    comma = chunker.comma_id
    assert chunks[0].tokens[-1] == comma


def test_weights_follow_attention_syntax(chunker):
    chunk = chunker.chunks("a (red:1.5) [circle]")[0]
    assert chunk.multipliers == pytest.approx([1.0, 1.5, 1 / 1.1])


def test_cond_and_uncond_have_equal_length_and_weights_change_the_states(engine, model):
    def cond(prompt: str, negative: str = "", clip_skip: int = 1):
        return engine._conditioning(model, prompt, negative, clip_skip)

    long = cond("cat " * 100, "blurry")
    width = model.pipe.text_encoder.config.hidden_size
    assert long.cond.shape == long.uncond.shape == (1, 154, width)
    plain, weighted = cond("a red circle"), cond("a (red:1.5) circle")
    # "Original" emphasis: token vectors times their weight (red is token 2, after BOS and "a"), then the
    # whole chunk rescaled by one factor that restores its mean.
    multipliers = torch.ones(1, 77, 1)
    multipliers[0, 2] = 1.5
    factor = plain.cond.mean() / (plain.cond * multipliers).mean()
    assert torch.allclose(weighted.cond, plain.cond * multipliers * factor, atol=1e-5)
    assert not torch.allclose(plain.cond, weighted.cond, atol=1e-3)
    assert not torch.allclose(plain.cond, cond("a red circle", clip_skip=2).cond)


def test_encoding_a_chunk_matches_the_text_encoder(model):
    """Without weights or embeddings, a chunk is exactly the encoder's output for [BOS] tokens [EOS] padding."""
    tokenizer, encoder = model.pipe.tokenizer, model.pipe.text_encoder
    ids = tokenizer("a red circle", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = encoder(ids).last_hidden_state
    chunker = PromptChunker(tokenizer, {})
    slot = EncoderSlot("clip_l", tokenizer, encoder, tokenizer.pad_token_id, sdxl=False)
    got = encode_prompt_pair([slot], chunker, "a red circle", "", clip_skip=1)
    assert torch.allclose(got.cond, expected, atol=1e-5)
    assert CHUNK_LENGTH == 75
