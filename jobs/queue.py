"""The durable, fair job queue feeding the one GPU worker. Front ends talk only to this.

Restart rule. A job is written to SQLite before its submitter is told its place in line. Execution is at
least once: a job that was running when the process died goes back to the queue when the queue starts
again, up to `max_attempts` runs in all; then it fails with a reason. Random seeds are fixed when a job is
accepted and result files are named after the job, so running a job again makes the same images in the same
files, never a second set. A graceful shutdown (SIGTERM, Ctrl-C) stops running jobs at their next step and
puts them back in the queue without counting the attempt; queued jobs simply stay queued. Long jobs
(training, animation; see jobs/long.py) run in slices: each slice's end state is stored on the job's row, so
a stop or a crash resumes them from their last slice, not from the start.

Only one worker may run per data folder (a lock file); other processes (the CLI while a bot runs) submit
to the same database and the worker picks their jobs up within `poll_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable

import jobs.animation  # noqa: F401  (registers the `animate` long job kind)
import jobs.training  # noqa: F401  (registers the `train` long job kind)
from catalog.catalog import Catalog
from config import Settings
from engine.batching import batch_key
from engine.errors import InvalidRequest
from engine.noise import resolve_seed
from engine.registry import ModelRegistry
from engine.requests import GenerationRequest, Img2ImgRequest, InpaintRequest, RunControl
from engine.validation import check_generation, check_img2img, check_inpaint
from jobs.codec import AnyRequest, request_to_json
from jobs.long import SliceControl, long_task
from jobs.records import WARMING_UP, JobEvent, JobKind, JobRecord, JobStatus
from jobs.results import FileSink, ResultSink
from jobs.scheduling import FairScheduler
from jobs.store import JobStore
from jobs.worker import GpuWorker, Outcome, Progress

log = logging.getLogger(__name__)

LOCAL_GUILD = "local"  # the catalog's guild for jobs from the command line
PERSIST_PROGRESS_S = 1.0  # write a running job's progress to its row at most this often (for other processes)


class WorkerBusy(RuntimeError):
    """Another process already runs the worker for this data folder."""


def fix_seeds(request: AnyRequest) -> AnyRequest:
    """The request with −1 seeds replaced by concrete ones, so that any re-run gives the same images."""
    params = request if isinstance(request, GenerationRequest) else request.params
    fixed = dataclasses.replace(
        params,
        seed=resolve_seed(params.seed),
        variation_seed=resolve_seed(params.variation_seed)
        if params.variation_strength > 0
        else params.variation_seed,
    )
    return fixed if isinstance(request, GenerationRequest) else dataclasses.replace(request, params=fixed)


def _with_model(request: AnyRequest, model: str) -> AnyRequest:
    if isinstance(request, GenerationRequest):
        return dataclasses.replace(request, model=model)
    return dataclasses.replace(request, params=dataclasses.replace(request.params, model=model))


class JobQueue:
    """Submit, cancel, watch and run jobs. Open with `await JobQueue.open(settings)`."""

    def __init__(self, settings: Settings, store: JobStore, worker: GpuWorker, catalog: Catalog) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.catalog = catalog
        self.scheduler = FairScheduler()
        self.registry = ModelRegistry.from_settings(settings)
        self.inputs = settings.data_dir / "jobs" / "inputs"
        self._controls: dict[int, RunControl] = {}
        self._user_cancelled: set[int] = set()
        self._subscribers: list[tuple[int | None, asyncio.Queue[JobEvent]]] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._started_steps: dict[int, float] = {}
        self._persisted: dict[int, float] = {}
        self._lock_file: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future] = set()
        self._stop_slices = threading.Event()  # a running slice should end (with its state saved)
        self._others_waiting = threading.Event()  # set while a slice runs and some other job is queued
        self._running_slice: int | None = None
        self._warming = False  # the worker is compiling its fast path before the first job

    @classmethod
    async def open(
        cls,
        settings: Settings,
        engine_factory: Callable[[], object] | None = None,
        sink: ResultSink | None = None,
    ) -> JobQueue:
        sink = sink or FileSink(settings.outputs_path, _postprocessors(settings))  # a bad setting fails first
        store = await JobStore.open(settings.queue_db)
        if engine_factory is None:

            def engine_factory():
                from engine.runner import Engine

                return Engine(settings)

        inputs = settings.data_dir / "jobs" / "inputs"
        worker = GpuWorker(
            engine_factory,
            sink,
            inputs,
            settings.queue.preview_every_steps,
        )
        return cls(
            settings, store, worker, await Catalog.open(settings.catalog_dir, settings.catalog.text_index)
        )

    async def close(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.store.close()
        await self.catalog.close()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    # ----- submitting ----------------------------------------------------------------------------------------
    async def submit(
        self,
        request: AnyRequest,
        owner: str,
        *,
        guild: str | None = None,
        channel: str | None = None,
        idempotency_key: str | None = None,
        meta: dict | None = None,
        max_pending: int | None = None,
    ) -> JobRecord:
        """Check, persist and announce a job; the same idempotency key again returns the first job.

        `meta` holds front-end details kept with the job: `parent_id` and `relation` (lineage in the
        catalog), `nsfw`, and whatever a front end needs to deliver the result after a restart.
        `max_pending` lowers the per-person limit (a guild's own setting)."""
        self._check(request)
        params = request if isinstance(request, GenerationRequest) else request.params
        model = self.registry.checkpoint(params.model or self.settings.default_model).name
        request = _with_model(fix_seeds(request), model)
        kind, data = request_to_json(request, self.inputs)
        key = _digest(batch_key(request)) if isinstance(request, GenerationRequest) else ""
        where = {"guild": guild, "channel": channel, "idempotency_key": idempotency_key, "meta": meta}
        return await self._persist(kind, owner, data, model, key, where, max_pending)

    async def submit_task(
        self,
        kind: JobKind,
        params: dict,
        owner: str,
        *,
        guild: str | None = None,
        channel: str | None = None,
        idempotency_key: str | None = None,
        meta: dict | None = None,
        max_pending: int | None = None,
    ) -> JobRecord:
        """Check, persist and announce a long job (training, animation) with its kind's JSON parameters."""
        if not kind.long:
            raise InvalidRequest("kind", f"{kind.value} jobs are submitted with `submit`, not `submit_task`")
        params = long_task(kind).check(dict(params), self.settings)
        model = params.get("model")
        if model is not None:
            model = self.registry.checkpoint(model).name
        where = {"guild": guild, "channel": channel, "idempotency_key": idempotency_key, "meta": meta}
        return await self._persist(kind, owner, params, model, "", where, max_pending)

    async def _persist(
        self,
        kind: JobKind,
        owner: str,
        data: dict,
        model: str | None,
        key: str,
        where: dict,
        max_pending: int | None = None,
    ) -> JobRecord:
        """Write the job (or find the one with its idempotency key) within the limits, and announce it."""
        limit = self.settings.queue.max_pending_per_user
        record, created = await self.store.submit(
            kind,
            owner,
            data,
            **where,
            batch_key=key,
            model=model,
            max_pending_per_user=min(limit, max_pending) if max_pending else limit,
            max_queued=self.settings.queue.max_queued,
        )
        if created:
            await self._announce(record)
        return record

    async def _announce(self, record: JobRecord) -> None:
        position = (await self.positions()).get(record.id)
        log.info(
            "job %d accepted from %s (%s), position %s", record.id, record.owner, record.kind.value, position
        )
        self._publish(JobEvent(record.id, "queued", JobStatus.QUEUED, position=position, phase=self._phase()))
        self._others_waiting.set()
        self._wakeup.set()

    def workdir(self, job_id: int):
        """Where a long job keeps its files between slices (removed when the job ends)."""
        return self.settings.data_dir / "jobs" / "work" / str(job_id)

    def _check(self, request: AnyRequest) -> None:
        limits = self.settings.limits
        if isinstance(request, GenerationRequest):
            check_generation(request, limits)
        elif isinstance(request, Img2ImgRequest):
            check_img2img(request, limits)
        elif isinstance(request, InpaintRequest):
            check_inpaint(request, limits)
        else:
            raise InvalidRequest("request", f"unsupported request type {type(request).__name__}")

    async def positions(self) -> dict[int, int]:
        """Place in line of every queued job (1 = next)."""
        return self.scheduler.positions(await self.store.queued())

    async def cancel(self, job_id: int, requester: str | None = None, moderator: bool = False) -> JobRecord:
        """Cancel a queued job (removed at once) or a running one (it stops at its next step, also when
        another process's worker runs it)."""
        job = await self.store.get(job_id)
        if job is None:
            raise InvalidRequest("job", f"there is no job {job_id}")
        if requester is not None and job.owner != requester and not moderator:
            raise InvalidRequest(
                "job", f"job {job_id} is not yours; only its owner or a moderator can cancel it"
            )
        if job.status is JobStatus.QUEUED:
            cancelled = await self.store.transition(
                job_id, JobStatus.CANCELLED, [JobStatus.QUEUED], phase="cancelled"
            )
            if cancelled is not None:
                shutil.rmtree(self.workdir(job_id), ignore_errors=True)
                self._publish(JobEvent(job_id, "cancelled", JobStatus.CANCELLED))
                await self._publish_positions()
                return cancelled
            job = await self.store.get(job_id) or job  # it started meanwhile
        if job.status is JobStatus.RUNNING:
            control = self._controls.get(job_id)
            if control is None:
                # Another process runs it: leave word on its row; that worker stops it at its next step.
                await self.store.request_cancel(job_id)
                return job
            self._user_cancelled.add(job_id)
            control.cancel.set()
        return job

    # ----- watching ------------------------------------------------------------------------------------------
    def subscribe(self, job_id: int | None = None) -> asyncio.Queue[JobEvent]:
        """Events of one job (or all jobs with None), in order, until `unsubscribe`."""
        events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._subscribers.append((job_id, events))
        return events

    def unsubscribe(self, events: asyncio.Queue[JobEvent]) -> None:
        self._subscribers = [(j, q) for j, q in self._subscribers if q is not events]

    def _publish(self, event: JobEvent) -> None:
        for job_id, events in self._subscribers:
            if job_id is None or job_id == event.job_id:
                events.put_nowait(event)

    async def _publish_positions(self) -> None:
        for job_id, position in (await self.positions()).items():
            self._publish(
                JobEvent(job_id, "queued", JobStatus.QUEUED, position=position, phase=self._phase())
            )

    def _phase(self) -> str | None:
        return WARMING_UP if self._warming else None

    async def wait(self, job_id: int, on_event: Callable[[JobEvent], None] | None = None) -> JobRecord:
        """Until the job ends: from this process's events, or by polling its row if another process runs it."""
        events = self.subscribe(job_id)
        try:
            while True:
                job = await self.store.get(job_id)
                if job is None:
                    raise InvalidRequest("job", f"there is no job {job_id}")
                if job.status.terminal:
                    return job
                with contextlib.suppress(TimeoutError):
                    event = await asyncio.wait_for(events.get(), self.settings.queue.poll_interval_s)
                    if on_event is not None:
                        on_event(event)
        finally:
            self.unsubscribe(events)

    # ----- running -------------------------------------------------------------------------------------------
    def claim_worker(self) -> None:
        """Become this data folder's only worker (raises WorkerBusy if another process is)."""
        if self._lock_file is not None:
            return
        path = self.settings.data_dir / "worker.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkerBusy(f"another Salon process runs the worker for {self.settings.data_dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_file = fd

    async def recover(self) -> None:
        """Requeue jobs a dead worker left running (or fail them once out of attempts)."""
        requeued, failed = await self.store.recover(self.settings.queue.max_attempts)
        for job_id in requeued:
            log.warning("job %d was interrupted by a stop; queued again", job_id)
        for job_id in failed:
            log.error("job %d was interrupted %d times; failed", job_id, self.settings.queue.max_attempts)

    async def run(self, stop: asyncio.Event | None = None, until_empty: bool = False) -> None:
        """The dispatcher: claim the worker, recover, then run batches until `stop` (or the queue is empty)."""
        self.claim_worker()
        self._loop = asyncio.get_running_loop()
        await self.recover()
        if self.settings.speed.warmup and not until_empty:  # a one-shot run would not earn a compile back
            self._warming = True  # queued jobs say so meanwhile
            await self._publish_positions()
            try:
                await self.worker.warm_up()
            finally:
                self._warming = False
        stop = stop or asyncio.Event()
        while not stop.is_set() and not self._stopping:
            if await self.run_once():
                continue
            if until_empty:
                return
            self._wakeup.clear()
            waiters = [asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(
                waiters, timeout=self.settings.queue.poll_interval_s, return_when="FIRST_COMPLETED"
            )
            for waiter in waiters:
                waiter.cancel()

    async def run_until_empty(self) -> None:
        await self.run(until_empty=True)

    async def run_once(self) -> bool:
        """Run the next batch, if any job waits; True when something ran."""
        self._loop = asyncio.get_running_loop()
        queued = await self.store.queued()
        batch = self.scheduler.next_batch(
            queued, self.worker.loaded_model, self.settings.queue.max_batch_images
        )
        if not batch:
            return False
        claimed = await self.store.claim([job.id for job in batch])
        if not claimed:
            return True
        controls = {job.id: RunControl() for job in claimed}
        self._controls.update(controls)
        for job in claimed:
            self._publish(JobEvent(job.id, "started", JobStatus.RUNNING, phase="starting"))
        await self._publish_positions()
        long = claimed[0].kind.long
        if long:
            self._others_waiting.clear()
        watcher = asyncio.ensure_future(self._watch(controls, long))
        try:
            if long:
                outcomes = {claimed[0].id: await self._run_slice(claimed[0], controls[claimed[0].id])}
            else:
                outcomes = await self.worker.run(claimed, controls, self._report_from_worker)
        finally:
            watcher.cancel()
            for job in claimed:
                self._controls.pop(job.id, None)
        for job in claimed:
            await self._finish(job, outcomes[job.id])
        return True

    async def _run_slice(self, job: JobRecord, control: RunControl) -> Outcome:
        """One slice of a long job; it ends early once `_watch` sees someone else waiting."""
        slice_control = SliceControl(
            run=control,
            deadline=time.monotonic() + self.settings.queue.slice_s,
            others_waiting=self._others_waiting.is_set,
            stopping=self._stop_slices,
        )
        self._running_slice = job.id
        try:
            return await self.worker.run_slice(
                job, slice_control, self.workdir(job.id), self._report_from_worker
            )
        finally:
            self._running_slice = None

    async def _watch(self, controls: dict[int, RunControl], long: bool) -> None:
        """While jobs run: honour cancels asked for by other processes, and (for a slice) notice others waiting."""
        while True:
            for job_id in await self.store.cancel_requests(list(controls)):
                if not controls[job_id].cancelled():
                    log.info("job %d: cancel asked for by another process", job_id)
                    self._user_cancelled.add(job_id)
                    controls[job_id].cancel.set()
            if long and not self._others_waiting.is_set():
                if any(job.id not in controls for job in await self.store.queued()):
                    self._others_waiting.set()
            await asyncio.sleep(self.settings.queue.poll_interval_s)

    async def _finish(self, job: JobRecord, outcome: Outcome) -> None:
        self._started_steps.pop(job.id, None)
        self._persisted.pop(job.id, None)
        if outcome.paused is not None:
            # A long job's slice ended: keep its state and put it back in line; the slice was not a crash.
            part = outcome.paused
            updated = await self.store.transition(
                job.id,
                JobStatus.QUEUED,
                [JobStatus.RUNNING],
                phase=part.phase or f"paused after slice {job.slices + 1}",
                progress=part.progress,
                checkpoint=part.state,
                slices=job.slices + 1,
                attempts=max(0, job.attempts - 1),
            )
            if updated is not None:
                position = (await self.positions()).get(job.id)
                self._publish(
                    JobEvent(job.id, "queued", JobStatus.QUEUED, position=position, phase=updated.phase)
                )
            return
        if outcome.status is JobStatus.CANCELLED and job.id not in self._user_cancelled:
            # Stopped by a shutdown, not by a person: back in line, and this run does not count.
            await self.store.transition(
                job.id,
                JobStatus.QUEUED,
                [JobStatus.RUNNING],
                phase="queued again after a stop",
                attempts=max(0, job.attempts - 1),
            )
            return
        self._user_cancelled.discard(job.id)
        images: tuple[int, ...] = ()
        if outcome.status is JobStatus.DONE and outcome.results and not job.kind.long:
            # Into the catalog before the job is marked done: a crash in between re-runs the job, which
            # rewrites the same files, and the catalog does not add a path twice.
            images = await self._catalogue(job, outcome.results)
        updated = await self.store.transition(
            job.id,
            outcome.status,
            [JobStatus.RUNNING],
            phase=outcome.status.value,
            results=outcome.results,
            error=outcome.error,
            **({"progress": 1.0} if outcome.status is JobStatus.DONE else {}),
        )
        if job.kind.long:
            shutil.rmtree(self.workdir(job.id), ignore_errors=True)
        if updated is not None:
            self._publish(
                JobEvent(
                    job.id,
                    outcome.status.value,
                    outcome.status,
                    results=outcome.results,
                    images=images,
                    error=outcome.error,
                )
            )

    async def _catalogue(self, job: JobRecord, paths: tuple[str, ...]) -> tuple[int, ...]:
        from catalog.records import NewImage, Relation
        from engine.infotext_files import read_infotext

        relation = job.meta.get("relation")
        new = [
            NewImage(
                path,
                job.guild or LOCAL_GUILD,
                job.owner,
                read_infotext(path) or "",
                channel=job.channel,
                created=time.time(),
                job_id=job.id,
                parent_id=job.meta.get("parent_id"),
                relation=Relation(relation) if relation else None,
                nsfw=bool(job.meta.get("nsfw")),
            )
            for path in paths
        ]
        records = await self.catalog.add_many(new)
        return tuple(record.id for record in records)

    async def shutdown(self) -> None:
        """Stop at the next step: running jobs go back to the queue, nothing new starts."""
        self._stopping = True
        self._stop_slices.set()
        for job_id, control in self._controls.items():
            if job_id == self._running_slice:
                continue  # a slice ends at its next step with its state saved, rather than being cancelled
            control.cancel.set()
        self._wakeup.set()

    # ----- progress from the GPU thread ---------------------------------------------------------------------
    def _report_from_worker(self, progress: Progress) -> None:
        """Called in the GPU thread: hand the progress to the event loop (the only bridge between them)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_progress, progress)

    def _on_progress(self, progress: Progress) -> None:
        now = time.monotonic()
        started = self._started_steps.setdefault(progress.job_id, now)
        eta = (now - started) / progress.step * (progress.total - progress.step) if progress.step else None
        self._publish(
            JobEvent(
                progress.job_id,
                "progress",
                JobStatus.RUNNING,
                step=progress.step,
                total=progress.total,
                phase=progress.phase,
                eta_s=eta,
                preview_png=progress.preview_png,
            )
        )
        if now - self._persisted.get(progress.job_id, 0.0) >= PERSIST_PROGRESS_S:
            self._persisted[progress.job_id] = now
            write = asyncio.ensure_future(
                self.store.transition(
                    progress.job_id,
                    JobStatus.RUNNING,
                    [JobStatus.RUNNING],
                    phase=progress.phase,
                    progress=progress.step / progress.total,
                )
            )
            self._background.add(write)
            write.add_done_callback(self._background.discard)


def _digest(key: object) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32]


def owner_for_cli() -> str:
    """The owner name of jobs submitted from this machine's command line."""
    import getpass

    return f"cli:{getpass.getuser()}"


def _postprocessors(settings: Settings):
    """Load the enabled extensions (their samplers become known to the engine) and return the post-processing
    steps the configuration lists."""
    from extensions import discover, postprocessors

    return postprocessors(discover(settings.extensions.disabled), settings.extensions.postprocess)
