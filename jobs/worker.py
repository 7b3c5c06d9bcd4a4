"""The one GPU worker: a dedicated thread that owns the engine and runs batches of claimed jobs.

Nothing here touches asyncio objects or the database: the queue hands a batch over with
`run_in_executor`, and progress goes back through the callback the queue gives, which crosses to the event
loop with `call_soon_threadsafe` (the only bridge between the GPU thread and the loop).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine.errors import JobCancelled, SalonError
from engine.requests import GenerationRequest, Img2ImgRequest, InpaintRequest, RunControl, StepProgress
from jobs.codec import request_from_json
from jobs.records import JobKind, JobRecord, JobStatus
from jobs.results import ResultSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a job of a batch ended."""

    status: JobStatus
    results: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Progress:
    """A step of a running job, as the worker reports it (preview already encoded as PNG, when due)."""

    job_id: int
    phase: str
    step: int
    total: int
    preview_png: bytes | None


class GpuWorker:
    """Runs batches of jobs on one engine in one thread, one batch at a time."""

    def __init__(
        self,
        engine_factory: Callable[[], object],
        sink: ResultSink,
        inputs: Path,
        preview_every_steps: int = 5,
    ) -> None:
        self._engine_factory = engine_factory
        self._engine = None
        self._sink = sink
        self._inputs = inputs
        self._preview_every = preview_every_steps
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salon-gpu")

    @property
    def loaded_model(self) -> str | None:
        model = getattr(self._engine, "_model", None)
        return model.name if model is not None else None

    async def run(
        self, jobs: list[JobRecord], controls: dict[int, RunControl], report: Callable[[Progress], None]
    ) -> dict[int, Outcome]:
        """Run `jobs` (one batch) in the GPU thread; `report` is called from that thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_batch, jobs, controls, report)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)

    # ----- in the GPU thread ---------------------------------------------------------------------------------
    def _run_batch(
        self, jobs: list[JobRecord], controls: dict[int, RunControl], report: Callable[[Progress], None]
    ) -> dict[int, Outcome]:
        started = time.perf_counter()
        if self._engine is None:
            self._engine = self._engine_factory()
        for job in jobs:
            controls[job.id].on_step = self._reporter(job.id, report)
        try:
            results = self._generate(jobs, controls)
        except JobCancelled:
            return {job.id: Outcome(JobStatus.CANCELLED) for job in jobs}
        except SalonError as exc:
            return {job.id: Outcome(JobStatus.FAILED, error=str(exc)) for job in jobs}
        except Exception as exc:  # an engine bug must fail the jobs, not kill the worker
            log.exception("jobs %s failed", [job.id for job in jobs])
            return {job.id: Outcome(JobStatus.FAILED, error=f"internal error: {exc}") for job in jobs}
        outcomes = {}
        for job, result in zip(jobs, results, strict=True):
            if controls[job.id].cancelled():
                outcomes[job.id] = Outcome(JobStatus.CANCELLED)
            else:
                outcomes[job.id] = Outcome(JobStatus.DONE, tuple(self._sink.store(job, result)))
        log.info("%6.2fs → jobs %s", time.perf_counter() - started, [job.id for job in jobs])
        return outcomes

    def _generate(self, jobs: list[JobRecord], controls: dict[int, RunControl]) -> list:
        engine = self._engine
        requests = [request_from_json(job.kind, job.request, self._inputs) for job in jobs]
        if all(job.kind is JobKind.IMAGINE for job in jobs):
            assert all(isinstance(r, GenerationRequest) for r in requests)
            return engine.txt2img_many(requests, [controls[job.id] for job in jobs])
        if len(jobs) != 1:
            raise ValueError("only txt2img jobs are batched")
        request, control = requests[0], controls[jobs[0].id]
        if isinstance(request, Img2ImgRequest):
            return [engine.img2img(request, control)]
        if isinstance(request, InpaintRequest):
            return [engine.inpaint(request, control)]
        raise ValueError(f"no handler for job kind {jobs[0].kind}")

    def _reporter(self, job_id: int, report: Callable[[Progress], None]) -> Callable[[StepProgress], None]:
        def on_step(event: StepProgress) -> None:
            due = event.step % self._preview_every == 0 or event.step == event.total
            preview = _png(event.preview()) if due and event.preview is not None else None
            report(Progress(job_id, event.phase, event.step, event.total, preview))

        return on_step


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
