"""`models/VAE` files applied to a generation: A1111 (LDM) and diffusers layouts, `Automatic` restoring the
checkpoint's own VAE, `VAE hash`/`VAE` in the infotext and read back, and files that must be refused."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from commands.followups import from_infotext
from core.errors import SalonError
from engine.infotext import parse_infotext
from engine.models.registry import ModelKind
from tests.engine.helpers import pixels, request

VAE_NAME = "tiny-vae"


def _other_vae_state():
    """A VAE of the tiny model's architecture with other random weights."""
    from tests.tiny_models import _vae

    torch.manual_seed(1234)
    return _vae()


@pytest.fixture(scope="module")
def vae_engine(tmp_path_factory, tiny_sd1_dir):
    """An engine over its own data folder: the tiny model and VAE files in both layouts, and bad ones."""
    from config import load_settings
    from engine.models.ldm_conversion import convert_vae
    from engine.runner import Engine

    root = tmp_path_factory.mktemp("vae-data")
    shutil.copytree(tiny_sd1_dir, root / "models/Stable-diffusion/tiny")
    vae_dir = root / "models/VAE"
    vae_dir.mkdir(parents=True)
    vae = _other_vae_state()
    save_file({k: v.contiguous() for k, v in convert_vae(vae).items()}, vae_dir / f"{VAE_NAME}.safetensors")
    save_file(
        {k: v.contiguous() for k, v in vae.state_dict().items()}, vae_dir / "tiny-diffusers.safetensors"
    )
    save_file({"model.weight": torch.zeros(4, 4)}, vae_dir / "not-a-vae.safetensors")
    wrong = {k: v.contiguous() for k, v in convert_vae(vae).items()}
    key = next(k for k in wrong if k.endswith("conv_in.weight"))
    wrong[key] = torch.zeros(3, 3, 3, 3)
    save_file(wrong, vae_dir / "wrong-shape.safetensors")
    (vae_dir / "hostile.safetensors").write_bytes(b"\xff" * 8 + b"not a header at all")
    settings = load_settings(None, data_dir=root, default_model="tiny")
    return Engine(settings)


def test_a_vae_file_changes_pixels_and_automatic_restores_them(vae_engine):
    own = vae_engine.txt2img(request()).images[0]
    other = vae_engine.txt2img(request(vae=VAE_NAME)).images[0]
    assert not np.array_equal(pixels(own.image), pixels(other.image))
    again = vae_engine.txt2img(request(vae="Automatic")).images[0]
    assert np.array_equal(pixels(own.image), pixels(again.image))
    assert own.infotext == again.infotext and "VAE" not in parse_infotext(own.infotext).params
    none = vae_engine.txt2img(request(vae="None")).images[0]
    assert np.array_equal(pixels(own.image), pixels(none.image))


def test_the_infotext_names_the_vae_as_a1111_and_repeats_it(vae_engine):
    made = vae_engine.txt2img(request(vae=VAE_NAME)).images[0]
    info = parse_infotext(made.infotext)
    path = vae_engine.registry.find(ModelKind.VAE, VAE_NAME).path
    assert info.vae == f"{VAE_NAME}.safetensors"
    assert info.vae_hash == hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    repeated, notes = from_infotext(made.infotext, {"tiny"}, {VAE_NAME})
    assert notes == [] and repeated.vae == VAE_NAME
    vae_engine.txt2img(request())  # the checkpoint's own VAE in between
    again = vae_engine.txt2img(repeated).images[0]
    assert np.array_equal(pixels(made.image), pixels(again.image))
    assert again.infotext == made.infotext


def test_a_vae_missing_here_becomes_a_note(vae_engine):
    made = vae_engine.txt2img(request(vae=VAE_NAME)).images[0]
    repeated, notes = from_infotext(made.infotext, {"tiny"}, set())
    assert repeated.vae is None and "not installed" in notes[0]


def test_the_diffusers_layout_gives_the_same_pixels(vae_engine):
    ldm = vae_engine.txt2img(request(vae=VAE_NAME)).images[0]
    diffusers = vae_engine.txt2img(request(vae="tiny-diffusers.safetensors")).images[0]
    assert np.array_equal(pixels(ldm.image), pixels(diffusers.image))
    assert parse_infotext(diffusers.infotext).vae == "tiny-diffusers.safetensors"


def test_an_unknown_vae_is_refused_listing_the_installed_ones(vae_engine):
    with pytest.raises(SalonError) as refused:
        vae_engine.txt2img(request(vae="nope"))
    assert refused.value.option == "vae"
    assert VAE_NAME in str(refused.value) and "tiny-diffusers" in str(refused.value)


@pytest.mark.parametrize("name", ["not-a-vae", "wrong-shape", "hostile"])
def test_files_that_are_not_a_fitting_vae_are_refused(vae_engine, name):
    own = vae_engine.txt2img(request()).images[0]
    with pytest.raises(SalonError) as refused:
        vae_engine.txt2img(request(vae=name))
    assert name in str(refused.value)
    after = vae_engine.txt2img(request()).images[0]  # the checkpoint's own VAE is intact
    assert np.array_equal(pixels(own.image), pixels(after.image))
