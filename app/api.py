"""The HTTP API role (`salon api`; `salon run` serves it beside the bot when `[api] enabled`).

`open_api` builds, in order: the extensions (discovered once) and the worker's services (the queue over the
job store, the catalog and the registry, as app/worker.py opens them); the GPU worker running in this
process unless `run_worker` is off or another process (`salon worker`, a bot) already runs it; the API's
service and its uvicorn server. Closing goes the other way: the server stops taking requests, the worker
stops at its next step (its jobs go back in line), then the queue and its stores close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from api.auth import parse_credentials
from api.server import start, stop
from api.service import ApiService
from app.worker import load_extensions, open_queue
from config import Settings
from core.errors import InvalidRequest
from jobs.queue import JobQueue
from jobs.running import WorkerBusy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningApi:
    service: ApiService
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials_for(settings: Settings, host: str, auth: str | None) -> dict[str, str]:
    """The Basic-auth users (from `--api-auth`, else `[api] auth`); refuses a non-loopback host without."""
    if auth is None and settings.api.auth is not None:
        auth = settings.api.auth.get_secret_value()
    credentials = parse_credentials(auth)
    if not credentials and not is_loopback(host):
        raise InvalidRequest(
            "host",
            f"the API listens on {host}, beyond this machine, only with credentials: add "
            "--api-auth user:password (HTTP Basic, as A1111's flag) or [api] auth, or listen on 127.0.0.1",
        )
    return credentials


@asynccontextmanager
async def serve_api(
    settings: Settings, queue: JobQueue, host: str, port: int, credentials: dict[str, str]
) -> AsyncIterator[RunningApi]:
    """The API over an open queue, listening on host:port until the block ends."""
    service = ApiService(settings, queue, credentials, settings.api.guild)
    server, task = await start(service, host, port)
    port = server.servers[0].sockets[0].getsockname()[1] if port == 0 else port  # 0: any free port
    try:
        yield RunningApi(service, host, port)
    finally:
        await stop(service, server, task)


@asynccontextmanager
async def api_beside_bot(settings: Settings, queue: JobQueue) -> AsyncIterator[RunningApi | None]:
    """`salon run` with `[api] enabled`: the API over the bot's queue (the bot runs the worker)."""
    if not settings.api.enabled:
        yield None
        return
    host, port = settings.api.host, settings.api.port
    async with serve_api(settings, queue, host, port, credentials_for(settings, host, None)) as running:
        log.info("A1111-compatible API on %s", running.url)
        yield running


@asynccontextmanager
async def open_api(
    settings: Settings,
    host: str,
    port: int,
    auth: str | None = None,
    *,
    run_worker: bool = True,
    engine: Callable[[], object] | None = None,
) -> AsyncIterator[RunningApi]:
    """The API role with its queue (and the worker unless `run_worker` is off), closed on leaving;
    `engine`: an engine factory (tests hand a shared one)."""
    credentials = credentials_for(settings, host, auth)  # before anything opens
    extensions = load_extensions(settings)
    async with AsyncExitStack() as stack:
        queue = await stack.enter_async_context(open_queue(settings, extensions=extensions, engine=engine))
        if run_worker:
            await stack.enter_async_context(_worker(queue))
        yield await stack.enter_async_context(serve_api(settings, queue, host, port, credentials))


@asynccontextmanager
async def _worker(queue: JobQueue) -> AsyncIterator[None]:
    """Run the queue's worker in this process unless another process runs it."""
    try:
        queue.claim_worker()
    except WorkerBusy as exc:
        log.warning("%s; the API only submits jobs", exc)
        yield
        return
    stopping = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stopping))
    try:
        yield
    finally:
        stopping.set()
        await queue.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def run_api(settings: Settings, host: str, port: int, auth: str | None, run_worker: bool,
                  announce: Callable[[str], None]) -> None:  # fmt: skip
    """`salon api`: serve until SIGINT/SIGTERM."""
    async with open_api(settings, host, port, auth, run_worker=run_worker) as running:
        announce(running.url)
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_event.set)
        await stop_event.wait()
