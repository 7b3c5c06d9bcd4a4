"""The k-diffusion way of sampling, for the samplers and Schedule types diffusers has no scheduler for.

`KSchedule` stands where a diffusers scheduler stands in the tasks (txt2img, img2img, inpaint, hires): its
`timesteps` are the sigmas of the steps, `add_noise` noises latents to a sigma, and `strength_timesteps`
slices it like a scheduler. `run_k_sampler` then runs the sampler's whole k-diffusion loop
(engine.tasks.kdiffusion_samplers / kdiffusion_solvers) over the UNet as a denoiser, as A1111's
`KDiffusionSampler` and `CFGDenoiser` do: input scaled by 1/√(σ²+1), the continuous timestep of σ, the
prediction (eps or v) turned into denoised latents, and for inpainting the kept area put back into the
denoised latents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from engine.tasks import kdiffusion_samplers as ks
from engine.tasks import kdiffusion_solvers as kv
from engine.tasks.sigma_schedules import ModelSigmas, schedule_sigmas

# k-diffusion function name → (the function, whether it takes the ancestral noise, whether its noise is a
# Brownian tree per image).
_FUNCTIONS: dict[str, tuple[Callable, bool, bool]] = {
    "euler": (ks.sample_euler, False, False),
    "euler_ancestral": (ks.sample_euler_ancestral, True, False),
    "heun": (ks.sample_heun, False, False),
    "dpm_2": (ks.sample_dpm_2, False, False),
    "dpm_2_ancestral": (ks.sample_dpm_2_ancestral, True, False),
    "lms": (ks.sample_lms, False, False),
    "dpmpp_2m": (ks.sample_dpmpp_2m, False, False),
    "dpmpp_2s_ancestral": (ks.sample_dpmpp_2s_ancestral, True, False),
    "dpmpp_sde": (kv.sample_dpmpp_sde, True, True),
    "dpmpp_2m_sde": (kv.sample_dpmpp_2m_sde, True, True),
    "dpmpp_2m_sde_heun": (kv.sample_dpmpp_2m_sde, True, True),
    "dpmpp_3m_sde": (kv.sample_dpmpp_3m_sde, True, True),
    "dpm_fast": (kv.sample_dpm_fast, True, False),
    "dpm_adaptive": (kv.sample_dpm_adaptive, True, False),
    "restart": (kv.sample_restart, True, False),
}
K_FUNCTIONS = frozenset(_FUNCTIONS)
# The loops that take an eta (A1111's `Eta`, setting eta_ancestral; 1 unless a request says otherwise).
_ETA_FUNCTIONS = frozenset(
    ("euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde")
    + ("dpmpp_2m_sde_heun", "dpmpp_3m_sde")
)
# A1111's `discard_next_to_last_sigma` samplers: one more step is planned and the next-to-last sigma dropped.
_DISCARD_PENULTIMATE = frozenset({"dpm_2", "dpm_2_ancestral", "dpmpp_3m_sde"})


class KSchedule:
    """The sigmas of one run, shaped like the parts of a diffusers scheduler the tasks use."""

    order = 1

    def __init__(self, function: str, schedule: str, steps: int, model: ModelSigmas, sdxl: bool, seeds):
        if function not in _FUNCTIONS:
            raise ValueError(f"no k-diffusion sampler {function!r}")
        self.function = function
        self.model = model
        self.seeds = [int(s) for s in seeds]
        extra = 1 if function in _DISCARD_PENULTIMATE else 0
        sigmas = schedule_sigmas(schedule, steps + extra, model, sdxl).float()
        if extra:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        self.sigmas = sigmas
        self.timesteps = sigmas[:-1]
        self.init_noise_sigma = float(sigmas[0])

    def set_begin_index(self, begin: int) -> None:
        """Nothing to do: the task slices `timesteps` itself."""

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Latents noised to `sigma` (k-diffusion adds noise × σ; the scaling is the denoiser's)."""
        return latents + noise * sigma.to(noise.device, noise.dtype).view(-1, 1, 1, 1)[:1]

    def run_sigmas(self, timesteps: torch.Tensor) -> torch.Tensor:
        """The sigmas a run over `timesteps` (a tail of this schedule's) walks, the final one included."""
        return torch.cat([timesteps.float().cpu(), self.sigmas[-1:]])


def noise_sampler(generators: Sequence[torch.Generator], like: torch.Tensor):
    """Each step's fresh noise: one draw per image from its own generator (a batch equals its images alone)."""

    def draw(sigma, sigma_next) -> torch.Tensor:
        return torch.stack(
            [torch.randn(like.shape[1:], generator=g, dtype=torch.float32) for g in generators]
        ).to(like.device, like.dtype)

    return draw


def run_k_sampler(
    schedule: KSchedule,
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    generators: Sequence[torch.Generator],
    callback: Callable[[dict], None],
    eta: float = 1.0,
) -> torch.Tensor:
    """Run the schedule's sampler from `latents` (already noised to sigmas[0]) down `sigmas`."""
    function, noisy, brownian = _FUNCTIONS[schedule.function]
    kwargs: dict = {"callback": callback}
    if noisy:
        if brownian:
            positive = sigmas[sigmas > 0]
            kwargs["noise_sampler"] = kv.BrownianNoise(
                latents, positive.min(), positive.max(), schedule.seeds[: latents.shape[0]]
            )
        else:
            kwargs["noise_sampler"] = noise_sampler(generators, latents)
    if schedule.function == "dpmpp_2m_sde_heun":
        kwargs["solver_type"] = "heun"
    sigmas = sigmas.to(latents.device)
    if schedule.function in ("dpm_fast", "dpm_adaptive"):
        # A1111: the whole model range from pure noise, else the tail's range (its last sigma, 0, left out).
        full = len(sigmas) == len(schedule.sigmas)
        low = schedule.model.sigma_min if full else float(sigmas[-2])
        high = schedule.model.sigma_max if full else float(sigmas[0])
        if schedule.function == "dpm_fast":
            kwargs["n"] = len(sigmas) - 1
        return function(denoiser, latents, low, high, eta=eta, **kwargs)
    if schedule.function in _ETA_FUNCTIONS:  # A1111 passes its eta to every function that takes one
        kwargs["eta"] = eta
    return function(denoiser, latents, sigmas, **kwargs)


def expected_steps(schedule: KSchedule, sigmas: torch.Tensor) -> int:
    """How many callbacks a run over `sigmas` makes (progress "step N of M"); DPM adaptive: the step count
    asked for, since it picks its own."""
    n = len(sigmas) - 1
    if schedule.function == "dpm_fast":
        return n // 3 + 1  # steps of order 3, then the remainder's
    if schedule.function == "restart":
        return len(kv.restart_plan(sigmas))
    return n
