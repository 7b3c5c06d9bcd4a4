"""Queue figures of bench/cluster.py: claims per second, claim latency, fairness and duplicates on PostgreSQL,
against the SQLite queue with one worker measured in the same run.

Each worker is a process of its own (as `salon worker` on its host): the real queue of the composition root
(`app.worker.open_queue`, with its own connection pool to the database) whose run loop (`RunLoop.run_once`:
read the queue, the fair pick, the claim with its fence, the start events) runs over and over, with a
stand-in in place of the GPU worker that sleeps a fixed time per image and reports the job done (no image, no
catalog row). Its completion goes through the store with the claim's fence, as a real result does.

A claim's latency is the time from a worker looking for its next job to that job starting (reading the
queue, the pick, the claim, retried when another worker took the same job first).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

STAND_IN_MODEL = "stand-in-model"
REQUEST = {"params": {"prompt": "a castle on a hill, highly detailed", "width": 512, "height": 512,
                      "steps": 20, "batch_size": 1, "batch_count": 1}}  # fmt: skip
START_DEADLINE_S = 180.0  # worker processes starting on a loaded 2-core machine
HEAVY, LIGHT = "heavy", "light"


def label(sleep_ms: int) -> str:
    return f"stand-in engine (sleeps {sleep_ms} ms per image): not image throughput"


# ----- filling the queue -------------------------------------------------------------------------------------
def job_rows(count: int, owners: int, prefix: str = "u"):
    """Queued image jobs as both stores keep them, `owners` people taking turns."""
    now = time.time()
    request, meta = json.dumps(REQUEST), json.dumps({})
    for i in range(count):
        yield (
            "imagine",
            f"{prefix}{i % owners}",
            "g1",
            "c1",
            request,
            "queued",
            now,
            "",
            STAND_IN_MODEL,
            meta,
        )


COLUMNS = "kind, owner, guild, channel, request, status, created_at, batch_key, model, meta"


def fill_postgres(url: str, count: int, owners: int, prefix: str = "u", empty: bool = True) -> None:
    """`count` queued jobs in the PostgreSQL queue (COPY: the bench needs the state, not the submit path)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        if empty:
            db.execute("DELETE FROM jobs")
        with db.cursor() as cursor, cursor.copy(f"COPY jobs ({COLUMNS}) FROM STDIN") as copy:
            for row in job_rows(count, owners, prefix):
                copy.write_row(row)
        db.execute("ANALYZE jobs")


