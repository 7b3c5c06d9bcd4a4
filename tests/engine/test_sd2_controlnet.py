"""ControlNet for Stable Diffusion 2.x: a tiny random ControlNet made from the tiny SD 2 UNet (as SD 2.1's
ControlNets are made from SD 2.1's: linear projections, the text encoder's width) loads as a diffusers folder
and as an lllyasviel-layout single file and guides an SD 2 checkpoint; ControlNets of another family are
refused by name both ways; the shipped SD 2.1 ControlNet config is SD 2's UNet."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.errors import InvalidRequest
from engine.configs import CONTROLNET_SD2_CONFIG, CONTROLNET_SD15_CONFIG, CONTROLNET_SDXL_CONFIG, SD2_CONFIG
from engine.controlnet.files import SD1, SD2, SDXL, header_family
from engine.controlnet.unit_text import with_defaults
from engine.requests import ControlNetUnit
from tests.engine.helpers import mean_difference, pixels, request
from tests.engine.test_sd2_generate import V_BIAS
from tests.tiny_models import build_tiny_controlnet, save_ldm_controlnet
from tests.tiny_sd2 import save_tiny_sd2_file, tiny_sd2_pipeline


def _sd2_controlnet(path, unet):
    """A ControlNet from the SD 2 UNet (its weights copied, as ControlNet training starts), with random zero
    convolutions: a trained ControlNet's are away from zero, so its residuals matter."""
    from diffusers import ControlNetModel

    torch.manual_seed(5)
    model = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for conv in [*model.controlnet_down_blocks, model.controlnet_mid_block]:
            conv.weight.normal_(0, 0.5)
            conv.bias.normal_(0, 0.1)
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def cn2_engine(tmp_path_factory, tiny_sd1_dir):
    from config import load_settings
    from engine.runner import Engine

    root = tmp_path_factory.mktemp("cn2-data")
    checkpoints, controlnets = root / "models/Stable-diffusion", root / "models/ControlNet"
    pipe = tiny_sd2_pipeline(v_bias=V_BIAS)
    pipe.save_pretrained(root / "sd2-folder", safe_serialization=True)
    save_tiny_sd2_file(root / "sd2-folder", checkpoints / "sd2-file.safetensors")
    shutil.copytree(tiny_sd1_dir, checkpoints / "tiny")
    folder = _sd2_controlnet(controlnets / "cn2-folder", pipe.unet)
    save_ldm_controlnet(folder, controlnets / "cn2.safetensors")
    bare = controlnets / "cn2-bare.safetensors"  # no config beside it: the shipped full-size one is tried
    shutil.copy(controlnets / "cn2.safetensors", bare)
    build_tiny_controlnet(controlnets / "cn1")
    build_tiny_controlnet(controlnets / "cn-xl", sdxl=True)
    return Engine(load_settings(None, data_dir=root, default_model="sd2-file"))


@pytest.fixture(scope="module")
def circle() -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((10, 12, 52, 50), outline="black", width=3)
    return image


def _run(engine, circle, controlnet: str | None, **params):
    units = (with_defaults(ControlNetUnit(controlnet, "canny", image=circle)),) if controlnet else ()
    return engine.txt2img(request(steps=4, controlnet=units, **params)).images[0]


def test_an_sd2_controlnet_guides_an_sd2_model_from_a_file_as_from_its_folder(cn2_engine, circle) -> None:
    plain = _run(cn2_engine, circle, None)
    guided = _run(cn2_engine, circle, "cn2-folder")
    from_file = _run(cn2_engine, circle, "cn2")
    assert mean_difference(guided.image, plain.image) > 1.0
    assert np.array_equal(pixels(from_file.image), pixels(guided.image))
    assert 'ControlNet 0: "Module: canny, Model: cn2 [' in from_file.infotext
    assert cn2_engine.load("sd2-file").sd2


def test_controlnets_of_another_family_are_refused_by_name_both_ways(cn2_engine, circle) -> None:
    with pytest.raises(InvalidRequest, match="cn1 is an SD 1.x ControlNet; the model sd2-file is SD 2.x"):
        _run(cn2_engine, circle, "cn1")
    with pytest.raises(InvalidRequest, match="cn-xl is an SDXL ControlNet; the model sd2-file is SD 2.x"):
        _run(cn2_engine, circle, "cn-xl")
    with pytest.raises(InvalidRequest, match="cn2 is an SD 2.x ControlNet; the model tiny is SD 1.x"):
        _run(cn2_engine, circle, "cn2", model="tiny")


def test_a_file_is_read_as_sd2_by_its_linear_projections(cn2_engine, circle) -> None:
    """Without its own config the file is tried against the shipped SD 2.1 one (too big for this tiny one)."""
    with pytest.raises(InvalidRequest, match="cn2-bare does not match the SD 2.x ControlNet layout"):
        _run(cn2_engine, circle, "cn2-bare")


def _meta_header(config_dir) -> dict:
    """A safetensors-like header (key → shape) of a ControlNet built from a shipped config, without memory."""
    from diffusers import ControlNetModel

    config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    with torch.device("meta"):
        model = ControlNetModel.from_config(config)
    return {key: {"shape": list(value.shape)} for key, value in model.state_dict().items()}


def test_the_shipped_sd2_controlnet_config_is_sd21s_unet() -> None:
    """sd-webui-controlnet's cldm_v21.yaml: the SD 2.1 UNet's encoder half (64-channel heads, linear
    projections, 1024-wide context); its weights' shapes say SD 2.x, the others' theirs."""
    controlnet = json.loads((CONTROLNET_SD2_CONFIG / "config.json").read_text(encoding="utf-8"))
    unet = json.loads((SD2_CONFIG / "unet" / "config.json").read_text(encoding="utf-8"))
    for key in ("attention_head_dim", "block_out_channels", "cross_attention_dim", "down_block_types"):
        assert controlnet[key] == unet[key], key
    assert controlnet["use_linear_projection"] and controlnet["cross_attention_dim"] == 1024
    header = _meta_header(CONTROLNET_SD2_CONFIG)
    assert header["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"]["shape"] == [320, 1024]
    assert header_family(header, "x") == SD2
    assert header_family(_meta_header(CONTROLNET_SD15_CONFIG), "x") == SD1
    assert header_family(_meta_header(CONTROLNET_SDXL_CONFIG), "x") == SDXL
