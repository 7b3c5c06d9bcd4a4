"""Queues for tests and benchmarks, built by the composition root (app.worker.open_queue) as the roles build
them; `await queue.close()` closes the queue and everything the root opened for it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack

from app.worker import open_queue as open_root_queue
from config import Settings
from jobs.queue import JobQueue


async def open_queue(settings: Settings, engine_factory: Callable[[], object] | None = None) -> JobQueue:
    """The queue of `settings` (on the engine `engine_factory` makes, else a new one from the settings)."""
    stack = AsyncExitStack()
    queue = await stack.enter_async_context(open_root_queue(settings, engine=engine_factory))
    queue.close = stack.aclose  # type: ignore[method-assign]  (the queue, then the catalog and the job store)
    return queue
