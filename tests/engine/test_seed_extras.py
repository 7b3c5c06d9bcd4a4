"""A1111's seed extras: resize seed from width/height (noise placed as `ImageRNG.first` places it), ENSD for the
samplers whose step noise it seeds, DDIM's eta; each written into the infotext as A1111 writes it and read
back to give the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from commands.followups import from_infotext
from config import Limits
from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.tasks.noise import initial_noise, make_generators
from engine.tasks.samplers import BUILTIN_SAMPLERS
from engine.validation import check_request
from tests.engine.helpers import mean_difference, pixels, request


def test_smaller_source_noise_sits_centred_in_the_seeds_full_noise():
    small, full = (4, 6, 8), (4, 10, 12)
    made = initial_noise(full, make_generators([7]), source_shape=small)[0]
    seed_small = torch.randn(small, generator=torch.Generator().manual_seed(7))
    # After the small noise, the image's own generator draws the full noise from the seed's start.
    seed_full = torch.randn(full, generator=torch.Generator().manual_seed(7))
    assert torch.equal(made[:, 2:8, 2:10], seed_small)
    assert torch.equal(made[:, :2], seed_full[:, :2]) and torch.equal(made[:, :, :2], seed_full[:, :, :2])


def test_larger_source_noise_is_cropped_to_its_centre():
    large, target = (4, 10, 12), (4, 6, 8)
    made = initial_noise(target, make_generators([7]), source_shape=large)[0]
    seed_large = torch.randn(large, generator=torch.Generator().manual_seed(7))
    assert torch.equal(made, seed_large[:, 2:8, 2:10])


def test_the_same_size_changes_nothing():
    shape = (4, 8, 8)
    plain = initial_noise(shape, make_generators([3]))
    assert torch.equal(initial_noise(shape, make_generators([3]), source_shape=shape), plain)


def test_seed_resize_from_changes_the_image_and_reads_back(engine):
    base = engine.txt2img(request(width=96, height=96)).images[0]
    resized = engine.txt2img(request(width=96, height=96, seed_resize_from_w=64, seed_resize_from_h=64))
    made = resized.images[0]
    assert mean_difference(base.image, made.image) > 0.5
    info = parse_infotext(made.infotext)
    assert info.params["Seed resize from"] == "64x64" and info.seed_resize_from == (64, 64)
    again, _ = from_infotext(made.infotext, set())
    assert (again.seed_resize_from_w, again.seed_resize_from_h) == (64, 64)
    assert np.array_equal(pixels(engine.txt2img(again).images[0].image), pixels(made.image))


def test_ensd_seeds_ancestral_step_noise_and_is_written_only_where_it_counts(engine):
    plain = engine.txt2img(request(sampler="Euler a")).images[0]
    delta = engine.txt2img(request(sampler="Euler a", eta_noise_seed_delta=31337)).images[0]
    assert mean_difference(plain.image, delta.image) > 0.5
    assert (
        parse_infotext(delta.infotext).ensd == 31337 and "ENSD" not in parse_infotext(plain.infotext).params
    )
    again, _ = from_infotext(delta.infotext, set())
    assert again.eta_noise_seed_delta == 31337
    assert np.array_equal(pixels(engine.txt2img(again).images[0].image), pixels(delta.image))
    # Euler draws no step noise: the same image, and no ENSD key (A1111's `uses_ensd`).
    euler = engine.txt2img(request(sampler="Euler")).images[0]
    euler_delta = engine.txt2img(request(sampler="Euler", eta_noise_seed_delta=31337)).images[0]
    assert np.array_equal(pixels(euler.image), pixels(euler_delta.image))
    assert euler.infotext == euler_delta.infotext


def test_ddim_eta_changes_the_image_and_reads_back(engine):
    plain = engine.txt2img(request(sampler="DDIM")).images[0]
    default = engine.txt2img(request(sampler="DDIM", eta=0.0)).images[0]
    assert np.array_equal(pixels(plain.image), pixels(default.image)) and plain.infotext == default.infotext
    eta = engine.txt2img(request(sampler="DDIM", eta=0.5)).images[0]
    assert mean_difference(plain.image, eta.image) > 0.5
    info = parse_infotext(eta.infotext)
    assert info.params["Eta DDIM"] == "0.5" and info.eta == 0.5
    again, notes = from_infotext(eta.infotext, set())
    assert not any("Eta" in note for note in notes) and again.eta == 0.5
    assert np.array_equal(pixels(engine.txt2img(again).images[0].image), pixels(eta.image))
    # With eta, DDIM uses ENSD too.
    ensd = engine.txt2img(request(sampler="DDIM", eta=0.5, eta_noise_seed_delta=5)).images[0]
    assert mean_difference(eta.image, ensd.image) > 0.5 and parse_infotext(ensd.infotext).ensd == 5


@pytest.mark.parametrize(
    ("fields", "option"),
    [
        ({"sampler": "Euler", "eta": 0.5}, "eta"),
        ({"sampler": "DDIM", "eta": 1.5}, "eta"),
        ({"seed_resize_from_w": 64}, "seed_resize_from"),
        ({"seed_resize_from_w": 60, "seed_resize_from_h": 64}, "seed_resize_from_w"),
        ({"eta_noise_seed_delta": -1}, "eta_noise_seed_delta"),
    ],
)
def test_bad_seed_extras_are_refused_naming_the_option(fields, option):
    with pytest.raises(InvalidRequest) as refused:
        check_request(request(**fields), Limits(), BUILTIN_SAMPLERS)
    assert refused.value.option == option


def test_a1111_eta_of_other_samplers_becomes_a_note():
    text = "a cat\nSteps: 20, Sampler: Euler, Seed: 1, Size: 64x64, Eta: 0.7, ENSD: 31337"
    repeated, notes = from_infotext(text, set())
    assert repeated.eta is None and repeated.eta_noise_seed_delta == 31337
    assert any("Eta" in note for note in notes)
    ancestral, notes = from_infotext(text.replace("Euler,", "Euler a,"), set())  # Euler a takes A1111's Eta
    assert ancestral.eta == 0.7 and notes == []
