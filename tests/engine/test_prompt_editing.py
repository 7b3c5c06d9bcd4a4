"""Prompt editing, alternation and AND on the tiny model: each step's conditioning, as a hand-run loop gives it.

The hand-run loops below use the engine's own pieces (its text encoding, the scheduler, the UNet call), but
switch the conditioning and combine the UNet's rows themselves, so they check the loop's schedule and A1111's
composable formula rather than repeat the code under test.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from commands.followups import from_infotext
from engine.infotext_files import read_infotext, save_image_with_infotext
from engine.requests import HiresFix, RunControl
from engine.speed.invariance import batch_invariant
from engine.tasks.batching import batch_key
from engine.tasks.guidance import unet_text_inputs
from engine.tasks.sampling import (
    Prepared,
    decode_latents,
    denoise,
    new_scheduler,
    seeded_noise,
    unet_prediction,
)
from tests.engine.helpers import mean_difference, pixels, request

STEPS = 4


def _prepared(engine, req, prompt: str, negative: str = "") -> Prepared:
    model = engine.base_model(req.model)
    spec, schedule = engine.samplers.resolve(req.sampler, req.schedule)
    conditioning = engine._conditioning(model, prompt, negative, req.clip_skip)
    return Prepared(model, req, spec, schedule, conditioning)


def _phased(engine, req, phases: list[tuple[str, int]], negatives: list[str] | None = None):
    """txt2img by hand: `phases` of (prompt, number of steps) one after the other on one scheduler, each with
    its negative prompt from `negatives` (default: none)."""
    negatives = negatives or [""] * len(phases)
    first = _prepared(engine, req, phases[0][0], negatives[0])
    model = first.model
    with batch_invariant([model.unet, model.vae], model.device):
        generators, noise = seeded_noise(first, [req.seed], None, req.width, req.height)
        scheduler = new_scheduler(first, req.steps, [req.seed])
        latents = noise * scheduler.init_noise_sigma
        start = 0
        for (prompt, count), negative in zip(phases, negatives, strict=True):
            prep = _prepared(engine, req, prompt, negative)
            timesteps = scheduler.timesteps[start : start + count]
            latents = denoise(
                prep,
                latents,
                scheduler,
                timesteps,
                generators,
                RunControl(),
                phase="txt2img",
                first_index=0,
                size=(req.width, req.height),
            )
            start += count
        assert start == len(scheduler.timesteps)
        return decode_latents(model, latents)[0]


def _image(engine, req):
    return engine.txt2img(req).images[0].image


def _same(a, b) -> bool:
    return np.array_equal(pixels(a), pixels(b))


def test_prompt_editing_switches_the_conditioning_at_the_scheduled_step(engine):
    edited = _image(engine, request("a [red:blue:0.5] circle", steps=STEPS))
    red = _image(engine, request("a red circle", steps=STEPS))
    blue = _image(engine, request("a blue circle", steps=STEPS))
    assert mean_difference(edited, red) > 0.2 and mean_difference(edited, blue) > 0.2
    # 0.5 × 4 = step 2: steps 0, 1, 2 (0-based, "up to and including 2") are red, step 3 is blue.
    by_hand = _phased(engine, request(steps=STEPS), [("a red circle", 3), ("a blue circle", 1)])
    assert _same(edited, by_hand)


@pytest.mark.parametrize(
    ("prompt", "plain"),
    [("a [red:blue:1.0] circle", "a red circle"), ("a [red:blue:0] circle", "a blue circle")],
)
def test_edits_at_the_ends_equal_the_plain_prompt(engine, prompt, plain):
    assert _same(_image(engine, request(prompt, steps=STEPS)), _image(engine, request(plain, steps=STEPS)))


def test_alternation_changes_every_step(engine):
    alternating = _image(engine, request("a [red|blue] circle", steps=STEPS))
    # A1111's schedule on 4 steps: red (ends 1), blue (2), red (3), blue (4); step i takes the first end ≥ i.
    phases = [("a red circle", 2), ("a blue circle", 1), ("a red circle", 1)]
    assert _same(alternating, _phased(engine, request(steps=STEPS), phases))
    assert mean_difference(alternating, _image(engine, request("a red circle", steps=STEPS))) > 0.2


def test_negative_prompt_is_scheduled_too(engine):
    scheduled = _image(engine, request("a red circle", steps=STEPS, negative_prompt="[blue:green:0.5]"))
    plain = _image(engine, request("a red circle", steps=STEPS, negative_prompt="blue"))
    assert mean_difference(scheduled, plain) > 0.05
    phases = [("a red circle", 3), ("a red circle", 1)]
    assert _same(scheduled, _phased(engine, request(steps=STEPS), phases, ["blue", "green"]))


def test_composable_prompt_combines_sub_prompts_with_their_weights(engine):
    req = request("a red circle AND a blue square:0.5", steps=3, cfg_scale=6.0, sampler="Euler")
    composed = _image(engine, req)
    model = engine.base_model(None)
    parts = [_prepared(engine, req, text).conditioning for text in ("a red circle", " a blue square")]
    first = _prepared(engine, req, "a red circle")
    with batch_invariant([model.unet, model.vae], model.device):
        generators, noise = seeded_noise(first, [req.seed], None, req.width, req.height)
        scheduler = new_scheduler(first, req.steps, [req.seed])
        latents = noise * scheduler.init_noise_sigma
        states = [parts[0].uncond, parts[0].cond, parts[1].cond]
        kwargs = unet_text_inputs(model, states, [None] * 3, 1, (req.width, req.height))
        extra = (
            {"generator": generators} if "generator" in inspect.signature(scheduler.step).parameters else {}
        )
        for t in scheduler.timesteps:
            sample = scheduler.scale_model_input(torch.cat([latents] * 3), t)
            uncond, red, blue = unet_prediction(model, sample.to(model.dtype), t, kwargs).chunk(3)
            eps = uncond + (1.0 * 6.0) * (red - uncond)
            eps = eps + (0.5 * 6.0) * (blue - uncond)
            latents = scheduler.step(eps, t, latents, **extra).prev_sample
        by_hand = decode_latents(model, latents)[0]
    assert _same(composed, by_hand)
    alone = _image(engine, request("a red circle", steps=3, cfg_scale=6.0, sampler="Euler"))
    assert mean_difference(composed, alone) > 0.2


def test_hires_pass_counts_on_from_the_first_pass(engine):
    hires = HiresFix(2.0, steps=2)
    # "[red:blue:1.0]": red for the whole first pass; the hires pass is past 1.0, so it is blue throughout.
    edited = _image(engine, request("a [red:blue:1.0] circle", steps=3, hires=hires))
    red = _image(engine, request("a red circle", steps=3, hires=hires))
    assert mean_difference(edited, red) > 0.05


def test_infotext_keeps_the_prompt_as_typed_and_repeats_the_image(engine, tmp_path):
    generated = engine.txt2img(request("a [red:blue:0.5] circle AND a [square|star]:0.4", steps=STEPS))
    first = generated.images[0]
    assert first.infotext.startswith("a [red:blue:0.5] circle AND a [square|star]:0.4\n")
    path = save_image_with_infotext(first.image, tmp_path / "edited.png", first.infotext)
    again, notes = from_infotext(read_infotext(path), {generated.model_name})
    assert again.prompt == "a [red:blue:0.5] circle AND a [square|star]:0.4" and not notes
    assert _same(first.image, engine.txt2img(again).images[0].image)


def test_only_equal_scheduled_prompts_share_a_batch(engine):
    plain = [request("a red circle", seed=1), request("a blue star", seed=2)]
    assert batch_key(plain[0]) == batch_key(plain[1])
    edited = request("a [red:blue:0.5] circle", seed=3)
    assert batch_key(edited) != batch_key(plain[0])
    assert batch_key(edited) != batch_key(request("a [red:blue:0.6] circle", seed=3))
    twin = request("a [red:blue:0.5] circle", seed=4, batch_size=2)
    assert batch_key(twin) == batch_key(edited)
    results = engine.txt2img_many([edited, twin], [RunControl(), RunControl()])
    solo = engine.txt2img(request("a [red:blue:0.5] circle", seed=5)).images[0].image
    assert _same(results[1].images[1].image, solo)
