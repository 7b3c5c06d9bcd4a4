"""SD 3.5 and Flux on tiny random-weight models: detection, loading, txt2img/img2img with Salon's seeds,
refusals by name before a job runs, the infotext Forge writes, and `<lora:…>` through diffusers' adapters."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from config import load_settings
from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.models.flow_files import FlowKind, flow_kind, folder_kind, header_kind
from engine.requests import HiresFix, Img2ImgRequest, InpaintRequest
from engine.runner import Engine
from engine.tasks.flow_rules import check_flow_request
from tests.engine.flow_builders import save_lora, save_sai_sd3_file, sd3_folder
from tests.engine.helpers import mean_difference, request

FLOW = dict(sampler="Euler", schedule="Simple", width=32, height=32, steps=2, cfg_scale=4.0)


def flow_request(model: str, **overrides):
    return request(model=model, **{**FLOW, **overrides})


def test_the_family_is_read_from_the_folder_without_weights(flow_root):
    checkpoints = flow_root / "models" / "Stable-diffusion"
    assert folder_kind(checkpoints / "tiny-sd3") == FlowKind("sd3", "large")
    assert flow_kind(checkpoints / "tiny-flux", True) == FlowKind("flux", "dev")
    assert flow_kind(checkpoints / "tiny-schnell", True) == FlowKind("flux", "schnell")
    assert FlowKind("flux", "dev").label == "Flux dev"


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux", "tiny-schnell"])
def test_txt2img_same_seed_same_pixels_other_seed_other_pixels(flow_engine, model):
    first = flow_engine.txt2img(flow_request(model, seed=5)).images[0]
    again = flow_engine.txt2img(flow_request(model, seed=5)).images[0]
    other = flow_engine.txt2img(flow_request(model, seed=6)).images[0]
    assert first.image.size == (32, 32)
    assert mean_difference(first.image, again.image) == 0
    assert mean_difference(first.image, other.image) > 0.5
    assert flow_engine.load(model).family == ("sd3" if model == "tiny-sd3" else "flux")


def test_a_batch_gives_each_seed_its_own_image_as_alone(flow_engine):
    batch = flow_engine.txt2img(flow_request("tiny-sd3", seed=5, batch_size=2)).images
    alone = flow_engine.txt2img(flow_request("tiny-sd3", seed=6)).images[0]
    assert [i.seed for i in batch] == [5, 6]
    assert mean_difference(batch[1].image, alone.image) < 1.0


def test_infotext_has_forge_keys_and_reads_back(flow_engine):
    dev = flow_engine.txt2img(flow_request("tiny-flux", seed=7, cfg_scale=1.0)).images[0]
    params = parse_infotext(dev.infotext).params
    assert params["Sampler"] == "Euler" and params["Schedule type"] == "Simple"
    assert params["Distilled CFG Scale"] == "3.5" and params["CFG scale"] == "1"
    assert params["Seed"] == "7" and params["Model"] == "tiny-flux" and params["Size"] == "32x32"
    sd3 = parse_infotext(flow_engine.txt2img(flow_request("tiny-sd3", seed=7)).images[0].infotext).params
    assert "Distilled CFG Scale" not in sd3 and sd3["CFG scale"] == "4"


def test_img2img_at_denoise_zero_returns_the_input_and_at_one_the_seed_s_txt2img(flow_engine):
    source = Image.new("RGB", (40, 24), (200, 40, 90))
    for model in ("tiny-sd3", "tiny-flux"):

        def img2img(strength, model=model):
            asked = Img2ImgRequest(flow_request(model, seed=3), source, denoising_strength=strength)
            return flow_engine.img2img(asked).images[0]

        kept, half, full = img2img(0.0), img2img(0.6), img2img(1.0)
        assert kept.image.size == (32, 32) and kept.image.getpixel((5, 5)) == (200, 40, 90)
        # At strength 1 nothing of the input is left: Salon's noise of the seed, as txt2img starts from.
        txt2img = flow_engine.txt2img(flow_request(model, seed=3)).images[0]
        assert mean_difference(full.image, txt2img.image) < 1.0
        assert mean_difference(half.image, kept.image) > 1.0
        assert parse_infotext(half.infotext).params["Denoising strength"] == "0.6"


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        (dict(sampler="DPM++ 2M", schedule="Karras"), "sampler"),
        (dict(schedule="Karras"), "sampler"),
        (dict(hires=HiresFix(scale=2.0)), "hires"),
        (dict(refiner="other"), "refiner"),
        (dict(tiling=True), "tiling"),
        (dict(clip_skip=2), "clip_skip"),
        (dict(prompt="a [cat:dog:2]"), "prompt"),
        (dict(prompt="a cat <hypernet:x:1>"), "prompt"),
    ],
)
def test_what_these_families_cannot_do_is_refused_by_name(overrides, option):
    for kind in (FlowKind("sd3", "large"), FlowKind("flux", "dev")):
        with pytest.raises(InvalidRequest) as error:
            check_flow_request(flow_request("m", **overrides), kind)
        assert error.value.option == option and kind.label in error.value.message


def test_inpaint_and_img2img_extras_are_refused_by_name():
    image = Image.new("RGB", (32, 32))
    with pytest.raises(InvalidRequest, match="inpainting is not supported on Flux dev"):
        check_flow_request(InpaintRequest(flow_request("m"), image, image), FlowKind("flux", "dev"))
    noisy = Img2ImgRequest(flow_request("m"), image, noise_multiplier=1.5)
    with pytest.raises(InvalidRequest, match="noise_multiplier"):
        check_flow_request(noisy, FlowKind("sd3", "medium"))


def test_the_engine_refuses_before_running(flow_engine):
    with pytest.raises(InvalidRequest, match="hires is not supported on SD 3.5 large"):
        flow_engine.txt2img(flow_request("tiny-sd3", hires=HiresFix(scale=2.0)))


def test_a_folder_without_the_t5_tokenizer_says_what_it_needs(tmp_path):
    checkpoints = tmp_path / "models" / "Stable-diffusion"
    sd3_folder(checkpoints / "no-t5", t5_tokenizer=False)
    engine = Engine(load_settings(None, data_dir=tmp_path))
    with pytest.raises(InvalidRequest, match="T5 tokenizer is missing.*no-t5/tokenizer_3"):
        engine.load("no-t5")
    index = json.loads((checkpoints / "no-t5" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux"])
def test_loras_change_the_image_with_their_weights_and_are_unloaded_after(flow_root, flow_engine, model):
    folder = flow_root / "models" / "Stable-diffusion" / model
    save_lora(folder, flow_root / "models" / "Lora" / f"{model}-a.safetensors", seed=1)
    save_lora(folder, flow_root / "models" / "Lora" / f"{model}-b.safetensors", seed=2, targets=("to_k",))
    plain = flow_engine.txt2img(flow_request(model, prompt="a red cat", seed=4)).images[0]
    one = flow_engine.txt2img(flow_request(model, prompt=f"a red cat <lora:{model}-a:1>", seed=4)).images[0]
    both = flow_engine.txt2img(
        flow_request(model, prompt=f"a red cat <lora:{model}-a:1> <lora:{model}-b:0.5>", seed=4)
    ).images[0]
    off = flow_engine.txt2img(flow_request(model, prompt=f"a red cat <lora:{model}-a:0>", seed=4)).images[0]
    after = flow_engine.txt2img(flow_request(model, prompt="a red cat", seed=4)).images[0]
    assert mean_difference(one.image, plain.image) > 1.0
    assert mean_difference(both.image, one.image) > 0.2
    assert mean_difference(off.image, plain.image) == 0
    assert mean_difference(after.image, plain.image) == 0  # unloaded after the job
    hashes = parse_infotext(both.infotext).params["Lora hashes"]
    assert f"{model}-a: " in hashes and f"{model}-b: " in hashes
    assert "Lora hashes" not in parse_infotext(off.infotext).params


def test_an_sai_sd3_transformer_file_loads_with_its_config_folder(flow_root, tmp_path):
    checkpoints = tmp_path / "models" / "Stable-diffusion"
    path = save_sai_sd3_file(
        flow_root / "models" / "Stable-diffusion" / "tiny-sd3", checkpoints / "sai.safetensors"
    )
    assert flow_kind(path, False) == FlowKind("sd3", "large")
    engine = Engine(load_settings(None, data_dir=tmp_path))
    assert engine.native_size("sai") == (1024, 1024)
    model = engine.load("sai")
    assert model.family == "sd3" and type(model.unet).__name__ == "SD3Transformer2DModel"
    first = engine.txt2img(flow_request("sai", seed=2)).images[0]
    assert mean_difference(first.image, engine.txt2img(flow_request("sai", seed=2)).images[0].image) == 0
    shutil.rmtree(checkpoints / "sai.config")
    lone = Engine(load_settings(None, data_dir=tmp_path))
    with pytest.raises(InvalidRequest, match="needs the diffusers folder sai.config/ beside it"):
        lone.load("sai")


def test_a_bfl_flux_header_is_flux_dev_or_schnell():
    dev = {"double_blocks.0.img_attn.qkv.weight": {}, "guidance_in.in_layer.weight": {}}
    assert header_kind(dev) == FlowKind("flux", "dev")
    assert header_kind({"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": {}}).variant == "schnell"
    medium = {"joint_blocks.0.x_block.attn2.qkv.weight": {}}
    assert header_kind(medium) == FlowKind("sd3", "medium")
    assert header_kind({"model.diffusion_model.input_blocks.0.0.weight": {}}) is None


async def test_the_queue_refuses_before_the_job_is_written(flow_root, flow_engine, tmp_path):
    from tests.queues import open_queue

    settings = load_settings(None, data_dir=tmp_path, models_dir=flow_root / "models")
    queue = await open_queue(settings, engine_factory=lambda: flow_engine)
    try:
        with pytest.raises(InvalidRequest, match="hires is not supported on Flux dev"):
            await queue.submit(
                flow_request("tiny-flux", width=64, height=64, hires=HiresFix(scale=2.0)), "alice"
            )
        with pytest.raises(InvalidRequest, match="DPM\\+\\+ 2M / Karras is not available for SD 3.5 large"):
            await queue.submit(
                flow_request("tiny-sd3", width=64, height=64, sampler="DPM++ 2M", schedule="Karras"), "alice"
            )
        assert await queue.submit(flow_request("tiny-sd3", width=64, height=64), "alice")
    finally:
        await queue.close()


def test_a_front_end_s_request_takes_the_family_s_defaults(flow_root, flow_engine):
    from commands.generation import GenerationOptions, generation_request_for

    settings = load_settings(None, data_dir=flow_root)
    registry, limits = flow_engine.registry, settings.limits
    dev = generation_request_for(
        GenerationOptions(prompt="a cat", model="tiny-flux"), settings, registry, limits
    )
    assert (dev.sampler, dev.schedule, dev.steps, dev.cfg_scale) == ("Euler", "Simple", 20, 1.0)
    assert (dev.width, dev.height) == (1024, 1024)
    schnell = GenerationOptions(prompt="a cat", model="tiny-schnell", cfg_scale=2.0)
    fast = generation_request_for(schnell, settings, registry, limits)
    assert (fast.steps, fast.cfg_scale) == (4, 2.0)
    sd3 = generation_request_for(
        GenerationOptions(prompt="a cat", model="tiny-sd3"), settings, registry, limits
    )
    assert (sd3.steps, sd3.cfg_scale) == (28, 3.5)


def test_the_infotext_repeats_the_image(flow_engine):
    from commands.followups import from_infotext

    first = flow_engine.txt2img(flow_request("tiny-flux", prompt="a red cat", seed=12, steps=3)).images[0]
    again, notes = from_infotext(first.infotext, {"tiny-flux", "tiny-sd3"}, set(), set())
    assert (again.model, again.sampler, again.schedule, again.steps, again.seed) == (
        "tiny-flux",
        "Euler",
        "Simple",
        3,
        12,
    )
    repeated = flow_engine.txt2img(again).images[0]
    assert mean_difference(repeated.image, first.image) == 0
    assert repeated.infotext == first.infotext


def test_salon_models_lists_the_family(flow_root, tmp_path, capsys, monkeypatch):
    from cli.main import main
    from cli.output import console

    monkeypatch.setattr(console, "width", 250)  # the console was made (and read COLUMNS) at import
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{flow_root}"\n')
    assert main(["--config", str(config), "models"]) == 0
    out = capsys.readouterr().out
    assert "SD 3.5 large" in out and "Flux dev" in out and "Flux schnell" in out


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux"])
def test_steps_are_reported_with_previews_and_a_cancel_stops_the_run(flow_engine, model):
    from core.errors import JobCancelled
    from engine.requests import RunControl

    seen = []

    def on_step(event):
        seen.append((event.phase, event.step, event.total, event.preview(0).size))

    flow_engine.txt2img(flow_request(model, steps=3), RunControl(on_step=on_step))
    assert [s[:3] for s in seen] == [("txt2img", 1, 3), ("txt2img", 2, 3), ("txt2img", 3, 3)]
    assert seen[0][3] == (16, 16)  # latent resolution, no VAE decode
    control = RunControl()
    control.on_step = lambda event: control.cancel.set()
    with pytest.raises(JobCancelled, match="cancelled at step 1 of 3"):
        flow_engine.txt2img(flow_request(model, steps=3), control)


def test_a_folder_without_its_clip_tokenizer_takes_the_shipped_one(flow_root, flow_engine, tmp_path):
    folder = tmp_path / "models" / "Stable-diffusion" / "bare-flux"
    shutil.copytree(flow_root / "models" / "Stable-diffusion" / "tiny-flux", folder)
    shutil.rmtree(folder / "tokenizer")
    engine = Engine(load_settings(None, data_dir=tmp_path))
    bare = engine.txt2img(flow_request("bare-flux", seed=8)).images[0]
    full = flow_engine.txt2img(flow_request("tiny-flux", seed=8)).images[0]
    assert mean_difference(bare.image, full.image) == 0
