"""The fair order in SQL on PostgreSQL (jobs/fair_sql.py, the statement jobs/pg_claims.py claims with) is the
fair order of jobs/scheduling.py: over random queues, turns (`started_at` of earlier jobs) and pass-overs
(the `passed_over` table), the same leads in the same order, the same batch and the same places in line as
`FairScheduler` over the whole queue with the turns the rows hold. Then a claim: what one worker claims."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from jobs.fair_sql import POSTGRES, leads
from jobs.pg_store import POSITIONS, PgJobStore, _record
from jobs.scheduling import MAX_SKIPS, FairScheduler
from tests.jobs.fair_queues import MODELS, queues, schedulers
from tests.jobs.test_fair_sql import python_order

LEADS = leads(POSTGRES)
INSERT = (
    "INSERT INTO jobs (kind, owner, request, status, created_at, batch_key, model, solo, deaths, started_at) "
    "VALUES (%s, %s, %s, %s, 0, %s, %s, %s, %s, %s)"
)


def fill(db, queued, scheduler: FairScheduler) -> None:
    """The queue, each owner's turn as a finished job started then, and the pass-over counts, in the rows."""
    db.execute("TRUNCATE jobs, passed_over RESTART IDENTITY")
    for owner, served in scheduler.served_at.items():
        db.execute(INSERT, ("imagine", owner, "{}", "done", "", None, False, "[]", float(served)))
    for job in queued:
        values = (job.kind.value, job.owner, json.dumps(job.request), "queued", job.batch_key, job.model)
        db.execute(INSERT, (*values, job.solo, json.dumps(list(job.deaths)), None))
    for owner, times in scheduler.skipped.items():
        if times:
            db.execute("INSERT INTO passed_over (owner, times) VALUES (%s, %s)", (owner, times))


def postgres_order(url: str, queued, scheduler: FairScheduler, loaded, max_images: int):
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as db:
        fill(db, queued, scheduler)
        stored = [
            _record(row) for row in db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id")
        ]
        turns = FairScheduler(served_at={o: float(s) for o, s in scheduler.served_at.items()},
                              skipped={o: t for o, t in scheduler.skipped.items() if t})  # fmt: skip
        expected = python_order(turns, stored, loaded, max_images)
        rows = db.execute(LEADS, {"loaded": loaded, "max_skips": MAX_SKIPS, "limit": None}).fetchall()
        placed = {row["id"]: row["place"] for row in db.execute(POSITIONS, {"ids": None})}
    got = [(row["id"], row["passes_over"]) for row in rows]
    return (got, placed), (expected[0], expected[2]), expected[1]


async def claim(url: str, loaded, max_images: int) -> list[int]:
    store = await PgJobStore.open(url, worker_name="w")
    try:
        return [job.id for job in await store.claim_next(loaded, max_images)]
    finally:
        await store.close()


@pytest.fixture
def migrated(postgres_url) -> str:
    """The test's database with the queue's schema (the store's migrations)."""
    asyncio.run(claim(postgres_url, None, 1))
    return postgres_url


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queues(), schedulers(), st.sampled_from([None, *MODELS]), st.integers(1, 9))
def test_postgresql_orders_the_queue_as_the_scheduler_does(
    postgres_url, queued, scheduler, loaded, max_images
):
    asyncio.run(claim(postgres_url, None, 1))  # the schema (the store's migrations); the queue is empty
    got, expected, batch = postgres_order(postgres_url, queued, scheduler, loaded, max_images)
    assert got == expected
    assert asyncio.run(claim(postgres_url, loaded, max_images)) == batch
