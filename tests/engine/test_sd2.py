"""Stable Diffusion 2.x: detection, the shipped configs, v-prediction or epsilon decided as A1111 decides, the
yaml beside a checkpoint (hostile ones too), native sizes and families (tiny random SD 2-shaped models)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from core.errors import InvalidRequest
from engine.configs import CLIP_TOKENIZER, SD2_CONFIG, SD2_V_CONFIG
from engine.models import sd2_family, sd2_loading
from engine.models.loading import load_model
from engine.models.model_files import CheckpointKind, check_safetensors, detect_checkpoint_kind
from engine.models.registry import ModelEntry, ModelKind, native_resolution
from engine.models.sd2_family import checkpoint_family, memo_path, yaml_prediction
from tests.tiny_sd2 import build_tiny_sd2, save_tiny_sd2_file, tiny_sd2_pipeline

V_BIAS = -2.0  # the UNet's output bias that makes A1111's test say v (the mean lands near −2.5)

# ---------------------------------------------------------------------------------------------------------
# The shipped configs: stabilityai/stable-diffusion-2-1-base (sd2) and stable-diffusion-2-1 (sd2-v)
# ---------------------------------------------------------------------------------------------------------

SD21_UNET = 865_910_724  # parameters of the published SD 2.1 UNet (diffusers layout)
SD21_TEXT = 340_387_840  # OpenCLIP-H's text tower without its last layer, as a 23-layer CLIPTextModel


@pytest.mark.parametrize(("folder", "v"), [(SD2_CONFIG, False), (SD2_V_CONFIG, True)], ids=["base", "v"])
def test_shipped_sd2_configs_build_the_published_architecture(folder: Path, v: bool) -> None:
    unet_config = UNet2DConditionModel.load_config(folder / "unet")
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(unet_config)
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    assert sum(p.numel() for p in unet.parameters()) == SD21_UNET
    assert sum(p.numel() for p in text.parameters()) == SD21_TEXT
    assert unet_config["attention_head_dim"] == [5, 10, 20, 20] and unet_config["use_linear_projection"]
    assert unet_config["cross_attention_dim"] == 1024
    assert (unet_config["upcast_attention"], unet_config["sample_size"]) == (v, 96 if v else 64)
    assert (text.config.num_hidden_layers, text.config.hidden_act, text.config.hidden_size) == (
        23,
        "gelu",
        1024,
    )
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    assert scheduler["prediction_type"] == ("v_prediction" if v else "epsilon")
    pad = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, pad_token="!").pad_token_id
    assert pad == 0  # OpenCLIP pads with token 0


def test_a1111_v_test_constants_are_pinned() -> None:
    """AUTOMATIC1111/stable-diffusion-webui modules/sd_models_config.py, commit
    0120be72de7433c49e37dd2e55331a6ad4f812eb, `is_using_v_parameterization_for_sd2`: x = ones(1, 4, 8, 8) * 0.5,
    context = ones(1, 2, 1024) * 0.5 (the text width), timestep 999, v when mean(unet(x) − x) < −1."""
    assert sd2_loading.TEST_LATENT_SHAPE == (1, 4, 8, 8)
    assert (sd2_loading.TEST_VALUE, sd2_loading.TEST_CONTEXT_TOKENS) == (0.5, 2)
    assert (sd2_loading.TEST_TIMESTEP, sd2_loading.V_THRESHOLD) == (999, -1.0)
    unet = tiny_sd2_pipeline(v_bias=V_BIAS).unet
    x = torch.ones((1, 4, 8, 8)) * 0.5
    context = torch.ones((1, 2, unet.config.cross_attention_dim)) * 0.5
    with torch.no_grad():
        expected = (unet(x, torch.asarray([999]), encoder_hidden_states=context).sample - x).mean().item()
    assert sd2_loading.unet_test_mean(unet) == pytest.approx(expected) and expected < -1
    assert sd2_loading.unet_test_mean(tiny_sd2_pipeline().unet) > -1


# ---------------------------------------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------------------------------------

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
OPENCLIP = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"


def _header(tmp_path: Path, shapes: dict[str, tuple[int, ...]]) -> dict:
    path = tmp_path / "h.safetensors"
    save_file({name: torch.zeros(shape) for name, shape in shapes.items()}, str(path))
    return check_safetensors(path)


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        ({UNET_IN: (4, 4, 3, 3), OPENCLIP: (12, 4)}, CheckpointKind.SD2),
        ({UNET_IN: (4, 9, 3, 3), OPENCLIP: (12, 4)}, CheckpointKind.SD2_INPAINT),
    ],
    ids=["sd2", "sd2-inpainting"],
)
def test_sd2_single_files_are_detected(tmp_path: Path, shapes, expected) -> None:
    assert detect_checkpoint_kind(_header(tmp_path, shapes)) is expected


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({UNET_IN: (4, 5, 3, 3), OPENCLIP: (12, 4)}, "depth model .depth2img, 5 input channels"),
        ({UNET_IN: (4, 4, 3, 3), OPENCLIP: (12, 4), "depth_model.model.x": (2,)}, "depth model"),
        ({UNET_IN: (4, 7, 3, 3), OPENCLIP: (12, 4)}, "x4 upscaler .7 input channels"),
        ({UNET_IN: (4, 4, 3, 3), OPENCLIP: (12, 4), "embedder.model.ln_final.weight": (4,)}, "unCLIP"),
    ],
    ids=["depth", "depth-by-midas", "x4-upscaler", "unclip"],
)
def test_sd2_variants_that_are_not_text_to_image_are_refused_by_name(tmp_path: Path, shapes, message) -> None:
    with pytest.raises(InvalidRequest, match=message):
        detect_checkpoint_kind(_header(tmp_path, shapes))


def test_a_depth2img_folder_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "sd2-depth"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionDepth2ImgPipeline"}))
    entry = ModelEntry(ModelKind.CHECKPOINT, folder.name, folder, 0, 0, is_diffusers_folder=True)
    with pytest.raises(
        InvalidRequest, match="depth model .StableDiffusionDepth2ImgPipeline. is not supported"
    ):
        load_model(entry, "", torch.device("cpu"), torch.float32)


# ---------------------------------------------------------------------------------------------------------
# Single files: the A1111 layout, v or epsilon by the UNet test or the yaml
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny SD 2 folders: one whose UNet passes A1111's v test, one whose UNet does not."""
    root = tmp_path_factory.mktemp("sd2-folders")
    return {
        "v": build_tiny_sd2(root / "v", v_bias=V_BIAS),
        "eps": build_tiny_sd2(root / "eps", prediction_type="epsilon"),
    }


