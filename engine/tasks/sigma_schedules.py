"""A1111's Schedule types as sigma tables, for the samplers that run in k-diffusion form (engine.tasks.ksampling).

`ModelSigmas` is a model's discrete noise levels (from its training `alphas_cumprod`) with the continuous
sigma ↔ timestep mapping of k-diffusion's `DiscreteSchedule`; `schedule_sigmas` makes the n + 1 sigmas
(the last one 0) of a schedule type. The formulas follow k-diffusion (github.com/crowsonkb/k-diffusion,
MIT: `get_sigmas_karras`, `get_sigmas_exponential`, `get_sigmas_polyexponential`, `DiscreteSchedule`) and
the published definitions A1111 uses for the others (Align Your Steps: NVIDIA's tables with log-linear
interpolation; KL Optimal: arXiv 2407.12173's companion; Beta: arXiv 2407.12173), so that a schedule gives
the sigmas A1111 gives (tests/engine/test_sigma_schedules.py pins them against A1111's own functions).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# NVIDIA's Align Your Steps tables (11 sigmas, 10 steps) for SD 1.x and SDXL.
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)
BETA_ALPHA = 0.6  # A1111's default `beta_dist_alpha` / `beta_dist_beta` settings
BETA_BETA = 0.6


class ModelSigmas:
    """A model's training noise levels, ascending, and k-diffusion's continuous timestep ↔ sigma mapping."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        acp = torch.as_tensor(alphas_cumprod, dtype=torch.float32).cpu()
        self.sigmas = ((1 - acp) / acp) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def of_scheduler(cls, scheduler) -> ModelSigmas:
        """From a diffusers scheduler's `alphas_cumprod` (every DDPM-family scheduler has one)."""
        return cls(torch.as_tensor(scheduler.alphas_cumprod))

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """The continuous timestep of a noise level (linear in log sigma between training steps)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high = low + 1
        lo, hi = self.log_sigmas[low], self.log_sigmas[high]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return ((1 - w) * low + w * high).view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def uniform(self, n: int) -> torch.Tensor:
        """k-diffusion's `get_sigmas(n)`: timesteps evenly spaced from the last to 0."""
        t = torch.linspace(len(self.sigmas) - 1, 0, n)
        return _append_zero(self.t_to_sigma(t))


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((max_inv + ramp * (min_inv - max_inv)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    ramp = torch.linspace(1, 0, n) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def align_your_steps(n: int, sdxl: bool) -> torch.Tensor:
    """NVIDIA's table for the model family; other step counts interpolate it log-linearly."""
    table = AYS_SDXL if sdxl else AYS_SD15
    if n == len(table):
        return _append_zero(torch.tensor(table, dtype=torch.float32))
    xs = np.linspace(0, 1, len(table))
    ys = np.log(np.asarray(table)[::-1])
    interpolated = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1].copy()
    return _append_zero(torch.from_numpy(interpolated).float())


def kl_optimal(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """tan of an even walk in arctan(sigma) from sigma_max to sigma_min; the last sigma is sigma_min, not 0
    (as A1111: the final step stops at the model's smallest noise)."""
    alpha_min, alpha_max = torch.arctan(torch.tensor(sigma_min)), torch.arctan(torch.tensor(sigma_max))
    i = torch.arange(n + 1)
    return torch.tan(i / n * alpha_min + (1.0 - i / n) * alpha_max)


def simple(n: int, model: ModelSigmas) -> torch.Tensor:
    """Every (len / n)-th training sigma from the top."""
    step = len(model.sigmas) / n
    return _append_zero(torch.stack([model.sigmas[-(1 + int(x * step))] for x in range(n)]))


def normal(n: int, model: ModelSigmas, sgm: bool = False) -> torch.Tensor:
    """Timesteps evenly spaced between those of sigma_max and sigma_min (SGM Uniform leaves the last out)."""
    start = model.sigma_to_t(torch.tensor(model.sigma_max))
    end = model.sigma_to_t(torch.tensor(model.sigma_min))
    timesteps = torch.linspace(float(start), float(end), n + 1)[:-1] if sgm else torch.linspace(start, end, n)
    return _append_zero(torch.stack([model.t_to_sigma(t) for t in timesteps]))


def ddim(n: int, model: ModelSigmas) -> torch.Tensor:
    """Training sigmas 1, 1 + k, 1 + 2k … with k = len // n, highest first (may give a step or two more than n,
    as A1111's does)."""
    step = max(len(model.sigmas) // n, 1)
    picked = model.sigmas[1::step].flip(0)
    return _append_zero(picked)


def beta(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    from scipy import stats

    timesteps = stats.beta.ppf(1 - np.linspace(0, 1, n), BETA_ALPHA, BETA_BETA)
    return _append_zero(torch.tensor(sigma_min + timesteps * (sigma_max - sigma_min), dtype=torch.float32))


def schedule_sigmas(schedule: str, n: int, model: ModelSigmas, sdxl: bool = False) -> torch.Tensor:
    """The n + 1 sigmas (the last 0, except KL Optimal's) of an A1111 Schedule type for n steps."""
    lo, hi = model.sigma_min, model.sigma_max
    makers = {
        "Uniform": lambda: model.uniform(n),
        "Karras": lambda: karras(n, lo, hi),
        "Exponential": lambda: exponential(n, lo, hi),
        "Polyexponential": lambda: polyexponential(n, lo, hi),
        "SGM Uniform": lambda: normal(n, model, sgm=True),
        "KL Optimal": lambda: kl_optimal(n, lo, hi),
        "Align Your Steps": lambda: align_your_steps(n, sdxl),
        "Simple": lambda: simple(n, model),
        "Normal": lambda: normal(n, model),
        "DDIM": lambda: ddim(n, model),
        "Beta": lambda: beta(n, lo, hi),
    }
    if schedule not in makers:
        raise ValueError(f"no sigma table for schedule type {schedule!r}")
    return makers[schedule]()
