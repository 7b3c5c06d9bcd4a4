"""The one GPU worker: a dedicated thread that owns the engine and runs batches of claimed jobs.

Nothing here touches asyncio objects or the database: the queue hands a batch over with
`run_in_executor`, and progress goes back through the callback the queue gives, which crosses to the event
loop with `call_soon_threadsafe` (the only bridge between the GPU thread and the loop).

There is one GPU thread per process, shared by every worker: torch keeps a CPU thread pool per calling
thread, and two pools spinning on the same cores made every image twice as slow (measured on 2 cores:
0.52 s per demo image from one thread, 1.17 s once a second thread had run torch). Anything else that must
touch the engine goes through `in_gpu_thread`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from core.errors import JobCancelled, SalonError, as_disk_full
from engine.requests import GenerationRequest, Img2ImgRequest, InpaintRequest, RunControl, StepProgress
from jobs.blame import LOADING, NoPoint, PointFile
from jobs.codec import request_from_json
from jobs.long import LongTask, Slice, SliceControl, long_task
from jobs.records import JobKind, JobRecord, JobStatus
from jobs.results import ResultSink

T = TypeVar("T")
log = logging.getLogger(__name__)

_GPU_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salon-gpu")
_GPU_BUSY = threading.Event()  # set while the GPU thread runs a call


async def in_gpu_thread(function: Callable[..., T], *args) -> T:
    """Run `function(*args)` in the process's GPU thread (where the engine lives) and return its result."""
    return await asyncio.get_running_loop().run_in_executor(_GPU_THREAD, _busy_while, function, *args)


def _busy_while(function: Callable[..., T], *args) -> T:
    _GPU_BUSY.set()
    try:
        return function(*args)
    finally:
        _GPU_BUSY.clear()


def gpu_thread_busy() -> bool:
    """The GPU thread is inside a call (one a stop could not interrupt, once the queue has stopped)."""
    return _GPU_BUSY.is_set()


def exit_if_gpu_busy(status: int) -> None:
    """End the process now if the GPU thread is still busy: Python would wait for it at exit, and a model load
    cannot be interrupted. Call it once the queue has stopped (its jobs are back in line) and the databases are
    closed; SQLite transactions are atomic and result files are written under a temporary name, so nothing
    can be left half-written. Logs and output are flushed first."""
    if not gpu_thread_busy():
        return
    log.warning("the GPU thread did not stop in time (loading a model?); exiting without waiting for it")
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


