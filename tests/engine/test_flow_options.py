"""SD 3.5 / Flux request options on tiny random-weight models: Flux dev's distilled guidance and the schedule's
shift (Forge's `Distilled CFG Scale` and `Shift`), from every front end into the image and its infotext and back
(`--from-png`), stored jobs old and new, refusals by name; X/Y/Z cells of these families checked when the plot is
queued; training refused on them; `warm_up` in speed mode "max"; batched requests in one pipeline call."""

from __future__ import annotations

import dataclasses

import pytest

from config import load_settings
from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.models.flow_files import FlowKind
from engine.requests import GenerationRequest, HiresFix
from engine.runner import Engine
from engine.tasks.flow_rules import check_flow_options
from engine.validation import check_request
from tests.engine.helpers import mean_difference, request

FLOW = dict(sampler="Euler", schedule="Simple", width=32, height=32, steps=2, cfg_scale=1.0)


def flow_request(model: str, **overrides) -> GenerationRequest:
    return request(model=model, **{**FLOW, **overrides})


def test_distilled_guidance_changes_flux_dev_and_is_written_and_read_back(flow_engine):
    from commands.followups import from_infotext

    default = flow_engine.txt2img(flow_request("tiny-flux", seed=4)).images[0]
    same = flow_engine.txt2img(flow_request("tiny-flux", seed=4, distilled_cfg_scale=3.5)).images[0]
    strong = flow_engine.txt2img(flow_request("tiny-flux", seed=4, distilled_cfg_scale=9.0)).images[0]
    assert mean_difference(default.image, same.image) == 0  # 3.5 is Flux dev's own
    assert mean_difference(default.image, strong.image) > 0.5
    assert parse_infotext(strong.infotext).params["Distilled CFG Scale"] == "9"
    again, notes = from_infotext(strong.infotext, {"tiny-flux"}, set(), set())
    assert again.distilled_cfg_scale == 9.0 and again.shift is None and not notes
    repeated = flow_engine.txt2img(again).images[0]
    assert mean_difference(repeated.image, strong.image) == 0 and repeated.infotext == strong.infotext


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux"])
def test_a_shift_changes_the_schedule_is_written_and_the_model_s_own_comes_back(flow_engine, model):
    from commands.followups import from_infotext

    plain = flow_engine.txt2img(flow_request(model, seed=5, steps=3)).images[0]
    shifted = flow_engine.txt2img(flow_request(model, seed=5, steps=3, shift=6.0)).images[0]
    after = flow_engine.txt2img(flow_request(model, seed=5, steps=3)).images[0]
    assert mean_difference(plain.image, shifted.image) > 0.2
    assert mean_difference(plain.image, after.image) == 0  # the model's own scheduler is back
    assert parse_infotext(shifted.infotext).params["Shift"] == "6"
    assert "Shift" not in parse_infotext(plain.infotext).params
    again = from_infotext(shifted.infotext, {model}, set(), set())[0]
    assert again.shift == 6.0
    assert mean_difference(flow_engine.txt2img(again).images[0].image, shifted.image) == 0


def test_an_infotext_of_a_model_not_installed_leaves_them_out_with_a_note():
    from commands.followups import from_infotext

    text = "a cat\nSteps: 20, Sampler: Euler, Distilled CFG Scale: 3.5, Shift: 3, Model: flux-dev, Seed: 1"
    again, notes = from_infotext(text, {"other"}, set(), set())
    assert again.distilled_cfg_scale is None and again.shift is None
    assert any("Distilled CFG Scale is left out" in n for n in notes)


