"""The API's VAE and seed extras: `override_settings.sd_vae` by name, `seed_resize_from_w/h` and `eta` become
Salon's options (what A1111 clients send by default stays neutral)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api.schemas import Txt2ImgBody
from api.translate import Unsupported, generation_options

SETTINGS = SimpleNamespace(styles_file=None)


def _options(**body):
    return generation_options(Txt2ImgBody(prompt="a cat", **body), SETTINGS, {})  # type: ignore[arg-type]


def test_client_defaults_stay_neutral():
    options = _options(eta=1.0, seed_resize_from_w=-1, seed_resize_from_h=-1, sampler_name="Euler a")
    assert (options.vae, options.seed_resize_from, options.eta) == (None, None, None)


def test_vae_seed_resize_and_ddim_eta_are_passed_on():
    options = _options(
        override_settings={"sd_vae": "kl-f8.safetensors"},
        seed_resize_from_w=512,
        seed_resize_from_h=768,
        sampler_name="DDIM",
        eta=0.3,
    )
    assert (options.vae, options.seed_resize_from, options.eta) == ("kl-f8.safetensors", "512x768", 0.3)
    assert _options(override_settings={"sd_vae": "Automatic"}).vae == "Automatic"


def test_ancestral_eta_and_the_refiner_are_passed_on():
    options = _options(sampler_name="Euler a", eta=0.4, refiner_checkpoint="sd_xl_refiner_1.0 [7440042bbd]")
    assert (options.eta, options.refiner, options.refiner_switch_at) == (
        0.4,
        "sd_xl_refiner_1.0 [7440042bbd]",
        None,
    )
    assert _options(refiner_checkpoint="refiner", refiner_switch_at=0.6).refiner_switch_at == 0.6
    for none in (None, "", "None"):  # A1111's API: no refiner, whatever the server's default
        assert _options(refiner_checkpoint=none, refiner_switch_at=0.5).refiner == "None"


def test_a_vae_that_is_not_a_name_is_refused():
    with pytest.raises(Unsupported) as refused:
        _options(override_settings={"sd_vae": 3})
    assert refused.value.option == "override_settings.sd_vae"
