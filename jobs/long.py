"""Long jobs (training, animation) run in slices so that image jobs never wait behind them for long.

A long job's kind has a `LongTask` (their table: jobs/long_kinds.py). The worker runs one slice at a time:
the task works from the state the previous slice left (None at first) until `SliceControl.should_yield()`
says someone else waits and the slice has had its time (or the worker is stopping), then returns a `Slice` with the JSON
state to resume from. The queue stores that state on the job's row, puts the job back in line behind its
owner's image jobs, and the next slice starts where this one stopped. Files a task keeps between slices
(weights, optimizer state, frames) go in the job's `workdir`, which the queue removes when the job ends.

A crash loses at most the work since the last slice; the job resumes from the state stored then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.requests import RunControl
from jobs.records import JobKind, JobRecord


@dataclass(frozen=True)
class Slice:
    """What one slice left: where to resume, or (done) the result files."""

    state: dict[str, Any]
    done: bool = False
    results: tuple[str, ...] = ()
    phase: str = ""
    progress: float = 0.0  # 0…1 of the whole job


@dataclass
class SliceControl:
    """What a long task checks between its own steps."""

    run: RunControl  # cancel flag (the owner cancelled) and step callback
    deadline: float  # time.monotonic() after which the slice should end if others wait
    others_waiting: Callable[[], bool] = lambda: False
    stopping: threading.Event = field(default_factory=threading.Event)  # the worker is shutting down

    def should_yield(self) -> bool:
        """End the slice now: the worker stops, or the slice had its time and another job waits."""
        if self.stopping.is_set():
            return True
        return time.monotonic() >= self.deadline and self.others_waiting()


class LongTask(Protocol):
    """A kind of long job. Runs in the GPU thread; raises core.errors.JobCancelled when cancelled."""

    kind: JobKind

    def check(self, params: dict[str, Any], settings: Any) -> dict[str, Any]:
        """The validated, normalized parameters (JSON) to store, or InvalidRequest naming the option."""
        ...

    def run_slice(
        self,
        engine: Callable[[], Any],
        job: JobRecord,
        state: dict[str, Any] | None,
        workdir: Path,
        control: SliceControl,
    ) -> Slice:
        """Work from `state` until `control.should_yield()` or the end; `engine()` gives the GPU engine."""
        ...


def long_task(tasks: Mapping[JobKind, LongTask], kind: JobKind) -> LongTask:
    """The task for a long kind in `tasks` (jobs/long_kinds.py), or a clear error when this Salon has none."""
    task = tasks.get(kind)
    if task is None:
        from core.errors import InvalidRequest

        raise InvalidRequest("kind", f"{kind.value} jobs are not available in this Salon yet")
    return task
