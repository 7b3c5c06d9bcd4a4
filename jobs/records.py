"""Job records, statuses and events: the values the queue stores and publishes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobKind(StrEnum):
    IMAGINE = "imagine"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    TRAIN = "train"
    ANIMATE = "animate"
    MERGE = "merge"
    XYZ = "xyz"  # a plot: X/Y/Z, prompt matrix, prompts from file (jobs/plots.py)
    UPSCALE = "upscale"  # the Extras tab's upscale with a model upscaler (jobs/upscaling.py)

    @property
    def long(self) -> bool:
        """Runs in slices that yield the GPU to image jobs (see jobs/long.py)."""
        return self in (JobKind.TRAIN, JobKind.ANIMATE, JobKind.MERGE, JobKind.XYZ, JobKind.UPSCALE)

    @property
    def catalogued(self) -> bool:
        """Its results go into the catalog: image jobs' images, plots' cells and grids, upscales, an animation as
        one item with its frames (jobs/animation.py)."""
        return not self.long or self in (JobKind.XYZ, JobKind.UPSCALE, JobKind.ANIMATE)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class JobRecord:
    """One row of the jobs table."""

    id: int
    kind: JobKind
    owner: str
    guild: str | None
    channel: str | None
    request: dict[str, Any]
    status: JobStatus
    phase: str
    progress: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    results: tuple[str, ...]
    idempotency_key: str | None
    attempts: int
    batch_key: str  # jobs with equal keys may run in one denoising batch ("" = never batched)
    model: str | None
    checkpoint: dict[str, Any] | None = None  # a long job's state after its last slice
    slices: int = 0  # slices of a long job finished so far
    meta: dict[str, Any] = field(
        default_factory=dict
    )  # front-end details: parent image, relation, nsfw, reply
    delivered_at: float | None = None  # when a front end showed the outcome to its owner
    solo: bool = False  # never batched again: a batch it was in died (see jobs/blame.py)
    deaths: tuple[str, ...] = ()  # where the worker died while running it alone, oldest first
    worker: str | None = None  # the worker that runs or ran it (a shared queue on PostgreSQL only)


WARMING_UP = "warming up"  # the phase of queued jobs while the worker compiles its fast path


class EventKind(StrEnum):
    """What happened to a job (the values are those logged and compared by front ends)."""

    QUEUED = "queued"  # accepted, or back in line (with its place)
    STARTED = "started"
    PROGRESS = "progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobEvent:
    """Something happened to a job; front ends subscribe to these."""

    job_id: int
    kind: EventKind
    status: JobStatus
    position: int | None = None  # place in the queue (1 = next), for "queued"
    step: int | None = None
    total: int | None = None
    phase: str | None = None
    eta_s: float | None = None
    preview_png: bytes | None = field(default=None, repr=False)
    results: tuple[str, ...] = ()
    images: tuple[int, ...] = ()  # catalog ids of the results, for "done"
    error: str | None = None
