"""Claims on PostgreSQL without racing (jobs/pg_claims.py): a worker whose fair pick another worker holds takes
the next lead in turn order in the same transaction (the fair order computed by the database:
jobs/fair_sql.py), batch mates fit the budget, and many workers claiming at once never claim one job twice."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from jobs.pg_store import PgJobStore
from jobs.records import JobKind
from tests.jobs.fair_queues import LIMITS

REQUEST = {"params": {"batch_size": 1, "batch_count": 1}}


@pytest.fixture
async def stores(postgres_url):
    opened = [await PgJobStore.open(postgres_url, worker_name=f"w{i}") for i in range(4)]
    yield opened
    for store in opened:
        await store.close()


async def submit(store: PgJobStore, owner: str, key: str = "", images: int = 1, kind=JobKind.IMAGINE):
    request = {"params": {"batch_size": images, "batch_count": 1}}
    job, _ = await store.submit(kind, owner, request, batch_key=key, model="m", **LIMITS)
    return job


async def test_a_worker_whose_pick_is_held_takes_the_next_lead_in_the_same_transaction(stores, postgres_url):
    ann, bob = await submit(stores[0], "ann"), await submit(stores[0], "bob")
    with psycopg.connect(postgres_url) as holder:  # another worker is claiming ann's job right now
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (ann.id,))
        claimed = await stores[1].claim_next("m", 1)
        assert [job.id for job in claimed] == [bob.id]  # not lost: the next in turn order
    assert (await stores[1].get(bob.id)).worker == "w1"
    assert [job.id for job in await stores[2].claim_next("m", 1)] == [ann.id]
    assert await stores[3].claim_next("m", 1) == []  # nothing left


async def test_a_batch_takes_the_mates_nobody_holds_within_the_budget(stores, postgres_url):
    jobs = [await submit(stores[0], owner, "k") for owner in ("ann", "bob", "cy", "dee", "eve")]
    with psycopg.connect(postgres_url) as holder:
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (jobs[1].id,))
        claimed = await stores[1].claim_next("m", 3)
    assert [job.id for job in claimed] == [jobs[0].id, jobs[2].id, jobs[3].id]


async def test_a_batch_skips_a_mate_too_large_and_takes_a_later_one_that_fits(stores):
    lead = await submit(stores[0], "ann", "k", 2)
    big, small = await submit(stores[0], "bob", "k", 2), await submit(stores[0], "cy", "k", 1)
    assert [job.id for job in await stores[1].claim_next("m", 3)] == [lead.id, small.id]
    assert (await stores[1].get(big.id)).status.value == "queued"


async def test_many_workers_claiming_at_once_never_claim_a_job_twice(stores, postgres_url):
    for i in range(60):
        await submit(stores[0], f"u{i % 7}", "k" if i % 2 else "")

    async def work(store: PgJobStore) -> list[int]:
        got = []
        while batch := await store.claim_next("m", 4):
            got += [job.id for job in batch]
        return got

    claimed = sum(await asyncio.gather(*(work(store) for store in stores)), [])
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 60
    with psycopg.connect(postgres_url) as db:
        assert (
            db.execute("SELECT COUNT(*) FROM jobs WHERE fence <> 1 OR status <> 'running'").fetchone()[0] == 0
        )


async def test_affinity_passes_over_once_even_when_two_workers_pick_at_once(stores, postgres_url):
    first = await submit(stores[0], "ann")
    await stores[0]._execute("UPDATE jobs SET model = 'other' WHERE id = %s", (first.id,))
    await submit(stores[0], "bob")
    await submit(stores[0], "cy")
    with psycopg.connect(postgres_url) as other:  # another worker passing ann over, not committed yet
        other.execute("INSERT INTO passed_over (owner, times) VALUES ('ann', 1)")
        claiming = asyncio.ensure_future(stores[2].claim_next("m", 1))
        while not waiting_on_a_lock(postgres_url):  # this worker waits for that count: it passes ann over too
            assert not claiming.done()
            await asyncio.sleep(0.02)
        other.commit()
        got = await claiming
    assert [job.owner for job in got] == ["ann"]  # not passed over twice: the pick was ranked again
    assert [job.owner for job in await stores[1].claim_next("m", 1)] == ["bob"]


def waiting_on_a_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
    return row[0] > 0
