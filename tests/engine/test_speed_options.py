"""Step caching and token merging: optional, inexact speed-ups that say so in the infotext."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from config import load_settings
from engine.demo import DEMO_MODEL_NAME
from engine.infotext import parse_infotext
from engine.runner import Engine
from engine.speed.fast_path import dummy_unet_inputs
from engine.speed.step_cache import StepCache, unet_forward
from engine.speed.token_merging import plan_merge
from tests.engine.helpers import pixels, request

PROMPT = "a small red circle on the left, blue background"


def mean_difference(a, b) -> float:
    return float(
        np.mean([np.abs(pixels(x.image) - pixels(y.image)).mean() for x, y in zip(a, b, strict=True)])
    )


def graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def speed_engine(data_dir, **speed) -> Engine:
    return Engine(load_settings(None, data_dir=data_dir, default_model=DEMO_MODEL_NAME, speed=speed))


@pytest.mark.parametrize("model_name, size", [(None, 64), (None, 72), ("tiny-xl", 64)])
def test_the_written_out_forward_is_the_unets_own(engine, tiny_sdxl_dir, model_name, size):
    if model_name:
        from diffusers import UNet2DConditionModel

        unet, factor = UNet2DConditionModel.from_pretrained(tiny_sdxl_dir, subfolder="unet").eval(), 2
    else:
        model = engine.load(None)
        unet, factor = model.unet, model.vae_scale_factor
    sample, states, added = dummy_unet_inputs(unet, 4, size, size, 77, factor)
    t = torch.tensor(500.0)
    with torch.no_grad():
        own = unet(sample, t, encoder_hidden_states=states, added_cond_kwargs=added).sample
        mine, features = unet_forward(unet, sample, t, states, added)
        shallow, _ = unet_forward(unet, sample, torch.tensor(300.0), states, added, cached=features)
        exact_300 = unet(
            sample, torch.tensor(300.0), encoder_hidden_states=states, added_cond_kwargs=added
        ).sample
    assert torch.equal(mine, own)  # the same operations in the same order
    assert not torch.equal(shallow, exact_300) and (shallow - exact_300).abs().mean() < exact_300.abs().mean()


def test_the_cache_runs_the_whole_unet_every_interval_steps():
    cache = StepCache(3)
    pattern = []
    for _ in range(8):
        pattern.append(cache.full_step())
        cache.keep(torch.zeros(1))
    assert pattern == [True, False, False, True, False, False, True, False]


@pytest.mark.parametrize(
    "option, value, key",
    [("step_cache_interval", 3, "Step cache interval"), ("token_merging_ratio", 0.3, "Token merging ratio")],
)
def test_each_is_close_to_exact_and_says_so_in_the_infotext(engine, data_dir, option, value, key):
    inexact = speed_engine(data_dir, **{option: value})
    exact = engine.txt2img(request(PROMPT, steps=20, batch_size=2)).images
    approx = inexact.txt2img(request(PROMPT, steps=20, batch_size=2)).images
    assert 0 < mean_difference(exact, approx) < 4
    assert parse_infotext(approx[0].infotext).params[key] == str(value)
    assert key not in exact[0].infotext


def test_token_merging_plan_merges_a_share_and_gives_every_token_a_value():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8 * 6, 4, generator=generator)
    plan = plan_merge(x, 8, 6, 0.25)
    assert plan is not None and plan.merged.shape == (2, 12)
    merged = plan.merge(x)
    assert merged.shape == (2, 48 - 12, 4)
    restored = plan.unmerge(merged)
    kept = plan.sources[plan.kept[0]]
    assert torch.equal(restored[0, kept], x[0, kept])  # tokens that were not merged come back untouched
    moved = plan.sources[plan.merged[0]]
    target = plan.destinations[plan.targets[0]]
    assert torch.equal(restored[0, moved], restored[0, target])  # merged ones share their destination's value
    assert plan_merge(x, 8, 6, 0.0) is None


def test_both_compile_into_the_warm_graphs(data_dir):
    options = {"step_cache_interval": 3, "token_merging_ratio": 0.3, "batches": [2]}
    balanced = speed_engine(data_dir, mode="balanced", **options)
    compiled = speed_engine(data_dir, mode="max", compiler="eager", **options)
    compiled.warm_up()
    fast = compiled.load(None).fast
    before = graphs()
    result = compiled.txt2img(request(PROMPT, steps=7, batch_size=2)).images
    assert graphs() == before  # nothing compiled on the job
    assert fast.calls["unet full compiled"] == 3 and fast.calls["unet shallow compiled"] == 4
    assert fast.calls["unet full eager"] == fast.calls["unet shallow eager"] == 0
    expected = balanced.txt2img(request(PROMPT, steps=7, batch_size=2)).images
    assert mean_difference(result, expected) < 0.05
