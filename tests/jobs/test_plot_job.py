"""Plots as one queue job on the demo model (64² images, 1–2 steps): an X/Y/Z plot's cells with their own
infotext in the catalog, labelled grids (one per Z value) with A1111's grid keys, progress in cells, and a
plot that stops after a slice and resumes at the first cell without its file."""

from __future__ import annotations

import asyncio
import threading
import time

from PIL import Image

from commands.prompt_lists import prompt_matrix_plot
from commands.xyz import build_plot, parse_axis
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.requests import GenerationRequest, RunControl
from jobs.long import SliceControl
from jobs.plots import PlotTask, plot_folder
from jobs.records import JobKind, JobRecord, JobStatus

BASE = GenerationRequest("a red circle", seed=3, width=64, height=64, steps=1, sampler="Euler")


async def _run(queue, params):
    events = queue.subscribe()
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stop))
    try:
        job = await queue.submit_task(JobKind.XYZ, params, "ann")
        done = await queue.wait(job.id)
    finally:
        stop.set()
        await runner
    progress = []
    while not events.empty():
        event = events.get_nowait()
        if event.kind == "progress" and event.job_id == job.id:
            progress.append((event.step, event.total, event.phase))
    return done, progress


async def test_a_3x2_plot_makes_six_catalogued_cells_and_a_labelled_grid(make_queue):
    queue = await make_queue()
    x, y, z = parse_axis("x", "Seed=1-3"), parse_axis("y", "Steps=1,2"), parse_axis("z", None)
    done, progress = await _run(queue, build_plot(BASE, x, y, z))
    assert done.status is JobStatus.DONE, done.error
    grid, cells = done.results[0], done.results[1:]
    assert len(cells) == 6 and grid.endswith("grid-0.png")
    for index, path in enumerate(cells):  # index = ix + iy·3: the cell's infotext has its axis values
        params = parse_infotext(read_infotext(path)).params
        assert (params["Seed"], params["Steps"]) == (str(1 + index % 3), str(1 + index // 3))
    assert progress[-1][:2] == (6, 6) and progress[-1][2] == "cell 6/6"
    grid_info = parse_infotext(read_infotext(grid)).params
    assert grid_info["Script"] == "X/Y/Z plot" and grid_info["X Type"] == "Seed"
    assert grid_info["X Values"] == "1-3" and grid_info["Fixed X Values"] == "1, 2, 3"
    assert grid_info["Y Type"] == "Steps" and grid_info["Y Values"] == "1,2"
    with Image.open(grid) as picture:  # legends: a margin of ¾ cell on the left and a row of text on top
        assert picture.width == 3 * 64 + 48 and picture.height > 2 * 64
    drawn = done.request["grids"][0]
    assert drawn["x_labels"] == ["Seed: 1", "Seed: 2", "Seed: 3"] and drawn["y_labels"] == [
        "Steps: 1",
        "Steps: 2",
    ]
    images = await queue.catalog.of_job(done.id)
    assert {image.path for image in images} >= {str(p) for p in cells}


async def test_a_z_axis_makes_one_grid_per_value(make_queue):
    queue = await make_queue()
    x, y, z = parse_axis("x", "Seed=1,2"), parse_axis("y", None), parse_axis("z", "Sampler=Euler,Euler a")
    done, _ = await _run(queue, build_plot(BASE, x, y, z))
    assert done.status is JobStatus.DONE, done.error
    grids = [path for path in done.results if "grid-" in path]
    assert len(grids) == 2 and len(done.results) == 6
    assert [g["title"] for g in done.request["grids"]] == ["Euler", "Euler a"]
    assert parse_infotext(read_infotext(grids[1])).params["Sampler"] == "Euler a"
    with Image.open(grids[0]) as picture:  # a title row above the column legends, no left margin
        assert picture.width == 2 * 64 and picture.height > 64


async def test_a_prompt_matrix_runs_every_combination(make_queue):
    queue = await make_queue()
    done, _ = await _run(queue, prompt_matrix_plot(GenerationRequest("a circle|red|blue", **_small())))
    assert done.status is JobStatus.DONE, done.error
    prompts = [parse_infotext(read_infotext(path)).prompt for path in done.results[1:]]
    assert prompts == ["a circle", "a circle, red", "a circle, blue", "a circle, red, blue"]


def _small():
    return dict(seed=3, width=64, height=64, steps=1, sampler="Euler")


def test_a_plot_yields_and_resumes_at_the_first_cell_without_its_file(engine, settings, tmp_path):
    task = PlotTask()
    plot = build_plot(
        BASE, parse_axis("x", "Seed=1-3"), parse_axis("y", "CFG Scale=1,5"), parse_axis("z", None)
    )
    params = task.check(plot, settings)
    job = JobRecord(
        990,
        JobKind.XYZ,
        "ann",
        None,
        None,
        params,
        JobStatus.RUNNING,
        "",
        0.0,
        time.time(),
        None,
        None,
        None,
        (),
        None,
        0,
        "",
        None,
    )
    yield_now = SliceControl(RunControl(), deadline=0.0, others_waiting=lambda: True)
    first = task.run_slice(lambda: engine, job, None, tmp_path, yield_now)
    assert not first.done and first.state == {"done": 3}  # one batch of three (same batch key) ran
    folder = plot_folder(settings, job)
    before = {path.name: path.stat().st_mtime_ns for path in folder.glob("cell-*.png")}
    assert len(before) == 3
    finish = SliceControl(RunControl(), deadline=time.monotonic() + 600, stopping=threading.Event())
    last = task.run_slice(lambda: engine, job, first.state, tmp_path, finish)
    assert last.done and len(last.results) == 7
    assert all((folder / name).stat().st_mtime_ns == stamp for name, stamp in before.items())
