"""The shipped SD 1.5 / SDXL configs build the published architectures (on the meta device, no allocation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from engine.configs import CLIP_TOKENIZER, CONFIG_ROOT, SD15_CONFIG, SDXL_CONFIG

# Parameter counts of the published weights (diffusers / transformers layout).
SD15_UNET = 859_520_964
SDXL_UNET = 2_567_463_684
VAE = 83_653_863
CLIP_L_TEXT = 123_060_480
OPENCLIP_BIGG_TEXT = 694_659_840


def count(model: torch.nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in model.parameters())


def assert_meta(model: torch.nn.Module) -> None:
    """The model was built without allocating real memory."""
    assert {p.device.type for p in model.parameters()} == {"meta"}


def build_unet(folder: Path) -> UNet2DConditionModel:
    """The UNet of a shipped config, on the meta device."""
    with init_empty_weights():
        return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))


def build_vae(folder: Path) -> AutoencoderKL:
    """The VAE of a shipped config, on the meta device."""
    with init_empty_weights():
        return AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))


TextEncoder = CLIPTextModel | CLIPTextModelWithProjection


def build_text(folder: Path, sub: str, cls: type[TextEncoder]) -> TextEncoder:
    """A text encoder of a shipped config, on the meta device."""
    with init_empty_weights():
        return cls(CLIPTextConfig.from_pretrained(folder / sub))


def model_index(folder: Path) -> dict:
    """The parsed model_index.json of a config folder."""
    return json.loads((folder / "model_index.json").read_text())


def test_paths_are_package_data() -> None:
    """The exported paths exist inside the engine package."""
    assert CONFIG_ROOT == Path(__file__).resolve().parents[2] / "engine" / "configs"
    for folder in (SD15_CONFIG, SDXL_CONFIG, CLIP_TOKENIZER):
        assert folder.is_dir() and folder.parent == CONFIG_ROOT


def test_no_weights_or_tokenizers_are_shipped() -> None:
    """Model folders hold JSON configs only; the tokenizer lives in clip_tokenizer/."""
    for folder in (SD15_CONFIG, SDXL_CONFIG):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files and all(p.suffix == ".json" for p in files)
        assert not (folder / "tokenizer").exists()


@pytest.mark.parametrize(("folder", "expected"), [(SD15_CONFIG, SD15_UNET), (SDXL_CONFIG, SDXL_UNET)])
def test_unet_parameter_count(folder: Path, expected: int) -> None:
    """Each UNet config gives the published parameter count (within 0.5 %)."""
    unet = build_unet(folder)
    assert_meta(unet)
    assert count(unet) == pytest.approx(expected, rel=0.005)


@pytest.mark.parametrize("folder", [SD15_CONFIG, SDXL_CONFIG])
def test_vae_parameter_count(folder: Path) -> None:
    """Both VAEs have the published KL-f8 size."""
    vae = build_vae(folder)
    assert_meta(vae)
    assert count(vae) == pytest.approx(VAE, rel=0.005)


@pytest.mark.parametrize("folder", [SD15_CONFIG, SDXL_CONFIG])
def test_clip_l_text_encoder(folder: Path) -> None:
    """text_encoder is CLIP ViT-L/14's text model in both pipelines."""
    model = build_text(folder, "text_encoder", CLIPTextModel)
    assert_meta(model)
    assert count(model) == pytest.approx(CLIP_L_TEXT, rel=0.005)
    assert model.config.hidden_act == "quick_gelu" and model.config.hidden_size == 768


def test_sdxl_text_encoder_2() -> None:
    """text_encoder_2 is OpenCLIP bigG's text model with its 1280-wide projection."""
    model = build_text(SDXL_CONFIG, "text_encoder_2", CLIPTextModelWithProjection)
    assert_meta(model)
    assert count(model) == pytest.approx(OPENCLIP_BIGG_TEXT, rel=0.005)
    assert model.config.projection_dim == 1280 and model.config.num_hidden_layers == 32


