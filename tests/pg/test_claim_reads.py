"""What a claim reads on PostgreSQL (jobs/pg_claims.py): a bounded number of statements and rows, however long
the queue is (the same rows of `jobs` with 10,000 and 100,000 queued: the waiting people are ranked, not
their jobs, jobs/fair_heads.py), the turns found through the index `jobs_served`; the whole-queue statement
as the fall-back when other workers hold every head; places in line only for the jobs asked for, from their
rounds (jobs/fair_places.py: as many rows with 10,000 and 100,000 queued); a submission's limits, the
submitter's jobs and the queue up to its limit."""

from __future__ import annotations

import json

import psycopg
import pytest

from bench.cluster_reads import measure, rows_read
from jobs import fair_heads
from jobs.pg_claims import LOCK_HEAD_LEAD, LOCK_LEAD, claim_next
from jobs.pg_store import COUNT_PENDING_OF_OWNER, COUNT_QUEUED_UPTO, PgJobStore, _record
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
        args = {"loaded": "m", "max_skips": MAX_SKIPS, "limit": 1, "depth": fair_heads.DEPTH}
        for statement in (LOCK_HEAD_LEAD, LOCK_LEAD):
            plan = json.dumps(db.execute("EXPLAIN (FORMAT JSON) " + statement, args).fetchone()[0])
            assert '"Index Name": "jobs_served"' in plan


async def test_a_claim_and_a_place_in_line_read_as_many_rows_with_100000_queued_as_with_10000(
    store, postgres_url
):
    small, large = measure(postgres_url, [10_000, 100_000], people=100, say=lambda line: None)
    now = "person by person"
    assert (small.lead[now], small.mates[now]) == (large.lead[now], large.mates[now])
    assert small.lead[now] <= 12 * 100 and small.mates[now] <= 10 * 100  # a few index entries per person
    # Before: every queued job, twice (its place in line, then its row).
    assert large.lead["whole queue"] >= 2 * 100_000 and large.mates["whole queue"] >= 2 * 100_000 - 1
    # A round-3 job's place (jobs/fair_places.py): per person its first three jobs and a probe, and the
    # job's own round; before, every queued job ranked.
    assert small.place[now] == large.place[now] <= 8 * 100
    assert large.place["whole queue"] >= 100_000


async def test_when_other_workers_hold_every_head_the_claim_ranks_the_whole_queue(store, postgres_url):
    fill(postgres_url, 30, 3)  # 10 jobs each of 3 people: rounds 1 … 10
    args = {"loaded": "m", "max_skips": MAX_SKIPS, "limit": 1}
    with psycopg.connect(postgres_url) as other:  # another worker's claims under way: each head locked
        held = other.execute(
            "SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT %s FOR UPDATE",
            (3 * fair_heads.DEPTH,),
        ).fetchall()
        assert len(held) == 3 * fair_heads.DEPTH
        with psycopg.connect(postgres_url) as db:
            expected = db.execute(LOCK_LEAD, args).fetchone()[0]
            db.rollback()
            assert db.execute(LOCK_HEAD_LEAD, {**args, "depth": fair_heads.DEPTH}).fetchone() is None
            db.rollback()
        async with store._pool.connection() as connection, connection.transaction():
            rows = await claim_next(connection, _record, "m", 1, HOLDER)
    assert expected == 3 * fair_heads.DEPTH + 1 and [row["id"] for row in rows] == [expected]


async def test_positions_are_computed_only_for_the_jobs_asked_for(store, postgres_url):
    fill(postgres_url, 300, 10)
    everything = await store.positions(None)
    assert sorted(everything.values()) == list(range(1, 301))
    some = sorted(everything)[::50]
    assert await store.positions(some) == {job_id: everything[job_id] for job_id in some}
    assert await store.has_queued() and not await store.has_queued(list(everything))


async def test_a_submission_reads_its_submitters_jobs_and_the_queue_only_up_to_the_limit(store, postgres_url):
    fill(postgres_url, 5000, 40)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE jobs SET status = 'done' WHERE id <= 2500")  # a history before the queue
        db.execute("VACUUM ANALYZE jobs")
        assert rows_read(db, COUNT_QUEUED_UPTO, (200,)) == 200
        waiting = db.execute("SELECT count(*) FROM jobs WHERE owner = 'u3' AND status = 'queued'").fetchone()[
            0
        ]
        assert rows_read(db, COUNT_PENDING_OF_OWNER, ("u3",)) == waiting