def fill_sqlite(path: Path, count: int, owners: int) -> None:
    db = sqlite3.connect(path)
    with db:
        db.executemany(f"INSERT INTO jobs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       job_rows(count, owners))  # fmt: skip
    db.close()


async def create_schema(url: str | None, folder: Path) -> None:
    """The queue's schema, made by its own store (migrations)."""
    from app.stores import open_job_store

    async with open_job_store(_settings(url, folder)):
        pass


def _settings(url: str | None, folder: Path):
    from config import load_settings

    database = {"url": url} if url else {}
    return load_settings(None, data_dir=folder, database=database,
                         queue={"max_queued": 1_000_000, "max_pending_per_user": 100_000})  # fmt: skip


# ----- one worker process ------------------------------------------------------------------------------------
class StandInWorker:
    """In place of `jobs.worker.GpuWorker`: sleeps `sleep_ms` per image, then says the jobs are done."""

    def __init__(self, sleep_ms: int, on_start) -> None:
        self.sleep_s = sleep_ms / 1000
        self.on_start = on_start
        self.loaded_model = STAND_IN_MODEL

    def describe(self) -> tuple[str, list[str]]:
        return "stand-in", [STAND_IN_MODEL]

    async def prepare(self) -> None:
        return None

    async def run(self, jobs, controls, report):
        from jobs.records import JobStatus
        from jobs.scheduling import job_images
        from jobs.worker import Outcome

        self.on_start(jobs)
        await asyncio.sleep(self.sleep_s * sum(job_images(job) for job in jobs))
        return {job.id: Outcome(JobStatus.DONE) for job in jobs}


def worker_process(url, folder, index, sleep_ms, ready, start, stop, results) -> None:
    """A worker's process: the queue, then `run_once` over and over between `start` and `stop`."""
    asyncio.run(_work(url, Path(folder), index, sleep_ms, ready, start, stop, results))


async def _work(url, folder: Path, index: int, sleep_ms: int, ready, start, stop, results) -> None:
    from app.worker import open_queue

    report = {"index": index, "latencies": [], "claimed": [], "lost": 0, "error": None}
    waiting_since: list[float | None] = [None]

    def on_start(jobs) -> None:
        report["latencies"].append(time.perf_counter() - waiting_since[0])
        report["claimed"].extend(job.id for job in jobs)
        waiting_since[0] = None

    try:
        worker_dir = folder / f"worker-{index}" if url else folder / "data"  # SQLite: the one data folder
        async with open_queue(_settings(url, worker_dir), worker_name=f"bench-{index}") as queue:
            queue.worker = StandInWorker(sleep_ms, on_start)
            ready.put(index)
            await asyncio.to_thread(start.wait)
            while not stop.is_set():
                if waiting_since[0] is None:
                    waiting_since[0] = time.perf_counter()
                before = len(report["claimed"])
                ran = await queue.run_once()
                if ran and len(report["claimed"]) == before:
                    # every lead it could take (the fair pick and its fall-backs) was held by other workers'
                    # claims at that moment: it reads the queue and picks again
                    report["lost"] += 1
                if not ran:
                    await asyncio.sleep(0.05)  # nothing queued
    except Exception as exc:  # reported by the parent, with the worker's number
        report["error"] = f"{type(exc).__name__}: {exc}"
        ready.put(index)
    results.put(report)


@dataclass
class Run:
    """What the workers of one run did."""

    window_s: float
    latencies: list[float] = field(default_factory=list)
    claimed: list[int] = field(default_factory=list)
    lost: int = 0
    twice_in_rows: int = 0  # jobs whose rows say they were claimed more than once (fence > 1)

    @property
    def claims_per_s(self) -> float:
        return len(self.claimed) / self.window_s

    @property
    def twice(self) -> int:
        """Jobs claimed twice: by the workers' own lists, or by the rows' fences (whichever says more)."""
        return max(sum(n - 1 for n in Counter(self.claimed).values() if n > 1), self.twice_in_rows)


class Workers:
    """`count` worker processes on one queue; `start` them together, `stop` them, read what they did."""

    def __init__(self, url: str | None, folder: Path, count: int, sleep_ms: int) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding connections
        self.ready, self.results = context.Queue(), context.Queue()
        self.start_event, self.stop_event = context.Event(), context.Event()
        self.processes = [
            context.Process(
                target=worker_process,
                args=(
                    url,
                    str(folder),
                    i,
                    sleep_ms,
                    self.ready,
                    self.start_event,
                    self.stop_event,
                    self.results,
                ),
                daemon=True,
            )
            for i in range(count)
        ]
        self.started = 0.0

    def start(self) -> None:
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + START_DEADLINE_S
        for _ in self.processes:
            self.ready.get(timeout=max(1.0, deadline - time.monotonic()))
        self.started = time.perf_counter()
        self.start_event.set()

    def stop(self) -> Run:
        self.stop_event.set()
        run = Run(window_s=time.perf_counter() - self.started)
        errors = []
        for _ in self.processes:
            report = self.results.get(timeout=START_DEADLINE_S)
            if report["error"]:
                errors.append(f"worker {report['index']}: {report['error']}")
            run.latencies += report["latencies"]
            run.claimed += report["claimed"]
            run.lost += report["lost"]
        for process in self.processes:
            process.join(timeout=30)
        if errors:
            raise RuntimeError("; ".join(errors))
        return run


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ----- the figures -------------------------------------------------------------------------------------------
@dataclass
class QueueFigures:
    sleep_ms: int
    jobs: int
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (what, figure, note)
    twice: int = 0
    claims: int = 0


WHOLE_QUEUE_ENV = "SALON_RANK_WHOLE_QUEUE"  # jobs/fair_heads.py `WHOLE_QUEUE`: the workers rank as before


def claim_loop(url: str | None, folder: Path, jobs: int, workers: int, sleep_ms: int, window_s: float,
               whole_queue: bool = False) -> Run:  # fmt: skip
    """`workers` workers on a queue of `jobs` queued jobs (100 people) for `window_s` seconds; with
    `whole_queue`, their claims rank the whole queue (before jobs/fair_heads.py)."""
    asyncio.run(create_schema(url, folder / "data"))
    if url:
        fill_postgres(url, jobs, owners=100)
    else:
        fill_sqlite(_settings(None, folder / "data").queue_db, jobs, owners=100)
    pool = Workers(url, folder, workers, sleep_ms)
    if whole_queue:  # the worker processes (spawned) read it as they import the queue
        os.environ[WHOLE_QUEUE_ENV] = "1"
    try:
        pool.start()
    finally:
        os.environ.pop(WHOLE_QUEUE_ENV, None)
    time.sleep(window_s)
    run = pool.stop()
    if url:
        run.twice_in_rows = _claimed_twice_in_rows(url)
    return run


def _claimed_twice_in_rows(url: str) -> int:
    """Jobs whose rows say they were claimed more than once (their fence went past 1)."""
    import psycopg

    with psycopg.connect(url) as db:
        return db.execute("SELECT COUNT(*) FROM jobs WHERE fence > 1").fetchone()[0]


def fairness(url: str, folder: Path, heavy_jobs: int, workers: int, sleep_ms: int, light_jobs: int):
    """A heavy user's `heavy_jobs` queued, `workers` busy with them; light users submit one job each, one
    after another; the longest wait of a light job in claims (jobs started between its submission and its
    start) and in seconds."""
    asyncio.run(create_schema(url, folder / "data"))
    fill_postgres(url, heavy_jobs, owners=1, prefix=HEAVY)
    pool = Workers(url, folder, workers, sleep_ms)
    pool.start()
    try:
        waits = asyncio.run(
            _light_jobs(url, folder, light_jobs, deadline_s=60 + heavy_jobs * sleep_ms / 1000)
        )
    finally:
        run = pool.stop()
    run.twice_in_rows = _claimed_twice_in_rows(url)
    return waits, run


async def _light_jobs(url: str, folder: Path, count: int, deadline_s: float) -> list[tuple[int, float]]:
    import psycopg

    from app.stores import open_job_store
    from jobs.records import JobKind

    ids = []
    async with open_job_store(_settings(url, folder / "light"), worker_name="bench-submitter") as store:
        for i in range(count):
            await asyncio.sleep(0.3)
            job, _ = await store.submit(JobKind.IMAGINE, f"{LIGHT}{i}", REQUEST, guild="g1", channel="c1",
                                        model=STAND_IN_MODEL, max_pending_per_user=8, max_queued=1_000_000)  # fmt: skip
            ids.append(job.id)
        deadline = time.monotonic() + deadline_s
        while True:
            jobs = [await store.get(job_id) for job_id in ids]
            if all(job.started_at is not None for job in jobs):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"light jobs not started within {deadline_s:.0f} s")
            await asyncio.sleep(0.1)
    waits = []
    async with await psycopg.AsyncConnection.connect(url) as db:
        for job in jobs:
            cursor = await db.execute(
                "SELECT COUNT(*) FROM jobs WHERE started_at > %s AND started_at < %s AND id <> %s",
                (job.created_at, job.started_at, job.id),
            )
            waits.append(((await cursor.fetchone())[0], job.started_at - job.created_at))
    return waits


