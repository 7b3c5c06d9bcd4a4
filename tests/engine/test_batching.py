"""Dynamic batching in the engine: different requests denoised together give bit-identical images."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import JobCancelled
from engine.requests import GenerationRequest, HiresFix, RunControl
from engine.tasks.batching import batch_key


def request(prompt: str, seed: int, **overrides) -> GenerationRequest:
    options = {"width": 64, "height": 64, "steps": 6, "cfg_scale": 5.0, **overrides}
    return GenerationRequest(prompt, seed=seed, **options)


def same_pixels(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "Euler a", "DPM++ SDE", "DPM++ 2M SDE"])
def test_batch_of_four_equals_four_solo_runs(engine, sampler):
    batch = engine.txt2img(request("a red circle on a blue background", 40, batch_size=4, sampler=sampler))
    for offset, generated in enumerate(batch.images):
        alone = engine.txt2img(request("a red circle on a blue background", 40 + offset, sampler=sampler))
        assert same_pixels(generated.image, alone.images[0].image), offset


def test_a_full_batch_of_eight_equals_eight_solo_runs(engine):
    """Eight images with CFG are 16 rows, where PyTorch would switch convolutions to NNPACK."""
    requests = [request("a red circle on a blue background", 7000 + i) for i in range(8)]
    results = engine.txt2img_many(requests, [RunControl() for _ in requests])
    for req, result in zip(requests, results, strict=True):
        assert same_pixels(result.images[0].image, engine.txt2img(req).images[0].image), req.seed


def test_different_requests_share_a_batch_and_match_their_solo_runs(engine):
    requests = [
        request("a red circle on a blue background", 1),
        request(
            "a small yellow star on the left, purple background", 2, negative_prompt="blurry", batch_size=2
        ),
        request("a green square at the top, white background " + "glossy " * 80, 3),  # two prompt chunks
        request("a black triangle on an orange background", 4, batch_count=2),
    ]
    assert len({batch_key(r) for r in requests}) == 1
    results = engine.txt2img_many(requests, [RunControl() for _ in requests])
    assert [len(r.images) for r in results] == [1, 2, 1, 2]
    for req, result in zip(requests, results, strict=True):
        alone = engine.txt2img(req)
        assert [g.seed for g in result.images] == [g.seed for g in alone.images]
        assert [g.infotext for g in result.images] == [g.infotext for g in alone.images]
        for mine, theirs in zip(result.images, alone.images, strict=True):
            assert same_pixels(mine.image, theirs.image)


def test_hires_requests_batch_too(engine):
    requests = [
        request("a red circle", 5, hires=HiresFix(2.0, steps=3)),
        request("a blue star", 6, hires=HiresFix(2.0, steps=3)),
    ]
    results = engine.txt2img_many(requests, [RunControl(), RunControl()])
    for req, result in zip(requests, results, strict=True):
        assert same_pixels(result.images[0].image, engine.txt2img(req).images[0].image)


def test_batch_key_separates_what_cannot_share_a_batch(engine):
    base = request("a cat", 1)
    assert batch_key(base) == batch_key(
        request("a dog", 9, negative_prompt="ugly", batch_size=3, variation_seed=4)
    )
    for other in (
        request("a cat", 1, steps=7),
        request("a cat", 1, cfg_scale=6.0),
        request("a cat", 1, width=128),
        request("a cat", 1, sampler="Euler"),
        request("a cat", 1, schedule="Exponential"),
        request("a cat", 1, clip_skip=2),
        request("a cat <lora:style:0.5>", 1),
        request("a cat", 1, model="other"),
        request("a cat", 1, hires=HiresFix()),
        request("a cat", 1, variation_strength=0.2),
    ):
        assert batch_key(other) != batch_key(base), other
    with pytest.raises(ValueError, match="one batch_key"):
        engine.txt2img_many([base, request("a cat", 1, steps=7)], [RunControl(), RunControl()])


def test_progress_goes_to_each_request_and_cancel_needs_all(engine):
    requests = [request("a red circle", 1, batch_size=2), request("a blue square", 2)]
    events: list[list] = [[], []]
    controls = [RunControl(on_step=events[0].append), RunControl(on_step=events[1].append)]
    controls[1].cancel.set()  # one of two cancelled: the batch still runs (the queue drops that result)
    engine.txt2img_many(requests, controls)
    assert [e.step for e in events[0]] == list(range(1, 7)) and [e.step for e in events[1]] == list(
        range(1, 7)
    )
    assert {e.image_index for e in events[0]} == {0} and events[1][-1].preview().size == (16, 16)
    controls[0].cancel.set()
    with pytest.raises(JobCancelled):
        engine.txt2img_many(requests, controls)
