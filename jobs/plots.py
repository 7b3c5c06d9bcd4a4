"""Plots as one long queue job (kind `xyz`): A1111's X/Y/Z plot, prompt matrix and prompts from file.

The job's parameters are made by a front end (commands/xyz.py, commands/prompt_lists.py) and say everything:
`cells`, one txt2img request each (the codec's JSON, seeds fixed), or for an img2img plot one img2img request
each of the plot's input image (`init_image`, a base64 PNG kept in the job, so any worker host can run it;
checked as an upload when the job is accepted); `order`, the cells' indices in the order
they run (the costliest axis outermost); `grids`, each a list of cell indices in rows of `columns` with its
legends (`x_labels` above, `y_labels` left, `title` above all) and the extra infotext keys A1111 writes on
the grid (`params`: Script, X Type, X Values…); `script`, the script's name.

Cells run in order, consecutive ones that share a batch key denoised together (up to `[queue]
max_batch_images`); each cell's images are written whole with their own infotext to
`<outputs>/xyz-grids/<job>-<accepted>/cell-<index>-<image>-<seed>.png`, so a crash or a slice's end resumes at
the first cell without its files. Progress is cells done out of all. The last slice draws the grids
(`grid-<n>.png`, the first cell's infotext with the grid's keys). The results, grids first then cells, go into
the catalog like any image job's.
"""

from __future__ import annotations

import logging
import secrets
from itertools import groupby
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest, JobCancelled, ModelNotFound
from engine.infotext_files import save_image_with_infotext
from engine.models.registry import ModelRegistry
from engine.requests import (
    GenerationRequest,
    HiresUpscaler,
    Img2ImgRequest,
    ResizeMode,
    RunControl,
    StepProgress,
    with_fixed_seeds,
)
from engine.tasks.batching import batch_key
from engine.tasks.samplers import BUILTIN_SAMPLERS, SamplerTable
from engine.upscaling.naming import with_installed_upscaler
from engine.validation import check_model_family, check_request
from jobs.codec import request_from_json, request_to_json
from jobs.long import Slice, SliceControl
from jobs.records import JobKind, JobRecord

SCRIPTS = ("X/Y/Z plot", "Prompt matrix", "Prompts from file")
MAX_GRID_PIXELS = 200_000_000  # A1111's default cap on a grid's size (img_max_size_mp: 200 MP)
log = logging.getLogger(__name__)


def plot_folder(settings, job: JobRecord) -> Path:
    """`<outputs>/xyz-grids/<job>-<when it was accepted>-<its token>`: unique even if the queue's numbering
    starts over within the same second or two queues share an outputs folder (a cell file found there is taken
    as done, so a folder must never be another job's)."""
    token = job.request.get("token")
    name = f"{job.id:05d}-{int(job.created_at)}" + (f"-{token}" if isinstance(token, str) else "")
    return settings.outputs_path / "xyz-grids" / name


INIT_IMAGE = "init_image"  # an img2img plot's input image (a base64 PNG), named by each of its cells
PlotCell = GenerationRequest | Img2ImgRequest


def cell_requests(params: dict[str, Any]) -> list[PlotCell]:
    """The job's cells as requests: txt2img, or img2img of the plot's `init_image`."""
    image = None
    requests: list[PlotCell] = []
    for cell in params["cells"]:
        request = request_from_json(JobKind.IMAGINE, cell, Path())
        assert isinstance(request, GenerationRequest)
        if "image" in cell:
            if cell["image"] != INIT_IMAGE:
                raise ValueError("an img2img cell names the plot's init_image")
            image = image or _decoded(params.get(INIT_IMAGE))
            strength, mode = float(cell["denoising_strength"]), ResizeMode(cell["resize_mode"])
            requests.append(Img2ImgRequest(request, image, strength, mode, float(cell["noise_multiplier"])))
        else:
            requests.append(request)
    return requests


def _decoded(encoded: Any):
    """The plot's input image from its base64 PNG (checked, as an upload is, when the job is accepted)."""
    import base64
    import io

    from PIL import Image

    if not isinstance(encoded, str):
        raise ValueError("img2img cells need the plot's init_image")
    with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
        return image.convert("RGB")


def _check_init(params: dict[str, Any], settings) -> None:
    """An img2img plot's input image: base64 of an image that passes the upload checks; every cell names it."""
    import base64
    import binascii

    from engine.image_io import open_image_checked

    encoded, cells = params.get(INIT_IMAGE), params["cells"]
    named = [cell for cell in cells if isinstance(cell, dict) and "image" in cell]
    if encoded is None:
        if named:
            raise InvalidRequest("cells", "img2img cells need the plot's init_image")
        return
    if (
        not isinstance(encoded, str)
        or len(named) != len(cells)
        or any(c["image"] != INIT_IMAGE for c in named)
    ):
        raise InvalidRequest(INIT_IMAGE, "an img2img plot sends its image once and every cell names it")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(INIT_IMAGE, "is not base64") from None
    limits = settings.limits
    open_image_checked(
        data, max_pixels=limits.max_input_pixels, max_bytes=limits.max_upload_bytes, option=INIT_IMAGE
    )


