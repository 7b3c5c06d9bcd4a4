"""LoRA (kohya format) and textual inversion embeddings (A1111 formats) on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.errors import InvalidRequest, ModelNotFound
from engine.infotext import parse_infotext
from engine.models.registry import sha256_file
from engine.prompts.lora import kohya_key
from engine.prompts.prompt_syntax import extract_extra_networks
from tests.engine.helpers import mean_difference, pixels, request


def write_kohya_lora(path, unet, text_encoder, rank: int = 4, seed: int = 0) -> None:
    """A LoRA for every attention projection, named as kohya's sd-scripts names them (text_model.* for CLIP)."""
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}

    def add(prefix: str, module_path: str, module: torch.nn.Linear) -> None:
        key = kohya_key(prefix, module_path)
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.5
        tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.5
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))

    # A model that already carries LoRAs (peft wraps each Linear as base_layer + lora_A/lora_B) is named
    # by its original layers.
    for name, module in unet.named_modules():
        if (
            isinstance(module, torch.nn.Linear)
            and (".attn1." in name or ".attn2." in name)
            and ".lora_" not in name
        ):
            add("lora_unet_", name.removesuffix(".base_layer"), module)
    for name, module in text_encoder.named_modules():
        if isinstance(module, torch.nn.Linear) and ".self_attn." in name and ".lora_" not in name:
            add(
                "lora_te_",
                "text_model." + name.removeprefix("text_model.").removesuffix(".base_layer"),
                module,
            )
    save_file(tensors, str(path), metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(rank)})


@pytest.fixture(scope="module")
def lora_file(engine, settings):
    model = engine.load(None)
    path = settings.lora_dir / "shapes_style.safetensors"
    write_kohya_lora(path, model.unet, model.pipe.text_encoder)
    engine.registry.refresh()
    yield path
    path.unlink()
    engine.registry.refresh()


def test_lora_changes_the_output_and_is_recorded(engine, lora_file):
    base = engine.txt2img(request("a red circle")).images[0]
    styled = engine.txt2img(request("a red circle <lora:shapes_style:1>")).images[0]
    assert mean_difference(base.image, styled.image) > 1
    info = parse_infotext(styled.infotext)
    assert info.prompt == "a red circle <lora:shapes_style:1>"
    # A1111 LoRA hash: sha256 of the tensor data after the safetensors header, 12 hex digits.
    with open(lora_file, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    assert info.params["Lora hashes"] == f"shapes_style: {sha256_file(lora_file, skip_bytes=8 + header)[:12]}"


def test_lora_weight_zero_and_removal_leave_the_model_untouched(engine, lora_file):
    base = engine.txt2img(request("a red circle")).images[0]
    zero = engine.txt2img(request("a red circle <lora:shapes_style:0>")).images[0]
    assert np.array_equal(pixels(base.image), pixels(zero.image))
    assert "Lora hashes" not in parse_infotext(zero.infotext).params
    engine.txt2img(request("a red circle <lora:shapes_style:1>"))
    after = engine.txt2img(request("a red circle")).images[0]
    assert np.array_equal(pixels(base.image), pixels(after.image))


def test_lora_weight_scales_the_weight_delta(engine, lora_file):
    """<lora:name:w> adds w times the LoRA's delta to every wrapped layer (checked on one attention projection)."""
    engine.txt2img(request("a red circle <lora:shapes_style:1>"))  # loads the adapter
    unet = engine.load(None).unet
    layer = next(
        m for name, m in unet.named_modules() if name.endswith("attn2.to_q") and hasattr(m, "base_layer")
    )
    x = torch.randn(1, 4, layer.in_features, generator=torch.Generator().manual_seed(0))

    def delta(weight: float) -> torch.Tensor:
        engine._loras.activate(
            [engine._lora_uses(extract_extra_networks(f"<lora:shapes_style:{weight}>")[1])[0]]
        )
        with torch.no_grad():
            return layer(x) - layer.base_layer(x)

    full, part = delta(1.0), delta(0.3)
    assert full.abs().mean() > 1e-3
    assert torch.allclose(part, 0.3 * full, atol=1e-5)
    engine._loras.activate([])


def test_unknown_and_traversing_lora_names_are_refused(engine, lora_file):
    with pytest.raises(ModelNotFound, match="lora: no lora named 'nope'; installed: shapes_style"):
        engine.txt2img(request("a cat <lora:nope:1>"))
    with pytest.raises(InvalidRequest, match="lora: name '../x' is not allowed"):
        engine.txt2img(request("a cat <lora:../x:1>"))
    with pytest.raises(InvalidRequest, match="hypernet"):
        engine.txt2img(request("a cat <hypernet:anything:1>"))


def _a1111_embedding(vectors: torch.Tensor) -> dict:
    return {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": torch.nn.Parameter(vectors)},
        "name": "ignored",
        "step": 100,
        "sd_checkpoint": "2802fc20",
        "sd_checkpoint_name": "tiny",
    }


@pytest.fixture(scope="module")
def embedding_files(engine, settings):
    width = engine.load(None).pipe.text_encoder.config.hidden_size
    generator = torch.Generator().manual_seed(1)
    pt_path = settings.embeddings_path / "glowy.pt"
    torch.save(_a1111_embedding(torch.randn(2, width, generator=generator) * 3), pt_path)
    st_path = settings.embeddings_path / "zigzag-style.safetensors"
    save_file({"emb_params": torch.randn(3, width, generator=generator) * 3}, str(st_path))
    wrong = settings.embeddings_path / "wide.safetensors"
    save_file({"emb_params": torch.randn(1, width + 1, generator=generator)}, str(wrong))
    engine.registry.refresh()
    yield pt_path, st_path
    for path in (pt_path, st_path, wrong):
        path.unlink()
    engine.registry.refresh()


@pytest.mark.parametrize(("word", "file_index"), [("glowy", 0), ("zigzag-style", 1)])
def test_embedding_is_used_by_its_file_name(engine, embedding_files, word, file_index):
    path = embedding_files[file_index]
    with_embedding = engine.txt2img(request(f"a red circle, {word}")).images[0]
    info = parse_infotext(with_embedding.infotext)
    assert info.params["TI hashes"] == f"{word}: {sha256_file(path)[:12]}"
    hidden = path.with_suffix(".disabled")
    path.rename(hidden)  # the same prompt, now read as plain words
    try:
        engine.registry.refresh()
        as_words = engine.txt2img(request(f"a red circle, {word}")).images[0]
    finally:
        hidden.rename(path)
        engine.registry.refresh()
    assert mean_difference(with_embedding.image, as_words.image) > 0.5
    assert "TI hashes" not in parse_infotext(as_words.infotext).params


def test_embedding_in_the_negative_prompt_and_wrong_width_skipped(engine, embedding_files):
    generated = engine.txt2img(request("a red circle", negative_prompt="glowy")).images[0]
    assert parse_infotext(generated.infotext).params["TI hashes"].startswith("glowy: ")
    engine.embeddings.for_encoders({"clip_l": engine.load(None).pipe.text_encoder.config.hidden_size})
    assert "wide" in engine.embeddings.skipped
