"""The long job kinds this Salon runs, in one table: the composition root (app/) hands it to the queue (which
checks a kind's parameters at submit) and to the GPU worker (which runs its slices)."""

from __future__ import annotations

from jobs.animation import AnimateTask
from jobs.long import LongTask
from jobs.merging import MergeTask
from jobs.records import JobKind
from jobs.training import TrainTask


def long_tasks() -> dict[JobKind, LongTask]:
    """Training (`train`), animation (`animate`) and the checkpoint merger (`merge`), by kind."""
    return {task.kind: task for task in (TrainTask(), AnimateTask(), MergeTask())}
