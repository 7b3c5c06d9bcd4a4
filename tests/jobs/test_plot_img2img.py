"""An img2img X/Y/Z plot as one queue job on the demo model: the input image sent once (kept in the job),
every cell an img2img of it with its own infotext, the Denoising axis its denoising strength."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from commands.xyz import INIT_IMAGE, build_plot, parse_axis
from core.errors import InvalidRequest
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.requests import GenerationRequest, Img2ImgRequest
from jobs.records import JobKind, JobStatus

BASE = GenerationRequest("a red circle", seed=3, width=64, height=64, steps=2, sampler="Euler")
PICTURE = Image.new("RGB", (64, 64), (200, 40, 40))


async def _run(queue, params):
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stop))
    try:
        job = await queue.submit_task(JobKind.XYZ, params, "ann")
        return await queue.wait(job.id)
    finally:
        stop.set()
        await runner


def test_the_plot_sends_its_image_once_and_each_cell_names_it():
    init = Img2ImgRequest(BASE, PICTURE, denoising_strength=0.4)
    x, y = parse_axis("x", "Denoising=0.25,0.5"), parse_axis("y", "Seed=1,2")
    plot = build_plot(BASE, x, y, parse_axis("z", None), init=init)
    assert isinstance(plot[INIT_IMAGE], str) and len(plot["cells"]) == 4
    assert [cell["denoising_strength"] for cell in plot["cells"]] == [0.25, 0.5, 0.25, 0.5]
    assert all(cell["image"] == INIT_IMAGE for cell in plot["cells"])
    other = build_plot(
        BASE, parse_axis("x", "Steps=1,2"), parse_axis("y", None), parse_axis("z", None), init=init
    )
    assert [cell["denoising_strength"] for cell in other["cells"]] == [0.4, 0.4]
    # Without an image the Denoising axis is the hires pass's, and needs one.
    with pytest.raises(InvalidRequest, match="needs the hires fix"):
        build_plot(BASE, x, y, parse_axis("z", None))


async def test_an_img2img_plot_runs_its_cells_from_the_image(make_queue):
    queue = await make_queue()
    init = Img2ImgRequest(BASE, PICTURE)
    x, y = parse_axis("x", "Denoising=0.3,0.6"), parse_axis("y", "Seed=1,2")
    done = await _run(queue, build_plot(BASE, x, y, parse_axis("z", None), init=init))
    assert done.status is JobStatus.DONE, done.error
    assert done.request["cells"][0]["image"] == INIT_IMAGE and isinstance(done.request[INIT_IMAGE], str)
    grid, cells = done.results[0], done.results[1:]
    assert len(cells) == 4 and grid.endswith("grid-0.png")
    for index, path in enumerate(cells):
        params = parse_infotext(read_infotext(path)).params
        assert params["Denoising strength"] == ("0.3", "0.6")[index % 2]
        assert params["Seed"] == str(1 + index // 2)
    assert done.request["grids"][0]["x_labels"] == ["Denoising: 0.3", "Denoising: 0.6"]
    grid_info = parse_infotext(read_infotext(grid)).params
    assert grid_info["X Type"] == "Denoising" and grid_info["X Values"] == "0.3,0.6"
    images = await queue.catalog.of_job(done.id)
    assert {image.path for image in images} >= set(cells)


async def test_a_plot_whose_cells_name_other_images_is_refused(make_queue):
    queue = await make_queue()
    plot = build_plot(
        BASE,
        parse_axis("x", "Seed=1,2"),
        parse_axis("y", None),
        parse_axis("z", None),
        init=Img2ImgRequest(BASE, PICTURE),
    )
    stray = {**plot, "cells": [{**cell, "image": "../secret.png"} for cell in plot["cells"]]}
    with pytest.raises(InvalidRequest, match="sends its image once"):
        await queue.submit_task(JobKind.XYZ, stray, "ann")
    with pytest.raises(InvalidRequest, match="is not base64"):
        await queue.submit_task(JobKind.XYZ, {**plot, INIT_IMAGE: "not base64!"}, "ann")
    without = {key: value for key, value in plot.items() if key != INIT_IMAGE}
    with pytest.raises(InvalidRequest, match="need the plot's init_image"):
        await queue.submit_task(JobKind.XYZ, without, "ann")