def _cell_json(request: PlotCell) -> dict[str, Any]:
    """A cell's JSON (seeds fixed): the codec's for its generation parameters, img2img's settings beside."""
    data = request_to_json(with_fixed_seeds(request.params), Path())[1]
    if isinstance(request, GenerationRequest):
        return data
    return {
        **data,
        "image": INIT_IMAGE,
        "denoising_strength": request.denoising_strength,
        "resize_mode": request.resize_mode.value,
        "noise_multiplier": request.noise_multiplier,
    }


class PlotTask:
    """The `xyz` long job kind. `samplers`: the process's sampler table, which the cells are checked against."""

    kind = JobKind.XYZ

    def __init__(self, samplers: SamplerTable = BUILTIN_SAMPLERS) -> None:
        self.samplers = samplers

    def check(self, params: dict[str, Any], settings: Any) -> dict[str, Any]:
        script = params.get("script")
        if script not in SCRIPTS:
            raise InvalidRequest("script", f"{script!r}: one of {', '.join(SCRIPTS)}")
        raw = params.get("cells")
        limit = settings.limits.max_plot_cells
        if not isinstance(raw, list) or not raw:
            raise InvalidRequest("cells", "a plot needs at least one cell")
        if len(raw) > limit:
            raise InvalidRequest("cells", f"{len(raw)} cells; at most {limit} ([limits] max_plot_cells)")
        _check_init(params, settings)
        try:
            requests = cell_requests(params)
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise InvalidRequest("cells", f"a cell's request is not readable: {exc}") from None
        cells, registry = [], None
        entries: dict[str | None, object] = {}  # each cell's checkpoint, for its family's check
        for index, request in enumerate(requests):
            check_request(request, settings.limits, self.samplers)
            name = request.params.model or settings.default_model
            if name not in entries:
                registry = registry or ModelRegistry.from_settings(settings)
                try:
                    entries[name] = registry.checkpoint(name)
                except ModelNotFound:  # a cell's missing checkpoint is named when the cell runs
                    entries[name] = None
            if entries[name] is not None:  # SD 3.5 / Flux: what they cannot run, refused by name
                check_model_family(request, entries[name])
            hires = request.params.hires
            if hires is not None and not isinstance(hires.upscaler, HiresUpscaler):  # a model upscaler
                registry = registry or ModelRegistry.from_settings(settings)
                request = with_installed_upscaler(request, registry)
                requests[index] = request
            cells.append(_cell_json(request))
        order = params.get("order", list(range(len(cells))))
        if not isinstance(order, list) or sorted(order) != list(range(len(cells))):
            raise InvalidRequest("order", "must name every cell once")
        grids = [_checked_grid(grid, requests) for grid in params.get("grids", [])]
        token = params.get("token")
        return {
            "script": script,
            "token": token if isinstance(token, str) and token.isalnum() else secrets.token_hex(4),
            "model": requests[0].params.model,
            "cells": cells,
            "order": order,
            "grids": grids,
            **({"axes": params["axes"]} if isinstance(params.get("axes"), dict) else {}),
            **({INIT_IMAGE: params[INIT_IMAGE]} if INIT_IMAGE in params else {}),
        }

    def run_slice(
        self, engine, job: JobRecord, state: dict | None, workdir: Path, control: SliceControl
    ) -> Slice:
        params = job.request
        running = engine()
        requests = cell_requests(params)
        folder = plot_folder(running.settings, job)
        folder.mkdir(parents=True, exist_ok=True)
        total = len(requests)
        pending = [index for index in params["order"] if not _cell_files(folder, index, requests[index])]
        if pending and total - len(pending) > int((state or {}).get("done", 0)):
            log.info("plot job %d resumes after %d cells found on disk", job.id, total - len(pending))
        most = max(1, running.settings.queue.max_batch_images)
        ran = 0
        for _, group in groupby(pending, key=lambda index: _group_key(requests[index], index)):
            indices = list(group)
            for start in range(0, len(indices), most):
                if control.run.cancelled():
                    raise JobCancelled()
                if ran and control.should_yield():
                    done = total - len(pending) + ran
                    return Slice({"done": done}, phase=f"cell {done}/{total}", progress=done / total)
                chunk = indices[start : start + most]
                controls = [RunControl(cancel=control.run.cancel) for _ in chunk]
                results = _run_cells(running, [requests[index] for index in chunk], controls)
                for index, result in zip(chunk, results, strict=True):
                    for image in result.images:
                        save_image_with_infotext(
                            image.image, _cell_path(folder, index, image), image.infotext
                        )
                ran += len(chunk)
                done = total - len(pending) + ran
                if control.run.on_step is not None:
                    control.run.on_step(StepProgress(f"cell {done}/{total}", done, total, 0))
        grids = [_draw(folder, number, grid, requests) for number, grid in enumerate(params["grids"])]
        cells = [str(path) for index in range(total) for path in _cell_files(folder, index, requests[index])]
        return Slice({"done": total}, done=True, results=tuple(grids + cells), phase="done", progress=1.0)