def test_they_are_refused_by_name_where_the_model_has_no_use_for_them():
    with pytest.raises(InvalidRequest, match="SD 3.5 and Flux models only; base is SD 1.x / SDXL") as error:
        check_flow_options(flow_request("base", shift=3.0), None, "base")
    assert error.value.option == "shift"
    with pytest.raises(InvalidRequest) as error:
        check_flow_options(flow_request("base", distilled_cfg_scale=3.0), None, "base")
    assert error.value.option == "distilled_cfg_scale"
    for kind in (FlowKind("flux", "schnell"), FlowKind("sd3", "large")):
        with pytest.raises(InvalidRequest, match=f"Flux dev models only; {kind.label} has no distilled"):
            check_flow_options(flow_request("m", distilled_cfg_scale=3.0), kind)
        check_flow_options(flow_request("m", shift=3.0), kind)  # every flow model takes a shift


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("distilled_cfg_scale", 31.0, "allowed 0 to 30"), ("shift", 0.0, "allowed 0.1 to 100")],
)
def test_bounds_name_the_option(field, value, message):
    from engine.tasks.samplers import BUILTIN_SAMPLERS

    settings = load_settings(None)
    with pytest.raises(InvalidRequest, match=message) as error:
        check_request(
            flow_request("m", width=64, height=64, **{field: value}), settings.limits, BUILTIN_SAMPLERS
        )
    assert error.value.option == field


def test_stored_jobs_keep_them_and_old_ones_still_decode(tmp_path):
    from jobs.codec import request_from_json, request_to_json

    asked = flow_request("m", seed=1, distilled_cfg_scale=2.5, shift=3.0)
    kind, data = request_to_json(asked, tmp_path)
    assert request_from_json(kind, data, tmp_path) == asked
    old = {k: v for k, v in data["params"].items() if k not in ("distilled_cfg_scale", "shift")}
    decoded = request_from_json(kind, {"params": old}, tmp_path)
    assert decoded.distilled_cfg_scale is None and decoded.shift is None


def test_the_cli_options_reach_the_request(flow_root):
    from cli.generate import _generation_request
    from cli.parser import build_parser

    settings = load_settings(None, data_dir=flow_root)
    args = build_parser().parse_args(
        ["imagine", "a cat", "--model", "tiny-flux", "--distilled-cfg", "4.5", "--shift", "3"]
    )
    made = _generation_request(args, settings, None)
    assert (made.distilled_cfg_scale, made.shift, made.sampler) == (4.5, 3.0, "Euler")


def test_the_api_fields_and_forge_s_default():
    from api.schemas import Txt2ImgBody
    from api.translate import generation_options

    settings = load_settings(None)
    forge = generation_options(Txt2ImgBody(prompt="a", distilled_cfg_scale=3.5), settings, {})
    assert forge.distilled_cfg_scale is None and forge.shift is None  # Forge sends 3.5 for every model
    asked = generation_options(Txt2ImgBody(prompt="a", distilled_cfg_scale=5, shift=2.5), settings, {})
    assert (asked.distilled_cfg_scale, asked.shift) == (5, 2.5)


def test_xyz_axes_and_flow_cells_checked_when_the_plot_is_queued(flow_root):
    from commands.xyz import axis_kind, build_plot, parse_axis
    from jobs.plots import PlotTask

    assert axis_kind("x", "distilled cfg scale").label == "Distilled CFG Scale"
    settings = load_settings(None, data_dir=flow_root)
    base = flow_request("tiny-flux", seed=1, width=64, height=64)
    plot = build_plot(
        base, parse_axis("x", "Distilled CFG Scale=2,5"), parse_axis("y", "Shift=1,3"), parse_axis("z", None)
    )
    params = PlotTask().check(plot, settings)
    assert len(params["cells"]) == 4 and {c["params"]["shift"] for c in params["cells"]} == {1.0, 3.0}
    hires = build_plot(
        dataclasses.replace(base, hires=HiresFix(scale=2.0)),
        parse_axis("x", "Seed=1,2"),
        parse_axis("y", None),
        parse_axis("z", None),
    )
    with pytest.raises(InvalidRequest, match="hires is not supported on Flux dev"):
        PlotTask().check(hires, settings)
    schnell = build_plot(
        flow_request("tiny-schnell", seed=1, width=64, height=64),
        parse_axis("x", "Distilled CFG Scale=2,5"),
        parse_axis("y", None),
        parse_axis("z", None),
    )
    with pytest.raises(InvalidRequest, match="Flux schnell has no distilled guidance"):
        PlotTask().check(schnell, settings)


