"""The long job kinds this Salon runs, in one table: the composition root (app/) hands it to the queue (which
checks a kind's parameters at submit) and to the GPU worker (which runs its slices)."""

from __future__ import annotations

from engine.tasks.samplers import BUILTIN_SAMPLERS, SamplerTable
from jobs.animation import AnimateTask
from jobs.long import LongTask
from jobs.merging import MergeTask
from jobs.plots import PlotTask
from jobs.records import JobKind
from jobs.training import TrainTask
from jobs.upscaling import UpscaleTask


def long_tasks(samplers: SamplerTable = BUILTIN_SAMPLERS) -> dict[JobKind, LongTask]:
    """Training (`train`), animation (`animate`), the checkpoint merger (`merge`), plots (`xyz`, their
    cells checked against `samplers`: the built-ins unless a caller passes the process's table) and the
    Extras tab's upscale (`upscale`), by kind."""
    tasks = (TrainTask(), AnimateTask(), MergeTask(), PlotTask(samplers), UpscaleTask())
    return {task.kind: task for task in tasks}
