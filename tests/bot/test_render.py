"""What the bot attaches: a grid first for batches, originals with their infotext, JPEG when over the limit."""

from __future__ import annotations

import dataclasses
import io

from PIL import Image

from bot import render
from catalog.records import ImageRecord
from engine.infotext_files import read_infotext_from_image, save_image_with_infotext


def _record(path, index: int) -> ImageRecord:
    fields = dict.fromkeys(f.name for f in dataclasses.fields(ImageRecord))
    fields.update(id=index, path=str(path), filename=path.name, infotext=f"a cat\nSteps: 20, Seed: {index}")
    return ImageRecord(**fields)


def _images(tmp_path, count: int, size=(64, 64)) -> list[ImageRecord]:
    records = []
    for index in range(count):
        noise = Image.effect_noise(size, 80 + index).convert("RGB")
        path = save_image_with_infotext(noise, tmp_path / f"{index}.png", f"a cat\nSteps: 20, Seed: {index}")
        records.append(_record(path, index))
    return records


def test_a_batch_gets_a_grid_then_each_png_with_its_infotext(tmp_path):
    uploads = render.result_files(_images(tmp_path, 4), 10 * 1024 * 1024)
    assert [u.filename for u in uploads] == ["grid.png", "0.png", "1.png", "2.png", "3.png"]
    assert Image.open(io.BytesIO(uploads[0].data)).size == (128, 128)
    assert read_infotext_from_image(Image.open(io.BytesIO(uploads[2].data))).endswith("Seed: 1")


def test_an_image_over_the_limit_goes_as_jpeg_with_its_infotext_and_spoilers_are_marked(tmp_path):
    [record] = _images(tmp_path, 1, size=(256, 256))
    png_size = (tmp_path / "0.png").stat().st_size
    [upload] = render.result_files([record], png_size - 1, spoiler=True)
    assert upload.filename == "0.jpg" and len(upload.data) < png_size
    assert read_infotext_from_image(Image.open(io.BytesIO(upload.data))).endswith("Seed: 0")
    assert upload.file().filename == "SPOILER_0.jpg"


def test_files_that_do_not_fit_are_left_out_rather_than_failing_the_upload(tmp_path):
    records = _images(tmp_path, 3)
    one = (tmp_path / "0.png").stat().st_size
    uploads = render.result_files(records, int(one * 1.5))
    assert sum(len(u.data) for u in uploads) <= one * 1.5 and uploads


def test_a_queued_job_says_when_the_gpu_is_warming_up():
    from jobs.records import WARMING_UP, JobEvent, JobKind, JobRecord, JobStatus

    job = JobRecord(
        7,
        JobKind.IMAGINE,
        "ann",
        None,
        None,
        {"params": {"prompt": "a cat"}},
        JobStatus.QUEUED,
        "",
        0.0,
        0.0,
        None,
        None,
        None,
        (),
        None,
        0,
        "",
        None,
    )
    plain = render.status_line(job, JobEvent(7, "queued", JobStatus.QUEUED, position=1))
    warming = render.status_line(job, JobEvent(7, "queued", JobStatus.QUEUED, position=1, phase=WARMING_UP))
    assert plain == "⏳ job 7 · position 1 in the queue"
    assert warming.startswith(plain) and "warming up" in warming
