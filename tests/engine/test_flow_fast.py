"""SD 3.5 and Flux in speed mode "max" (engine.speed.flow_compile) on tiny random-weight models, on the CPU.

As in test_fast_path, the compiler is dynamo with the "eager" backend: the transformer is traced into graphs
with the same guards and recompile rules as on a GPU, run with PyTorch's own kernels, so this takes seconds.
"""

from __future__ import annotations

import logging

import pytest
import torch

from config import load_settings
from engine.runner import Engine
from engine.speed.flow_compile import call_key
from tests.engine.flow_builders import save_lora
from tests.engine.helpers import mean_difference, request

FLOW = dict(sampler="Euler", schedule="Simple", width=64, height=64, steps=2)
MODELS = {"tiny-sd3": {"cfg_scale": 4.0}, "tiny-flux": {"cfg_scale": 1.0}}  # each family's default guidance


def graphs() -> int:
    """Graphs dynamo has compiled in this process so far (a recompile adds one)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def settings(root, **speed):
    options = {"mode": "max", "compiler": "eager", "sizes": ["64x64"], "batches": [1], **speed}
    return load_settings(None, data_dir=root, default_model="tiny-sd3", speed=options)


@pytest.fixture(scope="module")
def fast_engine(flow_root):
    engine = Engine(settings(flow_root, warmup_models=list(MODELS), max_models=2))
    notes: list[str] = []
    assert engine.warm_up(report=notes.append) > 0
    assert [n.split(" (")[0] for n in notes] == ["warm-up 1/1: transformer 64x64 batch 1"] * 2
    return engine


@pytest.fixture(scope="module")
def plain_engine(flow_root):
    return Engine(load_settings(None, data_dir=flow_root, default_model="tiny-sd3", speed={"mode": "off"}))


def flow_request(model: str, **overrides):
    return request(model=model, seed=7, **{**FLOW, **MODELS[model], **overrides})


@pytest.mark.parametrize("model", list(MODELS))
def test_a_warmed_shape_runs_compiled_and_gives_the_eager_image(fast_engine, plain_engine, model, caplog):
    fast = fast_engine.load(model).fast
    assert fast is not None and len(fast.warm_keys) == 1
    before, compiled = graphs(), fast.calls["transformer compiled"]
    with caplog.at_level(logging.WARNING, logger="engine.speed.flow_compile"):
        mine = fast_engine.txt2img(flow_request(model)).images[0]
    theirs = plain_engine.txt2img(flow_request(model)).images[0]
    assert fast.calls["transformer compiled"] == compiled + 2  # both steps through the compiled graph
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert graphs() == before and not warnings  # no recompile, no fallback
    assert mine.infotext == theirs.infotext
    assert mean_difference(mine.image, theirs.image) < 0.01


@pytest.mark.parametrize("model", list(MODELS))
def test_a_weighted_prompt_runs_through_the_warm_graph(fast_engine, plain_engine, model):
    """Emphasis changes the text states' values, not their shapes: the compiled graph serves it."""
    fast = fast_engine.load(model).fast
    before, compiled = graphs(), fast.calls["transformer compiled"]
    mine = fast_engine.txt2img(flow_request(model, prompt="a (red:1.5) [circle]")).images[0]
    theirs = plain_engine.txt2img(flow_request(model, prompt="a (red:1.5) [circle]")).images[0]
    assert fast.calls["transformer compiled"] == compiled + 2 and graphs() == before
    assert mean_difference(mine.image, theirs.image) < 0.01


@pytest.mark.parametrize("model", list(MODELS))
def test_other_sizes_and_batches_run_eagerly_without_compiling(fast_engine, plain_engine, model):
    fast = fast_engine.load(model).fast
    before, eager = graphs(), fast.calls["transformer eager"]
    mine = fast_engine.txt2img(flow_request(model, width=80)).images[0]
    theirs = plain_engine.txt2img(flow_request(model, width=80)).images[0]
    assert mean_difference(mine.image, theirs.image) < 0.01
    fast_engine.txt2img(flow_request(model, batch_size=2))
    assert fast.calls["transformer eager"] == eager + 4 and graphs() == before


def test_a_lora_runs_eagerly_while_it_is_loaded(fast_engine, flow_root):
    folder = flow_root / "models" / "Stable-diffusion" / "tiny-flux"
    lora = save_lora(folder, flow_root / "models" / "Lora" / "flux-fast.safetensors", seed=1)
    fast = fast_engine.load("tiny-flux").fast
    before, eager, compiled = graphs(), fast.calls["transformer eager"], fast.calls["transformer compiled"]
    fast_engine.txt2img(flow_request("tiny-flux", prompt=f"a cat <lora:{lora.stem}:1>"))
    assert fast.calls["transformer eager"] == eager + 2 and graphs() == before
    fast_engine.txt2img(flow_request("tiny-flux"))  # unloaded after the job: compiled again, no recompile
    assert fast.calls["transformer compiled"] == compiled + 2 and graphs() == before


def test_a_compile_failure_runs_eagerly_with_a_note(flow_root, plain_engine, caplog):
    from torch._dynamo import register_backend

    @register_backend(name="salon_broken_flow_for_tests")
    def broken(graph, example_inputs):
        raise RuntimeError("this backend always fails")

    engine = Engine(settings(flow_root, compiler="salon_broken_flow_for_tests"))
    with caplog.at_level(logging.WARNING, logger="engine.speed.flow_compile"):
        engine.warm_up(["tiny-sd3"])
    assert "runs eagerly" in caplog.text and "salon_broken_flow_for_tests" in caplog.text
    fast = engine.load("tiny-sd3").fast
    assert not fast.warm_keys
    mine = engine.txt2img(flow_request("tiny-sd3")).images[0]
    theirs = plain_engine.txt2img(flow_request("tiny-sd3")).images[0]
    assert mean_difference(mine.image, theirs.image) < 0.01


def test_an_unknown_compiler_is_named(flow_root):
    with pytest.raises(
        ValueError, match=r"speed\.compiler: 'no_such_backend' is not a torch\.compile backend"
    ):
        Engine(settings(flow_root, compiler="no_such_backend")).load("tiny-flux")


def test_balanced_compiles_nothing_for_flow_models(flow_root):
    engine = Engine(settings(flow_root, mode="balanced"))
    assert engine.warm_up(["tiny-sd3"]) == 0.0 and engine.load("tiny-sd3").fast is None


def test_call_keys_take_shapes_and_plain_values_only():
    x = torch.zeros(2, 16, 8)
    key = call_key((), {"hidden_states": x, "return_dict": False, "joint_attention_kwargs": {}})
    assert key == call_key(
        (), {"hidden_states": torch.ones(2, 16, 8), "return_dict": False, "joint_attention_kwargs": {}}
    )
    assert key != call_key(
        (), {"hidden_states": torch.zeros(1, 16, 8), "return_dict": False, "joint_attention_kwargs": {}}
    )
    assert call_key((x,), {}) is None
    assert call_key((), {"joint_attention_kwargs": {"scale": 0.5}}) is None