def _single(folders: dict[str, Path], which: str, where: Path) -> ModelEntry:
    path = save_tiny_sd2_file(folders[which], where / f"{which}.safetensors")
    info = path.stat()
    return ModelEntry(ModelKind.CHECKPOINT, path.stem, path, info.st_size, info.st_mtime_ns)


def _load(entry: ModelEntry):
    return load_model(entry, "", torch.device("cpu"), torch.float32)


def test_the_single_file_holds_openclip_in_a1111s_layout(folders, tmp_path: Path) -> None:
    header = check_safetensors(_single(folders, "v", tmp_path).path)
    names = set(header) - {"__metadata__"}
    assert "cond_stage_model.model.token_embedding.weight" in names
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in names
    assert not any(n.startswith("cond_stage_model.transformer.") for n in names)


@pytest.mark.parametrize(("which", "expected"), [("v", "v_prediction"), ("eps", "epsilon")])
def test_the_unet_test_decides_once_and_is_remembered(
    folders, tmp_path, monkeypatch, which, expected
) -> None:
    entry = _single(folders, which, tmp_path)
    assert checkpoint_family(entry) == "SD2 (v untested)"
    model = _load(entry)
    assert model.sd2 and model.pipe.scheduler.config.prediction_type == expected
    assert model.pipe.tokenizer.pad_token_id == 0
    memo = json.loads(memo_path(entry.path).read_text(encoding="utf-8"))
    assert memo["prediction_type"] == expected and memo["size"] == entry.size
    assert checkpoint_family(entry) == ("SD2 768-v" if which == "v" else "SD2 512")

    def no_second_run(_unet):
        raise AssertionError("the UNet test ran again")

    monkeypatch.setattr(sd2_loading, "unet_test_mean", no_second_run)
    assert _load(entry).pipe.scheduler.config.prediction_type == expected


def test_a_changed_file_is_tested_again(folders, tmp_path) -> None:
    entry = _single(folders, "eps", tmp_path)
    _load(entry)
    memo = memo_path(entry.path)
    assert sd2_family.remembered_prediction(entry.path) == "epsilon"
    os.utime(entry.path, ns=(entry.mtime_ns + 10**9, entry.mtime_ns + 10**9))
    sd2_family._memory.clear()
    assert memo.is_file() and sd2_family.remembered_prediction(entry.path) is None


