"""What the API does for a caller: generate through the queue, follow, interrupt, and the caller's options.

Every request is a job of its caller (`api:<user>`, `api:local` without auth) submitted with
`JobQueue.submit`, so the per-person limits and the fair scheduler treat an API script like any member of
the Discord server; results go into the catalog under the API's guild (`[api] guild`). A synchronous
txt2img waits for its job; a client that disconnects meanwhile cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.options import CallerOptions
from api.progress import ProgressBoard
from api.schemas import GenerationBody, Img2ImgBody, Txt2ImgBody
from api.translate import encode_file, img2img_request_of, info_of, parameters_of, txt2img_request
from commands.generation import LongJob
from config import Settings
from engine.infotext_files import read_infotext
from engine.requests import with_params
from jobs.queue import JobQueue
from jobs.records import JobRecord, JobStatus


@dataclass
class ApiService:
    """The API's state over the services the composition root built (app/api.py)."""

    settings: Settings
    queue: JobQueue
    credentials: dict[str, str] = field(default_factory=dict)
    guild: str = "api"

    def __post_init__(self) -> None:
        self.board = ProgressBoard(self.queue)
        self.options = CallerOptions(self.settings, self.queue.registry)

    async def start(self) -> None:
        self.board.start()

    async def close(self) -> None:
        await self.board.close()

    @property
    def registry(self):
        return self.queue.registry

    async def generate(
        self, body: GenerationBody, caller: str, disconnected: Callable[[], Awaitable[None]] | None = None
    ) -> dict[str, Any]:
        """Submit the body as a job of `caller`, wait for it, and answer as A1111 does."""
        defaults = self.options.of(caller)
        if isinstance(body, Img2ImgBody):
            request = img2img_request_of(body, self.settings, self.registry, defaults)
        else:
            assert isinstance(body, Txt2ImgBody)
            request = txt2img_request(body, self.settings, self.registry, defaults)
        job = await self.queue.submit(request, caller, guild=self.guild, meta={"front_end": "api"})
        self.board.follow(job.id, caller, job.kind.value)
        try:
            finished = await self._wait(job.id, caller, disconnected)
        finally:
            self.board.forget(job.id)
        if finished is None:  # the client left: nobody reads this answer
            return {"images": [], "parameters": parameters_of(body), "info": "{}"}
        finished = await self.queue.results.local_job(finished)  # made on another host: fetched here
        accepted = _accepted_request(finished, request)
        infotexts = [read_infotext(Path(path)) or "" for path in finished.results]
        if finished.status is JobStatus.FAILED:
            raise RuntimeError(finished.error or f"job {finished.id} failed")
        images = [encode_file(Path(path)) for path in finished.results] if body.send_images else []
        return {
            "images": images,
            "parameters": parameters_of(body),
            "info": info_of(accepted, body, infotexts, finished.created_at),
        }

    async def run_long(self, job: LongJob, caller: str) -> JobRecord:
        """Submit a long job (training) of `caller` and wait for its end."""
        record = await self.queue.submit_task(job.kind, job.params, caller, guild=self.guild)
        self.board.follow(record.id, caller, record.kind.value)
        try:
            return await self.queue.wait(record.id)
        finally:
            self.board.forget(record.id)

    async def _wait(
        self, job_id: int, caller: str, disconnected: Callable[[], Awaitable[None]] | None
    ) -> JobRecord | None:
        """The finished job; None when the client went away first (its job is then cancelled)."""
        waiter = asyncio.create_task(self.queue.wait(job_id))
        if disconnected is None:
            return await waiter
        gone = asyncio.create_task(disconnected())
        try:
            await asyncio.wait([waiter, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                gone.cancel()
        if waiter.done():
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone
            return waiter.result()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        await self.queue.cancel(job_id, requester=caller)
        return None

    async def interrupt(self, caller: str, queued_too: bool) -> list[int]:
        """Cancel the caller's running jobs (interrupt: else their queued ones); returns the jobs stopped."""
        mine = self.board.of(caller)
        chosen = [i for i, job in mine if job.running]
        if not chosen and queued_too:
            chosen = [i for i, _ in mine]
        for job_id in chosen:
            await self.queue.cancel(job_id, requester=caller)
        return chosen


def _accepted_request(job: JobRecord, submitted):
    """The request as the queue accepted it: its seeds fixed and its model named (from the job's row)."""
    params = job.request.get("params", {})
    fixed = dataclasses.replace(
        submitted.params,
        seed=params.get("seed", submitted.params.seed),
        variation_seed=params.get("variation_seed", submitted.params.variation_seed),
        model=job.model or submitted.params.model,
    )
    return with_params(submitted, fixed)
