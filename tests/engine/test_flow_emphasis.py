"""Prompt emphasis on SD 3.5 and Flux (engine/prompts/flow_emphasis.py), as Forge applies it, on tiny
random-weight models: with every weight 1 the states built token by token equal the pipeline's own, exactly
(tokenizing, end token and padding as diffusers 0.42 does); a weight changes the image (more for a larger one),
a weighted negative prompt counts only where the call uses one; a weighted prompt batched with plain ones gives
each its own image; BREAK is removed with a note; the infotext keeps the prompt as typed."""

from __future__ import annotations

import pytest
import torch

from engine.infotext import parse_infotext
from engine.prompts.conditioning import emphasized
from engine.prompts.flow_emphasis import CLIP_LENGTH, clip_states, prompt_fragments, t5_states
from engine.requests import RunControl
from tests.engine.helpers import mean_difference, request

FLOW = dict(sampler="Euler", schedule="Simple", width=32, height=32, steps=2)
GUIDANCE = {"tiny-sd3": 4.0, "tiny-flux": 1.0}


def flow_request(model: str, **overrides):
    return request(model=model, **{**FLOW, "cfg_scale": GUIDANCE[model], **overrides})


def test_fragments_plain_text_and_break():
    assert prompt_fragments("a (red:1.3) cat BREAK on [grass] <lora:x:1>") == (
        "a red cat on grass",
        (("a ", 1.0), ("red", 1.3), (" cat", 1.0), ("on ", 1.0), ("grass", pytest.approx(1 / 1.1))),
        True,
    )
    assert prompt_fragments("a red cat")[1:] == ((("a red cat", 1.0),), False)


def test_the_weighting_keeps_the_mean_and_weight_one_changes_nothing():
    states = torch.randn(1, 6, 4)
    assert torch.equal(emphasized(states, torch.ones(1, 6)), states)
    weighted = emphasized(states, torch.tensor([[1.0, 1.5, 1.5, 1.0, 0.5, 1.0]]))
    assert torch.allclose(weighted.mean(), states.mean(), atol=1e-6) and not torch.equal(weighted, states)
    # States through a final LayerNorm without bias can average to exactly 0 (A1111 then divides 0 by 0):
    zero_mean = torch.tensor([[[1.0, -1.0], [2.0, -2.0]]])
    assert torch.equal(emphasized(zero_mean, torch.ones(1, 2)), zero_mean)
    assert torch.isfinite(emphasized(zero_mean, torch.tensor([[1.0, 1.5]]))).all()


def test_unweighted_states_are_the_pipelines_own(flow_engine):
    """The token-by-token path reproduces diffusers' encoding exactly when every weight is 1."""
    fragments = (("a red ", 1.0), ("circle", 1.0), (" on the green", 1.0))
    text = "a red circle on the green"
    with torch.inference_mode():
        flux = flow_engine.load("tiny-flux").pipe
        embeds, _, _ = flux.encode_prompt(prompt=[text], prompt_2=None, max_sequence_length=512)
        ours = t5_states(flux.tokenizer_2, flux.text_encoder_2, fragments, 512, "cpu")
        assert torch.equal(ours, embeds)
        sd3 = flow_engine.load("tiny-sd3").pipe
        joint, *_ = sd3.encode_prompt(
            prompt=[text], prompt_2=None, prompt_3=None, do_classifier_free_guidance=False
        )
        clip_l = clip_states(sd3.tokenizer, sd3.text_encoder, fragments, "cpu")
        clip_g = clip_states(sd3.tokenizer_2, sd3.text_encoder_2, fragments, "cpu")
        width = clip_l.shape[-1] + clip_g.shape[-1]
        assert torch.equal(joint[:, :CLIP_LENGTH, :width], torch.cat([clip_l, clip_g], dim=-1))
        t5 = t5_states(sd3.tokenizer_3, sd3.text_encoder_3, fragments, joint.shape[1] - CLIP_LENGTH, "cpu")
        assert torch.equal(joint[:, CLIP_LENGTH:], t5)


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux"])
def test_a_weight_changes_the_image_and_the_infotext_keeps_it(flow_engine, model):
    def image(prompt):
        return flow_engine.txt2img(flow_request(model, prompt=prompt, seed=9))

    plain = image("a red circle")
    one = image("a (red:1.0) circle")
    strong = image("a (red:1.8) circle")
    weak = image("a (red:1.2) circle")
    assert mean_difference(one.images[0].image, plain.images[0].image) == 0
    assert (
        mean_difference(strong.images[0].image, plain.images[0].image)
        > mean_difference(weak.images[0].image, plain.images[0].image)
        > 0
    )
    assert not strong.notes
    assert parse_infotext(strong.images[0].infotext).prompt == "a (red:1.8) circle"


