"""The run loop of the job queue: claim the worker, recover, pick batches fairly, run them in the GPU thread,
finish them (results into the catalog), and stop at the next step when asked.

`JobQueue` (jobs/queue.py) is a `RunLoop`: submitting, cancelling and watching live there, running here. The
restart, blame, stop and full-disk rules are those of jobs/queue.py's docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import DiskFull, as_disk_full
from engine.requests import RunControl
from jobs.diskwait import WAITING
from jobs.long import SliceControl
from jobs.records import EventKind, JobEvent, JobKind, JobRecord, JobStatus
from jobs.slice_files import kept_folders
from jobs.worker import Outcome, Progress

if TYPE_CHECKING:
    from catalog.catalog import Catalog
    from config import Settings
    from jobs.blame import PointFile
    from jobs.diskwait import DiskWait
    from jobs.results import ResultFiles
    from jobs.scheduling import FairScheduler
    from jobs.slice_files import SliceFiles
    from jobs.store import JobStore
    from jobs.worker import GpuWorker

log = logging.getLogger(__name__)

LOCAL_GUILD = "local"  # the catalog's guild for jobs from the command line
PERSIST_PROGRESS_S = 1.0  # write a running job's progress to its row at most this often (for other processes)
STOP_GRACE_S = 5.0  # after a stop, wait this long for the GPU thread's next step, then leave it (exit < 10 s)
ABANDONED = object()  # what `_unless_stopped` returns for GPU work left running after a stop


class WorkerBusy(RuntimeError):
    """Another process already runs the worker for this data folder."""


class RunLoop:
    """The running half of `JobQueue`: it uses the queue's settings, store, worker, catalog, scheduler, point
    file and events (set up by `JobQueue.__init__`) and keeps the state of what runs now."""

    settings: Settings
    store: JobStore
    worker: GpuWorker
    catalog: Catalog
    results: ResultFiles
    slice_files: SliceFiles
    scheduler: FairScheduler
    point: PointFile
    _disk: DiskWait

    # Given by JobQueue (jobs/queue.py).
    def _publish(self, event: JobEvent) -> None: ...
    async def _publish_positions(self) -> None: ...
    async def positions(self, job_ids: Iterable[int] | None = None) -> dict[int, int]: ...
    def workdir(self, job_id: int) -> Path: ...

    def _init_run_state(self) -> None:
        self._controls: dict[int, RunControl] = {}
        self._user_cancelled: set[int] = set()
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
        self._prepared = False  # the engine exists and its libraries are imported (before the first claim)
        self.gpu_abandoned = False  # a stop left GPU work running (see jobs.worker.exit_if_gpu_busy)
        self._stranded: dict[int, JobRecord] = {}  # jobs a full disk kept from going back in line

    async def close(self) -> None:
        """End what the queue holds: background progress writes, the point file and the worker lock. The
        composition root (app/) closes the stores after this."""
        await asyncio.gather(*self._background, return_exceptions=True)
        self.point.close()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def claim_worker(self) -> None:
        """Become this data folder's only worker (raises WorkerBusy if another process is)."""
        if self._lock_file is not None or not self.store.exclusive_worker:
            return  # PostgreSQL: many workers share the queue, each job under a lease (jobs/pg_store.py)
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
        if not self.store.exclusive_worker:  # PostgreSQL: advertise this worker, keep its leases alive
            await self.store.start_worker(self.worker.describe)
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
        max_images = self.settings.queue.max_batch_images
        loaded = self.worker.loaded_model
        shared = not self.store.exclusive_worker  # PostgreSQL: turns are taken across all the workers
        batch: list[JobRecord] = []
        if shared:  # the database ranks and claims in one transaction (jobs/pg_claims.py)
            if not self._prepared and not await self.store.has_queued():
                return False
        else:  # the fair order computed by SQLite with this worker's turns (jobs/fair_sql.py)
            batch, passed_over = await self.store.pick(self.scheduler, loaded, max_images)
            if not batch:
                return False
        if not self._prepared:  # before any claim: a slow or failing start is no job's fault
            self.point.begin([], "starting the engine")
            if await self._unless_stopped(self.worker.prepare()) is ABANDONED:
                return True
            self._prepared = True
        if shared:  # no point file on PostgreSQL: the leases say who died holding what
            claimed = await self.store.claim_next(loaded, max_images)
            if not claimed:
                return False  # nothing queued, or other workers hold every queued job
        else:
            self.scheduler.served(batch, passed_over)
            self.point.begin([job.id for job in batch])  # before the claim, so a death after it names them
            claimed = await self.store.claim([job.id for job in batch])
            if not claimed:
                self.point.idle()
                return True
        controls = {job.id: RunControl() for job in claimed}
        self._controls.update(controls)
        for job in claimed:
            self._publish(JobEvent(job.id, EventKind.STARTED, JobStatus.RUNNING, phase="starting"))
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
        try:  # the files of earlier slices, when they ran on another host (jobs/slice_files.py)
            workdir = self.workdir(job.id)
            await self.slice_files.restore(
                job.id, job.slices, kept_folders(self.settings, job, workdir), workdir
            )
            return await self.worker.run_slice(job, slice_control, workdir, self._report_from_worker)
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
            if long and not self._others_waiting.is_set() and await self.store.has_queued(list(controls)):
                self._others_waiting.set()
            await asyncio.sleep(self.settings.queue.poll_interval_s)

    async def _finish(self, job: JobRecord, outcome: Outcome) -> None:
        self._started_steps.pop(job.id, None)
        self._persisted.pop(job.id, None)
        if not self.store.exclusive_worker and not await self.store.holds(job.id):
            await self._refused(job, outcome)  # cut off past its lease: another worker took the job over
            return
        if outcome.paused is not None:
            # A long job's slice ended: keep its state and put it back in line; the slice was not a crash.
            part = outcome.paused
            workdir = self.workdir(job.id)  # its files first, for a worker on another host
            await self.slice_files.save(
                job.id, job.slices + 1, kept_folders(self.settings, job, workdir), workdir
            )
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
                position = (await self.positions([job.id])).get(job.id)
                self._publish(
                    JobEvent(
                        job.id, EventKind.QUEUED, JobStatus.QUEUED, position=position, phase=updated.phase
                    )
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
        if outcome.status is JobStatus.DONE and outcome.results:  # readers on other hosts fetch them there
            await self.results.publish(outcome.results)  # (jobs/results.py; nothing without a blob store)
        if outcome.status is JobStatus.DONE and outcome.results and job.kind.catalogued:
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
            await self.slice_files.forget(job.id, job.slices)
        if updated is not None:
            self._publish(
                JobEvent(
                    job.id,
                    EventKind(outcome.status.value),
                    outcome.status,
                    results=outcome.results,
                    images=images,
                    error=outcome.error,
                )
            )

    async def _refused(self, job: JobRecord, outcome: Outcome) -> None:
        """This worker's outcome of a job it no longer holds (its lease lapsed while it was cut off from the
        database, and the job went to another worker): not posted, not catalogued (the fence). Its own
        result files go too once the job has ended with other files (those of another host), never a file
        the job's row names (a data folder shared with the other worker)."""
        log.warning(
            "job %d: this worker's lease on it lapsed and another worker took it over; its outcome here "
            "(%s) is refused",
            job.id,
            outcome.status.value,
        )
        current = await self.store.get(job.id)
        if current is not None and current.status.terminal:
            for path in set(outcome.results) - set(current.results):
                Path(path).unlink(missing_ok=True)

    async def _catalogue(self, job: JobRecord, paths: tuple[str, ...]) -> tuple[int, ...]:
        from catalog.records import NewImage, Relation
        from engine.infotext_files import read_infotext

        if job.kind is JobKind.ANIMATE:  # one item, its frames its children (jobs/animation.py)
            from jobs.animation import catalogue_animation

            return await catalogue_animation(self.catalog, job, paths, job.guild or LOCAL_GUILD)

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
                EventKind.PROGRESS,
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
