"""The SQLite job store: migrations, idempotent submit, limits, transitions, claims and recovery."""

from __future__ import annotations

import sqlite3

import pytest

from jobs.blame import Point
from jobs.records import JobKind, JobStatus
from jobs.store import JobStore, QueueLimit

LIMITS = {"max_pending_per_user": 3, "max_queued": 5}


@pytest.fixture
async def store(tmp_path):
    store = await JobStore.open(tmp_path / "queue.db")
    yield store
    await store.close()


async def test_migrations_run_once_and_wal_is_on(tmp_path):
    first = await JobStore.open(tmp_path / "queue.db")
    await first.close()
    second = await JobStore.open(tmp_path / "queue.db")
    await second.close()
    db = sqlite3.connect(tmp_path / "queue.db")
    assert db.execute("SELECT version, name FROM schema_migrations").fetchall() == [
        (1, "create jobs"),
        (2, "long jobs in slices, cancel requests"),
        (3, "front-end details and delivery"),
        (4, "crash blame: solo jobs and where they died"),
        (5, "the fair order person by person: indexes of the waiting people's lines (jobs/fair_heads.py)"),
    ]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_older_database_is_migrated_with_its_jobs_kept(tmp_path, monkeypatch):
    import jobs.store

    monkeypatch.setattr(jobs.store, "MIGRATIONS", jobs.store.MIGRATIONS[:1])
    old = await JobStore.open(tmp_path / "queue.db")
    await old.close()
    with sqlite3.connect(tmp_path / "queue.db") as db:  # a job written by the version-1 code
        db.execute(
            "INSERT INTO jobs (kind, owner, request, status, created_at) VALUES ('imagine', 'ann', ?, 'queued', 0)",
            ('{"prompt": "x"}',),
        )
    monkeypatch.undo()
    new = await JobStore.open(tmp_path / "queue.db")
    kept = await new.get(1)
    await new.close()
    assert kept.request == {"prompt": "x"} and kept.status is JobStatus.QUEUED
    assert kept.checkpoint is None and kept.slices == 0


async def test_same_idempotency_key_gives_the_same_job(store):
    first, created = await store.submit(
        JobKind.IMAGINE, "ann", {"params": {}}, idempotency_key="i-1", **LIMITS
    )
    again, created_again = await store.submit(
        JobKind.IMAGINE, "ann", {"params": {}}, idempotency_key="i-1", **LIMITS
    )
    assert created and not created_again and again.id == first.id
    assert len(await store.queued()) == 1


async def test_per_person_and_global_limits_say_what_to_do(store):
    for _ in range(3):
        await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
    with pytest.raises(
        QueueLimit, match="queue: you already have 3 jobs waiting or running, the most allowed"
    ):
        await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
    await store.submit(JobKind.IMAGINE, "bob", {}, **LIMITS)
    await store.submit(JobKind.IMAGINE, "cy", {}, **LIMITS)
    with pytest.raises(QueueLimit, match="queue: the queue is full \\(5 jobs waiting\\)"):
        await store.submit(JobKind.IMAGINE, "dee", {}, **LIMITS)
    assert len(await store.queued()) == 5


def test_the_global_limit_counts_the_queue_only_up_to_the_limit(tmp_path):
    from jobs.store import COUNT_QUEUED_UPTO

    def steps(queued: int) -> int:  # SQLite's virtual-machine steps for the bounded count, 50 as the limit
        db = sqlite3.connect(tmp_path / f"{queued}.db")
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        db.execute("CREATE INDEX jobs_by_status ON jobs (status, id)")
        db.executemany("INSERT INTO jobs (status) VALUES (?)", [("done",)] * 100 + [("queued",)] * queued)
        counted = [0]
        db.set_progress_handler(lambda: counted.__setitem__(0, counted[0] + 1), 1)
        assert db.execute(COUNT_QUEUED_UPTO, (50,)).fetchone()[0] == 50
        db.close()
        return counted[0]

    assert steps(1_000) == steps(20_000)


async def test_a_queue_over_its_limit_is_refused_saying_how_many_wait(store):
    # Over the limit (lowered since, or jobs queued again): the refusal counts them all.
    for owner in ("ann", "bob", "cy", "dee", "eve", "fay", "gus"):
        await store.submit(JobKind.IMAGINE, owner, {}, max_pending_per_user=3, max_queued=10)
    with pytest.raises(QueueLimit, match="queue: the queue is full \\(7 jobs waiting\\)"):
        await store.submit(JobKind.IMAGINE, "hal", {}, **LIMITS)


