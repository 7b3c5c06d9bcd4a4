"""Claims on PostgreSQL without racing (jobs/pg_claims.py): the candidates read in SQL are those of the pure
rule (jobs/scheduling.py), a worker whose fair pick another worker holds takes the next lead in turn order in
the same transaction, and many workers claiming at once never claim one job twice."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from jobs.pg_store import PgJobStore
from jobs.records import JobKind
from jobs.scheduling import FairScheduler, candidates
from tests.jobs.test_candidates import LIMITS, same

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


async def choices(store: PgJobStore, max_images: int, count: int = 16):
    """A worker's choices, as the run loop makes them (jobs/running.py)."""
    scheduler = FairScheduler()
    queued = await store.candidates(max_images, 2)
    scheduler.served_at = await store.served(queued.jobs)
    scheduler.skipped = await store.passed_over(job.owner for job in queued.jobs)
    return scheduler.choices(queued, "m", max_images, count)


async def test_postgresql_reads_the_candidates_of_the_rule(stores, postgres_url):
    store = stores[0]
    for owner, key, images, kind in [
        ("ann", "k1", 1, JobKind.IMAGINE), ("ann", "", 1, JobKind.TRAIN), ("ann", "k1", 2, JobKind.IMAGINE),
        ("ann", "k1", 1, JobKind.IMAGINE), ("ann", "k1", 1, JobKind.IMAGINE), ("ann", "k1", 1, JobKind.IMAGINE),
        ("bob", "", 1, JobKind.ANIMATE), ("bob", "k2", 3, JobKind.IMAGINE), ("bob", "k2", 3, JobKind.IMAGINE),
        ("cy", "k1", 1, JobKind.IMAGINE),
    ]:  # fmt: skip
        await submit(store, owner, key, images, kind)
    queued = await store.queued()
    with psycopg.connect(postgres_url, autocommit=True) as db:  # one died alone, one is solo
        db.execute("UPDATE jobs SET solo = TRUE, deaths = '[{}]' WHERE id = %s", (queued[0].id,))
        db.execute("UPDATE jobs SET solo = TRUE WHERE id = %s", (queued[5].id,))
    queued = await store.queued()
    for max_images in (1, 2, 3, 8):
        for per_owner in (1, 3):
            same(await store.candidates(max_images, per_owner), candidates(queued, max_images, per_owner))


async def test_a_worker_whose_pick_is_held_takes_the_next_lead_in_the_same_transaction(stores, postgres_url):
    ann, bob = await submit(stores[0], "ann"), await submit(stores[0], "bob")
    picks = await choices(stores[1], 1)
    assert [choice.lead.id for choice in picks] == [ann.id, bob.id]
    with psycopg.connect(postgres_url) as holder:  # another worker is claiming ann's job right now
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (ann.id,))
        claimed = await stores[1].claim_first(picks, 1)
        assert [job.id for job in claimed] == [bob.id]  # not lost: the next in turn order
    assert (await stores[1].get(bob.id)).worker == "w1"
    assert [job.id for job in await stores[2].claim_first(picks, 1)] == [ann.id]
    assert await stores[3].claim_first(picks, 1) == []  # every lead taken


async def test_a_batch_takes_the_mates_nobody_holds_within_the_budget(stores, postgres_url):
    jobs = [await submit(stores[0], owner, "k") for owner in ("ann", "bob", "cy", "dee", "eve")]
    picks = await choices(stores[1], 3)
    assert picks[0].lead.id == jobs[0].id
    with psycopg.connect(postgres_url) as holder:
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (jobs[1].id,))
        claimed = await stores[1].claim_first(picks, 3)
    assert [job.id for job in claimed] == [jobs[0].id, jobs[2].id, jobs[3].id]


async def test_many_workers_claiming_at_once_never_claim_a_job_twice(stores, postgres_url):
    for i in range(60):
        await submit(stores[0], f"u{i % 7}", "k" if i % 2 else "")

    async def work(store: PgJobStore) -> list[int]:
        got = []
        while picks := await choices(store, 4):
            got += [job.id for job in await store.claim_first(picks, 4)]
        return got

    claimed = sum(await asyncio.gather(*(work(store) for store in stores)), [])
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 60
    with psycopg.connect(postgres_url) as db:
        assert (
            db.execute("SELECT COUNT(*) FROM jobs WHERE fence <> 1 OR status <> 'running'").fetchone()[0] == 0
        )


async def test_affinity_passes_over_once_even_when_two_workers_pick_at_once(stores):
    first = await submit(stores[0], "ann")
    await stores[0]._execute("UPDATE jobs SET model = 'other' WHERE id = %s", (first.id,))
    await submit(stores[0], "bob")
    await submit(stores[0], "cy")
    picks = [await choices(store, 1) for store in stores[1:3]]
    assert all(p[0].passed_over == "ann" for p in picks)  # both would pass ann over for their loaded model
    got = [await stores[1].claim_first(picks[0], 1), await stores[2].claim_first(picks[1], 1)]
    owners = [job.owner for batch in got for job in batch]
    assert owners == ["bob", "ann"]  # the second worker may not pass ann over again: her job goes
