"""What `/sdapi/v1/progress` answers: each caller's own jobs, followed from the queue's `JobEvent`s.

The board subscribes once to every job's events and keeps, for the jobs submitted through this API, their
owner, whether they run, their last step and their last preview; a poll reads only this memory (no database,
no lock), so many clients can poll it often. Interrupt and skip use it to find the caller's jobs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from dataclasses import dataclass, field

from jobs.queue import JobQueue
from jobs.records import EventKind, JobEvent


@dataclass
class Followed:
    """One job of this API, as its events told it."""

    owner: str
    kind: str
    submitted: float = field(default_factory=time.time)
    running: bool = False
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    preview_png: bytes | None = None


class ProgressBoard:
    """The jobs submitted through this API until they end, from the queue's events."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.jobs: dict[int, Followed] = {}
        self._events: asyncio.Queue[JobEvent] | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        # Places in line are not part of A1111's progress: without them, a claim does not make the queue
        # rank every queued job for this board (jobs/queue.py `_publish_positions`).
        self._events = self.queue.subscribe(None, positions=False)
        self._task = asyncio.create_task(self._follow())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._events is not None:
            self.queue.unsubscribe(self._events)

    def follow(self, job_id: int, owner: str, kind: str) -> None:
        self.jobs.setdefault(job_id, Followed(owner, kind))

    def forget(self, job_id: int) -> None:
        self.jobs.pop(job_id, None)

    async def _follow(self) -> None:
        assert self._events is not None
        while True:
            self.on_event(await self._events.get())

    def on_event(self, event: JobEvent) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        if event.kind in (EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED):
            self.forget(event.job_id)
        elif event.kind is EventKind.STARTED:
            job.running = True
        elif event.kind is EventKind.QUEUED:
            job.running = False
        elif event.kind is EventKind.PROGRESS:
            job.running = True
            job.step, job.total = event.step or 0, event.total or 0
            job.eta_s = event.eta_s
            if event.preview_png is not None:
                job.preview_png = event.preview_png

    def of(self, owner: str) -> list[tuple[int, Followed]]:
        """The owner's unfinished jobs, oldest first."""
        return sorted(((i, j) for i, j in self.jobs.items() if j.owner == owner), key=lambda item: item[0])

    def progress(self, owner: str, skip_current_image: bool) -> dict:
        """A1111's `ProgressResponse` for one caller."""
        mine = self.of(owner)
        state = {
            "skipped": False,
            "interrupted": False,
            "stopping_generation": False,
            "job": "",
            "job_count": len(mine),
            "job_timestamp": "0",
            "job_no": 0,
            "sampling_step": 0,
            "sampling_steps": 0,
        }
        if not mine:
            return {
                "progress": 0.0,
                "eta_relative": 0.0,
                "state": state,
                "current_image": None,
                "textinfo": None,
            }
        job_id, job = next(((i, j) for i, j in mine if j.running), mine[0])
        state.update(
            job=f"job {job_id}",
            job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(job.submitted)),
            sampling_step=job.step,
            sampling_steps=job.total,
        )
        progress = min(1.0, 0.01 + job.step / job.total) if job.total else 0.01
        image = None
        if job.preview_png is not None and not skip_current_image:
            image = base64.b64encode(job.preview_png).decode("ascii")
        return {
            "progress": progress,
            "eta_relative": float(job.eta_s or 0.0),
            "state": state,
            "current_image": image,
            "textinfo": "running" if job.running else "queued",
        }
