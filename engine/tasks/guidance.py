"""Classifier-free guidance for the denoising loop: the UNet's text inputs at each step, and how its rows combine.

A plain prompt has one conditioning for every step: rows [negative × batch, prompt × batch], combined as
uncond + cfg · (cond − uncond). A prompt with editing or alternation switches its conditioning at the
scheduled steps; one with composable diffusion (AND) has one group of rows per sub-prompt, combined as A1111
does: uncond + Σ weight_i · cfg · (cond_i − uncond).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.models.loading import LoadedModel
from engine.prompts.conditioning import Conditioning
from engine.prompts.scheduled_conditioning import PromptPlan

# A1111's `sdxl_refiner_high_aesthetic_score` and `sdxl_refiner_low_aesthetic_score` (diffusers' defaults too).
REFINER_SCORE = 6.0
REFINER_NEGATIVE_SCORE = 2.5


def unet_text_inputs(
    model: LoadedModel,
    states: Sequence[torch.Tensor],
    pooled: Sequence[torch.Tensor | None],
    batch: int,
    size: tuple[int, int],
    aesthetic: Sequence[float] = (),
) -> dict[str, object]:
    """The UNet's keyword arguments for row groups of `batch` rows each, one group per (states, pooled);
    `aesthetic`: an SDXL refiner's aesthetic score of each group (its time ids end in it, not in the size)."""
    width, height = size
    rows = (
        torch.cat([s.expand(batch, -1, -1) for s in states])
        if len(states) > 1
        else states[0].expand(batch, -1, -1)
    )
    kwargs: dict[str, object] = {"encoder_hidden_states": rows.to(model.device, model.dtype)}
    if model.sdxl:
        vectors = [p.expand(batch, -1) for p in pooled if p is not None]
        text_embeds = torch.cat(vectors) if len(vectors) > 1 else vectors[0]
        if aesthetic:
            ids = [[height, width, 0, 0, score] for score in aesthetic for _ in range(batch)]
            time_ids = torch.tensor(ids, dtype=torch.float32)
        else:
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
            time_ids = time_ids.expand(text_embeds.shape[0], -1)
        kwargs["added_cond_kwargs"] = {
            "text_embeds": text_embeds.to(model.device, model.dtype),
            "time_ids": time_ids.to(model.device, model.dtype),
        }
    return kwargs


class Guidance:
    """The UNet's text inputs for each step and the combination of its output rows into one prediction."""

    def __init__(
        self,
        model: LoadedModel,
        conditioning: Conditioning,
        plan: PromptPlan | None,
        cfg: float,
        batch: int,
        size: tuple[int, int],
        prompt_steps: tuple[int, int | None],
        always_guided: bool = False,
    ) -> None:
        """`always_guided`: the negative prompt's rows even at a CFG scale of 1 (DDIM CFG++ steps with them)."""
        self.model, self.plan, self.cfg, self.batch, self.size = model, plan, cfg, batch, size
        self.prompt_steps = prompt_steps
        self.always_guided = always_guided
        self.weights: tuple[float, ...] = (1.0,) if plan is None else plan.weights
        unguided_ok = plan is None or plan.unguided_ok()
        self.guided = always_guided or cfg != 1.0 or not unguided_ok
        self._texts: tuple | None = None
        self._kwargs: dict[str, object] = {}
        if plan is None:
            self._kwargs = self._inputs([conditioning])

    @property
    def groups(self) -> int:
        """Row groups per UNet call: the negative prompt (when guided) and one per sub-prompt."""
        return len(self.weights) + (1 if self.guided else 0)

    def _inputs(self, conds: list[Conditioning]) -> dict[str, object]:
        states = [c.cond for c in conds]
        pooled = [c.pooled_cond for c in conds]
        if self.guided:
            states.insert(0, conds[0].uncond)
            pooled.insert(0, conds[0].pooled_uncond)
        scores: list[float] = []
        if self.model.aesthetic_score:  # A1111's refiner scores: 6 for the prompt, 2.5 for the negative one
            scores = [REFINER_SCORE] * len(conds)
            if self.guided:
                scores.insert(0, REFINER_NEGATIVE_SCORE)
        return unet_text_inputs(self.model, states, pooled, self.batch, self.size, scores)

    def at(self, step: int) -> dict[str, object]:
        """The UNet's text keyword arguments at sampler step `step` (0-based)."""
        if self.plan is None:
            return self._kwargs
        texts = self.plan.texts_at(step, *self.prompt_steps)
        if texts != self._texts:
            self._texts = texts
            self._kwargs = self._inputs(self.plan.conditionings(*texts))
        return self._kwargs

    def combine(self, eps: torch.Tensor) -> torch.Tensor:
        """One prediction per image from the UNet's row groups."""
        if not self.guided:
            return eps
        if self.plan is None:
            uncond_eps, cond_eps = eps.chunk(2)
            return uncond_eps + self.cfg * (cond_eps - uncond_eps)
        uncond_eps, *cond_eps = eps.chunk(self.groups)
        out = uncond_eps
        for part, weight in zip(cond_eps, self.weights, strict=True):
            out = out + (weight * self.cfg) * (part - uncond_eps)
        return out
