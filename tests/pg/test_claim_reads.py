"""What a claim reads on PostgreSQL (jobs/pg_claims.py): a bounded number of statements and rows, however long
the queue is, the turns found through the index `jobs_served`; places in line only for the jobs asked for."""

from __future__ import annotations

import json

import psycopg
import pytest

from jobs.pg_claims import LOCK_LEAD, claim_next
from jobs.pg_store import PgJobStore, _record
from jobs.scheduling import MAX_SKIPS

HOLDER = {"worker": "w", "claim": "w/1", "lease": 30.0}


class Counting:
    """A connection that counts the statements run through it and the rows they returned."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.statements = 0
        self.rows = 0

    async def execute(self, sql, args=None):
        self.statements += 1
        cursor = await self.connection.execute(sql, args)
        return Rows(cursor, self)


class Rows:
    def __init__(self, cursor, counter: Counting) -> None:
        self.cursor, self.counter = cursor, counter

    async def fetchone(self):
        row = await self.cursor.fetchone()
        self.counter.rows += row is not None
        return row

    async def fetchall(self):
        rows = await self.cursor.fetchall()
        self.counter.rows += len(rows)
        return rows


def fill(url: str, count: int, owners: int) -> None:
    """`count` queued jobs of `owners` people, all batchable (one key), and each person's turn."""
    request = json.dumps({"params": {"batch_size": 1, "batch_count": 1}})
    with psycopg.connect(url, autocommit=True) as db:
        with db.cursor().copy(
            "COPY jobs (kind, owner, request, status, created_at, batch_key, model, started_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                copy.write_row(("imagine", f"u{i % owners}", request, "queued", 0, "k", "m", None))
            for owner in range(owners):  # finished jobs: each person's last turn
                copy.write_row(("imagine", f"u{owner}", request, "done", 0, "", "m", float(owner)))
        db.execute("ANALYZE jobs")


@pytest.fixture
async def store(postgres_url):
    opened = await PgJobStore.open(postgres_url, worker_name="w")
    yield opened
    await opened.close()


@pytest.mark.parametrize("queued", [200, 5000])
async def test_a_claim_runs_a_few_statements_and_reads_only_the_batch(store, postgres_url, queued):
    fill(postgres_url, queued, 40)
    async with store._pool.connection() as connection, connection.transaction():
        counting = Counting(connection)
        rows = await claim_next(counting, _record, "m", 4, HOLDER)
    # The lead; a batch of 4 takes at most 3 mates (3 of 1 image); the claim; deleting the pass-overs.
    assert len(rows) == 4
    assert counting.statements <= 5
    assert counting.rows <= 1 + 3 + 3 + 4  # the lead, the mates' ids, their rows, the claimed rows


async def test_the_turns_come_from_an_index_not_from_every_job_of_a_person(store, postgres_url):
    fill(postgres_url, 5000, 40)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        args = {"loaded": "m", "max_skips": MAX_SKIPS, "limit": 1}
        plan = json.dumps(db.execute("EXPLAIN (FORMAT JSON) " + LOCK_LEAD, args).fetchone()[0])
    assert '"Index Name": "jobs_served"' in plan


async def test_positions_are_computed_only_for_the_jobs_asked_for(store, postgres_url):
    fill(postgres_url, 300, 10)
    everything = await store.positions(None)
    assert sorted(everything.values()) == list(range(1, 301))
    some = sorted(everything)[::50]
    assert await store.positions(some) == {job_id: everything[job_id] for job_id in some}
    assert await store.has_queued() and not await store.has_queued(list(everything))
