"""The bot's running event handlers (a reaction being rated, the start's reconciliation), so that a stop can
let them end before the queue, the catalog and the community store close under them.

A stop first refuses new events (a reaction made from then on is read back by the next start's
reconciliation), then waits for the running handlers within a bound and cancels what is left: a handler cut
short leaves its change undone (SQLite rolls back what was not committed), never half made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 2.0  # how long cancelled handlers get to unwind


class EventHandlers:
    """The tasks discord.py runs event handlers in, while the bot takes events."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task] = set()
        self.closing = False

    def admit(
        self, handler: Callable[..., Coroutine[Any, Any, Any]]
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        """The handler to run for an event: itself, or once the bot is stopping, one that does nothing."""
        return _ignored if self.closing else handler

    def track(self, task: asyncio.Task) -> asyncio.Task:
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    @property
    def running(self) -> int:
        return sum(1 for task in self._running if not task.done())

    async def drain(self, timeout_s: float) -> None:
        """Take no more events; wait up to `timeout_s` for the running handlers, then cancel the rest."""
        self.closing = True
        current = asyncio.current_task()
        running = {task for task in self._running if task is not current and not task.done()}
        if not running:
            return
        log.info("stopping: waiting for %d event handlers", len(running))
        _, late = await asyncio.wait(running, timeout=timeout_s)
        if not late:
            return
        log.warning(
            "stopping: %d event handlers still running after %.0f s were cancelled", len(late), timeout_s
        )
        for task in late:
            task.cancel()
        await asyncio.wait(late, timeout=CANCEL_WAIT_S)


async def _ignored(*args: Any, **kwargs: Any) -> None:
    """An event that came once the bot was stopping."""
