"""A1111's X/Y/Z plot, front-end neutral and without torch: axes typed as `Seed=1-3`, their values in A1111's
syntax, and the plot as the JSON parameters of one `xyz` job (jobs/plots.py): every cell's request, the order
the cells run in and the labelled grids to draw.

Values are A1111's (scripts/xyz_grid.py): a comma list read as CSV (quotes keep commas), and for numeric axes
the ranges `1-5` (every whole number), `1-10 (+2)` (a step, its sign required), `10-20 [5]` (that many values
spread evenly, whole numbers rounded down) and their float forms (`0.5-1 (+0.25)`, `0-1 [3]`). Legends read
`Seed: 1`, `Steps: 4`; Prompt S/R, Sampler and Checkpoint name show the value alone. The axis whose changes
cost most (a checkpoint, then a VAE) runs outermost, as A1111 orders them. Random (-1) seeds, of the base
request and on a Seed axis, are fixed when the plot is made (A1111's default: "Keep -1 for seeds" off).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from core.errors import InvalidRequest, SalonError
from engine.requests import (
    GenerationRequest,
    HiresFix,
    HiresUpscaler,
    Img2ImgRequest,
    hires_upscaler,
    with_fixed_seeds,
)
from engine.seeds import resolve_seed
from jobs.plots import INIT_IMAGE

SCRIPT = "X/Y/Z plot"
MAX_PLOT_CELLS = 100  # the default cap (settings: [limits] max_plot_cells)

# A1111's range forms (their meaning is A1111's; the step's sign is required, as there).
_INT = r"([+-]?\s*\d+)"
_FLOAT = r"([+-]?\s*\d+(?:\.\d*)?)"
RANGE_STEP = re.compile(rf"\s*{_INT}\s*-\s*{_INT}(?:\s*\(([+-]\d+)\s*\))?\s*")
RANGE_COUNT = re.compile(rf"\s*{_INT}\s*-\s*{_INT}(?:\s*\[(\d+)\s*])?\s*")
FLOAT_RANGE_STEP = re.compile(rf"\s*{_FLOAT}\s*-\s*{_FLOAT}(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
FLOAT_RANGE_COUNT = re.compile(rf"\s*{_FLOAT}\s*-\s*{_FLOAT}(?:\s*\[(\d+(?:\.\d*)?)\s*])?\s*")


def _number(text: str) -> str:
    return text.replace(" ", "")


def expand_ints(items: Sequence[str]) -> list[Any]:
    """Integer ranges expanded as A1111 does; other items are kept as they are (converted later)."""
    values: list[Any] = []
    for item in items:
        if (step_match := RANGE_STEP.fullmatch(item)) is not None:
            start, end = int(_number(step_match.group(1))), int(_number(step_match.group(2)))
            step = int(step_match.group(3)) if step_match.group(3) is not None else 1
            if step == 0:
                raise ValueError(f"{item!r}: the step is 0")
            values += list(range(start, end + 1, step))
        elif (count_match := RANGE_COUNT.fullmatch(item)) is not None:
            start, end = int(_number(count_match.group(1))), int(_number(count_match.group(2)))
            count = int(count_match.group(3)) if count_match.group(3) is not None else 1
            values += [int(x) for x in np.linspace(start=start, stop=end, num=count).tolist()]
        else:
            values.append(item)
    return values


def expand_floats(items: Sequence[str]) -> list[Any]:
    """Float ranges expanded as A1111 does (numpy's arange and linspace); other items kept as they are."""
    values: list[Any] = []
    for item in items:
        if (step_match := FLOAT_RANGE_STEP.fullmatch(item)) is not None:
            start, end = float(_number(step_match.group(1))), float(_number(step_match.group(2)))
            step = float(step_match.group(3)) if step_match.group(3) is not None else 1.0
            if step == 0:
                raise ValueError(f"{item!r}: the step is 0")
            values += np.arange(start, end + step, step).tolist()
        elif (count_match := FLOAT_RANGE_COUNT.fullmatch(item)) is not None:
            start, end = float(_number(count_match.group(1))), float(_number(count_match.group(2)))
            count = int(float(count_match.group(3))) if count_match.group(3) is not None else 1
            values += np.linspace(start=start, stop=end, num=count).tolist()
        else:
            values.append(item)
    return values


def split_values(text: str) -> list[str]:
    """A comma list read as CSV (so `"a, b", c` is two values), each value stripped; empty ones dropped."""
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [value.strip() for value in chain.from_iterable(rows) if value.strip()]


@dataclass(frozen=True)
class AxisKind:
    """One kind of axis: its A1111 label, value type, how a value changes a request, how its legend reads."""

    label: str
    type: type  # int, float or str
    apply: Callable[[GenerationRequest, Any, list[Any]], GenerationRequest]
    with_label: bool = True  # legend "Label: value" (else the value alone)
    cost: float = 0.0  # slow to change (a checkpoint, a VAE): runs outermost
    aliases: tuple[str, ...] = ()
    help: str = ""


def _field(name: str) -> Callable[[GenerationRequest, Any, list[Any]], GenerationRequest]:
    return lambda request, value, _: dataclasses.replace(request, **{name: value})


def _hires_field(name: str) -> Callable[[GenerationRequest, Any, list[Any]], GenerationRequest]:
    def apply(request: GenerationRequest, value: Any, _: list[Any]) -> GenerationRequest:
        hires = request.hires or HiresFix()
        return dataclasses.replace(request, hires=dataclasses.replace(hires, **{name: value}))

    return apply


def _prompt_sr(request: GenerationRequest, value: str, values: list[Any]) -> GenerationRequest:
    search = values[0]
    return dataclasses.replace(
        request,
        prompt=request.prompt.replace(search, value),
        negative_prompt=request.negative_prompt.replace(search, value),
    )


def _size(request: GenerationRequest, value: str, _: list[Any]) -> GenerationRequest:
    from engine.validation import parse_size

    width, height = parse_size(value)
    return dataclasses.replace(request, width=width, height=height)


def _upscaler(request: GenerationRequest, value: str, values: list[Any]) -> GenerationRequest:
    return _hires_field("upscaler")(request, hires_upscaler(value), values)


AXES: tuple[AxisKind, ...] = (
    AxisKind("Nothing", str, lambda request, value, values: request, with_label=False),
    AxisKind("Seed", int, _field("seed"), help="-1 is a random seed, fixed when the plot is made"),
    AxisKind("Var. seed", int, _field("variation_seed"), aliases=("variation seed", "subseed")),
    AxisKind("Var. strength", float, _field("variation_strength"), aliases=("variation strength",)),
    AxisKind("Steps", int, _field("steps")),
    AxisKind("Hires steps", int, _hires_field("steps")),
    AxisKind("CFG Scale", float, _field("cfg_scale"), aliases=("cfg",)),
    AxisKind(
        "Prompt S/R",
        str,
        _prompt_sr,
        with_label=False,
        aliases=("prompt sr", "sr"),
        help="the first value is searched for in the prompt and replaced by each value",
    ),
    AxisKind("Sampler", str, _field("sampler"), with_label=False),
    AxisKind("Schedule type", str, _field("schedule"), aliases=("schedule", "scheduler")),
    AxisKind(
        "Checkpoint name", str, _field("model"), with_label=False, cost=1.0, aliases=("checkpoint", "model")
    ),
    AxisKind("VAE", str, _field("vae"), cost=0.7),
    AxisKind("Clip skip", int, _field("clip_skip")),
    AxisKind(
        "Denoising",
        float,
        _hires_field("denoising_strength"),
        help="img2img's denoising strength (with an init image), else the hires pass's",
    ),
    AxisKind("Hires upscale", float, _hires_field("scale"), aliases=("hires scale",)),
    AxisKind("Hires upscaler", str, _upscaler, help="Latent, Lanczos, … or a model upscaler's name"),
    AxisKind("Eta", float, _field("eta")),
    AxisKind("Distilled CFG Scale", float, _field("distilled_cfg_scale"), aliases=("distilled cfg",)),
    AxisKind("Shift", float, _field("shift")),
    AxisKind(
        "Refiner checkpoint",
        str,
        lambda request, value, _: dataclasses.replace(request, refiner=None if value == "None" else value),
        with_label=False,
        cost=1.0,
        aliases=("refiner",),
        help="None: no refiner",
    ),
    AxisKind("Refiner switch at", float, _field("refiner_switch_at")),
    AxisKind("Size", str, _size, help="WIDTHxHEIGHT, e.g. 512x768"),
)
NOTHING = AXES[0]
_BY_NAME = {name.casefold(): kind for kind in AXES for name in (kind.label, *kind.aliases)}
HIRES_AXES = ("Hires steps", "Denoising", "Hires upscale", "Hires upscaler")


def axis_kind(option: str, name: str) -> AxisKind:
    """An axis by its A1111 label (or an alias), case-insensitively, or a message listing the axes."""
    kind = _BY_NAME.get(" ".join(name.split()).casefold())
    if kind is None:
        labels = ", ".join(kind.label for kind in AXES[1:])
        raise InvalidRequest(option, f"{name!r} is not an axis; the axes are: {labels}")
    return kind


@dataclass(frozen=True)
class Axis:
    """One axis of a plot: its kind, what was typed, and the values it takes."""

    kind: AxisKind
    text: str  # the values as typed (A1111's "X Values")
    values: tuple[Any, ...]

    def labels(self) -> list[str]:
        """The legend text of each value, as A1111 writes it."""
        return [format_label(self.kind, value) for value in self.values]


def format_label(kind: AxisKind, value: Any) -> str:
    """A1111's legend text: `Steps: 4`, `CFG Scale: 7.5`; the value alone for Prompt S/R and Sampler; a
    checkpoint's name without its folder; nothing for Nothing."""
    if kind is NOTHING:
        return ""
    if isinstance(value, float):
        value = round(value, 8)
    if kind.label in ("Checkpoint name", "Refiner checkpoint"):
        value = str(value).replace("\\", "/").rsplit("/", 1)[-1]
    return f"{kind.label}: {value}" if kind.with_label else str(value)


def parse_axis(option: str, text: str | None, upscalers: Collection[str] = ()) -> Axis:
    """`Seed=1-3` (also `Seed: 1-3`) into an axis with its values; None or empty: the Nothing axis.
    `upscalers`: the installed model upscalers a Hires upscaler axis may name besides the built-in ones."""
    if text is None or not text.strip():
        return Axis(NOTHING, "", (0,))
    name, separator, values_text = text.partition("=")
    if not separator:
        name, separator, values_text = text.partition(":")
    if not separator:
        raise InvalidRequest(option, f"{text!r}: write AXIS=VALUES, e.g. Seed=1-3 or Steps=10,20")
    kind = axis_kind(option, name.strip())
    if kind is NOTHING:
        return Axis(NOTHING, "", (0,))
    return Axis(kind, values_text.strip(), tuple(axis_values(option, kind, values_text, upscalers)))


def axis_values(option: str, kind: AxisKind, text: str, upscalers: Collection[str] = ()) -> list[Any]:
    """The values of an axis, ranges expanded and typed; InvalidRequest names the option and the axis. A
    Hires upscaler axis takes the built-in upscalers and the model upscalers in `upscalers`, spelled as
    they are installed."""
    items = split_values(text)
    if not items:
        raise InvalidRequest(option, f"{kind.label}: no values given")
    try:
        if kind.type is int:
            expanded = expand_ints(items)
        elif kind.type is float:
            expanded = expand_floats(items)
        else:
            expanded = items
    except ValueError as exc:
        raise InvalidRequest(option, f"{kind.label}: {exc}") from None
    values = []
    for value in expanded:
        try:
            converted = kind.type(value)
        except ValueError:
            what = {
                int: "a whole number or a range like 1-5",
                float: "a number or a range like 0.5-1 (+0.25)",
            }
            raise InvalidRequest(option, f"{kind.label}: {value!r} is not {what[kind.type]}") from None
        if isinstance(converted, float):
            if not math.isfinite(converted):
                raise InvalidRequest(option, f"{kind.label}: {value!r} is not a finite number")
            converted = round(converted, 8)
        values.append(converted)
    if not values:
        raise InvalidRequest(option, f"{kind.label}: the range {text.strip()!r} has no values")
    if kind.label == "Hires upscaler":
        allowed = hires_upscaler_names(upscalers)
        bad = [v for v in values if v.casefold() not in allowed]
        if bad:
            choices = ", ".join(allowed.values())
            raise InvalidRequest(option, f"Hires upscaler: {bad[0]!r} is not one of: {choices}")
        values = [allowed[v.casefold()] for v in values]
    return values


def hires_upscaler_names(upscalers: Collection[str] = ()) -> dict[str, str]:
    """What a Hires upscaler axis may take, by its case-folded name: the built-in upscalers, then the model
    upscalers given (their installed spelling)."""
    names = {member.value.casefold(): member.value for member in HiresUpscaler}
    for name in sorted(upscalers, key=str.casefold):
        names.setdefault(name.casefold(), name)
    return names


def axis_completions(current: str, upscalers: Collection[str] = (), limit: int = 25) -> list[str]:
    """What a front end may offer while an axis is typed: the axes' labels (`Steps=`) until `=` is typed,
    then for a Hires upscaler axis the text with its last value completed (built-in and installed model
    upscalers not listed yet)."""
    name, separator, values = current.partition("=")
    if not separator:
        folded = " ".join(name.split()).casefold()
        labels = [kind.label for kind in AXES[1:] if kind.label.casefold().startswith(folded)]
        return [f"{label}=" for label in labels][:limit]
    kind = _BY_NAME.get(" ".join(name.split()).casefold())
    if kind is None or kind.label != "Hires upscaler":
        return [current]
    done, _, partial = values.rpartition(",")
    taken = {item.strip().casefold() for item in done.split(",") if item.strip()}
    head = f"{kind.label}={done}," if done else f"{kind.label}="
    wanted = partial.strip().casefold()
    names = [
        value
        for folded, value in hires_upscaler_names(upscalers).items()
        if folded.startswith(wanted) and folded not in taken
    ]
    return [head + value for value in names][:limit]


def axis_order(axes: Sequence[Axis]) -> tuple[int, int, int]:
    """Which axes (0 = X, 1 = Y, 2 = Z) run outermost to innermost: A1111's rule (Z, then Y, then X, unless
    one axis costs strictly more than both others, which then runs outermost, the costlier of the rest next)."""
    costs = [axis.kind.cost for axis in axes]
    first, second = 2, 1
    for index in range(3):
        others = [i for i in range(3) if i != index]
        if all(costs[index] > costs[i] for i in others):
            first = index
            a, b = others
            second = a if costs[a] > costs[b] else b
            break
    third = 3 - first - second
    return first, second, third


def build_plot(
    base: GenerationRequest,
    x: Axis,
    y: Axis,
    z: Axis,
    max_cells: int = MAX_PLOT_CELLS,
    resolve_model: Callable[[str], str] = lambda name: name,
    init: Img2ImgRequest | None = None,
) -> dict[str, Any]:
    """The `xyz` job's JSON parameters: every cell's request (index `ix + iy·|X| + iz·|X|·|Y|`, one image
    each), the order they run in and one labelled grid per Z value. `resolve_model` turns a typed checkpoint
    name into the installed one's (the registry's), failing for one that is not there. `init`: an img2img
    plot (A1111's X/Y/Z plot on the img2img tab): its image and settings, every cell an img2img of it, the
    Denoising axis its denoising strength; the image travels once, as `init_image` (a base64 PNG)."""
    axes = (x, y, z)
    labels = {kind: axis.kind.label for kind, axis in zip("XYZ", axes, strict=True)}
    real = [axis for axis in axes if axis.kind is not NOTHING]
    if not real:
        raise InvalidRequest("x", "give at least one axis, e.g. --x Seed=1-3")
    for option, axis in zip(("x", "y", "z"), axes, strict=True):
        if axis.kind is not NOTHING and sum(a.kind is axis.kind for a in real) > 1:
            raise InvalidRequest(option, f"{axis.kind.label} is on two axes; give each option one axis")
    count = len(x.values) * len(y.values) * len(z.values)
    if count > max_cells:
        raise InvalidRequest(
            "x", f"{len(x.values)}×{len(y.values)}×{len(z.values)} = {count} cells; at most {max_cells}"
        )
    base = dataclasses.replace(with_fixed_seeds(base), batch_size=1, batch_count=1)
    axes = tuple(_fixed(axis) for axis in axes)
    x, y, z = axes
    refiners = any(axis.kind.label == "Refiner checkpoint" for axis in axes)
    for option, axis in zip(("x", "y", "z"), axes, strict=True):
        label = axis.kind.label
        if not (init is not None and label == "Denoising") and not (
            refiners and label == "Refiner switch at"
        ):
            _check_axis(option, axis, base, resolve_model)
    cells = []
    for zv in z.values:
        for yv in y.values:
            for xv in x.values:
                request, strength = base, None if init is None else init.denoising_strength
                for axis, value in ((x, xv), (y, yv), (z, zv)):
                    if axis.kind.label == "Checkpoint name" or (
                        axis.kind.label == "Refiner checkpoint" and value != "None"
                    ):
                        value = resolve_model(value)
                    if init is not None and axis.kind.label == "Denoising":
                        strength = value
                    else:
                        request = axis.kind.apply(request, value, list(axis.values))
                cells.append(_cell(request, init, strength))
    order = _run_order(axes)
    extra = _grid_params(axes)
    grids = []
    per_grid = len(x.values) * len(y.values)
    for iz, z_label in enumerate(z.labels()):
        params = dict(extra["sub"])
        grids.append(
            {
                "cells": list(range(iz * per_grid, (iz + 1) * per_grid)),
                "columns": len(x.values),
                "x_labels": x.labels(),
                "y_labels": y.labels(),
                "title": z_label,
                "params": {**params, **(extra["main"] if iz == 0 else {})},
            }
        )
    model = cells[0]["params"].get("model")
    plot = {"script": SCRIPT, "axes": labels, "model": model, "cells": cells, "order": order, "grids": grids}
    return plot if init is None else {**plot, INIT_IMAGE: _png_base64(init.image)}


_NO_INPUTS = None  # txt2img requests store no input image


def _cell(request: GenerationRequest, init: Img2ImgRequest | None, strength: float | None) -> dict[str, Any]:
    """A cell's JSON: a txt2img request's, or an img2img request's naming the plot's input image."""
    from jobs.codec import request_to_json

    params = request_to_json(request, _NO_INPUTS)[1]
    if init is None:
        return params
    return {
        **params,
        "image": INIT_IMAGE,
        "denoising_strength": strength,
        "resize_mode": init.resize_mode.value,
        "noise_multiplier": init.noise_multiplier,
    }


def _png_base64(image) -> str:
    import base64

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fixed(axis: Axis) -> Axis:
    """A Seed or Var. seed axis with its -1 values fixed (A1111 fixes them unless told to keep them)."""
    if axis.kind.label not in ("Seed", "Var. seed"):
        return axis
    return dataclasses.replace(axis, values=tuple(resolve_seed(v) for v in axis.values))


def _check_axis(
    option: str, axis: Axis, base: GenerationRequest, resolve_model: Callable[[str], str]
) -> None:
    label = axis.kind.label
    if label == "Prompt S/R":
        search = axis.values[0]
        if search not in base.prompt and search not in base.negative_prompt:
            raise InvalidRequest(
                option,
                f"Prompt S/R: {search!r} (the first value) is not in the prompt or the negative prompt",
            )
    elif label in HIRES_AXES and base.hires is None:
        raise InvalidRequest(option, f"{label} needs the hires fix: give a hires scale (--hires 2)")
    elif label in ("Checkpoint name", "Refiner checkpoint"):
        for value in axis.values:
            if label == "Refiner checkpoint" and value == "None":
                continue
            try:
                resolve_model(value)
            except SalonError as exc:
                raise InvalidRequest(option, f"{label}: {getattr(exc, 'message', exc)}") from None
    elif label == "Refiner switch at" and base.refiner is None:
        raise InvalidRequest(option, "Refiner switch at needs a refiner: give one (--refiner NAME)")
    elif label == "Size":
        from engine.validation import parse_size

        for value in axis.values:
            try:
                parse_size(value)
            except InvalidRequest:
                raise InvalidRequest(option, f"Size: {value!r} is not WIDTHxHEIGHT, e.g. 512x768") from None


def _run_order(axes: Sequence[Axis]) -> list[int]:
    """The cells' indices in the order they run: the costliest axis outermost (A1111's loops)."""
    sizes = [len(axis.values) for axis in axes]
    first, second, third = axis_order(axes)
    order = []
    for a in range(sizes[first]):
        for b in range(sizes[second]):
            for c in range(sizes[third]):
                position = [0, 0, 0]
                position[first], position[second], position[third] = a, b, c
                order.append(position[0] + position[1] * sizes[0] + position[2] * sizes[0] * sizes[1])
    return order


def _grid_params(axes: Sequence[Axis]) -> dict[str, dict[str, str]]:
    """A1111's grid infotext keys: Script, X/Y Type and Values (Fixed X Values for a seed axis) on every grid;
    Z Type and Values on the first."""
    sub: dict[str, str] = {"Script": SCRIPT}
    main: dict[str, str] = {}
    for name, axis in zip("XYZ", axes, strict=True):
        if axis.kind is NOTHING:
            continue
        target = main if name == "Z" else sub
        target[f"{name} Type"] = axis.kind.label
        target[f"{name} Values"] = axis.text
        if axis.kind.label in ("Seed", "Var. seed"):
            target[f"Fixed {name} Values"] = ", ".join(str(v) for v in axis.values)
    return {"sub": sub, "main": main}


def xyz_job(
    base: GenerationRequest,
    x: str | None,
    y: str | None,
    z: str | None,
    limits,
    registry,
    init: Img2ImgRequest | None = None,
):
    """The `xyz` job (a `LongJob`) of A1111's X/Y/Z plot over `base` (a front end's request, defaults
    applied): axes typed as `Seed=1-3` for the options x, y and z, at most `limits.max_plot_cells` cells;
    checkpoint names found in `registry`; `init`: an img2img plot's input image and settings."""
    from commands.generation import LongJob
    from engine.models.registry import ModelKind
    from jobs.records import JobKind

    upscalers = registry.names(ModelKind.UPSCALER)
    axes = [parse_axis(option, text, upscalers) for option, text in (("x", x), ("y", y), ("z", z))]
    base = dataclasses.replace(base, model=registry.checkpoint(base.model).name)
    params = build_plot(
        base,
        *axes,
        max_cells=limits.max_plot_cells,
        resolve_model=lambda name: registry.checkpoint(name).name,
        init=init,
    )
    return LongJob(JobKind.XYZ, params)
