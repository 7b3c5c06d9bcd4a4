"""The durable, fair job queue feeding the one GPU worker. Front ends talk only to this.

Restart rule. A job is written to SQLite before its submitter is told its place in line. Execution is at
least once: a job that was running when the process died goes back to the queue when the queue starts
again. Random seeds are fixed when a job is accepted and result files are named after the job (and written
under a temporary name, then renamed), so running a job again makes the same images in the same files, never
a second set, and the catalog does not add a path twice.

Blame (jobs/blame.py). The worker keeps a point file saying which jobs run, in which phase, at which step.
After a crash, a batch that died is not blamed: its jobs go back in line without counting the attempt and
run alone from then on, and a job that died comes after its owner's other jobs. Only a job that died running
alone counts the death, with its point; it fails once it has died more than `max_attempts` times at the
same denoising step (a job that crashes the process dies at the same point every time, an outside kill
lands anywhere), or 3 × `max_attempts` times at any points (starting, loading a checkpoint, saving: longer
than a step, so outside kills land there often). The error names where it died (`salon queue` shows it).
The engine is created before the first job is taken, so a slow or failing start is no job's fault.

Stops. A graceful shutdown (SIGTERM, Ctrl-C) stops running jobs at their next step and puts them back in the
queue without counting the attempt; queued jobs simply stay queued. When the GPU thread does not stop within
STOP_GRACE_S (a model load cannot be interrupted) the jobs are put back anyway and `run` returns; the
process then exits without waiting for that thread (jobs.worker.exit_if_gpu_busy). Long jobs (training,
animation; see jobs/long.py) run in slices: each slice's end state is stored on the job's row, so a stop or
a crash resumes them from their last slice, not from the start.

A full disk (a PNG, the text index or SQLite cannot write) pauses the worker: the error is logged with the
folder and the free space, the batch goes back in line without counting the attempt, queued jobs show
"waiting: disk full in … (… free)" in `salon queue`, and the worker tries again after 5 s, doubling up to
5 minutes, or as soon as space is freed.

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
from collections.abc import Awaitable, Callable

import jobs.animation  # noqa: F401  (registers the `animate` long job kind)
import jobs.training  # noqa: F401  (registers the `train` long job kind)
from catalog.catalog import Catalog
from config import Settings
from core.errors import DiskFull, InvalidRequest, as_disk_full
from engine.models.registry import ModelRegistry
from engine.requests import GenerationRequest, Img2ImgRequest, InpaintRequest, RunControl
from engine.seeds import resolve_seed
from engine.tasks.batching import batch_key
from engine.validation import check_generation, check_img2img, check_inpaint
from jobs.blame import PointFile
from jobs.codec import AnyRequest, request_to_json
from jobs.diskwait import WAITING, DiskWait, worker_waiting
from jobs.long import SliceControl, long_task
from jobs.records import WARMING_UP, JobEvent, JobKind, JobRecord, JobStatus
from jobs.results import FileSink, ResultSink
from jobs.scheduling import FairScheduler
from jobs.store import JobStore
from jobs.worker import GpuWorker, Outcome, Progress

log = logging.getLogger(__name__)

LOCAL_GUILD = "local"  # the catalog's guild for jobs from the command line
PERSIST_PROGRESS_S = 1.0  # write a running job's progress to its row at most this often (for other processes)
STOP_GRACE_S = 5.0  # after a stop, wait this long for the GPU thread's next step, then leave it (exit < 10 s)
ABANDONED = object()  # what `_unless_stopped` returns for GPU work left running after a stop


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
        self._shutdown_asked = asyncio.Event()
        self.point = PointFile(settings.data_dir / "worker.point")  # opened by `claim_worker`
        self._prepared = False  # the engine exists and its libraries are imported (before the first claim)
        self.gpu_abandoned = False  # a stop left GPU work running (see jobs.worker.exit_if_gpu_busy)
        self._disk = DiskWait(store, self.point)  # why queued jobs wait (a full disk), while they do
        self._stranded: dict[int, JobRecord] = {}  # jobs a full disk kept from going back in line

    @classmethod
    async def open(
        cls,
        settings: Settings,
        engine_factory: Callable[[], object] | None = None,
        sink: ResultSink | None = None,
    ) -> JobQueue:
        sink = sink or FileSink(settings.outputs_path, _postprocessors(settings))  # a bad setting fails first
        store = await JobStore.open(settings.queue_db)
        try:
            catalog = await Catalog.open(settings.catalog_dir, settings.catalog.text_index)
        except BaseException:
            await store.close()  # an open connection would keep the process from exiting
            raise
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
        return cls(settings, store, worker, catalog)

    async def close(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await self.store.close()
        finally:
            await self.catalog.close()
        self.point.close()
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

    def worker_waiting(self) -> str | None:
        """Why the worker of this data folder (in this process or another) waits, if it does: a full disk."""
        return self._disk.reason or worker_waiting(self.settings.data_dir, self.point)

    def _phase(self) -> str | None:
        return WARMING_UP if self._warming else self._disk.reason

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
        self.point.open()
        self.worker.point = self.point

    async def recover(self) -> bool:
        """Requeue the jobs a dead worker left running, or fail those to blame (jobs/blame.py); True."""
        point = self.point.last()
        where = point.label() if point is not None else "an unknown point"
        requeued, failed = await self.store.recover(self.settings.queue.max_attempts, point)
        for job_id in requeued:
            log.warning("job %d was running when the worker died (at %s); queued again", job_id, where)
        for job_id in failed:
            job = await self.store.get(job_id)
            log.error("job %d failed: %s", job_id, job.error if job else "")
        return True

    async def run(self, stop: asyncio.Event | None = None, until_empty: bool = False) -> None:
        """The dispatcher: claim the worker, recover, then run batches until `stop` (or the queue is empty).

        A full disk pauses it: the error is logged, the batch goes back in line and queued jobs say why they
        wait, until space returns (jobs/diskwait.py). After `shutdown` it returns within STOP_GRACE_S, even
        when the GPU thread cannot be interrupted (then `gpu_abandoned` is set)."""
        self.claim_worker()
        self._loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        while await self._on_full_disk(self.recover(), stop) is None:
            if stop.is_set() or self._stopping:
                return
        if self.settings.speed.warmup and not until_empty:  # a one-shot run would not earn a compile back
            self._warming = True  # queued jobs say so meanwhile
            await self._publish_positions()
            try:
                await self._unless_stopped(self.worker.warm_up())
            finally:
                self._warming = False
        while not stop.is_set() and not self._stopping:
            ran = await self._on_full_disk(self._run_next(), stop)
            if ran or ran is None:  # None: it waited for disk space
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

    async def _run_next(self) -> bool:
        if self._stranded:
            await self._put_back(list(self._stranded.values()), self._disk.reason or "queued again")
        ran = await self.run_once()
        if ran:
            await self._disk.over()
        return ran

    async def _on_full_disk(self, work: Awaitable[bool], stop: asyncio.Event) -> bool | None:
        """`work`'s result, or None after waiting for space when it found the disk full."""
        try:
            return await work
        except DiskFull as full:
            await self._disk.wait(full, stop, self._shutdown_asked)
            await self._publish_positions()  # with the reason
            return None

    async def _unless_stopped(self, work: Awaitable):
        """`work`'s result (GPU thread work); after `shutdown`, if it has not ended within STOP_GRACE_S (a model
        load cannot be interrupted), ABANDONED, leaving it running."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._shutdown_asked.wait())
        try:
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            await asyncio.wait([task], timeout=STOP_GRACE_S)
        if not task.done():
            log.warning("the GPU thread did not stop within %.0f s; leaving it", STOP_GRACE_S)
            self.gpu_abandoned = True
            task.add_done_callback(_quietly)
            return ABANDONED
        return task.result()

    async def run_once(self) -> bool:
        """Run the next batch, if any job waits; True when something ran (DiskFull: it went back in line)."""
        self._loop = asyncio.get_running_loop()
        queued = await self.store.queued()
        batch = self.scheduler.next_batch(
            queued, self.worker.loaded_model, self.settings.queue.max_batch_images
        )
        if not batch:
            return False
        if not self._prepared:  # before any claim: a slow or failing start is no job's fault
            self.point.begin([], "starting the engine")
            if await self._unless_stopped(self.worker.prepare()) is ABANDONED:
                return True
            self._prepared = True
        self.point.begin([job.id for job in batch])  # before the claim, so a death after it names them
        claimed = await self.store.claim([job.id for job in batch])
        if not claimed:
            self.point.idle()
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
        watcher.add_done_callback(_quietly)
        try:
            try:
                if not long:
                    await self._say_loading(claimed)
                if long:
                    work = self._run_slice(claimed[0], controls[claimed[0].id])
                else:
                    work = self.worker.run(claimed, controls, self._report_from_worker)
                outcomes = await self._unless_stopped(work)
            finally:
                watcher.cancel()
                for job in claimed:
                    self._controls.pop(job.id, None)
            if outcomes is ABANDONED:
                await self._put_back(claimed, "queued again after a stop")
                return True
            if long:
                outcomes = {claimed[0].id: outcomes}
            self.point.at("finishing")
            for job in claimed:
                await self._finish(job, outcomes[job.id])
        except DiskFull as full:
            with contextlib.suppress(DiskFull):
                await self._put_back(claimed, f"{WAITING}{full}")
            raise
        finally:
            self.point.idle()
        return True

    async def _say_loading(self, jobs: list[JobRecord]) -> None:
        """The jobs' rows say that their checkpoint is being loaded first (`salon queue` shows it)."""
        model = jobs[0].model
        if model is not None and model != self.worker.loaded_model:
            for job in jobs:
                await self.store.transition(
                    job.id, JobStatus.RUNNING, [JobStatus.RUNNING], phase=f"loading {model}"
                )

    async def _put_back(self, jobs: list[JobRecord], phase: str) -> None:
        """Jobs still running back in line, this run not counted (a stop, a full disk). Those the database
        cannot take now (a full disk) are kept and tried again before the next batch; DiskFull is raised."""
        full = None
        for job in jobs:
            try:
                await self.store.transition(
                    job.id,
                    JobStatus.QUEUED,
                    [JobStatus.RUNNING],
                    phase=phase,
                    attempts=max(0, job.attempts - 1),
                )
                self._stranded.pop(job.id, None)
            except DiskFull as exc:
                self._stranded[job.id] = job
                full = exc
        if full is not None:
            raise full

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
                deaths=(),  # it made progress: earlier deaths are forgiven (jobs/blame.py)
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
            try:
                images = await self._catalogue(job, outcome.results)
            except OSError as exc:  # the text index on a full disk (SQLite's own says DiskFull already)
                full = as_disk_full(exc, self.settings.catalog_dir)
                if full is None:
                    raise
                raise full from exc
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
        """Stop at the next step: running jobs go back to the queue, nothing new starts. `run` returns within
        STOP_GRACE_S, leaving the GPU thread if it does not stop (a model load)."""
        self._stopping = True
        self._shutdown_asked.set()
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
            write.add_done_callback(_quietly)  # progress is best effort (a full disk, a closing queue)


def _quietly(task: asyncio.Future) -> None:
    """Retrieve a background task's exception, so that asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


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
