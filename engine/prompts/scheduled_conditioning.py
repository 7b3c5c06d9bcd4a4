"""Conditioning that changes with the step: A1111 prompt editing, alternation and composable diffusion (AND).

A `PromptPlan` holds a prompt split into its composable sub-prompts and the negative prompt. At each sampler
step it says which texts condition the UNet (`texts_at`, from `prompt_schedule`) and gives their conditioning,
each distinct (sub-prompt text, negative text) pair encoded once through the engine's own encoder and kept.
The negative prompt is scheduled too, but never split at AND (as in A1111).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.prompts.conditioning import Conditioning
from engine.prompts.prompt_schedule import prompt_schedule, split_composable, text_at_step

# (positive text, negative text, at least this many 75-token chunks) → the pair's conditioning
Encoder = Callable[[str, str, int], Conditioning]


class PromptPlan:
    """Which texts condition each step, and their conditionings (encoded once each, padded to one length)."""

    def __init__(self, prompt: str, negative: str, encode: Encoder) -> None:
        self.parts = split_composable(prompt)
        self.negative = negative
        self._encode = encode
        self._schedules: dict[tuple[int, int | None], tuple[list[list[tuple[int, str]]], list]] = {}
        self._encoded: dict[tuple[str, str, int], Conditioning] = {}

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(weight for _, weight in self.parts)

    def unguided_ok(self) -> bool:
        """One sub-prompt of weight 1: with CFG 1 the negative prompt needs no UNet rows (as without AND)."""
        return len(self.parts) == 1 and self.parts[0][1] == 1.0

    def _schedules_for(self, steps: int, hires_steps: int | None):
        key = (steps, hires_steps)
        if key not in self._schedules:
            parts = [prompt_schedule(text, steps, hires_steps) for text, _ in self.parts]
            self._schedules[key] = (parts, prompt_schedule(self.negative, steps, hires_steps))
        return self._schedules[key]

    def texts_at(self, step: int, steps: int, hires_steps: int | None = None) -> tuple[tuple[str, ...], str]:
        """The sub-prompts' texts and the negative text at sampler step `step` (0-based, in UNet evaluations)
        of a pass of `steps` (or of the hires pass of `hires_steps` after `steps`)."""
        parts, negative = self._schedules_for(steps, hires_steps)
        return tuple(text_at_step(s, step) for s in parts), text_at_step(negative, step)

    def conditionings(self, texts: tuple[str, ...], negative: str) -> list[Conditioning]:
        """Each sub-prompt's conditioning with the negative text, all padded to the longest one's length."""
        first = [self._pair(text, negative, 0) for text in texts]
        chunks = max(c.cond.shape[1] for c in first) // 77
        return [
            c if c.cond.shape[1] == chunks * 77 else self._pair(t, negative, chunks)
            for t, c in zip(texts, first, strict=True)
        ]

    def _pair(self, text: str, negative: str, chunks: int) -> Conditioning:
        key = (text, negative, chunks)
        if key not in self._encoded:
            self._encoded[key] = self._encode(text, negative, chunks)
        return self._encoded[key]
