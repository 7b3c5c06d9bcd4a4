"""Model files: the T10 safetensors gate, checkpoint-kind detection and the diffusers ↔ A1111 round trip."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from safetensors.torch import save_file
from transformers import CLIPTextModel

from core.errors import InvalidRequest, UnsafeModelFile
from engine.models import model_files
from engine.models.ldm_conversion import diffusers_to_ldm, save_single_file
from engine.models.model_files import (
    CheckpointKind,
    check_safetensors,
    detect_checkpoint_kind,
    load_safetensors,
    load_torch_weights_only,
    load_weights,
    safetensors_metadata,
)
from tests.tiny_models import (
    build_tiny_sd1,
    build_tiny_sdxl,
    text_config,
)

# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


class _Canary:
    """Unpickling this creates `marker`: if the file ever appears, untrusted code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _write_canary(path: Path, marker: Path, how: str) -> Path:
    """Write a pickle canary as raw pickle bytes or as a torch.save zip archive."""
    if how == "pickle":
        path.write_bytes(pickle.dumps({"string_to_param": _Canary(marker)}))
    else:
        torch.save({"string_to_param": _Canary(marker)}, path)
    return path


def _raw_safetensors(
    path: Path, header: dict[str, Any] | bytes, data: bytes, length: int | None = None
) -> Path:
    """Write a hand-made safetensors file: u64 header length, header bytes, data (length overridable)."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return path


def _entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    """One header entry."""
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


VALID_HEADER = {"a": _entry("F32", [2], 0, 8), "b": _entry("U8", [3], 8, 11)}


def _write_tensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A small real safetensors file with zero tensors under the given names."""
    save_file({name: torch.zeros(shape) for name, shape in shapes.items()}, str(path))
    return path


def _assert_same_weights(original: torch.nn.Module, loaded: torch.nn.Module) -> None:
    """Every parameter and buffer of `original` is present, materialised and bit-identical in `loaded`."""
    want, got = original.state_dict(), loaded.state_dict()
    assert set(want) == set(got)
    for name, value in want.items():
        assert not got[name].is_meta, name
        assert torch.equal(value, got[name]), name


# ---------------------------------------------------------------------------------------------------------
# T10: the gate
# ---------------------------------------------------------------------------------------------------------


