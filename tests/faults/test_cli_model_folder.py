"""The model folder as a hostile user fills it (issue 18, item 9): pickles renamed `.safetensors` in every
model folder, a truncated file, headers that lie, links out of the folders. `salon models` lists them as
refused with their reasons and exits 0; a prompt or option naming one gets that reason, never a crash."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest

import cli.output
from cli.main import main
from config import load_settings
from core.errors import ModelRefused
from engine.models.registry import ModelKind, ModelRegistry

FOLDERS = {
    "checkpoint": "models/Stable-diffusion",
    "lora": "models/Lora",
    "vae": "models/VAE",
    "hypernetwork": "models/hypernetworks",
    "embedding": "embeddings",
}


def safetensors_bytes(
    tensors: dict[str, tuple[str, list[int], bytes]], header_extra: dict | None = None
) -> bytes:
    """A safetensors file from (dtype, shape, data) per tensor; `header_extra` overrides header entries."""
    header: dict = {}
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header.update(header_extra or {})
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def good_lora() -> bytes:
    down = struct.pack("<4f", 1, 0, 0, 1)
    return safetensors_bytes({"lora_unet_x.lora_down.weight": ("F32", [2, 2], down)})


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder with a pickle renamed .safetensors in every model folder, broken and lying safetensors,
    a link out of the folders and one inside them, and a good LoRA; returns (config file, data folder)."""
    data = tmp_path / "data"
    evil = pickle.dumps({"state_dict": {"weight": [1.0] * 64}}, protocol=4)
    for kind, folder in FOLDERS.items():
        (data / folder).mkdir(parents=True)
        (data / folder / f"evil{kind}.safetensors").write_bytes(evil)
    lora = data / "models/Lora"
    (lora / "good.safetensors").write_bytes(good_lora())
    (lora / "truncated.safetensors").write_bytes(good_lora()[:-6])
    liar = {"lora_unet_x.lora_down.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 1 << 40]}}
    (lora / "liar.safetensors").write_bytes(safetensors_bytes({}, liar))
    (lora / "hugeheader.safetensors").write_bytes(struct.pack("<Q", 1 << 62) + b"{}" + b"\0" * 64)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "target.safetensors").write_bytes(good_lora())
    os.symlink(elsewhere / "target.safetensors", lora / "outside.safetensors")
    (lora / "styles").mkdir()
    (lora / "styles" / "inner.safetensors").write_bytes(good_lora())
    os.symlink(lora / "styles" / "inner.safetensors", lora / "alias.safetensors")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{data}"\n')
    return config, data


def _models(config: Path, capsys, monkeypatch) -> tuple[int, str, dict[str, str]]:
    """`salon models`: exit status, the table, and the refused files by name with their reasons."""
    monkeypatch.setattr(cli.output.console, "_width", 400)  # whole names in the table
    code = main(["--config", str(config), "models"])
    out, err = capsys.readouterr()
    refused = {}
    for line in err.splitlines():
        assert line.startswith("not loaded "), line
        path, _, reason = line.removeprefix("not loaded ").partition(": ")
        refused[Path(path).name] = reason
    return code, out, refused


def test_salon_models_lists_every_hostile_file_as_refused_with_its_reason(hostile, capsys, monkeypatch):
    """Item 9: pickles renamed .safetensors, truncated and lying files are refused by header, never hashed."""
    config, data = hostile
    code, table, refused = _models(config, capsys, monkeypatch)
    assert code == 0
    for kind in FOLDERS:
        assert "not safetensors: header length" in refused.pop(f"evil{kind}.safetensors")
        assert f"evil{kind}" not in table
    assert "outside the" in refused.pop("truncated.safetensors")  # its offsets reach past the data
    assert "data_offsets [0, 1099511627776] outside" in refused.pop("liar.safetensors")
    assert "header length 4611686018427387904 outside" in refused.pop("hugeheader.safetensors")
    assert "outside the model folders" in refused.pop("outside.safetensors")
    assert refused == {}
    rows = {line.split("│")[2].strip() for line in table.splitlines() if line.count("│") > 3}
    assert {"good", "inner", "alias", "salon-demo-shapes"} <= rows
    hashed = json.loads((data / "cache" / "hashes.json").read_text())
    assert not [key for key in hashed if "evil" in key or "liar" in key or "huge" in key]


def test_a_refused_file_named_in_a_prompt_or_option_is_refused_with_its_reason(hostile, capsys):
    """Item 9: <lora:evillora:1> and --model evilcheckpoint name the file and why, not "internal error"."""
    config, _ = hostile
    prompt = "a red circle <lora:evillora:1>"
    args = ["--config", str(config), "imagine", prompt, "--steps", "1", "--seed", "1", "--size", "64x64"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert (
        "lora: 'evillora' cannot be used:" in err
        and "evillora.safetensors is refused (not safetensors" in err
    )
    assert "internal error" not in err
    assert main(["--config", str(config), "imagine", "a red circle", "--model", "evilcheckpoint"]) == 2
    err = capsys.readouterr().err
    assert "model: 'evilcheckpoint' cannot be used:" in err and "not safetensors: header length" in err
    registry = ModelRegistry.from_settings(load_settings(config))
    with pytest.raises(ModelRefused, match="hypernetwork: 'evilhypernetwork' cannot be used"):
        registry.find_fresh(ModelKind.HYPERNETWORK, "evilhypernetwork")


def test_links_out_of_the_model_folders_are_refused_unless_the_owner_allows_them(
    hostile, tmp_path, tiny_sd1_dir, capsys, monkeypatch
):
    """Item 9: a linked file or diffusers folder outside the model folders is refused; the setting allows it."""
    config, data = hostile
    os.symlink(tiny_sd1_dir, data / "models/Stable-diffusion/linked-folder")
    _, table, refused = _models(config, capsys, monkeypatch)
    assert "outside the model folders" in refused["outside.safetensors"]
    assert "set [models] allow_links_outside = true" in refused["linked-folder"]
    assert "outside" not in table and "linked-folder" not in table
    config.write_text(config.read_text() + "[models]\nallow_links_outside = true\n")
    code, table, refused = _models(config, capsys, monkeypatch)
    assert code == 0 and "outside.safetensors" not in refused and "linked-folder" not in refused
    assert "outside" in table and "linked-folder" in table and "alias" in table