def measure(url: str, worker_counts: list[int], jobs: int, heavy_jobs: int, sleep_ms: int, window_s: float,
            say=print, before: bool = False) -> QueueFigures:  # fmt: skip
    """The queue's figures; with `before`, each claim figure also with the whole queue ranked at each claim
    (as before jobs/fair_heads.py), measured right before it, side by side."""
    figures = QueueFigures(sleep_ms, jobs)
    tag = label(sleep_ms)
    ways = (
        [(True, " — before: whole queue ranked"), (False, " — now: person by person")]
        if before
        else [(False, "")]
    )
    with tempfile.TemporaryDirectory(prefix="salon-cluster-") as tmp:
        base = None
        for whole, how in ways:
            say(f"queue: SQLite, 1 worker, {jobs:,} queued, {window_s:.0f} s{how} …")
            run = claim_loop(None, Path(tmp) / f"sqlite-{whole}", jobs, 1, sleep_ms, window_s, whole)
            figures.rows.append(_claim_row(f"SQLite queue, 1 worker{how or ' (baseline)'}", run, None, tag))
            base = run if not whole else base  # the figures' baseline: SQLite now
        for count in worker_counts:
            for whole, how in ways:
                say(f"queue: PostgreSQL, {_workers(count)}, {jobs:,} queued, {window_s:.0f} s{how} …")
                run = claim_loop(
                    url, Path(tmp) / f"pg-{count}-{whole}", jobs, count, sleep_ms, window_s, whole
                )
                figures.rows.append(_claim_row(f"PostgreSQL queue, {_workers(count)}{how}", run, base, tag))
                figures.twice += run.twice
                figures.claims += len(run.claimed)
        workers = worker_counts[min(1, len(worker_counts) - 1)]
        say(f"queue: fairness, a heavy user's {heavy_jobs:,} jobs, {workers} workers …")
        waits, run = fairness(url, Path(tmp) / "fair", heavy_jobs, workers, sleep_ms, light_jobs=10)
        figures.twice += run.twice
        figures.claims += len(run.claimed)
    claims, seconds = max(w[0] for w in waits), max(w[1] for w in waits)
    figures.rows.append((
        f"fairness: light user's longest wait ({len(waits)} light jobs, heavy user {heavy_jobs:,} queued)",
        f"{claims} claims, {seconds:.2f} s",
        f"{workers} workers; other workers' picks already under way count as claims",
    ))  # fmt: skip
    figures.rows.append(
        ("jobs claimed twice", f"{figures.twice}", f"of {figures.claims:,} claims (must be 0)")
    )
    return figures


def _workers(count: int) -> str:
    return f"{count} worker process" + ("" if count == 1 else "es")


def _claim_row(what: str, run: Run, base: Run | None, tag: str) -> tuple[str, str, str]:
    p99 = percentile(run.latencies, 0.99) * 1000
    figure = f"{run.claims_per_s:,.1f} claims/s, p99 claim {p99:,.0f} ms"
    ratio = "" if base is None else f"{run.claims_per_s / base.claims_per_s:.2f}× SQLite's claims/s; "
    lost = f"{run.lost:,} picks found every choice held by other workers; " if run.lost else ""
    return what, figure, f"{ratio}{lost}{len(run.latencies):,} claims in {run.window_s:.0f} s; {tag}"
