"""Places in line on PostgreSQL from each followed job's round (jobs/fair_places.py) are those of the whole
queue ranked (jobs/fair_sql.py `positions`, the reference): over random queues with turns and long lines,
through `PgJobStore.positions`. What a place reads (as many rows with 100,000 queued as with 10,000):
tests/pg/test_claim_reads.py."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from jobs import fair_heads
from jobs.pg_store import POSITIONS, PgJobStore
from jobs.scheduling import FairScheduler
from tests.jobs.test_fair_heads import PEOPLE, long_queues
from tests.pg.test_fair_sql import fill


async def _positions(url: str, ids, whole: bool) -> dict[int, int]:
    store = await PgJobStore.open(url, worker_name="w")
    before, fair_heads.WHOLE_QUEUE = fair_heads.WHOLE_QUEUE, whole
    try:
        return await store.positions(ids)
    finally:
        fair_heads.WHOLE_QUEUE = before
        await store.close()


@pytest.fixture
def migrated(postgres_url) -> str:
    """The test's database with the queue's schema (the store's migrations)."""
    asyncio.run(_positions(postgres_url, None, False))
    return postgres_url


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    long_queues(),
    st.dictionaries(st.sampled_from(PEOPLE), st.integers(0, 50)),
    st.randoms(use_true_random=False),
)
def test_places_from_rounds_are_the_whole_queue_ranked(migrated, queued, served, rnd):
    with psycopg.connect(migrated, autocommit=True, row_factory=dict_row) as db:
        fill(db, queued, FairScheduler(served_at=dict(served)))
        ids = [row["id"] for row in db.execute("SELECT id FROM jobs WHERE status = 'queued'")]
        everything = {row["id"]: row["place"] for row in db.execute(POSITIONS, {"ids": None})}
    assert sorted(everything.values()) == list(range(1, len(ids) + 1))
    wanted = rnd.sample(ids, min(len(ids), 12)) + [10**9]  # and one that is not queued
    got = asyncio.run(_positions(migrated, wanted, False))
    assert got == {job_id: everything[job_id] for job_id in wanted if job_id in everything}
    assert asyncio.run(_positions(migrated, wanted, True)) == got  # the "before" flag: the reference