def _group_key(request: PlotCell, index: int):
    """Cells denoised together share a batch key; an img2img cell runs alone."""
    return batch_key(request) if isinstance(request, GenerationRequest) else ("img2img", index)


def _run_cells(running, requests: list[PlotCell], controls: list[RunControl]):
    """A chunk of txt2img cells denoised together, or one img2img cell."""
    if isinstance(requests[0], Img2ImgRequest):
        return [
            running.img2img(request, control) for request, control in zip(requests, controls, strict=True)
        ]
    return running.txt2img_many(requests, controls)


def _checked_grid(grid: Any, requests: list[PlotCell]) -> dict[str, Any]:
    if not isinstance(grid, dict):
        raise InvalidRequest("grids", "each grid is an object")
    cells, columns = grid.get("cells"), grid.get("columns")
    if (
        not isinstance(cells, list)
        or not cells
        or any(not isinstance(i, int) or not 0 <= i < len(requests) for i in cells)
    ):
        raise InvalidRequest("grids", "a grid's cells must be indices of cells")
    if not isinstance(columns, int) or columns < 1:
        raise InvalidRequest("grids", "a grid needs a number of columns")
    rows = -(-len(cells) // columns)
    x_labels = [str(label) for label in grid.get("x_labels", [""] * columns)]
    y_labels = [str(label) for label in grid.get("y_labels", [""] * rows)]
    if len(x_labels) != columns or len(y_labels) != rows:
        raise InvalidRequest("grids", f"a grid of {columns}×{rows} cells needs {columns} and {rows} legends")
    first = requests[cells[0]].params
    if len(cells) * first.width * first.height > MAX_GRID_PIXELS:
        raise InvalidRequest("grids", f"a grid would be larger than {MAX_GRID_PIXELS // 1_000_000} MP")
    extra = grid.get("params", {})
    if not isinstance(extra, dict):
        raise InvalidRequest("grids", "a grid's params are infotext keys and values")
    return {
        "cells": cells,
        "columns": columns,
        "x_labels": x_labels,
        "y_labels": y_labels,
        "title": str(grid.get("title", "")),
        "params": {str(key): str(value) for key, value in extra.items()},
    }


def _cell_path(folder: Path, index: int, image) -> Path:
    return folder / f"cell-{index:03d}-{image.index}-{image.seed}.png"


def _cell_files(folder: Path, index: int, request: PlotCell) -> list[Path]:
    """A cell's image files when all of them are on disk (each written whole), else []."""
    files = sorted(folder.glob(f"cell-{index:03d}-*.png"), key=lambda path: int(path.name.split("-")[2]))
    return files if len(files) >= request.params.batch_size * request.params.batch_count else []


def _draw(folder: Path, number: int, grid: dict[str, Any], requests: list[PlotCell]) -> str:
    """Grid `number` from its cells' first images, with the first cell's infotext and the grid's keys."""
    from PIL import Image

    from engine.infotext import format_infotext, parse_infotext
    from engine.infotext_files import read_infotext
    from jobs.grids import Legends, annotated_grid

    pictures = []
    for index in grid["cells"]:
        with Image.open(_cell_files(folder, index, requests[index])[0]) as image:
            pictures.append(image.convert("RGB"))
    legends = Legends(tuple(grid["x_labels"]), tuple(grid["y_labels"]), grid["title"])
    picture = annotated_grid(pictures, grid["columns"], legends)
    first = grid["cells"][0]
    info = parse_infotext(read_infotext(_cell_files(folder, first, requests[first])[0]) or "")
    version = info.params.pop("Version", None)
    params = {**info.params, **grid["params"], **({"Version": version} if version else {})}
    path = folder / f"grid-{number}.png"
    save_image_with_infotext(picture, path, format_infotext(info.prompt, info.negative_prompt, params))
    return str(path)