async def test_transition_never_leaves_a_terminal_state(store):
    job, _ = await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
    [running] = await store.claim([job.id])
    assert running.status is JobStatus.RUNNING and running.attempts == 1 and running.started_at
    done = await store.transition(job.id, JobStatus.DONE, [JobStatus.RUNNING], results=("a.png",))
    assert done is not None and done.results == ("a.png",) and done.finished_at
    assert await store.transition(job.id, JobStatus.QUEUED, [JobStatus.DONE, JobStatus.RUNNING]) is None
    assert await store.claim([job.id]) == []
    assert (await store.get(job.id)).status is JobStatus.DONE


async def test_recovery_fails_a_job_that_died_alone_three_times_at_the_same_step(store):
    job, _ = await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
    for deaths in (1, 2):
        await store.claim([job.id])
        assert await store.recover(max_attempts=2, point=Point((job.id,), "txt2img", 7)) == ([job.id], [])
        requeued = await store.get(job.id)
        assert requeued.status is JobStatus.QUEUED and requeued.attempts == deaths and requeued.solo
        assert requeued.deaths == ("txt2img step 7",) * deaths
    await store.claim([job.id])
    assert await store.recover(max_attempts=2, point=Point((job.id,), "txt2img", 7)) == ([], [job.id])
    failed = await store.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 3
    assert failed.error == (
        "the worker died 3 times at txt2img step 7 while running this job alone; it was not run again"
    )


async def test_recovery_counts_deaths_outside_the_steps_only_towards_the_cap(store):
    job, _ = await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
    for _ in range(5):
        await store.claim([job.id])
        assert await store.recover(max_attempts=2, point=Point((job.id,), "saving")) == ([job.id], [])
    await store.claim([job.id])
    assert await store.recover(max_attempts=2, point=Point((job.id,), "saving")) == ([], [job.id])
    assert (await store.get(job.id)).error.startswith("the worker died 6 times while running this job alone")


async def test_recovery_requeues_deaths_at_different_points_up_to_the_hard_cap(store):
    job, _ = await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
    for step in range(1, 6):
        await store.claim([job.id])
        assert await store.recover(max_attempts=2, point=Point((job.id,), "txt2img", step)) == ([job.id], [])
    await store.claim([job.id])
    assert await store.recover(max_attempts=2, point=Point((job.id,), "loading m")) == ([], [job.id])
    failed = await store.get(job.id)
    assert failed.error.startswith("the worker died 6 times while running this job alone (last at ")


async def test_recovery_never_blames_a_batch_and_runs_its_jobs_alone_afterwards(store):
    jobs = [(await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS))[0] for _ in range(3)]
    ids = [job.id for job in jobs]
    for _ in range(5):
        await store.claim(ids)
        assert await store.recover(max_attempts=2, point=Point(tuple(ids), "txt2img", 3)) == (ids, [])
    for job_id in ids:
        job = await store.get(job_id)
        assert job.status is JobStatus.QUEUED and job.attempts == 0 and job.solo and job.deaths == ()


async def test_recovery_without_a_point_counts_a_lone_death_towards_the_cap_only(store):
    job, _ = await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
    for _ in range(5):
        await store.claim([job.id])
        assert await store.recover(max_attempts=2) == ([job.id], [])
    assert (await store.get(job.id)).deaths == ("an unknown point",) * 5


async def test_front_end_details_and_delivery_marks(tmp_path):
    import time

    store = await JobStore.open(tmp_path / "queue.db")
    try:
        job, _ = await store.submit(
            JobKind.IMAGINE,
            "501",
            {"params": {}},
            guild="1",
            channel="2",
            meta={"spoiler": True},
            max_pending_per_user=5,
            max_queued=5,
        )
        local, _ = await store.submit(
            JobKind.IMAGINE, "cli:me", {"params": {}}, max_pending_per_user=5, max_queued=5
        )
        assert job.meta == {"spoiler": True} and job.delivered_at is None
        assert (await store.update_meta(job.id, parent_id=7)).meta == {"spoiler": True, "parent_id": 7}
        assert [j.id for j in await store.pending()] == [job.id]  # guild jobs only
        assert {j.id for j in await store.pending(guilds_only=False)} == {job.id, local.id}
        for record in (job, local):
            await store.transition(record.id, JobStatus.DONE, [JobStatus.QUEUED])
        assert [j.id for j in await store.undelivered()] == [job.id]
        assert await store.undelivered(since=time.time() + 60) == []
        await store.mark_delivered(job.id)
        assert await store.undelivered() == [] and (await store.get(job.id)).delivered_at is not None
    finally:
        await store.close()