def test_text_encoders_default_to_float32() -> None:
    """Configs do not force half precision: the engine picks the dtype, so CPU runs stay float32."""
    pairs = [("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)]
    for sub, cls in pairs:
        assert build_text(SDXL_CONFIG, sub, cls).dtype == torch.float32


def test_sd15_scheduler_is_published_pndm() -> None:
    """SD 1.5 ships PNDM with scaled_linear 0.00085-0.012 and steps_offset 1."""
    scheduler = PNDMScheduler.from_pretrained(SD15_CONFIG, subfolder="scheduler")
    config = scheduler.config
    assert (config.beta_schedule, config.beta_start, config.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert (config.steps_offset, config.skip_prk_steps, config.num_train_timesteps) == (1, True, 1000)


def test_sdxl_scheduler_is_published_euler() -> None:
    """SDXL ships Euler with the same betas, leading spacing and steps_offset 1."""
    config = EulerDiscreteScheduler.from_pretrained(SDXL_CONFIG, subfolder="scheduler").config
    assert (config.beta_schedule, config.beta_start, config.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert (config.steps_offset, config.timestep_spacing, config.prediction_type) == (1, "leading", "epsilon")


def test_vae_scaling() -> None:
    """SD 1.5 keeps the default 0.18215; SDXL uses 0.13025 and needs float32 decoding."""
    sd15, sdxl = build_vae(SD15_CONFIG).config, build_vae(SDXL_CONFIG).config
    assert sd15.scaling_factor == 0.18215
    assert sdxl.scaling_factor == 0.13025 and sdxl.force_upcast is True


def test_sdxl_unet_conditioning() -> None:
    """SDXL's UNet takes 2048-wide text states and the text_time added embedding (2816 inputs)."""
    config = UNet2DConditionModel.load_config(SDXL_CONFIG / "unet")
    assert config["cross_attention_dim"] == 2048 and config["addition_embed_type"] == "text_time"
    assert config["projection_class_embeddings_input_dim"] == 2816
    assert config["transformer_layers_per_block"] == [1, 2, 10]


def test_model_index_names_the_right_classes() -> None:
    """model_index.json lists the pipeline and component classes of each model."""
    sd15, sdxl = model_index(SD15_CONFIG), model_index(SDXL_CONFIG)
    assert sd15["_class_name"] == "StableDiffusionPipeline"
    assert sdxl["_class_name"] == "StableDiffusionXLPipeline"
    common = {
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
    }
    for index in (sd15, sdxl):
        assert {key: index[key] for key in common} == common
    assert sd15["scheduler"] == ["diffusers", "PNDMScheduler"]
    assert sdxl["scheduler"] == ["diffusers", "EulerDiscreteScheduler"]
    assert sdxl["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert sdxl["tokenizer_2"] == ["transformers", "CLIPTokenizer"]


@pytest.mark.parametrize(
    ("folder", "pipeline"), [(SD15_CONFIG, StableDiffusionPipeline), (SDXL_CONFIG, StableDiffusionXLPipeline)]
)
def test_model_index_covers_the_pipeline(folder: Path, pipeline: type) -> None:
    """Every component the pipeline expects is listed; only optional ones are null and have no folder."""
    index = model_index(folder)
    expected, _ = pipeline._get_signature_keys(pipeline)
    listed = {key for key, value in index.items() if not key.startswith("_") and isinstance(value, list)}
    assert set(expected) - set(pipeline._optional_components) <= listed
    for key in listed:
        library, _class = index[key]
        if library is None:
            assert key in pipeline._optional_components
        elif not key.startswith("tokenizer"):
            assert (folder / key).is_dir()


def test_sdxl_pipeline_flags() -> None:
    """SDXL keeps zeroed empty prompts and never adds a watermark (A1111 does not)."""
    index = model_index(SDXL_CONFIG)
    assert index["force_zeros_for_empty_prompt"] is True and index["add_watermarker"] is False


def test_clip_tokenizer_encodes_a_known_prompt() -> None:
    """The shipped tokenizer gives CLIP's ids for a known prompt."""
    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER)
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.model_max_length == 77
