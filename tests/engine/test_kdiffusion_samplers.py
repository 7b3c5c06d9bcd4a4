"""The k-diffusion samplers Salon runs itself, against k-diffusion's (and A1111's Restart) own functions.

`data/kdiffusion_samplers.json` holds the final latents of each sampler run on the closed-form denoiser
below, from the same starting latents and the same step noise, as computed (in float64) by crowsonkb/k-diffusion
`k_diffusion/sampling.py` (commit 4601bf085320592473f681a62808ed873d17fad5) and, for Restart,
AUTOMATIC1111/stable-diffusion-webui `modules/sd_samplers_extra.py` (commit
255da37da1871a90c352bcc4ee3617fd8ceed610), run outside this repository: DPM fast and DPM adaptive with
A1111's eta 1 (and 0), the SDE samplers with a plain noise sampler and, once, with Brownian trees seeded 3 and 4.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.tasks import kdiffusion_samplers as ks
from engine.tasks import kdiffusion_solvers as kv
from engine.tasks.sigma_schedules import karras

REFERENCE = json.loads((Path(__file__).parent / "data" / "kdiffusion_samplers.json").read_text())
SIGMA_MIN, SIGMA_MAX = 0.0292, 14.6146


@pytest.fixture(autouse=True)
def float64():
    """The reference ran in float64 throughout (its sigma tables included)."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(saved)


def denoiser(x, sigma):
    s = sigma.view(-1, 1, 1, 1)
    return x / (1 + s**2) + 0.3 * torch.tanh(x / (1 + s)) * s / (1 + s)


def start():
    generator = torch.Generator().manual_seed(0)
    return torch.randn((2, 1, 2, 2), generator=generator, dtype=torch.float64) * SIGMA_MAX


def noise():
    generator = torch.Generator().manual_seed(1)
    return lambda sigma, sigma_next: torch.randn((2, 1, 2, 2), generator=generator, dtype=torch.float64)


def sig(n):
    return karras(n, SIGMA_MIN, SIGMA_MAX).double()


RUNS = {
    "euler": lambda x: ks.sample_euler(denoiser, x, sig(10)),
    "euler_ancestral": lambda x: ks.sample_euler_ancestral(denoiser, x, sig(10), noise_sampler=noise()),
    "heun": lambda x: ks.sample_heun(denoiser, x, sig(10)),
    "dpm_2": lambda x: ks.sample_dpm_2(denoiser, x, sig(10)),
    "dpm_2_ancestral": lambda x: ks.sample_dpm_2_ancestral(denoiser, x, sig(10), noise_sampler=noise()),
    "lms": lambda x: ks.sample_lms(denoiser, x, sig(10)),
    "dpmpp_2m": lambda x: ks.sample_dpmpp_2m(denoiser, x, sig(10)),
    "dpmpp_2s_ancestral": lambda x: ks.sample_dpmpp_2s_ancestral(denoiser, x, sig(10), noise_sampler=noise()),
    "dpmpp_sde": lambda x: kv.sample_dpmpp_sde(denoiser, x, sig(10), noise_sampler=noise()),
    "dpmpp_2m_sde": lambda x: kv.sample_dpmpp_2m_sde(denoiser, x, sig(10), noise_sampler=noise()),
    "dpmpp_2m_sde_heun": lambda x: kv.sample_dpmpp_2m_sde(
        denoiser, x, sig(10), noise_sampler=noise(), solver_type="heun"
    ),
    "dpmpp_3m_sde": lambda x: kv.sample_dpmpp_3m_sde(denoiser, x, sig(10), noise_sampler=noise()),
    "dpm_fast": lambda x: kv.sample_dpm_fast(
        denoiser, x, SIGMA_MIN, SIGMA_MAX, 10, eta=1.0, noise_sampler=noise()
    ),
    "dpm_fast_eta0": lambda x: kv.sample_dpm_fast(denoiser, x, SIGMA_MIN, SIGMA_MAX, 9),
    "dpm_adaptive": lambda x: kv.sample_dpm_adaptive(
        denoiser, x, SIGMA_MIN, SIGMA_MAX, eta=1.0, noise_sampler=noise()
    ),
    "dpm_adaptive_eta0": lambda x: kv.sample_dpm_adaptive(denoiser, x, SIGMA_MIN, SIGMA_MAX),
    "dpmpp_2m_sde_brownian": lambda x: kv.sample_dpmpp_2m_sde(
        denoiser, x, sig(10), noise_sampler=kv.BrownianNoise(x, sig(10)[-2], SIGMA_MAX, [3, 4])
    ),
    "restart": lambda x: kv.sample_restart(denoiser, x, sig(24), noise_sampler=noise()),
}


def test_every_reference_run_is_checked():
    assert set(RUNS) == set(REFERENCE)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_sampler_gives_k_diffusions_latents(name):
    result = RUNS[name](start())
    assert result.flatten().tolist() == pytest.approx(REFERENCE[name], rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name", ["euler_ancestral", "dpm_adaptive", "restart", "dpmpp_2m_sde_brownian"])
def test_a_stochastic_sampler_repeats_itself_and_its_callback_sees_each_step(name):
    assert torch.equal(RUNS[name](start()), RUNS[name](start()))
    seen = []
    ks.sample_euler_ancestral(denoiser, start(), sig(6), callback=lambda info: seen.append(info["i"]))
    assert seen == list(range(6))


def test_restart_adds_its_restart_steps_from_20_steps():
    assert len(kv.restart_plan(sig(10))) == 10
    assert len(kv.restart_plan(sig(20))) == 20 - 9 + 9  # 11 Karras steps and one restart of 9
    assert len(kv.restart_plan(sig(40))) == 40 - 20 + 2 * 10  # 20 steps and two restarts of 10
