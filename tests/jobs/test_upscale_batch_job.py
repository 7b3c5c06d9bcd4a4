"""The `upscale` job kind's batch (jobs/upscaling.py) run slice by slice: a slice that must yield leaves its
state after the picture it finished, the next resumes at the one after it, and the results are every
picture's, named after its source; the checks at submit (stems made unique, the batch's bounds, a picture
too large for the plan) name the option and the picture."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PIL import Image

from config import load_settings
from core.errors import InvalidRequest
from engine.models.registry import ModelRegistry
from engine.requests import RunControl
from jobs.codec import store_image
from jobs.long import SliceControl
from jobs.records import JobKind, JobRecord, JobStatus
from jobs.upscaling import MAX_BATCH_IMAGES, UpscaleTask, inputs_folder, unique_stems
from tests.tiny_upscalers import save_upscaler, tiny_esrgan


def _batch(settings, sizes, stems):
    images = [Image.new("RGB", size, (40 * i, 90, 160)) for i, size in enumerate(sizes)]
    folder = inputs_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    items = [
        {"image": store_image(im, folder), "parameters": None, "stem": s}
        for im, s in zip(images, stems, strict=True)
    ]
    return {"upscaler": "2x-tiny", "scale": 2, "images": items}


def test_a_batch_runs_in_slices_and_resumes_after_the_last_picture_done(tmp_path):
    settings = load_settings(None, data_dir=tmp_path / "data")
    save_upscaler(tiny_esrgan(2), settings.models_path / "ESRGAN" / "2x-Tiny.safetensors")
    task = UpscaleTask()
    params = task.check(_batch(settings, [(16, 16), (20, 12), (8, 8)], ["a", "b", "A"]), settings)
    assert [item["stem"] for item in params["images"]] == ["a", "b", "A-1"] and params[
        "upscaler"
    ] == "2x-Tiny"
    job = _record(7, params)
    running = SimpleNamespace(settings=settings, registry=ModelRegistry.from_settings(settings), device="cpu")
    workdir = settings.data_dir / "jobs" / "work" / "7"
    yielding = SliceControl(RunControl(), deadline=0.0, others_waiting=lambda: True)

    first = task.run_slice(lambda: running, job, None, workdir, yielding)
    assert not first.done and first.state["done"] == 1 and first.progress == pytest.approx(1 / 3)
    second = task.run_slice(lambda: running, job, first.state, workdir, yielding)
    assert second.state["done"] == 2
    last = task.run_slice(
        lambda: running, job, second.state, workdir, SliceControl(RunControl(), deadline=1e18)
    )
    assert last.done and [p.rsplit("/", 1)[-1] for p in last.results] == [
        "00007-a.png",
        "00007-b.png",
        "00007-A-1.png",
    ]
    with Image.open(last.results[1]) as result:
        assert result.size == (40, 24)


def test_the_batch_checks_name_the_option_and_the_picture(tmp_path):
    settings = load_settings(None, data_dir=tmp_path / "data")
    save_upscaler(tiny_esrgan(2), settings.models_path / "ESRGAN" / "2x-Tiny.safetensors")
    task = UpscaleTask()
    with pytest.raises(InvalidRequest, match=r"^images: a batch needs a list"):
        task.check({"upscaler": "2x-Tiny", "images": []}, settings)
    many = _batch(settings, [(8, 8)] * (MAX_BATCH_IMAGES + 1), ["x"] * (MAX_BATCH_IMAGES + 1))
    with pytest.raises(InvalidRequest, match=rf"^images: {MAX_BATCH_IMAGES + 1} pictures; at most"):
        task.check(many, settings)
    wide = _batch(settings, [(16, 16), (2000, 8)], ["fine", "wide"])
    with pytest.raises(InvalidRequest, match=r"^to: wide: 2000x8 scaled to cover"):
        task.check({**wide, "to": [4096, 4096]}, settings)
    with pytest.raises(InvalidRequest, match=r"^images\[1\]: the input image is not stored"):
        task.check({**wide, "images": [wide["images"][0], {"image": "0" * 64 + ".png"}]}, settings)
    assert unique_stems(["a b", "a_b", "A_B"]) == ["a_b", "a_b-1", "A_B-2"]


def _record(job_id: int, params: dict) -> JobRecord:
    return JobRecord(
        job_id, JobKind.UPSCALE, "ann", None, None, params, JobStatus.RUNNING, "", 0.0, 0.0, None, None, None, (),
        None, 1, "", None,
    )  # fmt: skip
