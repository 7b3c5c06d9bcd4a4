"""Retention of the blob store (jobs/blob_retention.py) over a local folder store: previews and slices of
ended jobs go after a short grace, result files stay while the catalog holds an image of their job and
otherwise go after `blob_keep_days`."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from types import SimpleNamespace

from jobs.blob_retention import DAY_S, PREVIEW_GRACE_S, drop_old_blobs, job_of_key
from jobs.blobs import FolderBlobs
from jobs.records import JobStatus
from jobs.results import ResultFiles

RESULT = "outputs/txt2img-images/2024-05-01/{job:05d}-0-42.png"


class Jobs:
    def __init__(self, statuses: dict[int, JobStatus]) -> None:
        self.statuses = statuses

    async def get(self, job_id: int):
        status = self.statuses.get(job_id)
        return None if status is None else SimpleNamespace(id=job_id, status=status)


class Catalog:
    """Job ids that still have catalog rows (live or in the recycle bin)."""

    def __init__(self, jobs: set[int]) -> None:
        self.jobs = jobs
        self.asked: list[int] = []

    async def of_job(self, job_id: int) -> list:
        self.asked.append(job_id)
        return [SimpleNamespace(job_id=job_id)] if job_id in self.jobs else []


def keys(blobs: FolderBlobs) -> set[str]:
    return set(asyncio.run(blobs.listed("", time.time() + 1)))


def test_the_job_of_each_kind_of_key():
    assert job_of_key("previews/12.jpg") == 12 and job_of_key("slices/7/3.tar") == 7
    assert job_of_key(RESULT.format(job=12)) == 12  # the day folder is not a job
    assert job_of_key("outputs/xyz-plots/00031-1700000000-ab12/cell-0.png") == 31
    assert job_of_key("outputs/animations/00044-1700000000/video.mp4") == 44
    assert job_of_key("outputs/extras-images/00052-photo.png") == 52
    assert job_of_key("outputs/txt2img-images/2024-05-01/grid.png") is None
    assert job_of_key("previews/x.jpg") is None


def test_previews_and_slices_of_ended_jobs_go_after_the_grace(tmp_path):
    blobs = FolderBlobs(tmp_path / "blobs")
    for key in ("previews/1.jpg", "previews/2.jpg", "previews/3.jpg", "slices/1/0.tar", "slices/2/0.tar"):
        asyncio.run(blobs.put(key, b"x"))
    jobs = Jobs({1: JobStatus.DONE, 2: JobStatus.RUNNING})  # 3 is gone from the queue
    fresh = asyncio.run(drop_old_blobs(blobs, jobs, Catalog(set()), keep_days=30))
    assert (fresh.previews, fresh.slices, fresh.results) == (0, 0, 0)  # within the grace
    later = time.time() + PREVIEW_GRACE_S + 60
    dropped = asyncio.run(drop_old_blobs(blobs, jobs, Catalog(set()), keep_days=30, now=later))
    assert (dropped.previews, dropped.slices) == (2, 1)
    assert keys(blobs) == {"previews/2.jpg", "slices/2/0.tar"}  # the running job keeps its own


def test_results_stay_while_catalogued_and_go_after_keep_days_otherwise(tmp_path):
    blobs = FolderBlobs(tmp_path / "blobs")
    for job in (10, 11, 12):
        asyncio.run(blobs.put(RESULT.format(job=job), b"png"))
    asyncio.run(blobs.put("outputs/txt2img-images/2024-05-01/grid.png", b"no job in its name"))
    jobs = Jobs({10: JobStatus.DONE, 11: JobStatus.DONE, 12: JobStatus.DONE})
    catalog = Catalog({10, 12})  # 11's images were purged from the recycle bin
    soon = time.time() + 29 * DAY_S
    assert asyncio.run(drop_old_blobs(blobs, jobs, catalog, keep_days=30, now=soon)).results == 0
    assert catalog.asked == []  # nothing old enough to look at
    later = time.time() + 31 * DAY_S
    dropped = asyncio.run(drop_old_blobs(blobs, jobs, catalog, keep_days=30, now=later))
    assert dropped.results == 2
    assert keys(blobs) == {RESULT.format(job=10), RESULT.format(job=12)}
    assert sorted(catalog.asked) == [10, 11, 12]


def test_a_host_prunes_only_the_copies_it_fetched(tmp_path):
    blobs = FolderBlobs(tmp_path / "store")
    host_a, host_b = tmp_path / "A", tmp_path / "B"
    made = [host_a / "outputs" / "txt2img-images" / "2024-05-01" / f"{job:05d}-0-42.png" for job in (1, 2, 3)]
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
    asyncio.run(ResultFiles(host_a, host_a / "outputs", blobs).publish([str(path) for path in made]))
    shutil.rmtree(host_a)  # host A's folder is out of B's reach
    own = host_b / "outputs" / "txt2img-images" / "2024-05-01" / "00009-0-1.png"  # B's worker made it
    own.parent.mkdir(parents=True)
    own.write_bytes(b"mine")
    reader = ResultFiles(host_b, host_b / "outputs", blobs)
    copies = [asyncio.run(reader.local(str(path))) for path in made]
    assert all(copy.is_relative_to(host_b) and copy.is_file() for copy in copies)
    assert asyncio.run(reader.prune_cache(keep_days=30)) == 0  # all in use and still in the store
    asyncio.run(blobs.delete(RESULT.format(job=1)))  # purged: no host will be given it again
    assert asyncio.run(reader.prune_cache(keep_days=30)) == 1 and not copies[0].exists()
    later = time.time() + 31 * DAY_S
    os.utime(copies[2], (later - DAY_S, later - DAY_S))  # used a day before `later`
    assert asyncio.run(reader.prune_cache(keep_days=30, now=later)) == 1  # copy 2 unused for 30 days
    assert not copies[1].exists() and copies[2].is_file() and own.is_file()
    assert reader.fetched_list.read_text().split() == [RESULT.format(job=3)]
