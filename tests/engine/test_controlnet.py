"""ControlNet on a tiny random ControlNet for the tiny SD 1.x UNet: loading (diffusers folder and
lllyasviel's single-file layout), the residuals in the denoising loop, units, control modes, the
preprocessors, sd-webui-controlnet's infotext, and the refusals."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

import engine.runner as runner_module
from core.errors import InvalidRequest, ModelNotFound, ModelRefused
from engine.controlnet.guide import layer_scales
from engine.controlnet.preprocess import detected_map
from engine.controlnet.unit_text import (
    parse_unit,
    pixel_perfect_resolution,
    units_from_infotext,
    with_defaults,
)
from engine.infotext import parse_infotext
from engine.models.registry import ModelKind
from engine.requests import ControlMode, ControlNetUnit, ControlResize, Img2ImgRequest
from tests.engine.helpers import mean_difference, pixels, request

STEPS = 4


@pytest.fixture(scope="module")
def cn_engine(tmp_path_factory, tiny_sd1_dir, tiny_sdxl_dir):
    import shutil

    from config import load_settings
    from engine.runner import Engine
    from tests.tiny_models import build_tiny_controlnet, save_ldm_controlnet

    root = tmp_path_factory.mktemp("cn-data")
    shutil.copytree(tiny_sd1_dir, root / "models/Stable-diffusion/tiny")
    shutil.copytree(tiny_sdxl_dir, root / "models/Stable-diffusion/tiny-xl")
    folder = build_tiny_controlnet(root / "models/ControlNet/tiny-cn-folder")
    save_ldm_controlnet(folder, root / "models/ControlNet/tiny-cn.safetensors")
    build_tiny_controlnet(root / "models/ControlNet/tiny-cn-xl", sdxl=True)
    (root / "models/ControlNet/sneaky.safetensors").write_bytes(pickle.dumps({"not": "weights"}))
    return Engine(load_settings(None, data_dir=root, default_model="tiny"))


@pytest.fixture(scope="module")
def circle() -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((10, 12, 52, 50), outline="black", width=3)
    return image


def unit(circle, **changes) -> ControlNetUnit:
    return with_defaults(
        ControlNetUnit(**{"model": "tiny-cn", "module": "canny", "image": circle, **changes})
    )


def run(engine, *units, **overrides):
    return engine.txt2img(request(steps=STEPS, controlnet=tuple(units), **overrides)).images[0]


@pytest.fixture(scope="module")
def plain(cn_engine):
    return run(cn_engine)


@pytest.fixture(scope="module")
def full(cn_engine, circle):
    return run(cn_engine, unit(circle))


def test_registry_lists_single_files_and_folders_with_sd_webui_controlnet_hashes(cn_engine):
    registry = cn_engine.registry
    entries = {e.name: e for e in registry.entries(ModelKind.CONTROLNET)}
    assert set(entries) == {"tiny-cn", "tiny-cn-folder", "tiny-cn-xl"}  # no file inside a folder listed
    assert entries["tiny-cn-folder"].is_diffusers_folder
    # A1111's old model hash: sha256 of the 64 KiB at 1 MiB, 8 hex.
    data = entries["tiny-cn"].path.read_bytes()
    assert registry.short_hash(entries["tiny-cn"]) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    refused = [r for r in registry.refused if r.kind is ModelKind.CONTROLNET]
    assert [r.path.name for r in refused] == ["sneaky.safetensors"]


def test_weight_zero_gives_the_same_pixels_as_no_controlnet(cn_engine, circle, plain):
    image = run(cn_engine, unit(circle, weight=0.0))
    assert np.array_equal(pixels(image.image), pixels(plain.image))


def test_weight_one_changes_the_image_and_is_written_as_sd_webui_controlnet_writes_it(full, plain):
    assert mean_difference(full.image, plain.image) > 1.0
    assert (
        'ControlNet 0: "Module: canny, Model: tiny-cn [d5af9e2e], Weight: 1.0, Resize Mode: Crop and Resize, '
        "Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, "
        'Pixel Perfect: False, Control Mode: Balanced"'
    ) in full.infotext


def test_single_file_and_diffusers_folder_give_the_same_pixels(cn_engine, circle, full):
    image = run(cn_engine, unit(circle, model="tiny-cn-folder"))
    assert np.array_equal(pixels(image.image), pixels(full.image))


def test_guidance_end_half_equals_a_run_gated_by_hand(cn_engine, circle, full, plain, monkeypatch):
    half = run(cn_engine, unit(circle, guidance_end=0.5))
    # The last step (the smallest noise) moves few pixels: the images differ, if only a little.
    assert not np.array_equal(pixels(half.image), pixels(full.image))
    assert mean_difference(half.image, plain.image) > 1.0

    real = runner_module.prepare_guide
    steps_run = []

    class FirstHalf:  # the full-window unit, its residuals used only while step / steps ≤ 0.5
        def __init__(self, guide):
            self.guide = guide

        def residuals(self, sample, t, step, total, *rest):
            if step / total > 0.5:
                return {}
            steps_run.append(step)
            return self.guide.residuals(sample, t, step, total, *rest)

        def infotext(self):
            return self.guide.infotext()

    monkeypatch.setattr(runner_module, "prepare_guide", lambda *a: FirstHalf(real(*a)))
    manual = run(cn_engine, unit(circle))
    assert steps_run == [0, 1, 2]
    assert np.array_equal(pixels(manual.image), pixels(half.image))


def test_two_units_add_their_residuals(cn_engine, circle, full):
    halves = run(cn_engine, unit(circle, weight=0.5), unit(circle, weight=0.5, model="tiny-cn-folder"))
    assert np.array_equal(pixels(halves.image), pixels(full.image))  # 0.5·r + 0.5·r = r exactly
    info = parse_infotext(halves.infotext).params
    assert "Model: tiny-cn [d5af9e2e]" in info["ControlNet 0"]
    assert "Model: tiny-cn-folder [" in info["ControlNet 1"]


def test_control_modes(cn_engine, circle, full):
    prompt_first = run(cn_engine, unit(circle, control_mode=ControlMode.PROMPT))
    control_first = run(cn_engine, unit(circle, control_mode=ControlMode.CONTROL))
    assert mean_difference(prompt_first.image, full.image) > 0.1
    assert mean_difference(control_first.image, prompt_first.image) > 0.1
    assert "Control Mode: ControlNet is more important" in control_first.infotext
    # sd-webui-controlnet's soft weights: 0.825^(12 - i) for SD's 13 residuals, SDXL the first 10 of them.
    soft = dataclasses.replace(unit(circle), control_mode=ControlMode.PROMPT, weight=2.0)
    assert layer_scales(soft, 13, sdxl=False) == pytest.approx([2 * 0.825 ** (12 - i) for i in range(13)])
    assert layer_scales(soft, 10, sdxl=True) == pytest.approx([2 * 0.825 ** (12 - i) for i in range(10)])


def test_img2img_unit_without_image_reads_the_input(cn_engine, circle):
    params = request(steps=STEPS, controlnet=(with_defaults(ControlNetUnit("tiny-cn", module="canny")),))
    own = dataclasses.replace(params, controlnet=(unit(circle),))
    from_input = cn_engine.img2img(Img2ImgRequest(params, circle, 0.6)).images[0]
    given = cn_engine.img2img(Img2ImgRequest(own, circle, 0.6)).images[0]
    assert np.array_equal(pixels(from_input.image), pixels(given.image))


def test_infotext_round_trip(full, circle):
    units = units_from_infotext(parse_infotext(full.infotext).params)
    assert units == (dataclasses.replace(unit(circle), model="tiny-cn [d5af9e2e]"),)
    assert units[0].image is None  # the control image is not in the infotext


def test_canny_is_opencv_canny_at_the_processor_resolution():
    rng = np.random.default_rng(1)
    picture = (rng.random((512, 512, 3)) * 255).astype(np.uint8)
    picture[100:300, 150:400] = 30
    made = detected_map(with_defaults(ControlNetUnit("m", module="canny")), Image.fromarray(picture))
    expected = cv2.Canny(picture, 100, 200)
    assert np.array_equal(np.asarray(made)[:, :, 0], expected)
    small = detected_map(
        with_defaults(ControlNetUnit("m", module="canny", processor_res=64)), Image.fromarray(picture)
    )
    assert small.size == (64, 64)


def test_unit_text_refusals_name_the_field():
    with pytest.raises(InvalidRequest, match="weight='heavy' is not a number"):
        parse_unit("model=x,weight=heavy")
    with pytest.raises(InvalidRequest, match="mode 'loud'"):
        parse_unit("model=x,mode=loud")
    with pytest.raises(InvalidRequest, match="names no model"):
        parse_unit("module=canny")
    with pytest.raises(InvalidRequest, match="needs a preprocessor model"):
        parse_unit("model=x,module=depth_midas")
    with pytest.raises(InvalidRequest, match="start 0.8 and end 0.2"):
        parse_unit("model=x,start=0.8,end=0.2")


def test_refusals_of_models(cn_engine, circle):
    with pytest.raises(ModelNotFound, match="no controlnet named 'missing'"):
        run(cn_engine, unit(circle, model="missing"))
    with pytest.raises(ModelRefused, match="sneaky"):
        run(cn_engine, unit(circle, model="sneaky"))
    with pytest.raises(InvalidRequest, match="is an SDXL ControlNet; the model tiny is SD 1.x"):
        run(cn_engine, unit(circle, model="tiny-cn-xl"))
    with pytest.raises(InvalidRequest, match="no control image"):
        run(cn_engine, ControlNetUnit("tiny-cn"))


def test_sdxl_controlnet_on_an_sdxl_model_from_a_single_file(cn_engine, circle, tmp_path):
    from tests.tiny_models import save_ldm_controlnet

    folder = cn_engine.registry.find(ModelKind.CONTROLNET, "tiny-cn-xl").path
    save_ldm_controlnet(folder, cn_engine.settings.controlnet_dir / "tiny-cn-xl-file.safetensors")
    plain = run(cn_engine, model="tiny-xl")
    guided = run(cn_engine, unit(circle, model="tiny-cn-xl"), model="tiny-xl")
    from_file = run(cn_engine, unit(circle, model="tiny-cn-xl-file"), model="tiny-xl")
    assert mean_difference(guided.image, plain.image) > 1.0
    assert np.array_equal(pixels(from_file.image), pixels(guided.image))  # label_emb read as add_embedding
    with pytest.raises(InvalidRequest, match="is an SD 1.x ControlNet; the model tiny-xl is SDXL"):
        run(cn_engine, unit(circle), model="tiny-xl")


# Values of sd-webui-controlnet's own `pixel_perfect_resolution` (internal_controlnet/external_code.py at
# 56cec5b2), run outside this repository on these sizes: (image w×h, target w×h) → Just Resize, Crop and
# Resize, Resize and Fill.
PIXEL_PERFECT = [
    ((1024, 768), (512, 512), (512, 512, 384)),
    ((768, 1024), (512, 768), (576, 576, 512)),
    ((300, 200), (768, 512), (512, 512, 512)),
    ((640, 480), (1024, 1024), (1024, 1024, 768)),
    ((1000, 333), (512, 512), (512, 512, 170)),
    ((4, 2), (5, 1), (2, 2, 1)),  # 2.5 and 3.5: numpy rounds half to even
    ((4, 2), (7, 1), (4, 4, 1)),
]


@pytest.mark.parametrize(("image", "target", "expected"), PIXEL_PERFECT)
def test_pixel_perfect_is_sd_webui_controlnets(image, target, expected):
    modes = (ControlResize.JUST_RESIZE, ControlResize.CROP_AND_RESIZE, ControlResize.RESIZE_AND_FILL)
    assert tuple(pixel_perfect_resolution(image, target, mode) for mode in modes) == expected


def test_pixel_perfect_takes_the_resolution_from_the_control_image_and_the_size(cn_engine, circle):
    """A 128² control image for a 64² image: ×0.5 of 128 = 64, the same as asking for 64; the infotext says
    `Pixel Perfect: True` with that resolution, and reads back so."""
    big = circle.resize((128, 128))
    perfect = run(cn_engine, unit(big, pixel_perfect=True))
    asked = run(cn_engine, unit(big, processor_res=64))
    assert np.array_equal(pixels(perfect.image), pixels(asked.image))
    assert "Processor Res: 64" in perfect.infotext and "Pixel Perfect: True" in perfect.infotext
    (read,) = units_from_infotext(parse_infotext(perfect.infotext).params)
    assert read.pixel_perfect and read.processor_res == 64
    assert parse_unit("model=x,pp=true").pixel_perfect and not parse_unit("model=x,pp=0").pixel_perfect
    with pytest.raises(InvalidRequest, match="pp='maybe': use true or false"):
        parse_unit("model=x,pp=maybe")