def test_native_size_without_a_sidecar_config_follows_the_prediction(folders, tmp_path) -> None:
    """No `<name>.config/` (the shipped 2.1 configs would be used to load): 768 for v, 512 for epsilon."""
    path = tmp_path / "bare.safetensors"
    save_tiny_sd2_file(folders["eps"], path, with_configs=False)
    info = path.stat()
    entry = ModelEntry(ModelKind.CHECKPOINT, "bare", path, info.st_size, info.st_mtime_ns)
    assert native_resolution(entry) == 768  # not known yet: the common 768-v
    sd2_family.remember_prediction(path, "epsilon")
    assert native_resolution(entry) == 512
    path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert native_resolution(entry) == 768  # the yaml comes first, as in A1111


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: "v"\n',
            "v",
        ),
        ("model:\n  params:\n    linear_start: 0.00085\n", "epsilon"),
    ],
    ids=["v", "eps-by-default"],
)
def test_the_yaml_beside_the_file_wins_over_the_unet_test(folders, tmp_path, text, expected) -> None:
    entry = _single(folders, "eps" if expected == "v" else "v", tmp_path)
    entry.path.with_suffix(".yaml").write_text(text, encoding="utf-8")
    prediction = "v_prediction" if expected == "v" else "epsilon"
    assert yaml_prediction(entry.path) == prediction
    assert _load(entry).pipe.scheduler.config.prediction_type == prediction
    assert not memo_path(entry.path).exists()  # the yaml decided: no test ran


def _hostile_yaml(kind: str, path: Path) -> None:
    if kind == "huge":
        with path.open("wb") as fh:
            fh.truncate(sd2_family.MAX_YAML_BYTES + 1)
    elif kind == "not-yaml":
        path.write_text("model: [unclosed\n  params: {parameterization: v\n", encoding="utf-8")
    elif kind == "not-a-config":
        path.write_text("- just\n- a list\n", encoding="utf-8")
    elif kind == "link-loop":
        os.symlink(path.name, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")


@pytest.mark.parametrize("kind", ["huge", "not-yaml", "not-a-config", "link-loop", "fifo", "binary"])
def test_a_hostile_yaml_is_ignored_with_a_log_line(folders, tmp_path, caplog, kind) -> None:
    entry = _single(folders, "v", tmp_path)
    _hostile_yaml(kind, entry.path.with_suffix(".yaml"))
    with caplog.at_level(logging.WARNING, logger="engine.models.sd2_family"):
        assert yaml_prediction(entry.path) is None
    assert "ignored" in caplog.text and entry.path.with_suffix(".yaml").name in caplog.text
    assert _load(entry).pipe.scheduler.config.prediction_type == "v_prediction"  # the UNet test decided


def test_a_folder_says_its_family_and_size_in_its_configs(folders) -> None:
    v = ModelEntry(ModelKind.CHECKPOINT, "v", folders["v"], 0, 0, is_diffusers_folder=True)
    eps = ModelEntry(ModelKind.CHECKPOINT, "eps", folders["eps"], 0, 0, is_diffusers_folder=True)
    assert (checkpoint_family(v), checkpoint_family(eps)) == ("SD2 768-v", "SD2 512")
    assert _load(v).sd2 and _load(v).pipe.scheduler.config.prediction_type == "v_prediction"


def test_the_sd2_inpainting_file_loads_as_epsilon_without_a_test(tmp_path) -> None:
    folder = build_tiny_sd2(tmp_path / "inp", prediction_type="epsilon", in_channels=9, v_bias=V_BIAS)
    entry = _single({"inp": folder}, "inp", tmp_path)
    assert detect_checkpoint_kind(check_safetensors(entry.path)) is CheckpointKind.SD2_INPAINT
    model = _load(entry)
    assert model.inpainting and model.pipe.scheduler.config.prediction_type == "epsilon"
    assert native_resolution(entry) == 32 and checkpoint_family(entry) == "SD2 512 inpainting"


def test_a_merge_of_sd1_and_sd2_is_refused_by_family(tmp_path) -> None:
    from config import load_settings
    from engine.models.merging import MergeOptions, merge_checkpoints
    from engine.models.registry import ModelRegistry

    checkpoints = tmp_path / "models" / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    sd1 = {UNET_IN: (4, 4, 3, 3), "cond_stage_model.transformer.text_model.final_layer_norm.weight": (4,)}
    save_file({name: torch.zeros(shape) for name, shape in sd1.items()}, str(checkpoints / "a.safetensors"))
    sd2 = {UNET_IN: (4, 4, 3, 3), OPENCLIP: (12, 4)}
    save_file({name: torch.zeros(shape) for name, shape in sd2.items()}, str(checkpoints / "b.safetensors"))
    registry = ModelRegistry.from_settings(load_settings(None, data_dir=tmp_path))
    options = MergeOptions(
        mode="weighted-sum", primary="a", secondary="b", tertiary=None, multiplier=0.5, name="o"
    )
    with pytest.raises(InvalidRequest, match=r"A \(a\) is SD 1.x but B \(b\) is SD 2.x"):
        merge_checkpoints(registry, options, lambda done, total: None)
