"""A1111's Schedule types as sigma tables, pinned against A1111's own functions.

`data/a1111_sigmas.json` holds the sigmas (rounded to 6 digits) for 10 and 20 steps of an SD 1.x model
(diffusers' scaled_linear betas 0.00085 … 0.012 over 1000 steps) as computed by
AUTOMATIC1111/stable-diffusion-webui `modules/sd_schedulers.py` (commit 02b0092d5a8450b282bd7d9c2d84fdfed0f3c6db)
over crowsonkb/k-diffusion `k_diffusion/sampling.py` and `external.DiscreteSchedule` (commit
4601bf085320592473f681a62808ed873d17fad5), run outside this repository; Beta with A1111's default
alpha = beta = 0.6.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diffusers import DDIMScheduler

from engine.tasks.sigma_schedules import ModelSigmas, schedule_sigmas

REFERENCE = json.loads((Path(__file__).parent / "data" / "a1111_sigmas.json").read_text())


@pytest.fixture(scope="module")
def sd15() -> ModelSigmas:
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return ModelSigmas.of_scheduler(scheduler)


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("schedule", sorted(REFERENCE))
def test_a_schedule_gives_the_sigmas_a1111_gives(sd15, schedule, steps):
    sdxl = schedule.endswith(" SDXL")
    name = schedule.removesuffix(" SDXL")
    sigmas = schedule_sigmas(name, steps, sd15, sdxl=sdxl)
    assert sigmas.tolist() == pytest.approx(REFERENCE[schedule][str(steps)], rel=2e-5, abs=2e-6)


def test_model_sigmas_are_those_of_sd15(sd15):
    assert sd15.sigma_min == pytest.approx(0.029168, abs=1e-6)
    assert sd15.sigma_max == pytest.approx(14.614642, abs=1e-5)
    # Timestep and sigma invert each other between the training steps.
    t = sd15.sigma_to_t(sd15.t_to_sigma(__import__("torch").tensor([0.0, 10.5, 500.25, 999.0])))
    assert t.tolist() == pytest.approx([0.0, 10.5, 500.25, 999.0], abs=1e-3)


def test_ddim_keeps_a1111s_step_count_and_an_unknown_schedule_is_an_error(sd15):
    assert len(schedule_sigmas("DDIM", 30, sd15)) == 32  # 1000 // 30 = 33: 31 sigmas + 0, as A1111
    with pytest.raises(ValueError, match="no sigma table for schedule type 'Fast'"):
        schedule_sigmas("Fast", 10, sd15)
