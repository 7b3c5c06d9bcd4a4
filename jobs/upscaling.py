"""The Extras tab's upscale as a long queue job (kind `upscale`): one picture through a model upscaler, in one
slice.

The job's parameters (JSON): `upscaler` (a `models/ESRGAN`… file's name), `scale` (A1111's "Upscale by"),
`image` (the input, stored under the queue's inputs by `jobs.codec.store_image`), `parameters` (the input's
own infotext, kept in the result as A1111 keeps it; may be absent) and `stem` (the input's name, for the
result's). The queue checks them once at submit: the upscaler installed (else the installed ones are named),
the scale within 1..8 and the output within 8192 pixels a side. The result is
`<outputs>/extras-images/<job>-<stem>.png` with A1111's `postprocessing` and `extras` text, and goes into the
catalog like an image job's (relation "upscale" to its parent when the front end names one in the job's meta).
Progress is tiles done out of all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from engine.models.registry import ModelKind, ModelRegistry
from engine.requests import StepProgress
from engine.upscaling.extras import DEFAULT_SCALE, check_scale, postprocess_infotext, target_size
from jobs.codec import load_image
from jobs.long import Slice, SliceControl
from jobs.records import JobKind, JobRecord

EXTRAS_FOLDER = "extras-images"  # A1111's outputs/extras-images
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def inputs_folder(settings) -> Path:
    """Where the queue keeps input images (jobs.queue.JobQueue.inputs)."""
    return settings.data_dir / "jobs" / "inputs"


def safe_stem(name: str) -> str:
    """A file-name part from a user's file name: letters, digits, `._-` (at most 60)."""
    return _UNSAFE.sub("_", name).strip("._")[:60] or "image"


class UpscaleTask:
    """The `upscale` long job kind."""

    kind = JobKind.UPSCALE

    def check(self, params: dict[str, Any], settings: Any) -> dict[str, Any]:
        name = params.get("upscaler")
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("upscaler", "name an upscaler (salon models lists them)")
        entry = ModelRegistry.from_settings(settings).find_fresh(ModelKind.UPSCALER, name)
        try:
            scale = float(params.get("scale") or DEFAULT_SCALE)
        except (TypeError, ValueError):
            raise InvalidRequest("scale", f"{params.get('scale')!r} is not a number") from None
        image = params.get("image")
        if not isinstance(image, str):
            raise InvalidRequest("image", "no input image")
        try:
            size = load_image(inputs_folder(settings), image).size
        except (OSError, ValueError):
            raise InvalidRequest("image", "the input image is not stored") from None
        check_scale(scale, size)
        parameters = params.get("parameters")
        return {
            "upscaler": entry.name,
            "scale": scale,
            "image": image,
            "parameters": parameters if isinstance(parameters, str) else None,
            "stem": safe_stem(str(params.get("stem") or "image")),
        }

    def run_slice(
        self, engine, job: JobRecord, state: dict | None, workdir: Path, control: SliceControl
    ) -> Slice:
        from engine.upscaling.extras import save_extras_png
        from engine.upscaling.files import UPSCALERS
        from engine.upscaling.upscale import upscale_to

        params = job.request
        running = engine()
        settings = running.settings
        upscaler = UPSCALERS.load(running.registry, params["upscaler"], str(running.device))
        inputs = workdir.parent.parent / "inputs"  # <data_dir>/jobs/work/<job> → the queue's inputs folder
        image = load_image(inputs, params["image"])
        phase = f"upscaling with {upscaler.name}: tiles"

        def on_tile(done: int, total: int) -> None:
            if control.run.on_step is not None:
                control.run.on_step(StepProgress(phase, done, total, 0))

        size = target_size(image.size, params["scale"])
        result = upscale_to(upscaler, image, size, on_tile=on_tile, cancelled=control.run.cancelled)
        path = settings.outputs_path / EXTRAS_FOLDER / f"{job.id:05d}-{params['stem']}.png"
        text = postprocess_infotext(params["scale"], upscaler.name)
        save_extras_png(result, path, params.get("parameters"), text)
        return Slice(dict(state or {}), done=True, results=(str(path),), phase="upscaled", progress=1.0)
