"""A1111 hypernetworks (`<hypernet:name:strength>`) on the tiny model: file format, formula, application."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import InvalidRequest, ModelNotFound, UnsafeModelFile
from engine.infotext import parse_infotext
from engine.prompts.hypernetwork import HypernetworkOptions, new_hypernetwork
from engine.prompts.hypernetwork_attention import applied_hypernetworks
from engine.prompts.hypernetwork_files import read_hypernetwork, save_hypernetwork
from engine.requests import RunControl
from engine.tasks.batching import batch_key
from tests.engine.helpers import mean_difference, pixels, request

CONTEXT = 64  # the demo model's text width (its cross-attention context)
SELF_WIDTH = 96  # the width of its self-attention layers
A1111_KEYS = {
    "layer_structure",
    "activation_func",
    "is_layer_norm",
    "weight_initialization",
    "use_dropout",
    "activate_output",
    "last_layer_dropout",
    "dropout_structure",
    "optional_info",
    "name",
    "step",
    "sd_checkpoint",
    "sd_checkpoint_name",
}


class NotWeights:
    """A custom class: torch.load(weights_only=True) must refuse a file holding one."""


def mlp(width: int, hidden: int, indices: tuple[int, int], seed: int, scale: float = 0.2) -> dict:
    """An A1111 state dict of two Linear layers at the given Sequential indices."""
    g = torch.Generator().manual_seed(seed)
    first, second = indices
    return {
        f"linear.{first}.weight": torch.randn(hidden, width, generator=g) * scale,
        f"linear.{first}.bias": torch.randn(hidden, generator=g) * scale,
        f"linear.{second}.weight": torch.randn(width, hidden, generator=g) * scale,
        f"linear.{second}.bias": torch.randn(width, generator=g) * scale,
    }


def module_state(width: int, seed: int, scale: float) -> dict:
    """A state dict as A1111 saves it: `module.state_dict()` (an OrderedDict with metadata) of its Sequential."""
    hidden = width * 2
    linear = torch.nn.Sequential(
        torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(hidden, width)
    )
    linear.load_state_dict(
        {k.removeprefix("linear."): v for k, v in mlp(width, hidden, (0, 3), seed, scale).items()}
    )
    holder = torch.nn.Module()
    holder.linear = linear
    return holder.state_dict()


def a1111_file(width: int, seed: int, scale: float = 0.2) -> dict:
    """What an older A1111 saves: relu, dropout from use_dropout/last_layer_dropout → Linear, ReLU, Dropout, Linear."""
    return {
        width: (module_state(width, seed, scale), module_state(width, seed + 1, scale)),
        "step": 120,
        "name": "shapes_hn",
        "layer_structure": [1, 2, 1],
        "activation_func": "relu",
        "is_layer_norm": False,
        "weight_initialization": "Normal",
        "use_dropout": True,
        "activate_output": False,
        "last_layer_dropout": True,
        "sd_checkpoint": "0123456789",
        "sd_checkpoint_name": "salon-demo-shapes",
    }


def self_attention_file() -> dict:
    """A linear hypernetwork for width 96 (the self-attention layers) with A1111's layer structure 1, 1.5, 1."""
    pair = (mlp(SELF_WIDTH, 144, (0, 1), 7), mlp(SELF_WIDTH, 144, (0, 1), 8))
    return {SELF_WIDTH: pair, "layer_structure": [1, 1.5, 1], "activation_func": "linear"}


@pytest.fixture(scope="module")
def hypernets(engine, settings):
    folder = settings.hypernetworks_dir
    files = {
        "shapes_hn.pt": a1111_file(CONTEXT, 1),
        "self_hn.pt": self_attention_file(),
        "zero_hn.pt": a1111_file(CONTEXT, 3, scale=0.0),
        "evil_hn.pt": {**a1111_file(CONTEXT, 5), "extra": NotWeights()},
    }
    for name, data in files.items():
        torch.save(data, folder / name)
    engine.registry.refresh()
    yield folder
    for name in files:
        (folder / name).unlink()
    engine.registry.refresh()


