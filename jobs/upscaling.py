"""The Extras tab's upscale as a long queue job (kind `upscale`): one picture, or a batch (A1111's "Batch
Process" and "Batch from Directory"), through one or two model upscalers, one picture after the other in
slices.

The job's parameters (JSON): the plan (engine/upscaling/plan.py: `upscaler`, `scale` — A1111's "Upscale by" —
or `to` [width, height] with `crop`, `upscaler_2` and `upscaler_2_visibility`), and the input: `image` (stored
under the queue's inputs by `jobs.codec.store_image`, with the source's other PNG text chunks, which the
result carries as A1111's does), `parameters` (its own infotext, kept in the result as
A1111 keeps it; may be absent) and `stem` (its name, for the result's); a batch has `images`, a list of such
`{image, parameters, stem}`, instead. The queue checks them once at submit: the upscalers installed (else the
installed ones are named; A1111's plain resizes `Lanczos` and `Nearest` need no file), the scale within 1..8
or the target within 64..8192, every output within 8192 pixels a side, a batch within MAX_BATCH_IMAGES
pictures and MAX_BATCH_PIXELS output pixels. Each result is
`<outputs>/extras-images/<job>-<stem>.png` (a batch's stems made unique) with A1111's `postprocessing` and
`extras` text, and goes into the catalog like an image job's (relation "upscale" to its parent when the front
end names one in the job's meta). Progress is pictures and tiles done.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from engine.faces.extras import faces_params
from engine.models.registry import ModelKind, ModelRegistry
from engine.requests import StepProgress
from engine.upscaling.plan import NO_UPSCALER, ExtrasPlan, format_info, plan_from_params, resizer
from jobs.codec import load_image, stored_texts
from jobs.long import Slice, SliceControl
from jobs.records import JobKind, JobRecord

EXTRAS_FOLDER = "extras-images"  # A1111's outputs/extras-images
MAX_BATCH_IMAGES = 100  # pictures in one batch job
MAX_BATCH_PIXELS = 64 * 4096 * 4096  # output pixels of one batch job, all pictures together
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def inputs_folder(settings) -> Path:
    """Where the queue keeps input images (jobs.queue.JobQueue.inputs)."""
    return settings.data_dir / "jobs" / "inputs"


def safe_stem(name: str) -> str:
    """A file-name part from a user's file name: letters, digits, `._-` (at most 60)."""
    return _UNSAFE.sub("_", name).strip("._")[:60] or "image"


def unique_stems(stems: list[str]) -> list[str]:
    """Each stem made safe, and unique in the list (`name`, `name-1`, `name-2`, …; case-blind)."""
    seen: set[str] = set()
    out = []
    for stem in stems:
        base = candidate = safe_stem(stem)
        number = 0
        while candidate.casefold() in seen:
            number += 1
            candidate = f"{base}-{number}"
        seen.add(candidate.casefold())
        out.append(candidate)
    return out


def _installed(registry: ModelRegistry, name: str, option: str) -> str:
    """The upscaler's installed spelling (or A1111's `Lanczos`, `Nearest`); a name not installed is refused
    naming `option`."""
    from core.errors import ModelNotFound, ModelRefused

    plain = resizer(name)
    if plain is not None:
        return plain
    try:
        return registry.find_fresh(ModelKind.UPSCALER, name).name
    except ModelRefused as exc:
        raise ModelRefused(option, exc.message) from None
    except ModelNotFound as exc:
        raise ModelNotFound(option, f"{exc.message} (or Lanczos, Nearest)") from None


def _checked_item(settings: Any, item: Any, option: str) -> tuple[dict[str, Any], tuple[int, int]]:
    """One input `{image, parameters, stem}` with its stored picture's size."""
    if not isinstance(item, dict) or not isinstance(item.get("image"), str):
        raise InvalidRequest(option, "no input image")
    try:
        size = load_image(inputs_folder(settings), item["image"]).size
    except (OSError, ValueError):
        raise InvalidRequest(option, "the input image is not stored") from None
    parameters = item.get("parameters")
    stem = str(item.get("stem") or "image")
    return {
        "image": item["image"],
        "parameters": parameters if isinstance(parameters, str) else None,
        "stem": stem,
    }, size


