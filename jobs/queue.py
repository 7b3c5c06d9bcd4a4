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
import hashlib
import logging
import shutil
from collections.abc import Callable, Iterable, Mapping

from catalog.catalog import Catalog
from config import Limits, Settings
from core.errors import InvalidRequest
from engine.models.registry import ModelRegistry
from engine.requests import GenerationRequest, with_fixed_seeds, with_params
from engine.tasks.batching import batch_key
from engine.tasks.samplers import SamplerTable
from engine.upscaling.naming import with_installed_upscaler
from engine.validation import check_model_family, check_request
from jobs.blame import PointFile
from jobs.codec import AnyRequest, request_to_json
from jobs.diskwait import DiskWait, worker_waiting
from jobs.long import LongTask, long_task
from jobs.records import WARMING_UP, EventKind, JobEvent, JobKind, JobRecord, JobStatus
from jobs.results import ResultFiles
from jobs.running import RunLoop
from jobs.scheduling import FairScheduler
from jobs.slice_files import SliceFiles
from jobs.store import JobStore
from jobs.worker import GpuWorker

log = logging.getLogger(__name__)


def _with_model(request: AnyRequest, model: str) -> AnyRequest:
    return with_params(request, dataclasses.replace(request.params, model=model))


class JobQueue(RunLoop):
    """Submit, cancel, watch and run jobs (the run loop is `RunLoop`, jobs/running.py).

    Built by the composition root (app/) from its parts: the job store, the GPU worker, the catalog the
    results go into, the model registry that names checkpoints, the sampler table requests are checked
    against (the built-ins and the extensions'), and the long job kinds it runs. The root
    opens and closes the stores; `close` only ends what the queue itself holds (background writes, the
    point file and the worker lock)."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        worker: GpuWorker,
        catalog: Catalog,
        registry: ModelRegistry,
        samplers: SamplerTable,
        long_tasks: Mapping[JobKind, LongTask],
        results: ResultFiles | None = None,
    ) -> None:
        self.settings = settings
        # Result files across hosts: put in the blob store when done, fetched by readers (jobs/results.py).
        self.results = results or ResultFiles(settings.data_dir, settings.outputs_path)
        # A long job's files between slices, through the same blob store (jobs/slice_files.py).
        self.slice_files = SliceFiles(settings.data_dir, self.results.blobs)
        self.store = store
        self.worker = worker
        self.catalog = catalog
        self.registry = registry
        self.samplers = samplers
        self.long_tasks = long_tasks
        self.scheduler = FairScheduler()
        self.inputs = settings.data_dir / "jobs" / "inputs"
        self._subscribers: list[tuple[int | None, asyncio.Queue[JobEvent]]] = []
        self._without_positions: list[asyncio.Queue[JobEvent]] = []  # subscribers that ignore places in line
        self.point = PointFile(settings.data_dir / "worker.point")  # opened by `claim_worker`
        self._disk = DiskWait(store, self.point)  # why queued jobs wait (a full disk), while they do
        self._init_run_state()

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
        limits: Limits | None = None,
    ) -> JobRecord:
        """Check, persist and announce a job; the same idempotency key again returns the first job.

        The one place a request is checked (`check_request`): against `limits`, those that apply where it
        was asked (a server's lower ones; default the machine's), and the sampler table. Random seeds are
        fixed here, so the engine runs the request as accepted. `meta` holds front-end details kept with
        the job: `parent_id` and `relation` (lineage in the catalog), `nsfw`, and whatever a front end needs
        to deliver the result after a restart. `max_pending` lowers the per-person limit (a guild's own
        setting)."""
        check_request(request, limits or self.settings.limits, self.samplers)
        check_model_family(
            request, self.registry.checkpoint(request.params.model or self.settings.default_model)
        )
        request = with_installed_upscaler(request, self.registry)  # a hires fix's model upscaler
        params = request.params
        model = self.registry.checkpoint(params.model or self.settings.default_model).name
        request = _with_model(with_fixed_seeds(request), model)
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
        params = long_task(self.long_tasks, kind).check(dict(params), self.settings)
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
        position = (await self.positions([record.id])).get(record.id)
        log.info(
            "job %d accepted from %s (%s), position %s", record.id, record.owner, record.kind.value, position
        )
        self._publish(
            JobEvent(record.id, EventKind.QUEUED, JobStatus.QUEUED, position=position, phase=self._phase())
        )
        self._others_waiting.set()
        self._wakeup.set()

    def workdir(self, job_id: int):
        """Where a long job keeps its files between slices (removed when the job ends)."""
        return self.settings.data_dir / "jobs" / "work" / str(job_id)

    async def positions(self, job_ids: Iterable[int] | None = None) -> dict[int, int]:
        """Place in line (1 = next) of the queued jobs among `job_ids` (None: every queued job), computed by
        the store in SQL with the fair order (jobs/fair_sql.py): only those rows come back."""
        wanted = None if job_ids is None else sorted(set(job_ids))
        return await self.store.positions(wanted, self.scheduler)

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
                await self.slice_files.forget(job_id, job.slices)
                self._publish(JobEvent(job_id, EventKind.CANCELLED, JobStatus.CANCELLED))
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
    def subscribe(self, job_id: int | None = None, positions: bool = True) -> asyncio.Queue[JobEvent]:
        """Events of one job (or all jobs with None), in order, until `unsubscribe`. `positions=False`: this
        subscriber ignores places in line (the queue need not work them out after each claim for it)."""
        events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._subscribers.append((job_id, events))
        if not positions:
            self._without_positions.append(events)
        return events

    def unsubscribe(self, events: asyncio.Queue[JobEvent]) -> None:
        self._subscribers = [(j, q) for j, q in self._subscribers if q is not events]
        self._without_positions = [q for q in self._without_positions if q is not events]

    def watching(self, job_id: int, besides: asyncio.Queue[JobEvent] | None = None) -> bool:
        """Whether anything in this process (other than the subscription `besides`) follows this job."""
        return any(
            (wanted in (None, job_id)) and events is not besides for wanted, events in self._subscribers
        )

    def relay(self, event: JobEvent) -> None:
        """Publish an event of a job another process runs (its progress, told by jobs/pg_notify.py)."""
        self._publish(event)

    def _publish(self, event: JobEvent) -> None:
        for job_id, events in self._subscribers:
            if job_id is None or job_id == event.job_id:
                events.put_nowait(event)

    async def _publish_positions(self) -> None:
        """New places in line, for the queued jobs somebody here follows: when nobody wants them, the queue
        is not read at all (a worker's claims do not read every queued job for nobody)."""
        wanted = {
            job_id
            for job_id, events in self._subscribers
            if not any(events is quiet for quiet in self._without_positions)
        }
        if not wanted:
            return
        for job_id, position in (await self.positions(None if None in wanted else wanted)).items():
            if None in wanted or job_id in wanted:
                self._publish(
                    JobEvent(
                        job_id, EventKind.QUEUED, JobStatus.QUEUED, position=position, phase=self._phase()
                    )
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


def _digest(key: object) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32]


def owner_for_cli() -> str:
    """The owner name of jobs submitted from this machine's command line."""
    import getpass

    return f"cli:{getpass.getuser()}"
