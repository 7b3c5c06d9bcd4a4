"""The bounded read of the fair pick (jobs/scheduling.py `candidates`): over random queues, the scheduler picks
the same batch, and the same next leads, from the candidates as from the whole queue; the stores' SQL reads
the same candidates as the pure rule (SQLite here, PostgreSQL in tests/pg/test_claims.py)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.records import JobKind, JobRecord, JobStatus
from jobs.scheduling import Candidates, FairScheduler, candidates
from jobs.store import JobStore

LIMITS = {"max_pending_per_user": 1000, "max_queued": 1000}

OWNERS = ["ann", "bob", "cy", "dee"]
KEYS = ["", "k1", "k2"]
MODELS = ["m1", "m2"]


def record(
    job_id: int, owner: str, kind: JobKind, key: str, images: int, solo: bool, deaths: int, model: str
):
    return JobRecord(
        id=job_id,
        kind=kind,
        owner=owner,
        guild=None,
        channel=None,
        request={"params": {"batch_size": images, "batch_count": 1}},
        status=JobStatus.QUEUED,
        phase="",
        progress=0.0,
        created_at=0.0,
        started_at=None,
        finished_at=None,
        error=None,
        results=(),
        idempotency_key=None,
        attempts=0,
        batch_key=key,
        model=model,
        solo=solo,
        deaths=tuple({"at": "step"} for _ in range(deaths)),
    )


job_specs = st.tuples(
    st.sampled_from(OWNERS),
    st.sampled_from([JobKind.IMAGINE, JobKind.IMAGINE, JobKind.IMG2IMG, JobKind.TRAIN]),
    st.sampled_from(KEYS),
    st.integers(1, 5),
    st.booleans(),
    st.integers(0, 2),
    st.sampled_from(MODELS),
)


@st.composite
def queues(draw):
    specs = draw(st.lists(job_specs, max_size=40))
    ids = sorted(draw(st.sets(st.integers(1, 1000), min_size=len(specs), max_size=len(specs))))
    return [record(job_id, *spec) for job_id, spec in zip(ids, specs, strict=True)]


@st.composite
def schedulers(draw):
    served = draw(st.dictionaries(st.sampled_from(OWNERS), st.integers(0, 20)))
    skipped = draw(st.dictionaries(st.sampled_from(OWNERS), st.integers(0, 1)))
    return FairScheduler(served_at=dict(served), skipped=dict(skipped))


@settings(max_examples=400, deadline=None)
@given(queues(), schedulers(), st.sampled_from([None, *MODELS]), st.integers(1, 9))
def test_the_candidates_give_the_batch_of_the_whole_queue(queued, scheduler, loaded, max_images):
    twin = dataclasses.replace(
        scheduler, served_at=dict(scheduler.served_at), skipped=dict(scheduler.skipped)
    )
    part = candidates(queued, max_images)
    assert scheduler.next_batch(queued, loaded, max_images) == twin.next_batch(part, loaded, max_images)
    assert scheduler.passed_over == twin.passed_over
    assert scheduler.skipped == twin.skipped


@settings(max_examples=200, deadline=None)
@given(queues(), schedulers(), st.sampled_from([None, *MODELS]), st.integers(1, 9))
def test_the_next_leads_come_in_turn_order(queued, scheduler, loaded, max_images):
    """The choices a worker falls back on (the fair pick's lead taken meanwhile by another worker) are the
    candidates in the order of the whole queue, each with the batch it would have there."""
    whole = scheduler.choices(queued, loaded, max_images, count=len(queued))
    part = candidates(queued, max_images, per_owner=2)
    choices = scheduler.choices(part, loaded, max_images, count=len(queued))
    kept = {job.id for job in part.jobs}
    assert [c.lead for c in choices] == [c.lead for c in whole if c.lead.id in kept]
    batches = {c.lead.id: c.batch(max_images, kept) for c in whole}
    assert all(c.batch(max_images) == batches[c.lead.id] for c in choices)


def test_the_candidates_keep_their_places_in_line():
    queued = [
        record(i, "ann", JobKind.IMAGINE, "k1" if i % 3 == 0 else "", 1, False, 0, "m1") for i in range(1, 31)
    ]
    part = candidates(queued, 2)
    assert [job.id for job in part.jobs] == [1, 3, 6]  # the head, then the first two of key k1
    assert part.rounds == {1: 1, 3: 3, 6: 6} and part.first_ids == {"ann": 1}
    assert len(part.jobs) < len(queued)


async def submitted(store, queued: list[JobRecord]) -> dict[int, JobRecord]:
    """The jobs in `store` (deaths and solo set on their rows); the records under their new ids."""
    stored = {}
    for job in queued:
        new, _ = await store.submit(job.kind, job.owner, job.request, batch_key=job.batch_key, model=job.model,
                                    **LIMITS)  # fmt: skip
        new = dataclasses.replace(job, id=new.id, created_at=new.created_at)
        stored[new.id] = new
    return stored


def same(read: Candidates, expected: Candidates) -> None:
    assert sorted(job.id for job in read.jobs) == sorted(job.id for job in expected.jobs)
    assert dict(read.rounds) == dict(expected.rounds)
    assert dict(read.first_ids) == dict(expected.first_ids)


async def test_sqlite_reads_the_candidates_of_the_rule(tmp_path):
    queued = [
        record(0, owner, kind, key, images, solo, 0, "m1")
        for owner, kind, key, images, solo in [
            ("ann", JobKind.IMAGINE, "k1", 1, False),
            ("ann", JobKind.TRAIN, "", 1, False),
            ("ann", JobKind.IMAGINE, "k1", 2, False),
            ("ann", JobKind.IMAGINE, "k1", 1, False),
            ("ann", JobKind.IMAGINE, "k1", 1, False),
            ("ann", JobKind.IMAGINE, "k1", 1, True),
            ("bob", JobKind.TRAIN, "", 1, False),
            ("bob", JobKind.IMAGINE, "k2", 3, False),
            ("bob", JobKind.IMAGINE, "k2", 3, False),
            ("cy", JobKind.IMAGINE, "k1", 1, False),
        ]
    ]
    store = await JobStore.open(tmp_path / "jobs.db")
    try:
        stored = await submitted(store, queued)
        ids = sorted(stored)
        async with store.transaction() as db:  # a job that died alone: after its owner's others, solo
            await db.execute("UPDATE jobs SET solo = 1, deaths = '[{}]' WHERE id = ?", (ids[0],))
        stored[ids[0]] = dataclasses.replace(stored[ids[0]], solo=True, deaths=({},))
        async with store.transaction() as db:
            await db.execute("UPDATE jobs SET solo = 1 WHERE id = ?", (ids[5],))
        for max_images in (1, 2, 3, 8):
            for per_owner in (1, 3):
                read = await store.candidates(max_images, per_owner)
                same(read, candidates(list(stored.values()), max_images, per_owner))
    finally:
        await store.close()
