"""k-diffusion's DPM-Solver samplers (DPM fast, DPM adaptive), the stochastic DPM-Solver++ ones with their
Brownian-tree noise, and Restart sampling, over a denoiser (see engine.tasks.kdiffusion_samplers).

DPM-Solver, DPM-Solver++ (2M/3M) SDE and the Brownian tree noise follow k-diffusion's `sampling.py`
(github.com/crowsonkb/k-diffusion, © Katherine Crowson, MIT licence). Restart follows "Restart Sampling for
Improving Generative Processes" (Xu et al. 2023) with the default restart schedule A1111 uses.
"""

from __future__ import annotations

import math

import torch

from engine.tasks.kdiffusion_samplers import (
    Callback,
    Denoiser,
    NoiseSampler,
    _default_noise,
    _sigma_of,
    _t_of,
    _tell,
    ancestral_step,
    to_d,
)
from engine.tasks.sigma_schedules import karras


class _Step:
    """A PID controller of the adaptive solver's step size."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float, safety: float):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.safety = safety
        self.errs: list[float] = []

    def propose(self, error) -> bool:
        inverse = 1 / (float(error) + 1e-8)
        if not self.errs:
            self.errs = [inverse, inverse, inverse]
        self.errs[0] = inverse
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


class DPMSolver:
    """DPM-Solver (Lu et al. 2022, arXiv 2206.00927) in t = −log sigma, over an eps view of the denoiser."""

    def __init__(self, model: Denoiser, callback: Callback = None):
        self.model = model
        self.callback = callback

    def eps(self, cache: dict, key: str, x, t):
        if key not in cache:
            sigma = _sigma_of(t) * x.new_ones([x.shape[0]])
            cache[key] = (x - self.model(x, sigma)) / _sigma_of(t)
        return cache[key]

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        return x - _sigma_of(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - _sigma_of(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return (
            x
            - _sigma_of(t_next) * h.expm1() * eps
            - _sigma_of(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
        )

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - _sigma_of(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (
            x
            - _sigma_of(s2) * (r2 * h).expm1() * eps
            - _sigma_of(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
        )
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return (
            x
            - _sigma_of(t_next) * h.expm1() * eps
            - _sigma_of(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        )

    def _tell(self, x, i: int, t, cache):
        if self.callback is not None:
            denoised = x - _sigma_of(t) * self.eps(cache, "eps", x, t)
            self.callback(
                {"x": x, "i": i, "sigma": _sigma_of(t), "sigma_hat": _sigma_of(t), "denoised": denoised}
            )

    def fast(self, x, t_start, t_end, nfe: int, eta: float, s_noise: float, noise_sampler: NoiseSampler):
        m = math.floor(nfe / 3) + 1
        ts = torch.linspace(float(t_start), float(t_end), m + 1, device=x.device)
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        for i, order in enumerate(orders):
            cache: dict = {}
            t, t_next = ts[i], ts[i + 1]
            if eta:
                sd, su = ancestral_step(_sigma_of(t), _sigma_of(t_next), eta)
                t_next_ = torch.minimum(t_end, _t_of(sd))
                su = (_sigma_of(t_next) ** 2 - _sigma_of(t_next_) ** 2) ** 0.5
            else:
                t_next_, su = t_next, 0.0
            self._tell(x, i, t, cache)
            step = {1: self.step_1, 2: self.step_2, 3: self.step_3}[order]
            x = step(x, t, t_next_, cache)
            x = x + su * s_noise * noise_sampler(_sigma_of(t), _sigma_of(t_next))
        return x

    def adaptive(self, x, t_start, t_end, eta: float, s_noise: float, noise_sampler: NoiseSampler):
        """DPM-Solver-23 with k-diffusion's defaults (rtol 0.05, atol 0.0078, h_init 0.05, I-controller)."""
        atol, rtol = torch.tensor(0.0078), torch.tensor(0.05)
        s, x_prev, steps = t_start, x, 0
        pid = _Step(0.05, 0.0, 1.0, 0.0, 1.5 if eta else 3, 0.81)
        while s < t_end - 1e-5:
            cache: dict = {}
            t = torch.minimum(t_end, s + pid.h)
            if eta:
                sd, su = ancestral_step(_sigma_of(s), _sigma_of(t), eta)
                t_ = torch.minimum(t_end, _t_of(sd))
                su = (_sigma_of(t) ** 2 - _sigma_of(t_) ** 2) ** 0.5
            else:
                t_, su = t, 0.0
            self._tell(x, steps, s, cache)
            x_low = self.step_2(x, s, t_, cache, r1=1 / 3)
            x_high = self.step_3(x, s, t_, cache)
            delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            if pid.propose(error):
                x_prev = x_low
                x = x_high + su * s_noise * noise_sampler(_sigma_of(s), _sigma_of(t))
                s = t
            steps += 1
        return x


def _solver_range(sigma_min, sigma_max):
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    return _t_of(torch.as_tensor(sigma_max)), _t_of(torch.as_tensor(sigma_min))


@torch.no_grad()
def sample_dpm_fast(
    model, x, sigma_min, sigma_max, n: int, callback=None, eta=0.0, s_noise=1.0, noise_sampler=None
):
    """DPM-Solver-Fast: `n` model evaluations in fixed steps of order 3 (then 2 and 1)."""
    t_start, t_end = _solver_range(sigma_min, sigma_max)
    solver = DPMSolver(model, callback)
    return solver.fast(x, t_start, t_end, n, eta, s_noise, noise_sampler or _default_noise(x))


