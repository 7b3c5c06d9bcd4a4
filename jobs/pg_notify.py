"""Progress of jobs across processes on PostgreSQL: the worker says `NOTIFY`, the bot's process `LISTEN`s.

A worker's progress events exist first in its own process (jobs/running.py). `ProgressPublisher` follows
them there and, for each step, sends `NOTIFY salon_progress` with a small JSON payload of ids and numbers
(`{"j": job, "s": step, "t": total, "e": eta, "p": phase, "v": preview number, "w": worker}`, far under
PostgreSQL's 8000 bytes); a preview goes first into the blob store as a small JPEG (`previews/<job>.jpg`,
removed when the job ends). Steps are sent at most every `MIN_INTERVAL_S`, but previews and the last step
always.

`ProgressListener` holds one dedicated connection that `LISTEN`s (reconnecting with a growing pause when it
drops) and turns each notification into the same `JobEvent` a local worker publishes, through
`JobQueue.relay`: the bot's delivery, the API's progress board and the one-shot CLI show steps and previews of
jobs running on any host. Notifications from this process's own worker are skipped (it published them
already), and a preview is fetched only for a job someone here follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from jobs.records import EventKind, JobEvent, JobStatus

if TYPE_CHECKING:
    from jobs.pg_blobs import PgBlobStore
    from jobs.queue import JobQueue

log = logging.getLogger(__name__)

CHANNEL = "salon_progress"
MIN_INTERVAL_S = 0.2  # a job's steps are announced at most this often (previews and the last step always)
PREVIEW_SIZE = 384  # the preview JPEG's longest side
RECONNECT_S = (0.5, 30.0)  # the listener's first and longest pause before connecting again
TERMINAL = (EventKind.DONE, EventKind.FAILED, EventKind.CANCELLED)


def preview_key(job_id: int) -> str:
    return f"previews/{job_id}.jpg"


def preview_jpeg(png: bytes) -> bytes:
    """A small JPEG of a preview PNG (longest side at most PREVIEW_SIZE)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def payload_of(event: JobEvent, worker: str, preview: int) -> str:
    data = {"j": event.job_id, "s": event.step, "t": event.total, "w": worker}
    if event.eta_s is not None:
        data["e"] = round(event.eta_s, 2)
    if event.phase:
        data["p"] = event.phase[:40]
    if preview:
        data["v"] = preview
    return json.dumps(data, separators=(",", ":"))


def event_of(payload: dict, preview: bytes | None) -> JobEvent:
    return JobEvent(
        int(payload["j"]),
        EventKind.PROGRESS,
        JobStatus.RUNNING,
        step=int(payload["s"]),
        total=int(payload["t"]),
        phase=payload.get("p"),
        eta_s=payload.get("e"),
        preview_png=preview,  # a JPEG: front ends name it by its bytes (bot.render.preview_file)
    )


class ProgressPublisher:
    """Announces the progress of the jobs this process's worker runs (see the module's docstring)."""

    def __init__(self, queue: JobQueue, blobs: PgBlobStore, worker: str) -> None:
        self.queue = queue
        self.blobs = blobs
        self.worker = worker
        self._sent: dict[int, float] = {}
        self._previews: dict[int, int] = {}
        self._running: set[int] = set()  # the jobs this process's worker runs (their STARTED was seen here)
        self.events = self.queue.subscribe(None, positions=False)  # steps only

    async def run(self) -> None:
        events = self.events
        try:
            while True:
                event = await events.get()
                try:
                    await self._announce(event)
                except Exception as exc:  # progress is best effort: the job goes on
                    log.warning("job %d: progress not announced: %s", event.job_id, exc)
        finally:
            self.queue.unsubscribe(events)

    async def flush(self) -> None:
        """At the end (`run` cancelled): this worker's previews go; a job it still ran goes back in line."""
        for job_id in list(self._previews):
            with contextlib.suppress(Exception):
                await self.blobs.delete(preview_key(job_id))
        self._previews.clear()

    async def _announce(self, event: JobEvent) -> None:
        job_id = event.job_id
        if event.kind == EventKind.STARTED:
            self._running.add(job_id)
        elif event.kind == EventKind.QUEUED:  # back in line (a stop, a slice's end)
            self._running.discard(job_id)
        if event.kind in TERMINAL:
            self._running.discard(job_id)
            self._sent.pop(job_id, None)
            if self._previews.pop(job_id, None):
                await self.blobs.delete(preview_key(job_id))
            return
        if event.kind != EventKind.PROGRESS or job_id not in self._running or event.step is None:
            return  # only this worker's own steps: those relayed from other processes are theirs
        now = time.monotonic()
        last = event.step >= (event.total or 0)
        if event.preview_png is None and not last and now - self._sent.get(job_id, 0.0) < MIN_INTERVAL_S:
            return
        self._sent[job_id] = now
        number = 0
        if event.preview_png is not None:
            jpeg = await asyncio.to_thread(preview_jpeg, event.preview_png)
            await self.blobs.put(preview_key(job_id), jpeg)
            number = self._previews[job_id] = self._previews.get(job_id, 0) + 1
        async with self.blobs.pool.connection() as connection:
            await connection.execute(
                "SELECT pg_notify(%s, %s)", (CHANNEL, payload_of(event, self.worker, number))
            )


class ProgressListener:
    """One dedicated connection listening for other workers' progress, relayed to the queue's subscribers."""

    def __init__(
        self,
        url: str,
        queue: JobQueue,
        blobs: PgBlobStore,
        own_worker: str | None,
        publisher: ProgressPublisher | None = None,
    ) -> None:
        self.url = url
        self.publisher = publisher
        self.queue = queue
        self.blobs = blobs
        self.own_worker = own_worker
        self.listening = asyncio.Event()  # set while the connection listens (tests wait on it)

    async def run(self) -> None:
        import psycopg

        pause = RECONNECT_S[0]
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    pause = RECONNECT_S[0]
                    async for notice in connection.notifies():
                        await self._relay(notice.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("progress listener: %s; connecting again in %.1f s", exc, pause)
            self.listening.clear()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_S[1])

    async def _relay(self, text: str) -> None:
        try:
            payload = json.loads(text)
            job_id = int(payload["j"])
        except (ValueError, KeyError, TypeError):
            log.warning("progress listener: a notification it does not read: %.80r", text)
            return
        besides = self.publisher.events if self.publisher is not None else None
        if payload.get("w") == self.own_worker or not self.queue.watching(job_id, besides):
            return
        preview = None
        if payload.get("v"):
            try:
                preview = await self.blobs.get(preview_key(job_id))
            except Exception as exc:
                log.warning("job %d: its preview could not be read: %s", job_id, exc)
        try:
            event = event_of(payload, preview)
        except (ValueError, KeyError, TypeError):
            log.warning("progress listener: a notification it does not read: %.80r", text)
            return
        self.queue.relay(event)


@contextlib.asynccontextmanager
async def relay_progress(
    url: str, queue: JobQueue, blobs: PgBlobStore, listen: bool = True
) -> AsyncIterator[ProgressListener | None]:
    """Publish this process's workers' progress, and (`listen`) relay other workers' progress to this
    process's subscribers, until the block ends."""
    worker = getattr(queue.store, "claim_token", None) or f"pid-{id(queue)}"
    publisher = ProgressPublisher(queue, blobs, worker)
    tasks = [asyncio.ensure_future(publisher.run())]
    listener = ProgressListener(url, queue, blobs, worker, publisher) if listen else None
    if listener is not None:
        tasks.append(asyncio.ensure_future(listener.run()))
    try:
        yield listener
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await publisher.flush()