@pytest.mark.parametrize("trainer", ["lora", "embedding", "hypernetwork", "dreambooth"])
def test_training_on_a_flow_model_is_refused_by_name_before_it_is_queued(flow_root, trainer):
    from jobs.training import TrainTask

    settings = load_settings(None, data_dir=flow_root)
    params = {"trainer": trainer, "name": "mine", "model": "tiny-flux", "images": []}
    with pytest.raises(InvalidRequest, match=f"{trainer} training is not supported on Flux dev") as error:
        TrainTask().check(params, settings)
    assert error.value.option == "model"
    with pytest.raises(InvalidRequest, match="SD 3.5 large"):
        TrainTask().check({**params, "model": "tiny-sd3"}, settings)


def test_warm_up_in_speed_mode_max_compiles_a_flow_model_s_transformer(flow_root):
    speed = {"mode": "max", "compiler": "eager", "sizes": ["64x64"], "batches": [1]}
    engine = Engine(load_settings(None, data_dir=flow_root, speed=speed))
    said: list[str] = []
    assert engine.warm_up(["tiny-sd3"], said.append) > 0  # more in tests/engine/test_flow_fast.py
    assert [line.split(" (")[0] for line in said] == ["warm-up 1/1: transformer 64x64 batch 1"]
    made = engine.txt2img(flow_request("tiny-sd3", seed=2)).images[0]
    assert made.image.size == (32, 32)


def test_batched_requests_run_in_one_pipeline_call_with_each_seed_s_pixels(flow_engine, monkeypatch):
    from engine.requests import RunControl

    model = "tiny-flux"
    asked = [
        flow_request(model, prompt="a red cat", seed=11, batch_size=2),
        flow_request(model, prompt="a blue dog", seed=20),
    ]
    alone = [flow_engine.txt2img(r).images for r in asked]
    pipe = flow_engine.load(model).pipe
    calls = []
    real = type(pipe).__call__

    def counted(self, *args, **kwargs):
        calls.append(kwargs["prompt"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", counted)
    steps: list[list[tuple[int, int]]] = [[], []]
    controls = [RunControl(on_step=lambda e, n=n: steps[n].append((e.step, e.image_index))) for n in (0, 1)]
    together = flow_engine.txt2img_many(asked, controls)
    assert calls == [["a red cat", "a red cat", "a blue dog"]]
    assert [[i.seed for i in r.images] for r in together] == [[11, 12], [20]]
    for batched, solo in zip(together, alone, strict=True):
        for image, own in zip(batched.images, solo, strict=True):
            assert mean_difference(image.image, own.image) < 1.0
            assert image.infotext == own.infotext
    assert steps == [[(1, 0), (2, 0)], [(1, 0), (2, 0)]]


async def test_the_queue_refuses_them_on_an_sd1_model_before_the_job_is_written(settings, tmp_path):
    from tests.queues import open_queue

    own = load_settings(None, data_dir=tmp_path, models_dir=settings.models_path)
    queue = await open_queue(own)
    try:
        for field in ("distilled_cfg_scale", "shift"):
            asked = GenerationRequest("a cat", model="tiny", width=64, height=64, **{field: 3.0})
            with pytest.raises(InvalidRequest, match="SD 3.5 and Flux models only; tiny is SD 1.x") as error:
                await queue.submit(asked, "alice")
            assert error.value.option == field
    finally:
        await queue.close()


def test_a_shared_call_s_previews_are_each_request_s_own_images(flow_engine):
    from engine.requests import RunControl

    asked = [flow_request("tiny-sd3", seed=1, batch_size=2), flow_request("tiny-sd3", seed=7)]
    seen: list[list] = [[], []]

    def watcher(n):
        return RunControl(
            on_step=lambda e: seen[n].append([e.preview(i).getpixel((3, 3)) for i in range(2 - n)])
        )

    flow_engine.txt2img_many(asked, [watcher(0), watcher(1)])
    # the last step's preview: request 0's images are the call's images 0 and 1, request 1's is image 2
    assert seen[0][-1][0] != seen[1][-1][0] and seen[0][-1][1] != seen[0][-1][0]