@dataclass(frozen=True)
class Outcome:
    """How a job of a batch ended."""

    status: JobStatus  # QUEUED: a long job finished a slice and goes back in line (see `paused`)
    results: tuple[str, ...] = ()
    error: str | None = None
    paused: Slice | None = None


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
        long_tasks: Mapping[JobKind, LongTask] | None = None,
    ) -> None:
        self._engine_factory = engine_factory
        self._long_tasks = long_tasks or {}  # the long kinds it runs (jobs/long_kinds.py)
        self._engine = None
        self._sink = sink
        self._inputs = inputs
        self._preview_every = preview_every_steps
        self.point: PointFile = NoPoint()  # where the running jobs are (the queue sets the real one)

    @property
    def loaded_model(self) -> str | None:
        model = getattr(self._engine, "_model", None)
        return model.name if model is not None else None

    def describe(self) -> tuple[str, list[str]]:
        """Its device ("cpu" until the engine exists, or without a GPU) and loaded models (`salon workers`)."""
        device = str(getattr(self._engine, "device", "cpu"))
        return device, [self.loaded_model] if self.loaded_model else []

    async def run(
        self, jobs: list[JobRecord], controls: dict[int, RunControl], report: Callable[[Progress], None]
    ) -> dict[int, Outcome]:
        """Run `jobs` (one batch) in the GPU thread; `report` is called from that thread."""
        return await in_gpu_thread(self._run_batch, jobs, controls, report)

    async def run_slice(
        self, job: JobRecord, control: SliceControl, workdir: Path, report: Callable[[Progress], None]
    ) -> Outcome:
        """Run one slice of a long job in the GPU thread."""
        return await in_gpu_thread(self._run_slice, job, control, workdir, report)

    async def prepare(self) -> None:
        """Create the engine and import its libraries, before the queue takes a job: a slow start is nobody's
        fault, and a crash while starting must not be blamed on a job (jobs/blame.py)."""
        await in_gpu_thread(self._prepare)

    async def warm_up(self) -> float:
        """Create the engine and compile its fast path's shapes before the first job (seconds it took)."""
        return await in_gpu_thread(self._warm_up)

    # ----- in the GPU thread ---------------------------------------------------------------------------------
    def _warm_up(self) -> float:
        warm_up = getattr(self._engine_now(), "warm_up", None)
        if warm_up is None:
            return 0.0
        try:
            seconds = warm_up()
        except SalonError as exc:  # e.g. a warm-up model that is not installed: jobs still run, eagerly
            log.warning("warm-up skipped: %s", exc)
            return 0.0
        if seconds:
            log.info("warm-up done in %.1fs", seconds)
        return seconds

    def _prepare(self) -> None:
        self._engine_now()
        from engine.models.loading import import_libraries

        import_libraries()

    def _engine_now(self):
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    def _run_slice(
        self, job: JobRecord, control: SliceControl, workdir: Path, report: Callable[[Progress], None]
    ) -> Outcome:
        started = time.perf_counter()
        control.run.on_step = self._reporter(job.id, report)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            part = long_task(self._long_tasks, job.kind).run_slice(
                self._engine_now, job, job.checkpoint, workdir, control
            )
        except JobCancelled:
            return Outcome(JobStatus.CANCELLED)
        except SalonError as exc:
            return Outcome(JobStatus.FAILED, error=str(exc))
        except Exception as exc:
            self._raise_if_disk_full(exc, workdir)
            log.exception("job %d failed in slice %d", job.id, job.slices + 1)
            return Outcome(JobStatus.FAILED, error=f"internal error: {exc}")
        log.info(
            "%6.2fs → job %d slice %d%s",
            time.perf_counter() - started,
            job.id,
            job.slices + 1,
            " (done)" if part.done else "",
        )
        if part.done:
            return Outcome(JobStatus.DONE, part.results)
        return Outcome(JobStatus.QUEUED, paused=part)

    def _run_batch(
        self, jobs: list[JobRecord], controls: dict[int, RunControl], report: Callable[[Progress], None]
    ) -> dict[int, Outcome]:
        started = time.perf_counter()
        self._engine_now()
        for job in jobs:
            controls[job.id].on_step = self._reporter(job.id, report)
        self._say_loading(jobs)
        try:
            results = self._generate(jobs, controls)
        except JobCancelled:
            return {job.id: Outcome(JobStatus.CANCELLED) for job in jobs}
        except SalonError as exc:
            return {job.id: Outcome(JobStatus.FAILED, error=str(exc)) for job in jobs}
        except Exception as exc:  # an engine bug must fail the jobs, not kill the worker
            self._raise_if_disk_full(exc, self._outputs)
            log.exception("jobs %s failed", [job.id for job in jobs])
            return {job.id: Outcome(JobStatus.FAILED, error=f"internal error: {exc}") for job in jobs}
        self.point.at("saving")
        outcomes = {}
        for job, result in zip(jobs, results, strict=True):
            if controls[job.id].cancelled():
                outcomes[job.id] = Outcome(JobStatus.CANCELLED)
                continue
            try:
                outcomes[job.id] = Outcome(JobStatus.DONE, tuple(self._sink.store(job, result)))
            except OSError as exc:  # a full disk waits for space (the queue puts the batch back); others fail
                self._raise_if_disk_full(exc, self._outputs)
                log.exception("job %d: its images could not be saved", job.id)
                outcomes[job.id] = Outcome(JobStatus.FAILED, error=f"its images could not be saved: {exc}")
        log.info("%6.2fs → jobs %s", time.perf_counter() - started, [job.id for job in jobs])
        return outcomes

    @property
    def _outputs(self) -> Path:
        return getattr(self._sink, "outputs", self._inputs)

    @staticmethod
    def _raise_if_disk_full(exc: Exception, folder: Path) -> None:
        full = as_disk_full(exc, folder)
        if full is not None:
            raise full from exc

    def _say_loading(self, jobs: list[JobRecord]) -> None:
        """Log (and mark the point) that the jobs' checkpoint is being loaded, when it is not loaded yet."""
        model = jobs[0].model
        if model is None or model == self.loaded_model:
            return
        self.point.at(f"{LOADING} {model}")
        log.info("jobs %s: loading %s", [job.id for job in jobs], model)

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
            self.point.at(event.phase, event.step)
            due = event.preview_ready or event.step % self._preview_every == 0 or event.step == event.total
            preview = _png(event.preview()) if due and event.preview is not None else None
            report(Progress(job_id, event.phase, event.step, event.total, preview))

        return on_step


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
