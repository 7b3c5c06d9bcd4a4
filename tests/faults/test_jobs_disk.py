"""A full disk: the worker logs it, puts the job back without counting the attempt, says why jobs wait, and
completes them once space returns; nothing partial is left (issue 18, item 3).

Injected where a full disk shows (a PNG save raising ENOSPC, SQLite's SQLITE_FULL through `max_page_count`) so
that every machine runs them, and for real on a small tmpfs where this user may mount one (root)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from config import load_settings
from core.errors import DiskFull
from engine.requests import GenerationRequest
from jobs.queue import JobQueue
from jobs.records import JobKind, JobStatus
from jobs.store import JobStore
from tests.jobs.processes import activity, row, start_worker, wait_for, wait_for_exit
from tests.queues import open_queue

LIMITS = {"max_pending_per_user": 10, "max_queued": 10}


def request(seed: int = 1) -> GenerationRequest:
    return GenerationRequest("a red circle", seed=seed, width=64, height=64, steps=3)


@pytest.fixture
async def queue(tmp_path, engine, monkeypatch):
    import jobs.diskwait

    monkeypatch.setattr(jobs.diskwait, "RETRY_S", (0.05, 0.4))
    settings = load_settings(None, data_dir=tmp_path / "data", queue={"poll_interval_s": 0.05})
    opened = await open_queue(settings, engine_factory=lambda: engine)
    yield opened
    await opened.close()


async def run_until_done(queue: JobQueue, job_id: int, phases: list[str]) -> None:
    """Run the worker until the job ends, noting every phase its row shows meanwhile."""
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(stop=stop))
    try:
        while not (job := await queue.store.get(job_id)).status.terminal:
            assert not runner.done(), runner.exception()
            phases.append(job.phase)
            await asyncio.sleep(0.005)
    finally:
        stop.set()
        await runner


async def test_a_png_save_on_a_full_disk_waits_and_completes_once_space_returns(queue, monkeypatch, caplog):
    """Item 3: ENOSPC while saving: logged with the folder, the job waits (and says so), then completes."""
    import jobs.results

    real_save, failures = jobs.results.save_image_with_infotext, []

    def save(image, path, infotext):
        if len(failures) < 2:
            failures.append(path)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(image, path, infotext)

    monkeypatch.setattr(jobs.results, "save_image_with_infotext", save)
    caplog.set_level(logging.ERROR, logger="jobs.diskwait")
    job = await queue.submit(request(), "ann")
    phases: list[str] = []
    await run_until_done(queue, job.id, phases)

    done = await queue.store.get(job.id)
    assert done.status is JobStatus.DONE and done.attempts == 1  # the runs the disk stopped do not count
    folder = failures[0].parent
    logged = [r.getMessage() for r in caplog.records if "disk full" in r.getMessage()]
    assert len(logged) == 2 and logged[0].startswith(f"disk full in {folder} (")
    assert "free); the jobs wait, next try in" in logged[0]
    assert any(phase.startswith(f"waiting: disk full in {folder} (") for phase in phases), set(phases)
    assert [Path(p) for p in done.results] == sorted(queue.settings.outputs_path.rglob("*.png"))
    assert not [p for p in queue.settings.outputs_path.rglob("*") if p.is_file() and p.suffix != ".png"]
    with sqlite3.connect(queue.settings.catalog_dir / "catalog.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 1


async def test_a_full_database_waits_instead_of_crashing_the_worker(queue, monkeypatch, caplog):
    """Item 3: SQLite says the disk is full when the batch is claimed: the worker waits, then runs the job."""
    real_claim, refused = queue.store.claim, []

    async def claim(job_ids):
        if not refused:
            refused.append(job_ids)
            raise DiskFull(queue.settings.data_dir, 12 * 1024)
        return await real_claim(job_ids)

    monkeypatch.setattr(queue.store, "claim", claim)
    caplog.set_level(logging.ERROR, logger="jobs.diskwait")
    job = await queue.submit(request(), "ann")
    await run_until_done(queue, job.id, [])
    assert (await queue.store.get(job.id)).status is JobStatus.DONE
    assert [r.getMessage() for r in caplog.records if "disk full" in r.getMessage()] == [
        f"disk full in {queue.settings.data_dir} (12 KB free); the jobs wait, next try in 0 s"
    ]


async def test_sqlite_full_is_rolled_back_and_reported_as_disk_full(tmp_path):
    """Item 3: SQLITE_FULL rolls the transaction back and raises DiskFull; the connection keeps working."""
    store = await JobStore.open(tmp_path / "queue.db")
    try:
        connection = store._database.connection
        async with connection.execute("PRAGMA page_count") as cursor:
            pages = (await cursor.fetchone())[0]
        await connection.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(DiskFull, match=f"disk full in {tmp_path} \\("):
            await store.submit(JobKind.IMAGINE, "ann", {"prompt": "x" * 100_000}, **LIMITS)
        assert not connection.in_transaction and await store.queued() == []
        await connection.execute(f"PRAGMA max_page_count = {pages * 100}")
        job, created = await store.submit(JobKind.IMAGINE, "ann", {"prompt": "x" * 100_000}, **LIMITS)
        assert created and [j.id for j in await store.queued()] == [job.id]
    finally:
        await store.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs (needs root); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all but `leave` bytes of the disk."""
    filler = disk / "filler"
    with open(filler, "wb") as out:
        block = b"\0" * 65536
        while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > leave + len(block):
            out.write(block)
            out.flush()
    return filler


def test_a_worker_on_a_full_tmpfs_says_why_it_waits_and_finishes_when_space_returns(tmp_path, small_disk):
    """Item 3, for real: a full tmpfs; the worker logs the folder and free space, `salon queue` says why jobs
    wait; once the filler is removed the job completes, with a whole PNG and one catalog row."""
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{small_disk / "data"}"\n[queue]\npoll_interval_s = 0.1\n')
    settings = load_settings(config)

    async def submit() -> int:
        queue = await open_queue(settings)
        try:
            return (await queue.submit(request(), "ann")).id
        finally:
            await queue.close()

    job_id = asyncio.run(submit())
    filler = fill(small_disk, leave=96 * 1024)
    log = tmp_path / "worker.log"
    worker = start_worker(config, log)
    watch = activity(settings.data_dir, log)
    try:
        wait_for(lambda: "the jobs wait" in log.read_text(), "the disk full log line", watch, worker, log)
        line = next(line for line in log.read_text().splitlines() if "the jobs wait" in line)
        assert f"disk full in {small_disk / 'data'}" in line and " free); the jobs wait" in line, line
        listing = subprocess.run(
            [sys.executable, "-m", "cli.main", "--config", str(config), "queue"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "400"},
            timeout=120,
        )
        assert listing.returncode == 0 and "waiting: disk full in" in listing.stdout + listing.stderr, listing
        started_freeing = time.monotonic()
        filler.unlink()
        assert wait_for_exit(worker, "the job after space returned", watch, log) == 0, log.read_text()[-3000:]
        assert time.monotonic() - started_freeing < 120
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    done = row(settings.queue_db, job_id)
    assert done["status"] == "done" and done["attempts"] == 1, done
    pngs = sorted(settings.outputs_path.rglob("*.png"))
    assert len(pngs) == 1 and not [
        p for p in settings.outputs_path.rglob("*") if p.is_file() and p not in pngs
    ]
    with Image.open(pngs[0]) as image:
        image.load()  # whole, not truncated
    with sqlite3.connect(settings.catalog_dir / "catalog.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 1
