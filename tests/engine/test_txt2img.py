"""txt2img on the tiny model: determinism, seeds, batches, hires, options that must change the picture."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import JobCancelled
from engine.infotext import parse_infotext
from engine.requests import HiresFix, HiresUpscaler, RunControl
from tests.engine.helpers import mean_difference, pixels, request


def test_same_request_gives_identical_pixels(engine):
    first = engine.txt2img(request()).images[0]
    second = engine.txt2img(request()).images[0]
    assert np.array_equal(pixels(first.image), pixels(second.image))
    assert first.infotext == second.infotext


def test_other_seed_or_prompt_changes_the_image(engine):
    base = engine.txt2img(request()).images[0].image
    assert mean_difference(base, engine.txt2img(request(seed=12)).images[0].image) > 1
    assert mean_difference(base, engine.txt2img(request("a blue square")).images[0].image) > 0.5


def test_batch_images_use_consecutive_seeds_and_equal_their_solo_runs(engine):
    result = engine.txt2img(request(batch_size=2, batch_count=2))
    assert [g.seed for g in result.images] == [11, 12, 13, 14]
    assert [g.index for g in result.images] == [0, 1, 2, 3]
    solo = engine.txt2img(request(seed=12)).images[0]
    assert np.array_equal(pixels(result.images[1].image), pixels(solo.image))  # batch-invariant on the CPU
    assert parse_infotext(result.images[3].infotext).seed == 14


def test_random_seed_is_recorded(engine):
    generated = engine.txt2img(request(seed=-1)).images[0]
    assert 0 <= generated.seed < 2**32 - 1
    again = engine.txt2img(request(seed=generated.seed)).images[0]
    assert np.array_equal(pixels(generated.image), pixels(again.image))


def test_variation_seed_mixes_noise(engine):
    base = engine.txt2img(request()).images[0].image
    zero = engine.txt2img(request(variation_seed=99, variation_strength=0.0)).images[0]
    assert np.array_equal(pixels(base), pixels(zero.image))
    varied = engine.txt2img(request(variation_seed=99, variation_strength=0.5)).images[0]
    assert mean_difference(base, varied.image) > 0.5
    info = parse_infotext(varied.infotext)
    assert info.variation_seed == 99 and info.variation_seed_strength == 0.5


@pytest.mark.parametrize("option", [{"clip_skip": 2}, {"tiling": True}, {"cfg_scale": 3.0}])
def test_options_change_the_image_and_are_recorded(engine, option):
    base = engine.txt2img(request()).images[0].image
    changed = engine.txt2img(request(**option)).images[0]
    assert mean_difference(base, changed.image) > 0.1
    info = parse_infotext(changed.infotext)
    key, value = next(iter(option.items()))
    expected = {
        "clip_skip": ("Clip skip", "2"),
        "tiling": ("Tiling", "True"),
        "cfg_scale": ("CFG scale", "3"),
    }
    assert info.params[expected[key][0]] == expected[key][1]


@pytest.mark.parametrize("upscaler", list(HiresUpscaler))
def test_hires_fix_doubles_the_size(engine, upscaler):
    generated = engine.txt2img(request(hires=HiresFix(scale=2.0, steps=2, upscaler=upscaler))).images[0]
    assert generated.image.size == (128, 128)
    info = parse_infotext(generated.infotext)
    assert (info.width, info.height) == (64, 64)  # A1111 records the first-pass size
    assert info.params["Hires upscale"] == "2" and info.params["Hires upscaler"] == upscaler.value
    assert info.params["Hires steps"] == "2" and info.denoising_strength == 0.7


def test_progress_reports_each_step_with_a_preview(engine):
    events = []
    engine.txt2img(request(steps=4), RunControl(on_step=events.append))
    assert [(e.phase, e.step, e.total) for e in events] == [("txt2img", i, 4) for i in range(1, 5)]
    latent_side = 64 // engine.load(None).vae_scale_factor
    assert events[-1].preview().size == (latent_side, latent_side)  # a preview at latent resolution


def test_second_order_sampler_reports_user_steps(engine):
    events = []
    engine.txt2img(request(steps=4, sampler="Heun"), RunControl(on_step=events.append))
    assert events[-1].step == 4 and {e.total for e in events} == {4}


def test_cancel_stops_between_steps_at_the_state_of_a_full_run(engine):
    full = []
    engine.txt2img(request(steps=5), RunControl(on_step=full.append))
    seen = []
    control = RunControl()

    def on_step(event):
        seen.append(event)
        if event.step == 2:
            control.cancel.set()

    control.on_step = on_step
    with pytest.raises(JobCancelled, match="step 2 of 5"):
        engine.txt2img(request(steps=5), control)
    assert len(seen) == 2
    assert np.array_equal(pixels(seen[-1].preview()), pixels(full[1].preview()))