def test_canary_is_live(tmp_path: Path) -> None:
    """Control: plain pickle.loads of the canary creates the marker, so the refusals below mean something."""
    marker = tmp_path / "control-marker"
    pickle.loads(_write_canary(tmp_path / "c.pkl", marker, "pickle").read_bytes())["string_to_param"].close()
    assert marker.exists()


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
@pytest.mark.parametrize("name", ["x.safetensors", "x.SAFETENSORS", "x.SafeTensors"])
def test_pickle_renamed_safetensors_is_refused_by_content(tmp_path: Path, how: str, name: str) -> None:
    marker = tmp_path / "pwned"
    path = _write_canary(tmp_path / name, marker, how)
    for allow in (False, True):
        with pytest.raises(UnsafeModelFile) as err:
            load_weights(path, allow_legacy_pt=allow)
        assert err.value.path == path
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickle_canary_refused_by_weights_only(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = _write_canary(tmp_path / "emb.pt", marker, how)
    with pytest.raises(UnsafeModelFile, match="weights_only"):
        load_torch_weights_only(path)
    with pytest.raises(UnsafeModelFile, match="weights_only"):
        load_weights(path, allow_legacy_pt=True)
    assert not marker.exists()


def test_legacy_pt_needs_explicit_permission(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _write_canary(tmp_path / "emb.pt", marker, "torch.save")
    with pytest.raises(UnsafeModelFile, match=r"only \.safetensors"):
        load_weights(path)
    assert not marker.exists()


def test_legacy_pt_embedding_loads_with_weights_only(tmp_path: Path) -> None:
    vectors = torch.randn(2, 8)
    path = tmp_path / "style.pt"
    torch.save({"string_to_param": {"*": vectors}, "name": "style", "step": 100}, path)
    loaded = load_weights(path, allow_legacy_pt=True)
    assert isinstance(loaded, dict)
    assert torch.equal(loaded["string_to_param"]["*"], vectors)
    assert loaded["name"] == "style"


def test_legacy_pt_refused_on_torch_with_known_weights_only_bypasses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "style.pt"
    torch.save({"string_to_param": {"*": torch.zeros(1, 4)}}, path)
    monkeypatch.setattr(model_files, "_torch_version", lambda: (2, 5))
    with pytest.raises(UnsafeModelFile, match="torch >= 2.10"):
        load_torch_weights_only(path)


_DATA = bytes(11)

GATE_CASES: list[tuple[str, dict[str, Any] | bytes, bytes, int | None, str]] = [
    ("header-length-2**40", VALID_HEADER, _DATA, 2**40, "header length"),
    ("header-length-0", VALID_HEADER, _DATA, 0, "header length"),
    ("header-length-past-eof", VALID_HEADER, _DATA, 10_000, "exceeds the file size"),
    ("bad-json", b'{"a": {"dtype": "F32",', _DATA, None, "JSON"),
    ("not-utf8", b'{"\xff\xfe": 1}', _DATA, None, "JSON"),
    ("not-an-object", b"[1, 2, 3]", _DATA, None, "not a JSON object"),
    ("duplicate-key", b'{"a": 1, "a": 2}', b"", None, "JSON"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, b"", None, "JSON"),
    ("metadata-not-strings", {"__metadata__": {"step": 5}}, b"", None, "__metadata__"),
    ("entry-not-object", {"a": [1, 2]}, b"", None, "not an object"),
    ("unknown-dtype", {"a": _entry("PICKLE", [2], 0, 8)}, bytes(8), None, "unknown dtype"),
    ("negative-shape", {"a": _entry("F32", [-2], 0, 8)}, bytes(8), None, "non-negative"),
    ("bool-shape", {"a": _entry("F32", [True], 0, 4)}, bytes(4), None, "non-negative"),
    ("offsets-not-pair", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, bytes(8), None, "two"),
    (
        "offsets-past-end",
        {"a": _entry("F32", [2], 0, 8), "b": _entry("U8", [3], 8, 800)},
        _DATA,
        None,
        "outside",
    ),
    ("offsets-reversed", {"a": _entry("U8", [0], 8, 0)}, bytes(8), None, "outside"),
    ("wrong-size", {"a": _entry("F32", [3], 0, 8)}, bytes(8), None, "needs 12"),
    ("overlap", {"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 4, 12)}, bytes(12), None, "overlaps"),
    ("gap", {"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 12, 20)}, bytes(20), None, "gap"),
    ("trailing-bytes", VALID_HEADER, _DATA + b"extra", None, "tensors use 11"),
    ("truncated-data", VALID_HEADER, _DATA[:6], None, "outside"),
]


@pytest.mark.parametrize(
    ("header", "data", "length", "reason"),
    [case[1:] for case in GATE_CASES],
    ids=[case[0] for case in GATE_CASES],
)
def test_gate_refuses_malformed_files(
    tmp_path: Path, header: dict[str, Any] | bytes, data: bytes, length: int | None, reason: str
) -> None:
    path = _raw_safetensors(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(UnsafeModelFile, match=reason):
        check_safetensors(path)
    with pytest.raises(UnsafeModelFile):
        load_weights(path)


def test_gate_accepts_its_own_valid_case(tmp_path: Path) -> None:
    """The baseline the malformed cases deviate from passes, so each refusal is for its own reason."""
    path = _raw_safetensors(tmp_path / "ok.safetensors", VALID_HEADER, _DATA)
    assert check_safetensors(path) == VALID_HEADER
    loaded = load_weights(path)
    assert loaded["a"].tolist() == [0.0, 0.0] and loaded["b"].dtype == torch.uint8


def test_gate_refuses_short_files_and_non_files(tmp_path: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x02\x00\x00")
    with pytest.raises(UnsafeModelFile, match="too short"):
        check_safetensors(short)
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    with pytest.raises(UnsafeModelFile, match="regular file"):
        load_weights(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_gate_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeModelFile, match="regular file"):
        check_safetensors(fifo)


def test_valid_file_loads_equal_with_metadata(tmp_path: Path) -> None:
    tensors = {
        "w": torch.randn(3, 4),
        "half": torch.randn(5).to(torch.bfloat16),
        "ids": torch.arange(7, dtype=torch.int64),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
    }
    metadata = {"ss_network_dim": "16", "modelspec.title": "tiny ✓"}
    path = tmp_path / "lora.SAFETENSORS"
    save_file(tensors, str(path), metadata=metadata)
    loaded = load_weights(path)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert torch.equal(loaded[name], value), name
    assert safetensors_metadata(path) == metadata
    assert check_safetensors(path)["__metadata__"] == metadata
    assert set(load_safetensors(path)) == set(tensors)


def test_metadata_absent_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    assert safetensors_metadata(path) == {}


class _CountingReader:
    """A file wrapper that counts the bytes read through it."""

    def __init__(self, fh: io.BufferedReader, counter: list[int]) -> None:
        self.fh, self.counter = fh, counter

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.counter.append(len(data))
        return data

    def __enter__(self) -> _CountingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def test_gate_reads_only_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 64 * 1024 * 1024
    header = {"big": _entry("U8", [size], 0, size)}
    path = _raw_safetensors(tmp_path / "big.safetensors", header, b"")
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size + size)  # sparse: the data region costs no disk
    counts: list[int] = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: _CountingReader(real_open(self, *a, **k), counts))
    assert check_safetensors(path) == header
    assert sum(counts) == 8 + len(json.dumps(header).encode())


def test_every_truncation_of_a_valid_file_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "good.safetensors"
    save_file(
        {"a": torch.randn(3), "b": torch.arange(4, dtype=torch.int16)}, str(source), metadata={"k": "v"}
    )
    blob = source.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for length in range(len(blob)):
        cut.write_bytes(blob[:length])
        with pytest.raises(UnsafeModelFile):
            load_weights(cut)


def test_random_byte_flips_are_refused_or_load_as_safetensors(tmp_path: Path) -> None:
    """T10: whatever the bytes, the outcome is a typed refusal or a safetensors load, nothing else."""
    source = tmp_path / "good.safetensors"
    save_file({"a": torch.randn(3), "b": torch.arange(4, dtype=torch.int16)}, str(source))
    blob = bytearray(source.read_bytes())
    rng = random.Random(10)
    mutant = tmp_path / "mutant.safetensors"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(blob)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        mutant.write_bytes(bytes(data))
        try:
            assert isinstance(load_weights(mutant), dict)
            outcomes["loaded"] += 1
        except UnsafeModelFile:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0


# ---------------------------------------------------------------------------------------------------------
# diffusers → A1111 single file, loaded back by diffusers
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StableDiffusionPipeline, Path]:
    """Tiny SD1 folder, its pipeline and its saved A1111 single file."""
    root = tmp_path_factory.mktemp("sd1")
    folder = build_tiny_sd1(root / "tiny-sd1")
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    single = save_single_file(pipe, root / "tiny-sd1.safetensors", metadata={"modelspec.title": "tiny sd1"})
    return folder, pipe, single


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StableDiffusionXLPipeline, Path]:
    """Tiny SDXL folder, its pipeline and its saved A1111 single file."""
    root = tmp_path_factory.mktemp("sdxl")
    folder = build_tiny_sdxl(root / "tiny-sdxl")
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    single = save_single_file(pipe.components, root / "tiny-sdxl.safetensors")
    return folder, pipe, single


def test_sd1_single_file_has_a1111_names(sd1: tuple[Path, StableDiffusionPipeline, Path]) -> None:
    _, pipe, single = sd1
    header = check_safetensors(single)
    assert header["__metadata__"] == {"modelspec.title": "tiny sd1"}
    names = set(header) - {"__metadata__"}
    assert {name.split(".")[0] for name in names} == {"model", "first_stage_model", "cond_stage_model"}
    assert "model.diffusion_model.input_blocks.0.0.weight" in names
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in names
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in names
    assert header["first_stage_model.decoder.mid.attn_1.q.weight"]["shape"] == [32, 32, 1, 1]
    assert len(names) == sum(len(getattr(pipe, c).state_dict()) for c in ("unet", "vae", "text_encoder"))


def test_sd1_round_trip_through_diffusers_single_file(
    sd1: tuple[Path, StableDiffusionPipeline, Path],
) -> None:
    folder, pipe, single = sd1
    loaded = StableDiffusionPipeline.from_single_file(
        str(single),
        config=str(folder),
        local_files_only=True,
        tokenizer=pipe.tokenizer,
        safety_checker=None,
        requires_safety_checker=False,
    )
    for component in ("unet", "vae", "text_encoder"):
        _assert_same_weights(getattr(pipe, component), getattr(loaded, component))


def test_sdxl_round_trip_through_diffusers_single_file(
    sdxl: tuple[Path, StableDiffusionXLPipeline, Path],
) -> None:
    """Tiny SDXL round trip through diffusers' own detection (its text encoders differ in width)."""
    folder, pipe, single = sdxl
    loaded = StableDiffusionXLPipeline.from_single_file(
        str(single),
        config=str(folder),
        local_files_only=True,
        tokenizer=pipe.tokenizer,
        tokenizer_2=pipe.tokenizer_2,
    )
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        _assert_same_weights(getattr(pipe, component), getattr(loaded, component))


def test_sdxl_single_file_has_openclip_layout(sdxl: tuple[Path, StableDiffusionXLPipeline, Path]) -> None:
    _, pipe, single = sdxl
    header = check_safetensors(single)
    prefix = "conditioner.embedders.1.model."
    assert header[prefix + "transformer.resblocks.0.attn.in_proj_weight"]["shape"] == [144, 48]
    assert header[prefix + "transformer.resblocks.2.attn.in_proj_bias"]["shape"] == [144]
    assert prefix + "positional_embedding" in header and prefix + "token_embedding.weight" in header
    assert prefix + "ln_final.weight" in header and prefix + "text_projection" in header
    assert "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight" in header
    assert "model.diffusion_model.label_emb.0.0.weight" in header
    projection = load_safetensors(single)[prefix + "text_projection"]
    assert torch.equal(projection, pipe.text_encoder_2.text_projection.weight.T)


def test_sd15_block_layout_matches_the_original_numbering() -> None:
    """A UNet and VAE with SD 1.5's layout (4 blocks, 2 layers) get SD 1.5's key numbers and convert back."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=8,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=2,
        norm_num_groups=8,
    )
    state = diffusers_to_ldm(unet, vae, CLIPTextModel(text_config(8)))
    for name in (
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.input_blocks.8.1.proj_in.weight",
        "model.diffusion_model.input_blocks.11.0.out_layers.3.weight",
        "model.diffusion_model.middle_block.2.emb_layers.1.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "model.diffusion_model.output_blocks.11.0.skip_connection.weight",
        "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight",
        "first_stage_model.encoder.down.3.block.1.conv2.weight",
        "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
    ):
        assert name in state, name
    back_unet = convert_ldm_unet_checkpoint(state, dict(unet.config))
    back_vae = convert_ldm_vae_checkpoint(state, dict(vae.config))
    for module, back in ((unet, back_unet), (vae, back_vae)):
        want = module.state_dict()
        assert set(back) == set(want)
        assert all(torch.equal(back[k], v) for k, v in want.items())


def test_save_is_atomic_and_leaves_no_temp_files(
    sd1: tuple[Path, StableDiffusionPipeline, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pipe, _ = sd1
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")

    def failing_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_single_file(pipe, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    monkeypatch.undo()
    save_single_file(pipe, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert detect_checkpoint_kind(check_safetensors(target)) is CheckpointKind.SD1
    with pytest.raises(TypeError):
        save_single_file(pipe, target, metadata={"steps": 5})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------------------
# checkpoint kind
# ---------------------------------------------------------------------------------------------------------


def test_detects_saved_tiny_checkpoints(
    sd1: tuple[Path, StableDiffusionPipeline, Path], sdxl: tuple[Path, StableDiffusionXLPipeline, Path]
) -> None:
    assert detect_checkpoint_kind(check_safetensors(sd1[2])) is CheckpointKind.SD1
    assert detect_checkpoint_kind(check_safetensors(sdxl[2])) is CheckpointKind.SDXL
    assert CheckpointKind.SD1_INPAINT == "sd1-inpaint"


UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
CLIP_L = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SDXL_CLIP_L = "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight"
SDXL_OPENCLIP = "conditioner.embedders.1.model.positional_embedding"
VAE_IN = "first_stage_model.encoder.conv_in.weight"

ACCEPTED: list[tuple[str, dict[str, tuple[int, ...]], CheckpointKind]] = [
    ("sd1", {UNET_IN: (4, 4, 3, 3), CLIP_L: (6, 4), VAE_IN: (2, 3, 3, 3)}, CheckpointKind.SD1),
    (
        "sd1-inpaint",
        {UNET_IN: (4, 9, 3, 3), CLIP_L: (6, 4), VAE_IN: (2, 3, 3, 3)},
        CheckpointKind.SD1_INPAINT,
    ),
    ("sdxl", {UNET_IN: (4, 4, 3, 3), SDXL_CLIP_L: (7, 4), SDXL_OPENCLIP: (7, 8)}, CheckpointKind.SDXL),
    (
        "sdxl-inpaint",
        {UNET_IN: (4, 9, 3, 3), SDXL_CLIP_L: (7, 4), SDXL_OPENCLIP: (7, 8)},
        CheckpointKind.SDXL_INPAINT,
    ),
    (
        "sd2",
        {UNET_IN: (4, 4, 3, 3), "cond_stage_model.model.token_embedding.weight": (2, 1024)},
        CheckpointKind.SD2,
    ),
]


@pytest.mark.parametrize(("shapes", "kind"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_detects_hand_made_headers(
    tmp_path: Path, shapes: dict[str, tuple[int, ...]], kind: CheckpointKind
) -> None:
    path = _write_tensors(tmp_path / "ckpt.safetensors", shapes)
    assert detect_checkpoint_kind(check_safetensors(path)) is kind


REFUSED: list[tuple[str, dict[str, tuple[int, ...]], str]] = [
    (
        "sd2-depth",
        {UNET_IN: (4, 5, 3, 3), "cond_stage_model.model.token_embedding.weight": (2, 1024)},
        "2 depth model",
    ),
    (
        "sdxl-refiner",
        {UNET_IN: (4, 4, 3, 3), "conditioner.embedders.0.model.text_projection": (4, 4)},
        "refiner",
    ),
    (
        "lora",
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 8), "lora_te_x.alpha": ()},
        "LoRA",
    ),
    ("kohya-diffusers-lora", {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": (4, 8)}, "LoRA"),
    (
        "sd3",
        {"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (4,)},
        "Diffusion 3",
    ),
    ("flux", {"double_blocks.0.img_attn.norm.key_norm.scale": (4,)}, "Flux"),
    ("pix2pix", {UNET_IN: (4, 8, 3, 3), CLIP_L: (6, 4)}, "8 input channels"),
    (
        "vae-only",
        {"encoder.conv_in.weight": (2, 3, 3, 3), "decoder.conv_out.weight": (3, 2, 3, 3)},
        "models/VAE",
    ),
    ("unknown", {"foo.weight": (2,)}, "unknown checkpoint layout"),
    ("empty", {}, "unknown checkpoint layout"),
]


@pytest.mark.parametrize(("shapes", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refuses_unsupported_checkpoints(
    tmp_path: Path, shapes: dict[str, tuple[int, ...]], reason: str
) -> None:
    path = _write_tensors(tmp_path / "ckpt.safetensors", shapes)
    with pytest.raises(InvalidRequest, match=reason) as err:
        detect_checkpoint_kind(check_safetensors(path))
    assert err.value.option == "model"
    assert "SD 1.x, SD 2.x and SDXL" in err.value.message


def test_detects_from_a_loaded_state_dict_too(tmp_path: Path) -> None:
    path = _write_tensors(tmp_path / "ckpt.safetensors", {UNET_IN: (4, 9, 3, 3), CLIP_L: (6, 4)})
    assert detect_checkpoint_kind(load_safetensors(path)) is CheckpointKind.SD1_INPAINT
