"""The checkpoint merger as a long queue job (kind `merge`): checked options in JSON, one slice.

The job's parameters are `engine.models.merging.MergeOptions` as JSON. A merge streams the inputs key by key
and reports its progress as keys written out of the total; it runs in one slice (minutes at most, even for
SDXL on a CPU), checking the cancel flag between keys. The result goes to models/Stable-diffusion with a
`.salon.json` sidecar saying who made it (so it never becomes the default checkpoint by itself).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from core.files import atomic_write
from engine.models.merging import MergeOptions, check_options
from engine.models.trained_files import OWNER_SUFFIX
from engine.requests import StepProgress
from jobs.long import Slice, SliceControl
from jobs.records import JobKind, JobRecord

PROGRESS_EVENTS = 100  # about this many progress events per merge, whatever its number of keys


def merge_options(params: dict[str, Any]) -> MergeOptions:
    """The options of a job's JSON parameters, checked (InvalidRequest names the option)."""
    try:
        options = MergeOptions(
            mode=str(params.get("mode", "weighted-sum")),
            primary=str(params["primary"]),
            secondary=params.get("secondary") or None,
            tertiary=params.get("tertiary") or None,
            multiplier=float(params.get("multiplier", 0.3)),
            name=str(params.get("name")),
            vae=params.get("vae") or None,
            fp16=bool(params.get("fp16", False)),
            discard=str(params.get("discard") or ""),
        )
    except KeyError:
        raise InvalidRequest("A", "the first model A is missing") from None
    except (TypeError, ValueError):
        raise InvalidRequest("multiplier", f"{params.get('multiplier')!r} is not a number") from None
    for field in ("secondary", "tertiary", "vae"):
        if getattr(options, field) is not None and not isinstance(getattr(options, field), str):
            raise InvalidRequest(field, "must be a model name")
    return check_options(options)


class MergeTask:
    """The `merge` long job kind."""

    kind = JobKind.MERGE

    def check(self, params: dict[str, Any], settings: Any) -> dict[str, Any]:
        options = merge_options(params)
        target = settings.checkpoints_dir / f"{options.name}.safetensors"
        if target.exists() or (settings.checkpoints_dir / options.name).exists():
            raise InvalidRequest(
                "name", f"{target} already exists; a merge never overwrites: choose another name"
            )
        return asdict(options)

    def run_slice(
        self, engine, job: JobRecord, state: dict | None, workdir: Path, control: SliceControl
    ) -> Slice:
        from engine.models.merging import merge_checkpoints

        options = merge_options(job.request)
        running = engine()
        every = 1

        def on_step(done: int, total: int) -> None:
            nonlocal every
            every = max(1, total // PROGRESS_EVENTS)
            if control.run.on_step is not None and (done % every == 0 or done == total):
                control.run.on_step(StepProgress(f"merging {options.name}: keys", done, total, 0))

        path = merge_checkpoints(running.registry, options, on_step, control.run.cancelled)
        sidecar = {"owner": job.owner, "guild": job.guild, "job": job.id, "merged_at": time.time()}
        atomic_write(path.with_name(path.name + OWNER_SUFFIX), json.dumps(sidecar))
        running.registry.refresh()
        return Slice(dict(state or {}), done=True, results=(str(path),), phase="merged", progress=1.0)
