"""The fast path (speed modes max/balanced) on the CPU: buckets, padding, eager fallbacks, no recompiles.

CUDA graphs need a GPU; here the compiled path uses dynamo with the "eager" backend, which traces the UNet
and the VAE decoder into graphs exactly as on a GPU (same guards, same recompile rules) but runs them with
PyTorch's own kernels, so these tests take seconds. Images of "max" match "off" within float tolerance
(channels-last memory changes the order of additions in the convolutions).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from config import load_settings
from engine.demo import DEMO_MODEL_NAME
from engine.requests import RunControl
from engine.runner import Engine
from engine.speed.fast_path import Buckets, pad_rows, resolve_mode
from tests.engine.helpers import pixels, request
from tests.engine.test_hypernetwork import CONTEXT, a1111_file
from tests.engine.test_lora_embeddings import write_kohya_lora


def graphs() -> int:
    """Graphs dynamo has compiled in this process so far (a recompile adds one)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def fast_settings(data_dir, **speed):
    options = {"mode": "max", "compiler": "eager", "batches": [1, 2, 4], **speed}
    return load_settings(None, data_dir=data_dir, default_model=DEMO_MODEL_NAME, speed=options)


@pytest.fixture(scope="module")
def fast_engine(data_dir):
    engine = Engine(fast_settings(data_dir))
    assert engine.warm_up() > 0
    return engine


def max_difference(a, b) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


def same_images(fast, plain) -> None:
    assert len(fast.images) == len(plain.images)
    for mine, theirs in zip(fast.images, plain.images, strict=True):
        assert mine.seed == theirs.seed and mine.infotext == theirs.infotext
        assert max_difference(mine.image, theirs.image) <= 2
        assert np.abs(pixels(mine.image) - pixels(theirs.image)).mean() < 0.05


# ----- buckets and padding (pure) -------------------------------------------------------------------------
def test_bucket_choice():
    buckets = Buckets(frozenset({(512, 512), (768, 512)}), (1, 2, 4, 8, 16))
    assert [buckets.batch_for(n) for n in (1, 2, 3, 5, 16, 17)] == [1, 2, 4, 8, 16, None]
    # UNet rows: two per image with CFG; an unguided batch of 3 (3 rows) fits the 2-image graph (4 rows).
    assert [buckets.rows_for(n) for n in (1, 2, 3, 6, 32, 33)] == [2, 2, 4, 8, 32, None]
    assert buckets.holds(768, 512) and not buckets.holds(512, 768)


def test_buckets_from_settings_default_to_the_native_size(data_dir):
    speed = fast_settings(data_dir).speed
    assert Buckets.from_settings(speed, (64, 64)).sizes == {(64, 64)}
    speed = fast_settings(data_dir, sizes=["512x768", "1024x1024"], batches=[8, 1, 2, 2]).speed
    buckets = Buckets.from_settings(speed, (512, 512))
    assert buckets.sizes == {(512, 768), (1024, 1024)} and buckets.batches == (1, 2, 8)


def test_bad_sizes_name_the_option(data_dir):
    with pytest.raises(ValueError, match=r"speed\.sizes.*WIDTHxHEIGHT"):
        fast_settings(data_dir, sizes=["big"])
    with pytest.raises(ValueError, match=r"speed\.sizes.*multiples of 8"):
        fast_settings(data_dir, sizes=["500x500"])
    with pytest.raises(ValueError, match=r"speed\.batches"):
        fast_settings(data_dir, batches=[0])


def test_pad_rows_repeats_the_last_row_and_the_cut_gives_the_input_back():
    x = torch.arange(6.0).reshape(3, 2)
    padded = pad_rows(x, 4)
    assert padded.tolist() == [[0, 1], [2, 3], [4, 5], [4, 5]]
    assert torch.equal(padded[:3], x)
    assert pad_rows(x, 2) is x


def test_auto_mode_compiles_only_on_cuda():
    assert resolve_mode("auto", torch.device("cuda")) == "max"
    assert resolve_mode("auto", torch.device("cpu")) == "off"
    assert resolve_mode("balanced", torch.device("cpu")) == "balanced"


# ----- max against off ------------------------------------------------------------------------------------
def test_max_gives_the_images_of_off_through_compiled_padded_graphs(fast_engine, engine):
    fast = fast_engine.load(None).fast
    before, compiled = graphs(), fast.calls["unet compiled"]
    result = fast_engine.txt2img(request("a small red circle on the left, blue background", batch_size=3))
    assert fast.calls["unet compiled"] - compiled == 3  # 3 images padded to the 4-image graph, every step
    assert graphs() == before  # warmed up: the job compiled nothing
    same_images(
        result, engine.txt2img(request("a small red circle on the left, blue background", batch_size=3))
    )


