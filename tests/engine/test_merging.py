"""The checkpoint merger (engine/models/merging.py) on small random-weight checkpoints.

The rules pinned here are A1111's `modules/extras.py` `run_modelmerger` at AUTOMATIC1111/stable-diffusion-webui
commit 8faafb60804f40506eb3166e71d4d33bdc4e5c58: the two formulas, which keys are merged (`model` in the name,
present in B, not the text encoder's position_ids), keys only B has dropped, a key C lacks counting as B − C = 0,
the inpainting A with a normal B, fp16 of float32 only, and the `sd_merge_recipe` / `sd_merge_models` metadata.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from config import load_settings
from core.errors import InvalidRequest, ModelRefused
from engine.models.merge_files import place_without_overwrite
from engine.models.merging import MergeOptions, merge_checkpoints
from engine.models.model_files import check_safetensors
from engine.models.registry import ModelKind, ModelRegistry

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
UNET_OUT = "model.diffusion_model.out.2.weight"
TEXT = "cond_stage_model.transformer.text_model.final_layer_norm.weight"
POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"
VAE_CONV = "first_stage_model.decoder.conv_in.weight"
VAE_ENCODER = "first_stage_model.encoder.down.0.block.0.conv1.weight"


def _sd1(seed: int, in_channels: int = 4, **extra) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        UNET_IN: torch.randn(8, in_channels, 3, 3, generator=g),
        UNET_OUT: torch.randn(4, 8, 3, 3, generator=g),
        TEXT: torch.randn(16, generator=g),
        POSITION_IDS: torch.arange(77).unsqueeze(0),
        VAE_CONV: torch.randn(8, 4, 3, 3, generator=g),
        VAE_ENCODER: torch.randn(8, 8, 3, 3, generator=g),
        "alphas_cumprod": torch.rand(10, generator=g),  # no "model" in the name: A's, always
        **extra,
    }


@pytest.fixture()
def data(tmp_path):
    (tmp_path / "models" / "Stable-diffusion").mkdir(parents=True)
    (tmp_path / "models" / "VAE").mkdir(parents=True)
    return tmp_path


def _install(data, name: str, tensors: dict, metadata: dict | None = None):
    path = data / "models" / "Stable-diffusion" / f"{name}.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


def _registry(data) -> ModelRegistry:
    return ModelRegistry.from_settings(load_settings(None, data_dir=data))


def merge(data, **given):
    defaults = {"mode": "weighted-sum", "primary": "a", "secondary": "b", "tertiary": None, "multiplier": 0.3}
    steps = []
    path = merge_checkpoints(
        _registry(data),
        MergeOptions(**{**defaults, "name": "out", **given}),
        lambda d, t: steps.append((d, t)),
    )
    return path, load_file(str(path)), steps


def test_weighted_sum_is_a1111s_formula_key_by_key(data):
    a = _sd1(0, **{"model.only_in_a.weight": torch.ones(3), UNET_OUT: torch.randn(4, 8, 3, 3).half()})
    b = _sd1(1, **{"model.only_in_b.weight": torch.ones(3)})
    _install(data, "a", a)
    _install(data, "b", b)
    path, out, steps = merge(data, multiplier=0.3)
    assert path == data / "models" / "Stable-diffusion" / "out.safetensors"
    for key in (UNET_IN, TEXT, VAE_CONV, VAE_ENCODER):
        assert torch.equal(out[key], ((1 - 0.3) * a[key]) + (0.3 * b[key])), key
    # fp16 A with fp32 B: torch's promotion, as A1111's arithmetic gives
    assert out[UNET_OUT].dtype == torch.float32
    assert torch.equal(out[UNET_OUT], ((1 - 0.3) * a[UNET_OUT]) + (0.3 * b[UNET_OUT]))
    assert torch.equal(out[POSITION_IDS], a[POSITION_IDS])  # skipped on merge
    assert torch.equal(out["alphas_cumprod"], a["alphas_cumprod"])  # no "model" in its name
    assert torch.equal(out["model.only_in_a.weight"], a["model.only_in_a.weight"])
    assert "model.only_in_b.weight" not in out  # keys only B has are dropped
    assert list(out) and set(out) == set(a)
    assert steps[-1] == (len(a), len(a)) and [d for d, _ in steps] == list(range(1, len(a) + 1))
    check_safetensors(path)  # the streamed file passes Salon's own gate


def test_add_difference_and_a_key_c_lacks(data):
    a, b = _sd1(0), _sd1(1)
    c = {key: value for key, value in _sd1(2).items() if key != TEXT}
    for name, tensors in (("a", a), ("b", b), ("c", c)):
        _install(data, name, tensors)
    _, out, _ = merge(data, mode="add-difference", tertiary="c", multiplier=0.7)
    for key in (UNET_IN, UNET_OUT, VAE_CONV):
        assert torch.equal(out[key], a[key] + (0.7 * (b[key] - c[key]))), key
    assert torch.equal(out[TEXT], a[TEXT])  # B − C counts as zero where C lacks the key


def test_no_interpolation_fp16_and_discard(data):
    a = _sd1(0, **{"model_ema.decay": torch.tensor(0.999)})
    _install(data, "a", a)
    _, out, _ = merge(data, mode="no-interpolation", secondary=None, fp16=True, discard=r"^model_ema\.")
    assert "model_ema.decay" not in out
    assert out[UNET_IN].dtype == torch.float16 and torch.equal(out[UNET_IN], a[UNET_IN].half())
    assert out["alphas_cumprod"].dtype == torch.float16  # no interpolation: every float32 tensor
    assert out[POSITION_IDS].dtype == torch.int64


def test_fp16_with_weighted_sum_halves_only_merged_float32_keys(data):
    _install(data, "a", _sd1(0))
    _install(data, "b", _sd1(1))
    _, out, _ = merge(data, fp16=True)
    assert out[UNET_IN].dtype == torch.float16
    assert out["alphas_cumprod"].dtype == torch.float32  # not merged, so A1111 leaves it as it was


def test_inpainting_a_merges_the_shared_channels_and_a_normal_a_is_refused(data):
    a, b = _sd1(0, in_channels=9), _sd1(1)
    _install(data, "a", a)
    _install(data, "b", b)
    _, out, _ = merge(data, multiplier=0.5)
    assert out[UNET_IN].shape == (8, 9, 3, 3)
    assert torch.equal(out[UNET_IN][:, :4], ((1 - 0.5) * a[UNET_IN][:, :4]) + (0.5 * b[UNET_IN]))
    assert torch.equal(out[UNET_IN][:, 4:], a[UNET_IN][:, 4:])
    recipe = json.loads(
        safe_open(str(data / "models/Stable-diffusion/out.safetensors"), "pt").metadata()["sd_merge_recipe"]
    )
    assert recipe["is_inpainting"] is True
    with pytest.raises(InvalidRequest, match="A must be the inpainting model"):
        merge(data, primary="b", secondary="a", name="out2")
    assert not (data / "models" / "Stable-diffusion" / "out2.safetensors").exists()


def _a1111_legacy_hash(path) -> str:
    with open(path, "rb") as file:
        file.seek(0x100000)
        return hashlib.sha256(file.read(0x10000)).hexdigest()[:8]


def test_metadata_is_a1111s_recipe_and_models(data):
    _install(data, "a", _sd1(0), {"modelspec.title": "A"})
    _install(data, "b", _sd1(1))
    _install(data, "c", _sd1(2))
    first, _, _ = merge(data, mode="add-difference", tertiary="c", multiplier=0.25, name="abc")
    registry = _registry(data)
    sha = {n: registry.sha256(registry.find(ModelKind.CHECKPOINT, n)) for n in ("a", "b", "c", "abc")}
    meta = safe_open(str(first), "pt").metadata()
    assert meta["format"] == "pt" and meta["modelspec.title"] == "A"  # the inputs' fields are copied
    assert json.loads(meta["sd_merge_recipe"]) == {
        "type": "webui",
        "primary_model_hash": sha["a"],
        "secondary_model_hash": sha["b"],
        "tertiary_model_hash": sha["c"],
        "interp_method": "Add difference",
        "multiplier": 0.25,
        "save_as_half": False,
        "custom_name": "abc",
        "config_source": 0,
        "bake_in_vae": "None",
        "discard_weights": "",
        "is_inpainting": False,
        "is_instruct_pix2pix": False,
    }
    models = json.loads(meta["sd_merge_models"])
    assert list(models) == [sha["a"], sha["b"], sha["c"]]
    assert models[sha["b"]] == {
        "name": "b.safetensors",
        "legacy_hash": _a1111_legacy_hash(first.with_name("b.safetensors")),
        "sd_merge_recipe": None,
    }
    # A merge of a merge carries the earlier recipe and its models, as A1111's does
    _, _, _ = merge(data, primary="abc", secondary="a", name="again")
    again = json.loads(
        safe_open(str(first.with_name("again.safetensors")), "pt").metadata()["sd_merge_models"]
    )
    assert again[sha["abc"]]["sd_merge_recipe"]["interp_method"] == "Add difference"
    assert {sha["abc"], sha["a"], sha["b"], sha["c"]} == set(again)


def test_vae_bake_in_replaces_as_weights_and_a_vae_that_does_not_fit_is_refused(data):
    a = _sd1(0)
    _install(data, "a", a)
    _install(data, "b", _sd1(1))
    vae = {
        "decoder.conv_in.weight": torch.full((8, 4, 3, 3), 2.0),
        "encoder.down.0.block.0.conv1.weight": torch.full((8, 8, 3, 3), 3.0),
        "loss.logvar": torch.zeros(()),  # A1111 drops loss.* keys of a VAE file
    }
    save_file(vae, str(data / "models" / "VAE" / "fine.safetensors"))
    path, out, _ = merge(data, vae="fine", fp16=True)
    assert out[VAE_CONV].dtype == torch.float16 and bool((out[VAE_CONV] == 2.0).all())
    assert json.loads(safe_open(str(path), "pt").metadata()["sd_merge_recipe"])["bake_in_vae"] == "fine"
    save_file(
        {"encoder.down.0.block.0.conv1.weight": torch.zeros(8, 16, 3, 3)},
        str(data / "models" / "VAE" / "wide.safetensors"),
    )
    with pytest.raises(InvalidRequest, match=r"vae: wide.safetensors does not fit A \(a\)"):
        merge(data, vae="wide", name="out2")


def test_an_existing_file_is_never_overwritten(data):
    _install(data, "a", _sd1(0))
    _install(data, "b", _sd1(1))
    taken = _install(data, "out", _sd1(5))
    before = taken.read_bytes()
    with pytest.raises(InvalidRequest, match="out.safetensors already exists; a merge never overwrites"):
        merge(data)
    with pytest.raises(InvalidRequest, match="'A' is an installed model"):
        merge(data, name="A")
    assert taken.read_bytes() == before
    temp = taken.with_name(".late.tmp")  # a file that appears while merging is not replaced either
    temp.write_bytes(b"merged")
    with pytest.raises(FileExistsError):
        place_without_overwrite(temp, taken)
    assert taken.read_bytes() == before and not temp.exists()


def test_sd1_with_sdxl_is_refused_naming_both(data):
    _install(data, "a", _sd1(0))
    xl = {UNET_IN: torch.zeros(8, 4, 3, 3), "conditioner.embedders.1.model.ln_final.weight": torch.zeros(4)}
    _install(data, "xl", xl)
    with pytest.raises(InvalidRequest, match=r"A \(a\) is SD 1.x but B \(xl\) is SDXL"):
        merge(data, secondary="xl")
    small = _sd1(1)
    small[UNET_OUT] = torch.zeros(4, 16, 3, 3)
    _install(data, "other", small)
    with pytest.raises(
        InvalidRequest, match="model.diffusion_model.out.2.weight is .* not the same architecture"
    ):
        merge(data, secondary="other")
    assert not (data / "models" / "Stable-diffusion" / "out.safetensors").exists()


def test_hostile_inputs_are_refused_by_the_gate(data):
    import pickle

    _install(data, "a", _sd1(0))
    folder = data / "models" / "Stable-diffusion"
    (folder / "evil.safetensors").write_bytes(pickle.dumps({"x": 1}))
    whole = _install(data, "cut", _sd1(1)).read_bytes()
    (folder / "cut.safetensors").write_bytes(whole[: len(whole) // 2])
    for name in ("evil", "cut"):
        with pytest.raises(ModelRefused, match=f"'{name}' cannot be used"):
            merge(data, secondary=name)
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith((".out", "out"))]
    assert leftovers == []


def test_bad_options_name_the_option(data):
    _install(data, "a", _sd1(0))
    _install(data, "b", _sd1(1))
    for given, message in (
        ({"mode": "average"}, "mode: 'average' is not one of"),
        ({"multiplier": 1.5}, "multiplier: 1.5 is not a number from 0 to 1"),
        ({"mode": "add-difference"}, "c: add-difference needs a third model C"),
        ({"name": "../escape"}, "name: '../escape' is not allowed"),
        ({"discard": "(unclosed"}, "discard: '\\(unclosed' is not a regular expression"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            merge(data, **given)