def processors_untouched(engine) -> bool:
    """Every UNet attention layer has its default processor again and no hooks are left."""
    unet = engine.load(None).unet
    kinds = {type(p).__name__ for p in unet.attn_processors.values()}
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in unet.modules())
    return kinds == {"AttnProcessor2_0"} and hooks == 0


def test_a1111_file_changes_the_image_and_strength_zero_does_not(engine, hypernets):
    base = engine.txt2img(request("a red circle")).images[0]
    styled = engine.txt2img(request("a red circle <hypernet:shapes_hn:1>")).images[0]
    zero = engine.txt2img(request("a red circle <hypernet:shapes_hn:0>")).images[0]
    assert mean_difference(base.image, styled.image) > 1
    assert np.array_equal(pixels(base.image), pixels(zero.image))
    after = engine.txt2img(request("a red circle")).images[0]
    assert np.array_equal(pixels(base.image), pixels(after.image))
    assert processors_untouched(engine)


def test_zero_weights_change_nothing(engine, hypernets):
    """context + 0 → the wrapping processor computes exactly what the default one does."""
    base = engine.txt2img(request("a blue square")).images[0]
    zero = engine.txt2img(request("a blue square <hypernet:zero_hn:1>")).images[0]
    assert np.array_equal(pixels(base.image), pixels(zero.image))


def test_strength_scales_the_effect(engine, hypernets):
    full = engine.txt2img(request("a red circle <hypernet:shapes_hn:1>")).images[0]
    half = engine.txt2img(request("a red circle <hypernet:shapes_hn:0.5>")).images[0]
    assert mean_difference(full.image, half.image) > 0.5
    module = read_hypernetwork(hypernets / "shapes_hn.pt").layers[CONTEXT][0]
    x = torch.randn(2, 77, CONTEXT)
    with torch.no_grad():
        assert torch.allclose(module(x, 0.5) - x, 0.5 * (module(x, 1.0) - x), atol=1e-6)


def test_module_is_a1111s_sequential_and_formula(hypernets):
    """Linear(0), ReLU(1), Dropout(2), Linear(3); forward = x + linear(x) * multiplier (eval: no dropout)."""
    hypernetwork = read_hypernetwork(hypernets / "shapes_hn.pt")
    module = hypernetwork.layers[CONTEXT][0]
    kinds = [type(layer).__name__ for layer in module.linear]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear"]
    assert hypernetwork.name == "shapes_hn" and hypernetwork.step == 120
    assert hypernetwork.options.dropout_structure == (0.0, 0.3, 0.0)
    sd = mlp(CONTEXT, CONTEXT * 2, (0, 3), 1)
    x = torch.randn(3, 77, CONTEXT)
    hidden = F.relu(x @ sd["linear.0.weight"].T + sd["linear.0.bias"])
    expected = x + (hidden @ sd["linear.3.weight"].T + sd["linear.3.bias"]) * 0.8
    with torch.no_grad():
        assert torch.allclose(module(x, 0.8), expected, atol=1e-5)


def test_keys_and_values_see_their_own_contexts_in_sequence(engine, hypernets):
    """attn2: to_k(hk2(hk1(c))) and to_v(hv2(hv1(c))), each step c + mlp(c) * strength (A1111)."""
    first = read_hypernetwork(hypernets / "shapes_hn.pt")
    second = new_hypernetwork("second", [CONTEXT], activation="tanh", weight_init="XavierNormal")
    unet = engine.load(None).unet
    attn = unet.mid_block.attentions[0].transformer_blocks[0].attn2
    hidden, context = torch.randn(2, 16, attn.to_q.in_features), torch.randn(2, 77, CONTEXT)
    with torch.no_grad():
        (k1, v1), (k2, v2) = first.layers[CONTEXT], second.layers[CONTEXT]
        context_k = context + k1.linear(context) * 0.7
        context_k = context_k + k2.linear(context_k) * 1.5
        context_v = context + v1.linear(context) * 0.7
        context_v = context_v + v2.linear(context_v) * 1.5
        expected = manual_attention(attn, hidden, context_k, context_v)
        with applied_hypernetworks(unet, [(first, 0.7), (second, 1.5)]) as installed:
            got = attn(hidden, encoder_hidden_states=context)
    assert installed == 7  # the demo UNet's seven cross-attention layers; its self-attention is 96 wide
    assert torch.allclose(got, expected, atol=1e-5)
    assert processors_untouched(engine)