@torch.no_grad()
def sample_dpm_adaptive(
    model, x, sigma_min, sigma_max, callback=None, eta=0.0, s_noise=1.0, noise_sampler=None
):
    """DPM-Solver-23 with an adaptive step size (the number of steps is its own)."""
    t_start, t_end = _solver_range(sigma_min, sigma_max)
    solver = DPMSolver(model, callback)
    return solver.adaptive(x, t_start, t_end, eta, s_noise, noise_sampler or _default_noise(x))


class BrownianNoise:
    """Noise from one Brownian tree per image (torchsde), seeded by the image's seed: the SDE samplers' noise
    at any pair of sigmas, the same for an image whatever batch it is in."""

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seeds: list[int]):
        import torchsde

        self.t0, self.t1 = float(sigma_min), float(sigma_max)
        w0 = torch.zeros_like(x[0])
        self.trees = [torchsde.BrownianTree(self.t0, w0, self.t1, entropy=seed) for seed in seeds]

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        a, b = float(torch.as_tensor(sigma)), float(torch.as_tensor(sigma_next))
        sign = 1 if a < b else -1
        lo, hi = min(a, b), max(a, b)
        w = torch.stack([tree(torch.tensor(lo), torch.tensor(hi)) for tree in self.trees]) * sign
        return w / abs(b - a) ** 0.5


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, callback: Callback = None, eta=1.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver++ (stochastic), second order, r = 1/2."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        _tell(callback, x, i, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t_of(sigmas[i]), _t_of(sigmas[i + 1])
        h = t_next - t
        s = t + h / 2
        sd, su = ancestral_step(_sigma_of(t), _sigma_of(s), eta)
        s_ = _t_of(sd)
        x_2 = (_sigma_of(s_) / _sigma_of(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise_sampler(_sigma_of(t), _sigma_of(s)) * s_noise * su
        denoised_2 = model(x_2, _sigma_of(s) * s_in)
        sd, su = ancestral_step(_sigma_of(t), _sigma_of(t_next), eta)
        t_next_ = _t_of(sd)
        # r = 1/2: the second step uses the midpoint's prediction alone ((1 − 1/2r)·denoised + 1/2r·denoised_2)
        x = (_sigma_of(t_next_) / _sigma_of(t)) * x - (t - t_next_).expm1() * denoised_2
        x = x + noise_sampler(_sigma_of(t), _sigma_of(t_next)) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model,
    x,
    sigmas,
    callback: Callback = None,
    eta=1.0,
    s_noise=1.0,
    noise_sampler=None,
    solver_type="midpoint",
):
    """DPM-Solver++(2M) SDE, midpoint or Heun correction."""
    s_in = x.new_ones([x.shape[0]])
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        _tell(callback, x, i, sigmas[i], denoised)
        h = None
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    factor = (-h - eta_h).expm1().neg() / (-h - eta_h) + 1
                else:
                    factor = 0.5 * (-h - eta_h).expm1().neg()
                x = x + factor * (1 / r) * (denoised - old_denoised)
            if eta:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * s_noise
        old_denoised, h_last = denoised, h
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(
    model, x, sigmas, callback: Callback = None, eta=1.0, s_noise=1.0, noise_sampler=None
):
    """DPM-Solver++(3M) SDE."""
    s_in = x.new_ones([x.shape[0]])
    denoised_1, denoised_2, h_1, h_2 = None, None, None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        _tell(callback, x, i, sigmas[i], denoised)
        h = None
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:
                x = x + phi_2 * (denoised - denoised_1) / (h_1 / h)
            if eta:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def restart_plan(sigmas: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (from, to) sigma pairs Restart walks: with 20 or more steps the schedule is a Karras one of fewer
    steps, and from the step nearest sigma 0.1 it goes back up to the one nearest sigma 2 and down again
    (once with 9 steps; from 36 steps twice with steps // 4) — the paper's default as A1111 runs it."""
    steps = sigmas.shape[0] - 1
    restart = None
    if steps >= 20:
        restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = karras(steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item())
        sigmas = sigmas.to(sigmas.device)
        restart = (int(torch.argmin(abs(sigmas - 0.1))), restart_steps + 1, restart_times)
    pairs = []
    for i in range(len(sigmas) - 1):
        pairs.append((sigmas[i], sigmas[i + 1]))
        if restart is not None and i + 1 == restart[0]:
            low, high = i + 1, int(torch.argmin(abs(sigmas - 2)))
            if high < low:
                back = karras(restart[1], sigmas[low].item(), sigmas[high].item())[:-1]
                for _ in range(restart[2]):
                    pairs.extend(zip(back[:-1], back[1:], strict=True))
    return pairs


@torch.no_grad()
def sample_restart(model, x, sigmas, callback: Callback = None, s_noise=1.0, noise_sampler=None):
    """Restart sampling: Heun steps, and at each restart fresh noise up to the higher sigma before going down."""
    noise_sampler = noise_sampler or _default_noise(x)
    s_in = x.new_ones([x.shape[0]])
    last = None
    for i, (sigma, sigma_next) in enumerate(restart_plan(sigmas.cpu())):
        sigma, sigma_next = sigma.to(x.device), sigma_next.to(x.device)
        if last is not None and last < sigma:
            x = x + noise_sampler(last, sigma) * s_noise * (sigma**2 - last**2) ** 0.5
        denoised = model(x, sigma * s_in)
        d = to_d(x, sigma, denoised)
        _tell(callback, x, i, sigma, denoised)
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigma_next, model(x_2, sigma_next * s_in))
            x = x + (d + d_2) / 2 * dt
        last = sigma_next
    return x
