"""The SQLite queue's fault tests against PostgreSQL: a worker SIGKILLed again and again mid-job, and many
writers and claimers at once. Counted at the end: 0 jobs lost, 0 produced twice.

Real `salon worker` processes on one data folder (the rows, the result files and the catalog are counted);
waits end on rows and exits (tests/jobs/processes.py), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

from config import load_settings
from jobs.pg_store import PgJobStore
from jobs.records import JobKind, JobStatus
from tests.jobs.processes import start_worker, wait_for, wait_for_exit
from tests.jobs.test_store import LIMITS
from tests.pg.counting import catalog_paths
from tests.pg.test_workers import activity, configure, jobs, submit


def test_a_worker_killed_again_and_again_loses_nothing_and_duplicates_nothing(tmp_path, postgres_url):
    config = configure(tmp_path, postgres_url, lease_s=2)
    settings = load_settings(config)
    ids = submit(config, 4, steps=150)  # long enough to be caught denoising on a fast, idle machine too
    log = tmp_path / "worker.log"
    watch = activity(postgres_url, log)
    kills = 0
    for round_ in range(4):  # each time at whatever job runs next, a little further into it
        worker = start_worker(config, log, "--name", f"w{round_}", exit_when_idle=False)
        started = time.time()

        def denoising(started=started, round_=round_):
            return any(
                row["worker"] == f"w{round_}"
                and row["status"] == "running"
                and row["started_at"] >= started - 1
                and row["phase"] == "txt2img"
                and row["progress"] >= 0.1 + 0.1 * round_
                for row in jobs(postgres_url)
            )

        if not wait_for(
            lambda: denoising() or _all_done(postgres_url), "a job denoising", watch, worker, log
        ):
            continue
        if _all_done(postgres_url):
            worker.send_signal(signal.SIGTERM)
            wait_for_exit(worker, "the worker's exit", watch, log)
            break
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
    last = start_worker(config, log, "--name", "last", exit_when_idle=False)
    try:
        wait_for(lambda: _all_done(postgres_url), "every job done", watch, last, log)
    finally:
        last.send_signal(signal.SIGTERM)
        wait_for_exit(last, "the last worker's exit", watch, log)
    assert kills >= 3
    rows = jobs(postgres_url)
    assert [row["id"] for row in rows] == ids and [row["status"] for row in rows] == ["done"] * 4  # 0 lost
    results = sorted(Path(p) for row in rows for p in row["results"])
    assert len(results) == 4 and all(p.is_file() for p in results)
    assert sorted(settings.outputs_path.rglob("*.png")) == results  # 0 duplicated
    catalogued = [settings.data_dir / path for path in catalog_paths(postgres_url, [settings.data_dir])]
    assert sorted(catalogued) == results  # PostgreSQL keeps paths relative to the data folder
    assert sum(row["attempts"] for row in rows) >= 4  # the deaths of jobs that died alone were counted


def _all_done(url: str) -> bool:
    return all(row["status"] == "done" for row in jobs(url))


async def test_many_writers_and_claimers_at_once_lose_and_duplicate_nothing(postgres_url):
    """Four writers submit 30 jobs each (every key twice, by two writers at once) while three workers claim
    and finish them: each key is one job, each job claimed and finished once."""
    stores = [await PgJobStore.open(postgres_url, worker_name=f"w{n}") for n in range(4)]
    keys = [f"key-{n}" for n in range(60)]
    limits = {**LIMITS, "max_pending_per_user": 1000, "max_queued": 1000}
    finished: list[tuple[str, int]] = []
    writing = True

    async def write(store: PgJobStore, mine: list[str]) -> set[int]:
        made = set()
        for key in mine:
            job, _ = await store.submit(
                JobKind.IMAGINE, f"user{random.randrange(5)}", {}, idempotency_key=key, **limits
            )
            made.add(job.id)
            await asyncio.sleep(0)
        return made

    async def work(store: PgJobStore) -> None:
        while True:
            queued = await store.queued()
            if not queued and not writing:
                return
            random.shuffle(queued)
            for job in await store.claim([job.id for job in queued[:3]]):
                done = await store.transition(job.id, JobStatus.DONE, [JobStatus.RUNNING], results=["x"])
                assert done is not None
                finished.append((store.worker_name, job.id))
            await asyncio.sleep(0)

    try:
        halves = [keys[:30], keys[30:], keys[:30][::-1], keys[30:][::-1]]  # two writers per key
        workers = [asyncio.ensure_future(work(store)) for store in stores[:3]]
        made = await asyncio.gather(*(write(store, mine) for store, mine in zip(stores, halves, strict=True)))
        writing = False
        await asyncio.gather(*workers)
        ids = set().union(*made)
        assert len(ids) == 60  # one job per key, whoever wrote it first
        assert sorted(job_id for _, job_id in finished) == sorted(ids)  # each finished exactly once
        rows = await stores[3].recent(limit=1000)
        assert len(rows) == 60 and all(row.status is JobStatus.DONE and row.attempts == 1 for row in rows)
    finally:
        for store in stores:
            await store.close()