def manual_attention(attn, hidden, context_k, context_v) -> torch.Tensor:
    """Multi-head attention written out: query from the image, key and value from their contexts."""

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], -1, attn.heads, t.shape[-1] // attn.heads).transpose(1, 2)

    q, k, v = heads(attn.to_q(hidden)), heads(attn.to_k(context_k)), heads(attn.to_v(context_v))
    out = (
        F.scaled_dot_product_attention(q, k, v)
        .transpose(1, 2)
        .reshape(hidden.shape[0], -1, q.shape[1] * q.shape[3])
    )
    return attn.to_out[0](out)


def test_self_attention_widths_apply_too_and_several_chain(engine, hypernets):
    """A1111 patches every CrossAttention, so a 96-wide hypernetwork acts on the 96-wide self-attention."""
    base = engine.txt2img(request("a red circle")).images[0]
    own = engine.txt2img(request("a red circle <hypernet:self_hn:1>")).images[0]
    both = engine.txt2img(request("a red circle <hypernet:shapes_hn:1> <hypernet:self_hn:1>")).images[0]
    assert mean_difference(base.image, own.image) > 1
    assert mean_difference(own.image, both.image) > 1
    with applied_hypernetworks(
        engine.load(None).unet, [(read_hypernetwork(hypernets / "self_hn.pt"), 1)]
    ) as n:
        assert n == 7
    assert processors_untouched(engine)


def test_batched_requests_match_their_solo_images(engine, hypernets):
    prompts = ["a red circle <hypernet:shapes_hn:0.8>", "a blue square <hypernet:shapes_hn:0.8>"]
    requests = [request(p, seed=s) for p, s in zip(prompts, (3, 4), strict=True)]
    assert batch_key(requests[0]) == batch_key(requests[1])
    together = engine.txt2img_many(requests, [RunControl(), RunControl()])
    for req, result in zip(requests, together, strict=True):
        alone = engine.txt2img(req).images[0]
        assert np.array_equal(pixels(alone.image), pixels(result.images[0].image))


def test_different_hypernetworks_are_not_batched_together():
    keys = {batch_key(request(f"a red circle {tag}")) for tag in ("", "<hypernet:a:1>", "<hypernet:b:1>")}
    assert len(keys) == 3
    assert batch_key(request("x <hypernet:a:1>")) != batch_key(request("x <hypernet:a:0.5>"))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_and_load_round_trip(tmp_path, suffix):
    made = new_hypernetwork(
        "trained",
        [CONTEXT, 320],
        layer_structure=(1, 2, 2, 1),
        activation="leakyrelu",
        layer_norm=True,
        weight_init="KaimingUniform",
        use_dropout=True,
        dropout_structure=(0, 0.05, 0.15, 0),
        generator=torch.Generator().manual_seed(0),
    )
    path = save_hypernetwork(tmp_path / f"trained{suffix}", made, 250, "salon-demo-shapes", "abcdef0123")
    loaded = read_hypernetwork(path)
    assert loaded.options == made.options and loaded.name == "trained" and loaded.step == 250
    assert (loaded.sd_checkpoint, loaded.sd_checkpoint_name) == ("abcdef0123", "salon-demo-shapes")
    assert sorted(loaded.layers) == [CONTEXT, 320]
    for size, pair in made.layers.items():
        for mine, theirs in zip(pair, loaded.layers[size], strict=True):
            assert all(torch.equal(a, b) for a, b in zip(mine.parameters(), theirs.parameters(), strict=True))


