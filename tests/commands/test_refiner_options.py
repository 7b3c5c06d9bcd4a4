"""The refiner options into a request: the option, else the server's `default_refiner`; "None" for none; an
unknown name refused naming the option and the installed checkpoints."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from commands.generation import GenerationOptions, generation_request_for
from config import Limits
from core.errors import ModelNotFound


class Registry:
    def find_fresh(self, kind, name):
        if name != "sd_xl_refiner_1.0":
            raise ModelNotFound("model", f"{name!r} is not installed; installed: base, sd_xl_refiner_1.0")
        return SimpleNamespace(name=name)

    def flow_kind(self, name):  # SD 3.5 / Flux defaults (engine.tasks.flow_rules): an SD 1.x checkpoint here
        return None


def _request(settings, **options):
    chosen = GenerationOptions("a lighthouse", **options)
    return generation_request_for(chosen, settings, Registry(), Limits(), None, (64, 64))  # type: ignore[arg-type]


def _settings(**extra):
    base = dict(default_model=None, styles_file=None, default_vae=None, eta_noise_seed_delta=0)
    return SimpleNamespace(**{**base, "default_refiner": None, "default_refiner_switch_at": 0.8, **extra})


def test_the_option_else_the_servers_default():
    plain = _request(_settings())
    assert plain.refiner is None
    given = _request(_settings(), refiner="sd_xl_refiner_1.0", refiner_switch_at=0.6)
    assert (given.refiner, given.refiner_switch_at) == ("sd_xl_refiner_1.0", 0.6)
    server = _settings(default_refiner="sd_xl_refiner_1.0", default_refiner_switch_at=0.7)
    assert (_request(server).refiner, _request(server).refiner_switch_at) == ("sd_xl_refiner_1.0", 0.7)
    assert _request(server, refiner="None").refiner is None


def test_an_unknown_refiner_is_refused_by_option():
    with pytest.raises(ModelNotFound) as refused:
        _request(_settings(), refiner="sd_xl_refiner")
    assert refused.value.option == "refiner" and "installed: base, sd_xl_refiner_1.0" in str(refused.value)