def test_guidance_off_and_long_prompts_use_the_same_graphs(fast_engine, engine):
    fast = fast_engine.load(None).fast
    long_prompt = "a large green star at the top, " * 12 + "yellow background"  # two 75-token chunks
    before, compiled = graphs(), fast.calls["unet compiled"]
    unguided = fast_engine.txt2img(request("a blue square", cfg_scale=1.0))
    long = fast_engine.txt2img(request(long_prompt))
    assert fast.calls["unet compiled"] - compiled == 6 and graphs() == before
    same_images(unguided, engine.txt2img(request("a blue square", cfg_scale=1.0)))
    same_images(long, engine.txt2img(request(long_prompt)))


def test_batched_requests_match_their_solo_runs(fast_engine):
    prompts = ["a red circle", "a yellow star on a purple background", "a small blue square"]
    solo = [fast_engine.txt2img(request(p, seed=20 + i)) for i, p in enumerate(prompts)]
    together = fast_engine.txt2img_many(
        [request(p, seed=20 + i) for i, p in enumerate(prompts)], [RunControl() for _ in prompts]
    )
    for alone, batched in zip(solo, together, strict=True):
        same_images(batched, alone)


def test_odd_sizes_and_oversized_batches_run_eagerly(fast_engine, engine):
    fast = fast_engine.load(None).fast
    before = graphs()
    eager = fast.calls["unet eager"]
    odd = fast_engine.txt2img(request("a red circle", width=64, height=72))
    assert fast.calls["unet eager"] - eager == 3
    big = fast_engine.txt2img(request("a red circle", batch_size=5))  # larger than the largest bucket (4)
    assert fast.calls["unet eager"] - eager == 6
    assert graphs() == before
    same_images(odd, engine.txt2img(request("a red circle", width=64, height=72)))
    same_images(big, engine.txt2img(request("a red circle", batch_size=5)))


def test_shapes_not_warmed_up_run_eagerly(data_dir, engine):
    cold = Engine(fast_settings(data_dir))  # never warmed up: nothing may compile on a job
    fast = cold.load(None).fast
    before = graphs()
    result = cold.txt2img(request("a green triangle"))
    assert fast.calls["unet compiled"] == 0 and fast.calls["unet eager"] == 3 and graphs() == before
    same_images(result, engine.txt2img(request("a green triangle")))


def test_balanced_compiles_nothing_and_matches_off(data_dir, engine):
    balanced = Engine(fast_settings(data_dir, mode="balanced"))
    assert balanced.warm_up() == 0.0
    before = graphs()
    result = balanced.txt2img(request("a purple circle", batch_size=2))
    assert balanced.load(None).fast.calls["unet compiled"] == 0 and graphs() == before
    same_images(result, engine.txt2img(request("a purple circle", batch_size=2)))


def test_img2img_takes_the_fast_path(fast_engine, engine):
    from engine.requests import Img2ImgRequest

    start = engine.txt2img(request("a red square")).images[0].image
    fast = fast_engine.load(None).fast
    compiled = fast.calls["unet compiled"]

    def img2img(e):
        return e.img2img(Img2ImgRequest(params=request("a blue circle", steps=4), image=start))

    result = img2img(fast_engine)
    assert fast.calls["unet compiled"] > compiled
    same_images(result, img2img(engine))


# ----- things that change the model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fast_lora(fast_engine, engine):
    model = engine.load(None)
    path = fast_engine.settings.lora_dir / "fast_style.safetensors"
    write_kohya_lora(path, model.unet, model.pipe.text_encoder, seed=3)
    for e in (engine, fast_engine):
        e.registry.refresh()
    yield path
    path.unlink()
    for e in (engine, fast_engine):
        e.registry.refresh()