def test_a_weighted_negative_counts_only_where_the_call_uses_one(flow_engine):
    def difference(model, **overrides):
        plain = flow_engine.txt2img(flow_request(model, negative_prompt="blue square", seed=4, **overrides))
        weighted = flow_engine.txt2img(
            flow_request(model, negative_prompt="(blue:1.8) square", seed=4, **overrides)
        )
        return mean_difference(plain.images[0].image, weighted.images[0].image)

    assert difference("tiny-sd3") > 0  # SD 3.5: CFG with the negative prompt
    assert difference("tiny-flux", cfg_scale=3.0) > 0  # Flux: true CFG above 1
    assert difference("tiny-flux") == 0  # Flux at CFG 1: no negative prompt at all


def text_states(pipe, run) -> tuple[torch.Tensor, object]:
    """The text states the transformer's first call received during `run()`, and what `run` returned."""
    seen: list[torch.Tensor] = []

    def keep(module, args, kwargs):
        seen.append(kwargs["encoder_hidden_states"].clone())

    handle = pipe.transformer.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        result = run()
    finally:
        handle.remove()
    return seen[0], result


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux"])
def test_weighted_and_plain_prompts_batched_together_each_draw_as_alone(flow_engine, model):
    """Each prompt's row of the shared call holds its own weighted states (SD 3.5's call holds the negative
    rows first, for CFG), and each image is its own."""
    pipe = flow_engine.load(model).pipe
    prompts = ["a (red:1.6) circle", "a blue square", "[green] dog"]
    requests = [flow_request(model, prompt=prompt, seed=3 + n) for n, prompt in enumerate(prompts)]
    together_states, together = text_states(
        pipe, lambda: flow_engine.txt2img_many(requests, [RunControl() for _ in requests])
    )
    first = len(requests) if model == "tiny-sd3" else 0
    for row, (result, one) in enumerate(zip(together, requests, strict=True)):
        states, alone = text_states(pipe, lambda one=one: flow_engine.txt2img(one))
        assert torch.allclose(together_states[first + row], states[-1], atol=1e-5)
        assert mean_difference(result.images[0].image, alone.images[0].image) < 1.0
    plain_states, _ = text_states(
        pipe, lambda: flow_engine.txt2img(flow_request(model, prompt="a red circle"))
    )
    assert not torch.allclose(together_states[first], plain_states[-1], atol=1e-3)  # the weight is in there


def test_break_is_removed_with_a_note(flow_engine):
    broken = flow_engine.txt2img(flow_request("tiny-flux", prompt="a red BREAK circle", seed=2))
    plain = flow_engine.txt2img(flow_request("tiny-flux", prompt="a red circle", seed=2))
    assert mean_difference(broken.images[0].image, plain.images[0].image) == 0
    assert broken.notes and "BREAK" in broken.notes[0] and not plain.notes


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux"])
def test_img2img_takes_the_weights_too(flow_engine, model):
    from PIL import Image

    from engine.requests import Img2ImgRequest

    pipe = flow_engine.load(model).pipe
    source = Image.new("RGB", (32, 32), (200, 40, 90))

    def img2img(prompt):
        asked = Img2ImgRequest(flow_request(model, prompt=prompt, seed=3), source, denoising_strength=0.6)
        return text_states(pipe, lambda: flow_engine.img2img(asked))

    weighted_states, weighted = img2img("a (red:1.6) circle")
    plain_states, _ = img2img("a red circle")
    assert not torch.allclose(weighted_states, plain_states, atol=1e-3)
    assert parse_infotext(weighted.images[0].infotext).prompt == "a (red:1.6) circle"
