"""Retention of the blob store (jobs/blobs.py): which shared files the bot's upkeep drops, and why it is safe.

Three kinds of keys, each with its rule:

- **Previews** (`previews/<job>.jpg`, jobs/pg_notify.py): the worker removes a job's preview when the job ends;
  one left behind (its worker was killed or cut off) is dropped once its job has ended (or is gone) and the
  preview was last written more than `PREVIEW_GRACE_S` ago. A running job's preview is never dropped.
- **Slices** (`slices/<job>/<n>.tar`, jobs/slice_files.py): the same rule; a long job's slices are needed only
  while it may resume.
- **Results** (`outputs/…`, jobs/results.py): kept while the catalog holds any image of the job that made
  them, live or in the recycle bin, with no age limit: the catalog promises that every host can show its
  images, and a host that never fetched one (a web gallery, a bot started later) has no other copy. A result
  no catalog image refers to any more (purged from the recycle bin, or never catalogued) is dropped once it
  is older than `[database] blob_keep_days` (default 30). The recycle bin's purge comes `purge_after_days`
  (default 30) after a deletion, so a purged image's file is usually older than that already and leaves at
  the first upkeep after the purge; a fresh result is never dropped before the catalog could take it. The
  job of a result is read from its file name (`<job>-…` in the file's name or a folder of it, as every job
  kind names its outputs); a key with no job in its name is kept for `blob_keep_days` only.

A file dropped here is still on the host whose worker made it. Another host that asks for it later
(`ResultFiles.local`) gets the path of a missing file, which every reader already reports as gone ("the file
of image N is gone", a contact sheet's blank cell) instead of failing.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from jobs.blobs import BlobStore
from jobs.records import JobRecord, JobStatus

log = logging.getLogger(__name__)

PREVIEW_GRACE_S = 600.0  # a preview of a job that ended goes after this (its last viewers are done with it)
DAY_S = 86400.0
ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
_JOB_PART = re.compile(r"^(\d+)-")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # the day folders of txt2img-images/, img2img-images/


class Jobs(Protocol):
    async def get(self, job_id: int) -> JobRecord | None: ...


class CatalogJobs(Protocol):
    async def of_job(self, job_id: int) -> list: ...


@dataclass
class Dropped:
    """What one pass dropped, by kind."""

    previews: int = 0
    slices: int = 0
    results: int = 0

    def __str__(self) -> str:
        return f"{self.previews} previews, {self.slices} slice files, {self.results} result files"


def job_of_key(key: str) -> int | None:
    """The job a key belongs to, from its name: `previews/<job>.jpg`, `slices/<job>/<n>.tar`, or a result
    whose file name (or a folder of it, not a day folder) starts with `<job>-`; None when no name says."""
    parts = PurePosixPath(key).parts
    if parts[0] == "previews" and len(parts) == 2:
        stem = PurePosixPath(parts[1]).stem
        return int(stem) if stem.isdigit() else None
    if parts[0] == "slices" and len(parts) == 3:
        return int(parts[1]) if parts[1].isdigit() else None
    for part in reversed(parts[2:]):  # under outputs/<kind folder>/
        if _DATE.match(part):
            continue
        if match := _JOB_PART.match(part):
            return int(match.group(1))
    return None


async def drop_old_blobs(
    blobs: BlobStore, jobs: Jobs, catalog: CatalogJobs, keep_days: float, now: float | None = None
) -> Dropped:
    """One retention pass over the store (see the module's docstring); what it dropped."""
    now = time.time() if now is None else now
    dropped = Dropped()
    ended: dict[int, bool] = {}

    async def job_ended(job_id: int | None) -> bool:
        if job_id is None:
            return False
        if job_id not in ended:
            job = await jobs.get(job_id)
            ended[job_id] = job is None or job.status in ENDED
        return ended[job_id]

    for key in await blobs.listed("previews/", now - PREVIEW_GRACE_S):
        if await job_ended(job_of_key(key)) and await blobs.delete(key):
            dropped.previews += 1
    for key in await blobs.listed("slices/", now - PREVIEW_GRACE_S):
        if await job_ended(job_of_key(key)) and await blobs.delete(key):
            dropped.slices += 1
    catalogued: dict[int, bool] = {}
    for key in await blobs.listed("outputs/", now - keep_days * DAY_S):
        job_id = job_of_key(key)
        if job_id is not None:
            if job_id not in catalogued:
                catalogued[job_id] = bool(await catalog.of_job(job_id))
            if catalogued[job_id]:
                continue  # an image of it is in the catalog (or its recycle bin): any host may show it
        if await blobs.delete(key):
            dropped.results += 1
    if dropped.previews or dropped.slices or dropped.results:
        log.info("blob store: dropped %s", dropped)
    return dropped
