"""A1111's refiner on tiny random SDXL models: the base hands its latents over at "switch at", the refiner
(second text encoder only, aesthetic score conditioning, the prompt's LoRAs that fit it) finishes and its VAE
decodes; the infotext keys as A1111 writes them, read back; the refusals."""

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

    modules = [base_prep.model.unet, base_prep.model.vae, refiner_prep.model.unet, refiner_prep.model.vae]
    with batch_invariant(modules, base_prep.model.device):  # as the engine runs a batch on the CPU
        latents = noise * scheduler.init_noise_sigma
        latents = denoise(
            base_prep, latents, scheduler, timesteps[:split], generators, RunControl(), **common
        )
        latents = denoise(
            refiner_prep, latents, scheduler, timesteps[split:], generators, RunControl(), **common
        )
        by_hand = decode_latents(refiner_prep.model, latents)[0]  # A1111 decodes with the refiner's VAE
        with_base_vae = decode_latents(base_prep.model, latents)[0]
    assert np.array_equal(pixels(made.image), pixels(by_hand))
    assert not np.array_equal(pixels(made.image), pixels(with_base_vae))  # the two VAEs' weights differ


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


def _write_lora(path, unet, attention: tuple[str, ...], seed: int = 0) -> None:
    """A kohya LoRA over the UNet's attention projections of the kinds in `attention` ("attn1", "attn2")."""
    from safetensors.torch import save_file

    from engine.prompts.lora import kohya_key

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in unet.named_modules():
        if (
            isinstance(module, torch.nn.Linear)
            and any(f".{a}." in name for a in attention)
            and ".lora_" not in name
        ):
            key = kohya_key("lora_unet_", name.removesuffix(".base_layer"))
            tensors[f"{key}.lora_down.weight"] = torch.randn(4, module.in_features, generator=generator) * 0.5
            tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, 4, generator=generator) * 0.5
            tensors[f"{key}.alpha"] = torch.tensor(4.0)
    save_file(tensors, str(path))


@pytest.fixture(scope="module")
def refiner_loras(refiner_engine):
    """`refiner_style`: built on the refiner's UNet (self-attention only, which the base's shapes fit too);
    `base_style`: built on the base's UNet with its cross-attention (80 wide; the refiner's is 48)."""
    engine = refiner_engine
    folder = engine.settings.lora_dir
    folder.mkdir(parents=True, exist_ok=True)
    _write_lora(folder / "refiner_style.safetensors", engine.load("refiner-xl").unet, ("attn1",))
    _write_lora(folder / "base_style.safetensors", engine.load("base-xl").unet, ("attn1", "attn2"), seed=1)
    engine.registry.refresh()
    return folder


def test_the_prompts_lora_is_applied_to_the_refiner(refiner_engine, refiner_loras):
    # Switching at 0 the refiner makes every model call: what changes the image is the LoRA on the refiner.
    plain = refiner_engine.txt2img(_xl(refiner="refiner-xl", refiner_switch_at=0.0))
    styled = refiner_engine.txt2img(
        _xl(prompt="a red circle <lora:refiner_style:1>", refiner="refiner-xl", refiner_switch_at=0.0)
    )
    assert styled.notes == ()
    assert not np.array_equal(pixels(plain.images[0].image), pixels(styled.images[0].image))
    assert "Lora hashes: " in styled.images[0].infotext
    again = refiner_engine.txt2img(_xl(refiner="refiner-xl", refiner_switch_at=0.0))  # no LoRA left on it
    assert np.array_equal(pixels(plain.images[0].image), pixels(again.images[0].image))


def test_a_lora_that_does_not_fit_the_refiner_is_skipped_there_with_a_note(refiner_engine, refiner_loras):
    plain = refiner_engine.txt2img(_xl(refiner="refiner-xl", refiner_switch_at=0.0)).images[0]
    skipped = refiner_engine.txt2img(
        _xl(prompt="a red circle <lora:base_style:1>", refiner="refiner-xl", refiner_switch_at=0.0)
    )
    assert skipped.notes == ("LoRA base_style does not fit the refiner refiner-xl: skipped there",)
    assert np.array_equal(pixels(plain.image), pixels(skipped.images[0].image))


def test_an_embedding_the_refiner_cannot_use_gets_a_note(refiner_engine):
    # An SDXL embedding (clip_l and clip_g vectors) fits the base's two text encoders, not the refiner's one.
    from safetensors.torch import save_file

    folder = refiner_engine.settings.embeddings_path
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(2)
    vectors = {
        "clip_l": torch.randn(1, 32, generator=generator),
        "clip_g": torch.randn(1, 48, generator=generator),
    }
    save_file(vectors, str(folder / "pairword.safetensors"))
    refiner_engine.registry.refresh()
    result = refiner_engine.txt2img(
        _xl(prompt="a pairword circle", refiner="refiner-xl", refiner_switch_at=0.5)
    )
    assert parse_infotext(result.images[0].infotext).params["TI hashes"].startswith("pairword: ")
    assert result.notes == ("embedding pairword does not fit the refiner refiner-xl: not used there",)
