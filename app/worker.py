"""The worker role: the queue with its GPU worker, and what it needs (`salon worker`; the bot runs it too).

`open_queue` builds, in this order: the result sink with the extensions' post-processors (a bad setting
fails before anything is opened) and the sampler table (the built-in samplers and the extensions'; the
queue checks requests against it and the engine makes schedulers from it), the job store, the catalog, the
one model registry (the queue names checkpoints with it and the engine loads them with it), the GPU worker
with its engine factory and the long job kinds, and the queue. Closing goes the other way: the queue (its
background writes, point file and worker lock), the catalog, the job store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from app.stores import open_blob_store, open_catalog, open_job_store
from config import Settings
from engine.models.registry import ModelRegistry
from engine.tasks.samplers import SamplerTable
from extensions import ExtensionInfo, discover, postprocessors, sampler_table
from jobs.long_kinds import long_tasks
from jobs.queue import JobQueue
from jobs.results import FileSink, ResultFiles, ResultSink
from jobs.worker import GpuWorker

log = logging.getLogger(__name__)


def load_extensions(settings: Settings) -> list[ExtensionInfo]:
    """The installed extensions, discovered once per process (a failing one is logged and listed)."""
    return discover(settings.extensions.disabled)


def engine_factory(
    settings: Settings, registry: ModelRegistry, samplers: SamplerTable
) -> Callable[[], object]:
    """What the GPU thread calls to make the engine (torch is imported then, in that thread)."""

    def make():
        from engine.runner import Engine

        return Engine(settings, registry, samplers)

    return make


@asynccontextmanager
async def open_queue(
    settings: Settings,
    *,
    extensions: list[ExtensionInfo] | None = None,
    engine: Callable[[], object] | None = None,
    sink: ResultSink | None = None,
    worker_name: str | None = None,
    remote_progress: bool = True,
) -> AsyncIterator[JobQueue]:
    """The queue and everything under it, closed on leaving. `extensions`: those discovered by the caller's
    role (else discovered here); `engine`: an engine factory (tests hand a shared engine); `worker_name`: this
    worker's name on a shared PostgreSQL queue (default the host name). With a database URL, result files go
    through the blob store (jobs/results.py), this process's workers announce their progress, and
    (`remote_progress`) other workers' progress reaches this process's subscribers (jobs/pg_notify.py)."""
    found = extensions if extensions is not None else load_extensions(settings)
    if sink is None:
        sink = FileSink(settings.outputs_path, postprocessors(found, settings.extensions.postprocess))
    samplers = sampler_table(found)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_job_store(settings, worker_name))
        blobs = await stack.enter_async_context(open_blob_store(settings))
        catalog = await stack.enter_async_context(open_catalog(settings))
        registry = ModelRegistry.from_settings(settings)
        tasks = long_tasks()
        worker = GpuWorker(
            engine or engine_factory(settings, registry, samplers),
            sink,
            settings.data_dir / "jobs" / "inputs",
            settings.queue.preview_every_steps,
            tasks,
        )
        results = ResultFiles(settings.data_dir, settings.outputs_path, blobs)
        queue = JobQueue(settings, store, worker, catalog, registry, samplers, tasks, results)
        stack.push_async_callback(queue.close)
        if blobs is not None and settings.database.url:
            from jobs.pg_notify import relay_progress

            await stack.enter_async_context(
                relay_progress(settings.database.url, queue, blobs, listen=remote_progress)
            )
        yield queue


async def run_worker(settings: Settings, until_empty: bool = False, name: str | None = None) -> None:
    """`salon worker`: run the jobs of this data folder until SIGINT/SIGTERM (or the queue is empty); a
    signal stops running jobs at their next step and puts them back in line. Raises WorkerBusy when another
    process runs the worker (SQLite; on PostgreSQL any number of workers, `name` each, share the queue)."""
    async with open_queue(settings, worker_name=name, remote_progress=False) as queue:
        stop = asyncio.Event()

        def on_signal() -> None:
            stop.set()
            asyncio.ensure_future(queue.shutdown())

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        await queue.run(stop=stop, until_empty=until_empty)
