"""Submitting a generation and following it to the end, for any front end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobs.codec import AnyRequest
from jobs.queue import JobQueue, WorkerBusy
from jobs.records import JobEvent, JobKind, JobRecord


@dataclass(frozen=True)
class LongJob:
    """A long job to submit (training, animation): its kind and JSON parameters."""

    kind: JobKind
    params: dict[str, Any] = field(default_factory=dict)


async def submit_and_wait(
    queue: JobQueue,
    request: AnyRequest | LongJob,
    owner: str,
    on_event: Callable[[JobEvent], None] | None = None,
    on_accepted: Callable[[int], None] | None = None,
) -> JobRecord:
    """Submit `request`; run the worker in this process unless another one runs it; return the finished job."""
    if isinstance(request, LongJob):
        job = await queue.submit_task(request.kind, request.params, owner)
    else:
        job = await queue.submit(request, owner)
    if on_accepted is not None:
        on_accepted(job.id)
    stop = asyncio.Event()
    try:
        queue.claim_worker()
        runner: asyncio.Task | None = asyncio.create_task(queue.run(stop=stop))
    except WorkerBusy:
        runner = None  # the worker of another process (the bot, `salon worker`) will run it
    waiter = asyncio.create_task(queue.wait(job.id, on_event))
    try:
        if runner is not None:
            # If the worker fails, say so instead of waiting forever for a job nobody runs.
            await asyncio.wait([waiter, runner], return_when=asyncio.FIRST_COMPLETED)
            if runner.done() and not waiter.done():
                waiter.cancel()
                runner.result()  # raises the worker's error
                raise RuntimeError(f"the worker stopped before job {job.id} finished")
        return await waiter
    finally:
        stop.set()
        if runner is not None and not runner.done():
            await runner
