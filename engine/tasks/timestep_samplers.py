"""A1111's timestep samplers that diffusers has no scheduler for: DDIM CFG++ (A1111's `ddim_cfgpp`).

`CfgppDdim` stands where a diffusers scheduler stands in the denoising loop (engine.tasks.sampling). Its
timesteps are A1111's: 1 + k·⌊1000 / steps⌋ for k < steps (clipped to 999); the loop runs from the last
down to the second, each step landing on the one before, so `steps` asks for steps − 1 model calls, as in
A1111. CFG++ (manifold-constrained guidance) guides with the CFG scale ÷ 12.5 and points the step back to
the noise with the unconditional prediction instead of the guided one:

    x₀ = (x − √(1 − ᾱₜ)·ε) / √ᾱₜ,   x ← √ᾱₚ·x₀ + √(1 − ᾱₚ − σ²)·ε_uncond + σ·z,
    σ = η·√((1 − ᾱₚ) / (1 − ᾱₜ) · (1 − ᾱₜ / ᾱₚ))          (η: A1111's eta_ddim, `Eta DDIM`, default 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

CFGPP_SCALE = 1 / 12.5  # A1111 maps CFG scales 0…12.5 onto CFG++'s 0…1


@dataclass
class _Step:
    prev_sample: torch.Tensor


class CfgppDdim:
    """DDIM CFG++ over A1111's timesteps; `step` takes the guided prediction and the unconditional one."""

    order = 1
    init_noise_sigma = 1.0
    cfgpp = True  # the loop scales the CFG by CFGPP_SCALE and hands `step` the unconditional prediction

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon") -> None:
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu()
        self.v_prediction = prediction_type == "v_prediction"
        self.schedule = torch.zeros(0, dtype=torch.long)
        self.timesteps = self.schedule

    def set_timesteps(self, steps: int, device: torch.device | str | None = None) -> None:
        """A1111's `get_timesteps`: ascending 1, 1 + 1000 // steps, …; the loop's timesteps are all but the
        first, descending."""
        self.schedule = torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)
        self.timesteps = self.schedule[1:].flip(0)

    def scale_model_input(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        return sample

    def _alpha(self, timestep) -> float:
        return float(self.alphas_cumprod[int(timestep)])

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Latents noised to the first timestep of a run (img2img): √ᾱₜ·x + √(1 − ᾱₜ)·noise."""
        a = self._alpha(timesteps.reshape(-1)[0])
        return original * a**0.5 + noise * (1 - a) ** 0.5

    def _eps(self, output: torch.Tensor, sample: torch.Tensor, a: float) -> torch.Tensor:
        """The noise prediction: the UNet's own, or from its v prediction (A1111's CompVisTimestepsVDenoiser)."""
        return output * a**0.5 + sample * (1 - a) ** 0.5 if self.v_prediction else output

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: Sequence[torch.Generator] | None = None,
        eta: float = 0.0,
        uncond: torch.Tensor | None = None,
    ) -> _Step:
        """One DDIM CFG++ step from `timestep` to the schedule's previous one."""
        if uncond is None:
            raise ValueError("DDIM CFG++ needs the unconditional prediction of each step")
        index = int((self.schedule == int(timestep)).nonzero()[0])
        a_t, a_prev = self._alpha(self.schedule[index]), self._alpha(self.schedule[index - 1])
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
        eps, eps_uncond = self._eps(model_output, sample, a_t), self._eps(uncond, sample, a_t)
        pred_x0 = (sample - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        x = a_prev**0.5 * pred_x0 + (1 - a_prev - sigma**2) ** 0.5 * eps_uncond
        if sigma > 0:
            x = x + sigma * _noise(generator, sample)
        return _Step(x)


def _noise(generators: Sequence[torch.Generator] | None, like: torch.Tensor) -> torch.Tensor:
    """Fresh noise, one draw per image from its own generator (a batch equals its images alone)."""
    if not generators:
        return torch.randn_like(like)
    draws = [torch.randn(like.shape[1:], generator=g, dtype=torch.float32) for g in generators]
    return torch.stack(draws).to(like.device, like.dtype)
