"""One request path: `generation_request_for` applies the options, then the server's defaults, then Salon's
(engine/requests.py), for every front end; the queue's one check (`check_request`) covers every kind."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PIL import Image

from commands.generation import GenerationOptions, generation_request_for
from community.settings import CommunitySettings
from config import Limits
from core.errors import InvalidRequest
from engine.requests import (
    DEFAULT_CFG_SCALE,
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    GenerationRequest,
    Img2ImgRequest,
    with_params,
)
from engine.tasks.samplers import BUILTIN_SAMPLERS
from engine.validation import check_request

SETTINGS = SimpleNamespace(default_model=None, styles_file=None, default_vae=None, eta_noise_seed_delta=0)


class Registry:
    """Only what the defaults need: a checkpoint's native resolution (from its entry)."""

    def checkpoint(self, name):
        raise AssertionError("the size was given; the checkpoint is not looked up")

    def flow_kind(self, name):  # SD 3.5 / Flux defaults (engine.tasks.flow_rules): an SD 1.x checkpoint here
        return None


def _request(options: GenerationOptions, community: CommunitySettings | None = None, size=(64, 64)):
    return generation_request_for(options, SETTINGS, Registry(), Limits(), community, size)  # type: ignore[arg-type]


def test_salons_defaults_apply_when_nothing_is_given():
    request = _request(GenerationOptions("a cat"))
    assert (request.sampler, request.steps, request.cfg_scale, request.seed) == (
        DEFAULT_SAMPLER,
        DEFAULT_STEPS,
        DEFAULT_CFG_SCALE,
        -1,
    )
    assert (request.width, request.height, request.batch_size, request.batch_count) == (64, 64, 1, 1)


def test_the_servers_defaults_come_before_salons_and_the_options_before_both():
    community = CommunitySettings(default_steps=9, default_cfg_scale=4.0, default_sampler="Euler a")
    request = _request(GenerationOptions("a cat", steps=12), community)
    assert (request.steps, request.cfg_scale, request.sampler) == (12, 4.0, "Euler a")


def test_the_servers_default_size_and_negative_prefix():
    community = CommunitySettings(default_size="128x64", negative_prefix="blurry")
    request = generation_request_for(
        GenerationOptions("a cat"),
        SETTINGS,
        Registry(),
        Limits(),
        community,  # type: ignore[arg-type]
    )
    assert (request.width, request.height, request.negative_prompt) == (128, 64, "blurry")


def test_a_size_option_wins_over_the_default_size_and_bad_values_name_the_option():
    assert _request(GenerationOptions("a cat", size="96x128")).height == 128
    with pytest.raises(InvalidRequest) as error:
        _request(GenerationOptions("a cat", size="big"))
    assert error.value.option == "size"


def test_options_are_parsed_and_the_limits_left_to_the_queues_one_check():
    """The request builder only parses; a value out of range is refused once, by `check_request` (what
    `JobQueue.submit` runs), with the limits that apply: a server's lower ones."""
    request = _request(GenerationOptions("a cat", steps=0))
    with pytest.raises(InvalidRequest) as error:
        check_request(request, Limits(), BUILTIN_SAMPLERS)
    assert error.value.option == "steps"
    steps_40 = _request(GenerationOptions("a cat", steps=40))
    check_request(steps_40, Limits(), BUILTIN_SAMPLERS)
    server = CommunitySettings(max_steps=30)
    with pytest.raises(InvalidRequest, match="steps: 40 is out of range; allowed 1 to 30"):
        check_request(steps_40, server.limits(Limits()), BUILTIN_SAMPLERS)


def test_every_request_has_params_and_one_check():
    params = GenerationRequest("a cat", width=64, height=64)
    image = Img2ImgRequest(params, Image.new("RGB", (64, 64)))
    assert params.params is params and image.params is params
    assert with_params(image, GenerationRequest("a dog")).params.prompt == "a dog"
    check_request(image, Limits(), BUILTIN_SAMPLERS)
    with pytest.raises(InvalidRequest) as error:
        check_request(
            with_params(image, GenerationRequest("a dog", steps=10_000)), Limits(), BUILTIN_SAMPLERS
        )
    assert error.value.option == "steps"
