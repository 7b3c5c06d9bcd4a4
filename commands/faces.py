"""The Extras tab's face restorers for any front end: GFPGAN and CodeFormer visibility and CodeFormer's weight
added to an `upscale` job (the queue checks them once: engine.faces.extras.faces_params)."""

from __future__ import annotations

import dataclasses

from commands.generation import LongJob


def with_faces(
    job: LongJob, gfpgan: float | None = None, codeformer: float | None = None, weight: float | None = None
) -> LongJob:
    """`job` with A1111's `gfpgan_visibility`, `codeformer_visibility` and `codeformer_weight` (those given)."""
    fields = {"gfpgan_visibility": gfpgan, "codeformer_visibility": codeformer, "codeformer_weight": weight}
    given = {name: value for name, value in fields.items() if value is not None}
    if not given:
        return job
    return dataclasses.replace(job, params={**job.params, **given})
