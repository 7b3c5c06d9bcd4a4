"""DDIM CFG++ (A1111's `ddim_cfgpp`) against a transcription of A1111's loop, on the tiny model; A1111's eta of
the ancestral and SDE samplers (`Eta`, default 1) and of DDIM CFG++ (`Eta DDIM`, default 0), written into the
infotext as A1111 writes it and read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from commands.followups import from_infotext
from config import Limits
from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.tasks.samplers import BUILTIN_SAMPLERS
from engine.tasks.timestep_samplers import CfgppDdim
from engine.validation import check_request
from tests.engine.helpers import mean_difference, pixels, request


def _a1111_ddim_cfgpp(model, x, timesteps, alphas_cumprod, eta, noises):
    """A1111's ddim_cfgpp loop, written out from its formula: `model` gives (guided ε, unconditional ε)."""
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].double()
    sigmas = eta * np.sqrt(
        (1 - alphas_prev.numpy()) / (1 - alphas.numpy()) * (1 - alphas.numpy() / alphas_prev.numpy())
    )
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t, uncond = model(x, int(timesteps[index]))
        a_t, a_prev = alphas[index].item(), alphas_prev[index].item()
        sigma_t = float(sigmas[index])
        pred_x0 = (x - (1 - a_t) ** 0.5 * e_t) / a_t**0.5
        x = a_prev**0.5 * pred_x0 + (1.0 - a_prev - sigma_t**2) ** 0.5 * uncond + sigma_t * noises[i]
    return x


@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_the_scheduler_is_a1111s_loop(eta):
    acp = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, 0).double()
    steps = 8
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    # Step i's noise comes from a generator seeded 100 + i: A1111's loop is given the same draws.
    noises = [
        torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(100 + i))[None] for i in range(steps)
    ]

    def model(x, t):
        return torch.sin(x) * 0.3 + t / 2000, torch.cos(x) * 0.2

    timesteps = torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)
    expected = _a1111_ddim_cfgpp(model, x0, timesteps, acp, eta, noises)
    scheduler = CfgppDdim(acp)
    scheduler.set_timesteps(steps)
    assert len(scheduler.timesteps) == steps - 1 and int(scheduler.timesteps[0]) == 876
    x = x0
    for i, t in enumerate(scheduler.timesteps):
        eps, uncond = model(x, int(t))
        generators = [torch.Generator().manual_seed(100 + i)]
        x = scheduler.step(eps, t, x, generators, eta=eta, uncond=uncond).prev_sample
    assert torch.allclose(x, expected.float(), atol=1e-5)


def test_ddim_cfgpp_runs_and_its_eta_reads_back(engine):
    ddim = engine.txt2img(request(sampler="DDIM", steps=4)).images[0]
    cfgpp = engine.txt2img(request(sampler="DDIM CFG++", steps=4)).images[0]
    assert pixels(cfgpp.image).std() > 1 and not np.array_equal(pixels(ddim.image), pixels(cfgpp.image))
    info = parse_infotext(cfgpp.infotext)
    assert info.sampler == "DDIM CFG++" and "Eta DDIM" not in info.params
    again = engine.txt2img(request(sampler="DDIM CFG++", steps=4)).images[0]
    assert np.array_equal(pixels(cfgpp.image), pixels(again.image))
    noisy = engine.txt2img(request(sampler="DDIM CFG++", steps=4, eta=0.7)).images[0]
    assert parse_infotext(noisy.infotext).params["Eta DDIM"] == "0.7"
    assert mean_difference(cfgpp.image, noisy.image) > 0.5
    repeated, notes = from_infotext(noisy.infotext, {engine.checkpoint(None).name})
    assert notes == [] and (repeated.sampler, repeated.eta) == ("DDIM CFG++", 0.7)
    assert np.array_equal(pixels(engine.txt2img(repeated).images[0].image), pixels(noisy.image))
    # CFG 12.5 is CFG++'s 1: the negative prompt's rows still give the step's direction.
    assert (
        pixels(engine.txt2img(request(sampler="DDIM CFG++", steps=4, cfg_scale=12.5)).images[0].image).std()
        > 1
    )


def test_ddim_cfgpp_takes_only_its_own_timesteps():
    assert BUILTIN_SAMPLERS.resolve("DDIM CFG++")[1] == "Uniform"
    with pytest.raises(InvalidRequest, match="choose one of: Automatic, Uniform"):
        BUILTIN_SAMPLERS.resolve("DDIM CFG++", "Karras")


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M SDE"])
def test_an_ancestral_or_sde_eta_changes_the_image_and_reads_back(engine, sampler):
    plain = engine.txt2img(request(sampler=sampler)).images[0]
    one = engine.txt2img(request(sampler=sampler, eta=1.0)).images[0]  # A1111's default: the same image
    assert np.array_equal(pixels(plain.image), pixels(one.image)) and one.infotext == plain.infotext
    half = engine.txt2img(request(sampler=sampler, eta=0.5)).images[0]
    assert mean_difference(plain.image, half.image) > 0.5
    info = parse_infotext(half.infotext)
    assert info.params["Eta"] == "0.5" and "Eta DDIM" not in info.params
    keys = list(info.params)
    assert keys.index("Eta") < keys.index("Version")
    repeated, notes = from_infotext(half.infotext, {engine.checkpoint(None).name})
    assert notes == [] and repeated.eta == 0.5
    assert np.array_equal(pixels(engine.txt2img(repeated).images[0].image), pixels(half.image))


def test_eta_is_refused_where_a1111_records_none():
    with pytest.raises(InvalidRequest, match="Euler takes no eta here") as refused:
        check_request(request(sampler="Euler", eta=0.5), Limits(), BUILTIN_SAMPLERS)
    assert "Euler a" in str(refused.value) and "DDIM CFG++" in str(refused.value)
    check_request(request(sampler="DPM adaptive", eta=0.2), Limits(), BUILTIN_SAMPLERS)