def items_of(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's inputs: its batch's `images`, else its one `image`."""
    batch = params.get("images")
    if isinstance(batch, list):
        return batch
    return [{"image": params["image"], "parameters": params.get("parameters"), "stem": params["stem"]}]


class UpscaleTask:
    """The `upscale` long job kind."""

    kind = JobKind.UPSCALE

    def check(self, params: dict[str, Any], settings: Any) -> dict[str, Any]:
        plan = plan_from_params(params)
        registry = ModelRegistry.from_settings(settings)
        faces = faces_params(params, registry)
        if plan.upscaler in NO_UPSCALER:  # A1111's upscaler None: faces restored alone, at the picture's size
            if not faces:
                raise InvalidRequest(
                    "upscaler", "name an upscaler (salon models lists them) or a face restorer's visibility"
                )
            plan = ExtrasPlan("", 1.0)
        else:
            upscaler = _installed(registry, plan.upscaler, "upscaler")
            second = _installed(registry, plan.upscaler_2, "upscaler_2") if plan.upscaler_2 else None
            plan = ExtrasPlan(upscaler, plan.scale, plan.to, plan.crop, second, plan.visibility_2)
        plan.check()
        batch = params.get("images")
        if batch is None:
            item, size = _checked_item(settings, params, "image")
            plan.check(size)
            item["stem"] = safe_stem(item["stem"])
            return {**plan.to_params(), **faces, **item}
        if not isinstance(batch, list) or not batch:
            raise InvalidRequest("images", "a batch needs a list of one or more pictures")
        if len(batch) > MAX_BATCH_IMAGES:
            raise InvalidRequest("images", f"{len(batch)} pictures; at most {MAX_BATCH_IMAGES} in one batch")
        items, pixels = [], 0
        for index, entry in enumerate(batch):
            item, size = _checked_item(settings, entry, f"images[{index}]")
            try:
                plan.check(size)
            except InvalidRequest as error:
                raise InvalidRequest(error.option, f"{item['stem']}: {error.message}") from None
            width, height = plan.output_size(size)
            pixels += width * height
            items.append(item)
        if pixels > MAX_BATCH_PIXELS:
            raise InvalidRequest(
                "images", f"the batch would make {pixels:,} pixels; at most {MAX_BATCH_PIXELS:,} in one job"
            )
        for item, stem in zip(items, unique_stems([item["stem"] for item in items]), strict=True):
            item["stem"] = stem
        return {**plan.to_params(), **faces, "images": items}

    def run_slice(
        self, engine, job: JobRecord, state: dict | None, workdir: Path, control: SliceControl
    ) -> Slice:
        from engine.faces.extras import restore_for_extras
        from engine.upscaling.extras import save_extras_png
        from engine.upscaling.files import UPSCALERS
        from engine.upscaling.postprocess import run_plan

        params = job.request
        plan = plan_from_params(params)
        running = engine()
        settings = running.settings
        inputs = workdir.parent.parent / "inputs"  # <data_dir>/jobs/work/<job> → the queue's inputs folder
        items = items_of(params)
        state = dict(state or {})
        done, results = int(state.get("done", 0)), list(state.get("results", []))
        loaded: dict[str, Any] = {}

        def load(name: str):
            if name not in loaded:
                loaded[name] = UPSCALERS.load(running.registry, name, str(running.device))
            return loaded[name]

        while done < len(items):
            item = items[done]
            where = f"{item['stem']} ({done + 1}/{len(items)}): " if len(items) > 1 else ""

            def on_tile(name: str, tile: int, total: int, where: str = where) -> None:
                if control.run.on_step is not None:
                    control.run.on_step(StepProgress(f"{where}upscaling with {name}: tiles", tile, total, 0))

            image = load_image(inputs, item["image"])
            result = run_plan(plan, image, load, on_tile=on_tile, cancelled=control.run.cancelled)
            result, faces = restore_for_extras(result, params, running.registry, str(running.device))
            path = settings.outputs_path / EXTRAS_FOLDER / f"{job.id:05d}-{item['stem']}.png"
            info = format_info({**plan.info(), **faces})
            save_extras_png(result, path, item.get("parameters"), info, stored_texts(inputs, item["image"]))
            done += 1
            results.append(str(path))
            if done < len(items) and control.should_yield():
                state.update(done=done, results=results)
                return Slice(state, phase=f"upscaled {done}/{len(items)}", progress=done / len(items))
        return Slice(state, done=True, results=tuple(results), phase="upscaled", progress=1.0)