def test_saved_pt_is_the_dictionary_a1111_writes(tmp_path):
    made = new_hypernetwork(
        "mine", [CONTEXT], activation="relu", use_dropout=True, dropout_structure=(0, 0.3, 0)
    )
    path = save_hypernetwork(tmp_path / "mine.pt", made, 7, "model", "0123456789")
    data = torch.load(path, weights_only=True)  # plain containers and tensors only
    assert set(data) == A1111_KEYS | {CONTEXT}
    keys_mlp, values_mlp = data[CONTEXT]
    assert list(keys_mlp) == ["linear.0.weight", "linear.0.bias", "linear.3.weight", "linear.3.bias"]
    assert set(values_mlp) == set(keys_mlp)
    assert data["layer_structure"] == [1, 2, 1] and data["activation_func"] == "relu"
    assert data["last_layer_dropout"] is True and data["use_dropout"] is True
    assert (data["step"], data["name"], data["sd_checkpoint"]) == (7, "mine", "0123456789")


def test_new_hypernetwork_initialisations():
    g = torch.Generator().manual_seed(1)
    normal = new_hypernetwork("n", [320], layer_norm=True, generator=g).layers[320][0].linear
    assert abs(float(normal[0].weight.std()) - 0.01) < 0.001 and not normal[0].bias.any()
    assert abs(float(normal[1].weight.std()) - 0.01) < 0.002  # A1111 inits LayerNorm weights N(0, 0.01) too
    xavier = new_hypernetwork("x", [320], weight_init="XavierUniform", generator=g).layers[320][1].linear
    assert float(xavier[0].weight.std()) > 0.03 and not xavier[0].bias.any()
    with pytest.raises(InvalidRequest, match="weight_init"):
        new_hypernetwork("bad", [320], weight_init="Uniform")
    with pytest.raises(InvalidRequest, match="start and end with 1"):
        new_hypernetwork("bad", [320], layer_structure=(2, 1))


def test_old_layer_names_and_defaults_load(tmp_path):
    """The first A1111 files: only {width: [k, v]} with linear1/linear2 → two Linear layers, no activation."""
    pair = [
        {
            k.replace("linear.0", "linear1").replace("linear.1", "linear2"): v
            for k, v in mlp(32, 64, (0, 1), s).items()
        }
        for s in (1, 2)
    ]
    torch.save({32: pair}, tmp_path / "old.pt")
    loaded = read_hypernetwork(tmp_path / "old.pt")
    assert loaded.name == "old" and loaded.options == HypernetworkOptions(activate_output=True)
    assert [type(m).__name__ for m in loaded.layers[32][1].linear] == ["Linear", "Linear"]


def test_unsafe_and_malformed_files_are_refused(engine, hypernets, tmp_path):
    with pytest.raises(UnsafeModelFile, match="weights_only"):
        engine.txt2img(request("a red circle <hypernet:evil_hn:1>"))
    wrong = a1111_file(CONTEXT, 1)
    wrong["activation_func"] = "linear"  # then the file's linear.3 is not where this architecture has it
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(UnsafeModelFile, match="do not fit"):
        read_hypernetwork(tmp_path / "wrong.pt")
    torch.save({"layer_structure": [1, 2, 1]}, tmp_path / "empty.pt")
    with pytest.raises(UnsafeModelFile, match="no layer entries"):
        read_hypernetwork(tmp_path / "empty.pt")


def test_names_are_checked(engine, hypernets):
    for tag in ("<hypernet:../shapes_hn:1>", "<hypernet:sub/shapes_hn:1>", "<hypernet:..\\x:1>"):
        with pytest.raises(InvalidRequest, match="hypernet: name .* is not allowed"):
            engine.txt2img(request(f"a red circle {tag}"))
    with pytest.raises(ModelNotFound, match="no hypernetwork named 'nope'"):
        engine.txt2img(request("a red circle <hypernet:nope:1>"))


def test_infotext_records_what_a1111_records(engine, hypernets):
    """A1111 1.x keeps the tag in the prompt and writes no hypernetwork keys (no "Hypernet", no hashes)."""
    result = engine.txt2img(request("a red circle <hypernet:shapes_hn:0.6>", negative_prompt="blurry"))
    info = parse_infotext(result.images[0].infotext)
    assert info.prompt == "a red circle <hypernet:shapes_hn:0.6>"
    assert info.negative_prompt == "blurry"
    assert not any(key.startswith("Hypernet") for key in info.params)
