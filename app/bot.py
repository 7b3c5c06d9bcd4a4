"""The bot role (`salon run`): the worker's services and the community store, handed to the Discord client.

`open_bot_services` discovers the extensions once (their post-processors go to the queue's result sink,
their commands and schedules to the bot), opens the queue as the worker role does, then the community
store, and with a database URL the scheduler's advisory lock (jobs/pg_locks.py: one of several bot
processes runs the schedule); closing goes the other way. `run_bot` runs the client on them until a signal
stops it: the bot also runs the GPU worker in the same process, unless another process (`salon worker`)
already does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from app.stores import open_community
from app.worker import load_extensions, open_queue
from bot.services import Services
from config import Settings


@asynccontextmanager
async def open_bot_services(
    settings: Settings, engine: Callable[[], object] | None = None
) -> AsyncIterator[Services]:
    """What the cogs work with, closed on leaving; `engine`: an engine factory (tests hand a shared one)."""
    extensions = load_extensions(settings)
    async with AsyncExitStack() as stack:
        queue = await stack.enter_async_context(open_queue(settings, extensions=extensions, engine=engine))
        community = await stack.enter_async_context(open_community(settings))
        lock = None
        if settings.database.url:  # several bots may share the database: one runs the schedule
            from jobs.pg_locks import SCHEDULE_LOCK, session_lock

            lock = await stack.enter_async_context(session_lock(settings.database.url, SCHEDULE_LOCK))
        yield Services(settings, queue, community, extensions, lock)


async def run_bot(settings: Settings, worker: bool = True) -> int:
    """`salon run`: the bot, the worker and the scheduler in one process until SIGINT/SIGTERM (and the HTTP
    API over the same queue when `[api] enabled`)."""
    from app.api import api_beside_bot
    from bot.app import run_bot as run_client

    async with open_bot_services(settings) as services, api_beside_bot(settings, services.queue):
        return await run_client(services, run_worker=worker)
