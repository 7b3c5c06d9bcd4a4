"""A1111's refiner on tiny random SDXL models: the base hands its latents over at "switch at", the refiner
(second text encoder only, aesthetic score conditioning) finishes; the infotext keys as A1111 writes them,
read back; the refusals."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from commands.followups import from_infotext
from core.errors import InvalidRequest, ModelNotFound
from engine.infotext import parse_infotext
from tests.engine.helpers import pixels, request


@pytest.fixture(scope="module")
def refiner_engine(tmp_path_factory, tiny_sdxl_dir, tiny_sd1_dir):
    """An engine over a data folder with a tiny SDXL base, a tiny SDXL refiner and a tiny SD 1.x model."""
    from config import load_settings
    from engine.runner import Engine
    from tests.tiny_models import build_tiny_sdxl_refiner

    root = tmp_path_factory.mktemp("refiner-data")
    models = root / "models/Stable-diffusion"
    shutil.copytree(tiny_sdxl_dir, models / "base-xl")
    shutil.copytree(tiny_sd1_dir, models / "tiny-sd1")
    build_tiny_sdxl_refiner(models / "refiner-xl")
    settings = load_settings(None, data_dir=root, default_model="base-xl")
    settings.speed.max_models = 2
    return Engine(settings)


def _xl(**overrides):
    return request(**{"sampler": "Euler", "steps": 6, **overrides})


def test_switch_at_one_is_no_refiner(refiner_engine):
    plain = refiner_engine.txt2img(_xl()).images[0]
    never = refiner_engine.txt2img(_xl(refiner="refiner-xl", refiner_switch_at=1.0)).images[0]
    assert np.array_equal(pixels(plain.image), pixels(never.image))
    assert never.infotext == plain.infotext and "Refiner" not in never.infotext


def test_the_refiner_finishes_as_a_manual_two_stage_run(refiner_engine):
    from engine.speed.invariance import batch_invariant
    from engine.tasks.sampling import decode_latents, denoise, new_scheduler, seeded_noise

    engine = refiner_engine
    made = engine.txt2img(_xl(refiner="refiner-xl", refiner_switch_at=0.5)).images[0]
    plain = engine.txt2img(_xl()).images[0]
    assert not np.array_equal(pixels(made.image), pixels(plain.image))
    info = parse_infotext(made.infotext)
    refiner_hash = engine.registry.short_hash(engine.checkpoint("refiner-xl"))
    assert info.params["Refiner"] == f"refiner-xl [{refiner_hash}]"
    assert info.params["Refiner switch at"] == "0.5"
    keys = list(info.params)
    assert keys.index("Refiner") < keys.index("Refiner switch at") < keys.index("Version")

    # By hand: the base model over the steps whose timestep is above the switch, the refiner the rest.
    p = dataclasses.replace(_xl(), seed=made.seed)
    base_prep = _prepared(engine, "base-xl", p)
    refiner_prep = _prepared(engine, "refiner-xl", p)
    assert refiner_prep.model.aesthetic_score and refiner_prep.model.pipe.text_encoder is None
    generators, noise = seeded_noise(base_prep, [made.seed], None, p.width, p.height)
    scheduler = new_scheduler(base_prep, p.steps, [made.seed])
    timesteps = scheduler.timesteps
    split = next(i for i, t in enumerate(timesteps) if (999 - round(float(t))) / 1000 >= 0.5)
    assert 0 < split < len(timesteps)
    common = dict(phase="txt2img", first_index=0, size=(p.width, p.height))
    from engine.requests import RunControl

    modules = [base_prep.model.unet, base_prep.model.vae, refiner_prep.model.unet]
    with batch_invariant(modules, base_prep.model.device):  # as the engine runs a batch on the CPU
        latents = noise * scheduler.init_noise_sigma
        latents = denoise(
            base_prep, latents, scheduler, timesteps[:split], generators, RunControl(), **common
        )
        latents = denoise(
            refiner_prep, latents, scheduler, timesteps[split:], generators, RunControl(), **common
        )
        by_hand = decode_latents(base_prep.model, latents)[0]
    assert np.array_equal(pixels(made.image), pixels(by_hand))


def _prepared(engine, name, p):
    """A plain Prepared of `p` on the model `name` (loaded and kept by the engine)."""
    from engine.tasks.sampling import Prepared

    model = engine.load(name)
    spec, schedule = engine.samplers.resolve(p.sampler, p.schedule)
    with torch.no_grad():
        conditioning = engine._prompt_conditioning(model, p)
    return Prepared(model, p, spec, schedule, conditioning)


def test_the_infotext_repeats_the_refined_image(refiner_engine):
    made = refiner_engine.txt2img(_xl(refiner="refiner-xl", refiner_switch_at=0.6)).images[0]
    repeated, notes = from_infotext(made.infotext, {"base-xl", "refiner-xl"})
    assert notes == []
    assert (repeated.refiner, repeated.refiner_switch_at) == ("refiner-xl", 0.6)
    again = refiner_engine.txt2img(repeated).images[0]
    assert np.array_equal(pixels(made.image), pixels(again.image))
    assert again.infotext == made.infotext
    missing, notes = from_infotext(made.infotext, {"base-xl"})
    assert missing.refiner is None and "refiner 'refiner-xl' is not installed" in notes[0]


def test_a_k_diffusion_loop_and_the_hires_pass_hand_over_too(refiner_engine):
    # A k-diffusion loop (a schedule no diffusers scheduler takes) switches inside its denoiser.
    k = _xl(sampler="DPM++ 2M", schedule="Align Your Steps")
    plain = refiner_engine.txt2img(k).images[0]
    refined = refiner_engine.txt2img(dataclasses.replace(k, refiner="refiner-xl", refiner_switch_at=0.3))
    assert not np.array_equal(pixels(plain.image), pixels(refined.images[0].image))
    assert "Refiner switch at: 0.3" in refined.images[0].infotext
    # With the hires fix the refiner finishes the hires pass only (A1111's default).
    from engine.requests import HiresFix

    hires = _xl(hires=HiresFix(scale=1.5, denoising_strength=0.9, steps=4))
    plain = refiner_engine.txt2img(hires).images[0]
    refined = refiner_engine.txt2img(dataclasses.replace(hires, refiner="refiner-xl", refiner_switch_at=0.2))
    assert refined.images[0].image.size == plain.image.size == (96, 96)
    assert not np.array_equal(pixels(plain.image), pixels(refined.images[0].image))
    assert "Refiner: refiner-xl [" in refined.images[0].infotext


def test_refusals_name_the_refiner(refiner_engine):
    with pytest.raises(ModelNotFound) as missing:
        refiner_engine.txt2img(_xl(refiner="no-such-refiner"))
    assert "refiner-xl" in str(missing.value)  # the installed list
    with pytest.raises(InvalidRequest, match="SD 1.x checkpoint") as mixed:
        refiner_engine.txt2img(_xl(refiner="tiny-sd1", refiner_switch_at=0.5))
    assert mixed.value.option == "refiner"
    # The base model named as its own refiner: A1111 does not switch, and writes nothing.
    same = refiner_engine.txt2img(_xl(refiner="base-xl", refiner_switch_at=0.5)).images[0]
    assert "Refiner" not in same.infotext