def test_loras_are_merged_without_recompiling(fast_engine, engine, fast_lora):
    fast = fast_engine.load(None).fast
    weights = {name: p.detach().clone() for name, p in fast_engine.load(None).unet.named_parameters()}
    before, compiled = graphs(), fast.calls["unet compiled"]
    base = fast_engine.txt2img(request("a red circle")).images[0].image
    for weight in ("1", "0.5", "1"):
        prompt = f"a red circle <lora:fast_style:{weight}>"
        styled = fast_engine.txt2img(request(prompt))
        assert max_difference(styled.images[0].image, base) > 10  # the LoRA is applied …
        same_images(styled, engine.txt2img(request(prompt)))  # … as peft applies it in mode off
    again = fast_engine.txt2img(request("a red circle")).images[0].image
    assert graphs() == before and fast.calls["unet compiled"] - compiled == 15  # never recompiled
    assert np.array_equal(pixels(again), pixels(base))  # the original weights came back exactly
    unet = fast_engine.load(None).unet
    assert all(torch.equal(p, weights[name]) for name, p in unet.named_parameters())
    encoder = fast_engine.load(None).pipe.text_encoder
    assert not any(".lora_" in name for part in (unet, encoder) for name, _ in part.named_modules())


def test_a_bad_lora_leaves_the_weights_untouched(fast_engine, fast_lora):
    from core.errors import InvalidRequest

    bad = fast_lora.with_name("not_a_lora.safetensors")
    save_file({"weight": torch.zeros(2)}, str(bad))
    fast_engine.registry.refresh()
    try:
        base = fast_engine.txt2img(request("a red circle")).images[0].image
        with pytest.raises(InvalidRequest, match="not a LoRA"):
            fast_engine.txt2img(request("a red circle <lora:fast_style:1> <lora:not_a_lora:1>"))
        after = fast_engine.txt2img(request("a red circle")).images[0].image
        assert np.array_equal(pixels(after), pixels(base))
    finally:
        bad.unlink()
        fast_engine.registry.refresh()


def test_hypernetworks_and_tiling_run_eagerly_without_recompiling(fast_engine, engine):
    folder = fast_engine.settings.hypernetworks_dir
    torch.save(a1111_file(CONTEXT, 1), folder / "fast_hn.pt")
    for e in (engine, fast_engine):
        e.registry.refresh()
    try:
        fast = fast_engine.load(None).fast
        before, compiled = graphs(), fast.calls["unet compiled"]
        prompt = "a red circle <hypernet:fast_hn:1>"
        same_images(fast_engine.txt2img(request(prompt)), engine.txt2img(request(prompt)))
        same_images(
            fast_engine.txt2img(request("a red circle", tiling=True)),
            engine.txt2img(request("a red circle", tiling=True)),
        )
        assert fast.calls["unet compiled"] == compiled and graphs() == before
        fast_engine.txt2img(request("a red circle"))  # and the compiled graphs serve the next request
        assert fast.calls["unet compiled"] == compiled + 3 and graphs() == before
    finally:
        (folder / "fast_hn.pt").unlink()
        for e in (engine, fast_engine):
            e.registry.refresh()


def test_switching_models_keeps_up_to_max_models_loaded(data_dir):
    engine = Engine(fast_settings(data_dir, mode="balanced", max_models=2))
    demo, tiny = engine.load(None), engine.load("tiny")
    assert engine.load(None) is demo and engine.load("tiny") is tiny  # both kept: no reload
    one = Engine(fast_settings(data_dir, mode="balanced", max_models=1))
    first = one.load(None)
    one.load("tiny")
    assert one.load(None) is not first  # only one kept: loaded again


def test_a_shape_that_fails_to_compile_runs_eagerly(data_dir, engine, caplog):
    from torch._dynamo import register_backend

    @register_backend(name="salon_broken_for_tests")
    def broken(graph, example_inputs):
        raise RuntimeError("no registers left")

    failing = Engine(fast_settings(data_dir, compiler="salon_broken_for_tests", batches=[1]))
    with caplog.at_level("WARNING"):
        failing.warm_up()
    assert "compiling UNet 64x64 batch 1 (77 tokens) failed, it runs eagerly" in caplog.text
    assert "154 tokens" not in caplog.text  # the function is broken: its other shapes are not tried
    fast = failing.load(None).fast
    same_images(failing.txt2img(request("a red circle")), engine.txt2img(request("a red circle")))
    assert fast.calls["unet compiled"] == 0 and fast.calls["unet eager"] == 3


def test_an_unknown_compiler_is_named(data_dir):
    with pytest.raises(
        ValueError, match=r"speed\.compiler: 'no_such_backend' is not a torch\.compile backend"
    ):
        Engine(fast_settings(data_dir, compiler="no_such_backend")).load(None)


def test_only_a_lack_of_memory_is_blamed_on_the_shape():
    from engine.speed.fast_path import _out_of_memory

    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except torch.OutOfMemoryError as oom:
            raise RuntimeError("backend compiler failed") from oom
    except RuntimeError as wrapped:
        assert _out_of_memory(wrapped)
    assert not _out_of_memory(RuntimeError("no registers left"))
