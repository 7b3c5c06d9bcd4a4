"""Jobs through the queue from the command line: submit and follow one (`imagine`, `train`, `animate`…),
list them (`salon queue`) and cancel one (`salon cancel`)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from cli.output import EXIT_JOB_FAILED, console, err_console, print_note
from config import Settings

if TYPE_CHECKING:
    from extensions import ExtensionInfo


def through_queue(settings: Settings, request, output: Path | None, extensions: list[ExtensionInfo]) -> int:
    """Submit to the queue, run the worker here unless another process runs it (with a database URL: unless a
    live worker exists), show progress, print results."""
    import asyncio

    from commands.outputs import copy_results
    from engine.infotext_files import read_infotext
    from jobs.records import JobStatus

    job = asyncio.run(submit_and_follow(settings, request, extensions))
    if job.status is not JobStatus.DONE:
        err_console.print(f"job {job.id} {job.status.value}: {job.error or 'no images'}", markup=False)
        return EXIT_JOB_FAILED
    paths = copy_results([Path(p) for p in job.results], output) if output else [Path(p) for p in job.results]
    for path in paths:
        console.print(str(path), markup=False)
        console.print(read_infotext(path) or "", markup=False, soft_wrap=True)
        console.print()
    elapsed = (job.finished_at or 0) - job.created_at
    console.print(f"{len(paths)} image(s) in {elapsed:.2f}s (job {job.id}, model {job.model})", markup=False)
    return 0


async def submit_and_follow(settings: Settings, request, extensions: list[ExtensionInfo] | None = None):
    """The job's record once it ended, its progress shown meanwhile; Ctrl-C cancels it. `extensions`: those
    the command discovered already (else the queue discovers them)."""
    import asyncio
    import signal

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from app.worker import open_queue
    from commands.generation import submit_and_wait
    from jobs.queue import owner_for_cli
    from jobs.records import WARMING_UP

    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    async with open_queue(settings, extensions=extensions) as queue:
        progress = Progress(*columns, console=err_console, transient=True)
        task = progress.add_task("queued", total=None)

        def show(event) -> None:
            if event.kind == "queued" and event.position:
                warming = " (the GPU is warming up)" if event.phase == WARMING_UP else ""
                progress.update(task, description=f"queued, position {event.position}{warming}")
            elif event.kind == "progress":
                progress.update(task, description=event.phase, completed=event.step, total=event.total)

        def accepted(job_id: int) -> None:
            job_ids.append(job_id)
            progress.start()  # once the queue accepted the job: a refused one is only its one-line error

        loop = asyncio.get_running_loop()
        job_ids: list[int] = []
        loop.add_signal_handler(
            signal.SIGINT, lambda: [asyncio.ensure_future(queue.cancel(i)) for i in job_ids]
        )

        told: list[bool] = []  # "waiting for a live worker" said once

        async def run_here() -> bool:
            """On a shared queue (PostgreSQL), leave the job to a live worker; with none, run one here."""
            if queue.store.exclusive_worker:
                return True  # SQLite: the worker lock decides, as always
            live = await queue.store.live_workers()
            if live:
                if not told:
                    told.append(True)
                    err_console.print(f"waiting for a live worker ({', '.join(live)})", markup=False)
                return False
            err_console.print("no live worker in the database; running one here", markup=False)
            return True

        try:
            job = await submit_and_wait(queue, request, owner_for_cli(), show, accepted, run_here)
            return await queue.results.local_job(job)  # fetched here when a worker on another host ran it
        finally:
            if job_ids:
                progress.stop()


def queue(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from app.oneshot import with_queue

    async def listing(queue):
        return await queue.store.recent(args.limit), await queue.positions(), queue.worker_waiting()

    jobs, positions, waiting = with_queue(settings, listing)
    shared = any(job.worker for job in jobs)  # a queue on PostgreSQL says which worker runs each job
    table = Table("job", "status", "kind", "owner", "place", "phase", "age", "prompt", *(["worker"] * shared))
    now = dt.datetime.now().timestamp()
    for job in jobs:
        prompt = str(job.request.get("params", {}).get("prompt", ""))
        place = str(positions.get(job.id, ""))
        row = (
            str(job.id),
            job.status.value,
            job.kind.value,
            job.owner,
            place,
            (job.error if job.status.value == "failed" and job.error else job.phase) or "",  # why it failed
            f"{now - job.created_at:.0f}s",
            prompt[:40],
            *([job.worker or ""] if shared else []),
        )
        table.add_row(*row)
    console.print(table)
    if waiting:
        print_note("the worker is", waiting)  # e.g. "waiting: disk full in … (12 KB free)"
    return 0


def workers(args: argparse.Namespace, settings: Settings) -> int:
    """`salon workers`: the workers of the shared queue (PostgreSQL), with what they run now."""
    from rich.table import Table

    from app.oneshot import with_queue

    if not settings.database.url:
        console.print("one worker per data folder: set [database] url to share a queue between workers")
        return 0

    async def listing(queue):
        return await queue.store.workers()

    table = Table("name", "host", "gpu", "models", "job", "last heartbeat")
    for worker in with_queue(settings, listing):
        jobs = ", ".join(str(job_id) for job_id in worker["jobs"]) or "idle"
        table.add_row(
            worker["name"],
            worker["host"],
            worker["gpu"],
            ", ".join(worker["models"]),
            jobs,
            f"{worker['silent_s']:.0f}s ago",
        )
    console.print(table)
    return 0


def cancel(args: argparse.Namespace, settings: Settings) -> int:
    from app.oneshot import with_queue

    job = with_queue(settings, lambda queue: queue.cancel(args.job))
    if job.status.value == "running":
        console.print(f"job {job.id}: running; it stops at its next step", markup=False)
    else:
        console.print(f"job {job.id}: {job.status.value}", markup=False)
    return 0
