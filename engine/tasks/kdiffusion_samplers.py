"""k-diffusion's samplers over a denoiser, for the samplers and Schedule types diffusers has no scheduler for.

Each `sample_*(model, x, sigmas, callback=…, …)` runs the whole loop: `model(x, sigma)` returns the denoised
latents for noise level `sigma` (a (batch,) tensor), `callback(info)` is told each step (`i`, `x`,
`denoised`), `noise_sampler(sigma, sigma_next)` gives each step's fresh noise (one generator per image, so a
batch equals its images run alone). The algorithms are those of k-diffusion's `sampling.py`
(github.com/crowsonkb/k-diffusion, © Katherine Crowson, MIT licence), which A1111 runs; the stochastic
DPM-Solver++ and DPM-Solver ones are in engine.tasks.kdiffusion_solvers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None] | None
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """A denoiser output as the Karras ODE derivative."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """The noise level to step down to and the noise to add after, for an ancestral step."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def _tell(callback: Callback, x, i: int, sigma, denoised) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


@torch.no_grad()
def sample_euler(model: Denoiser, x, sigmas, callback: Callback = None) -> torch.Tensor:
    """Euler steps (Karras et al. 2022, Algorithm 2 without churn)."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        _tell(callback, x, i, sigmas[i], denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_euler_ancestral(
    model: Denoiser, x, sigmas, callback: Callback = None, eta=1.0, s_noise=1.0, noise_sampler=None
) -> torch.Tensor:
    """Ancestral sampling with Euler steps."""
    noise_sampler = noise_sampler or _default_noise(x)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _tell(callback, x, i, sigmas[i], denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(model: Denoiser, x, sigmas, callback: Callback = None) -> torch.Tensor:
    """Heun steps (Karras et al. 2022, Algorithm 2 without churn); Euler for the last one."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], denoised)
        _tell(callback, x, i, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in))
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(model: Denoiser, x, sigmas, callback: Callback = None) -> torch.Tensor:
    """DPM-Solver-2-like steps through the log-midpoint of each interval."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], denoised)
        _tell(callback, x, i, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in))
            x = x + d_2 * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(
    model: Denoiser, x, sigmas, callback: Callback = None, eta=1.0, s_noise=1.0, noise_sampler=None
) -> torch.Tensor:
    """Ancestral sampling with DPM-Solver-2 steps."""
    noise_sampler = noise_sampler or _default_noise(x)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _tell(callback, x, i, sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in))
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def _lms_coefficient(order: int, t, i: int, j: int) -> float:
    from scipy import integrate

    def basis(tau: float) -> float:
        product = 1.0
        for k in range(order):
            if j != k:
                product *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return product

    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


@torch.no_grad()
def sample_lms(model: Denoiser, x, sigmas, callback: Callback = None, order: int = 4) -> torch.Tensor:
    """Linear multistep over the last `order` derivatives."""
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().numpy()
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        ds = [*ds, to_d(x, sigmas[i], denoised)][-order:]
        _tell(callback, x, i, sigmas[i], denoised)
        current = min(i + 1, order)
        coefficients = [_lms_coefficient(current, sigmas_cpu, i, j) for j in range(current)]
        x = x + sum(c * d for c, d in zip(coefficients, reversed(ds), strict=True))
    return x


def _sigma_of(t):
    return t.neg().exp()


def _t_of(sigma):
    return sigma.log().neg()


@torch.no_grad()
def sample_dpmpp_2m(model: Denoiser, x, sigmas, callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M)."""
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        _tell(callback, x, i, sigmas[i], denoised)
        t, t_next = _t_of(sigmas[i]), _t_of(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma_of(t_next) / _sigma_of(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _t_of(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma_of(t_next) / _sigma_of(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(
    model: Denoiser, x, sigmas, callback: Callback = None, eta=1.0, s_noise=1.0, noise_sampler=None
) -> torch.Tensor:
    """Ancestral sampling with DPM-Solver++(2S) second-order steps."""
    noise_sampler = noise_sampler or _default_noise(x)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _tell(callback, x, i, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t_of(sigmas[i]), _t_of(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_2 = (_sigma_of(s) / _sigma_of(t)) * x - (-h / 2).expm1() * denoised
            denoised_2 = model(x_2, _sigma_of(s) * s_in)
            x = (_sigma_of(t_next) / _sigma_of(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def _default_noise(x: torch.Tensor) -> NoiseSampler:
    return lambda sigma, sigma_next: torch.randn_like(x)
