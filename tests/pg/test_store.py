"""The job store on PostgreSQL: the SQLite store's tests that are about the interface (re-run here on a real
server), migrations under the advisory lock, claims with SKIP LOCKED, leases and fencing."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from jobs.pg_schema import MIGRATIONS, SchemaTooNew
from jobs.pg_store import PgJobStore
from jobs.records import JobKind, JobStatus
from tests.jobs.test_store import (  # noqa: F401  (the same tests, on the `store` fixture below)
    LIMITS,
    test_a_queue_over_its_limit_is_refused_saying_how_many_wait,
    test_per_person_and_global_limits_say_what_to_do,
    test_same_idempotency_key_gives_the_same_job,
    test_transition_never_leaves_a_terminal_state,
)


@pytest.fixture
async def store(postgres_url):
    store = await PgJobStore.open(postgres_url, lease_s=30, worker_name="w1")
    yield store
    await store.close()


async def test_migrations_run_once_even_when_roles_start_together(postgres_url):
    stores = await asyncio.gather(*(PgJobStore.open(postgres_url) for _ in range(4)))
    for opened in stores:
        await opened.close()
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall() == [
            (version, name) for version, (name, _) in enumerate(MIGRATIONS, start=1)
        ]


async def test_a_newer_schema_is_refused_with_one_clear_line(postgres_url):
    await (await PgJobStore.open(postgres_url)).close()
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)")
    with pytest.raises(SchemaTooNew, match="schema version 99, newer than this Salon knows"):
        await PgJobStore.open(postgres_url)


async def test_front_end_details_and_delivery_marks(store):
    job, _ = await store.submit(
        JobKind.IMAGINE, "501", {"params": {}}, guild="1", channel="2", meta={"spoiler": True}, **LIMITS
    )
    local, _ = await store.submit(JobKind.IMAGINE, "cli:me", {"params": {}}, **LIMITS)
    assert (await store.update_meta(job.id, parent_id=7)).meta == {"spoiler": True, "parent_id": 7}
    assert (await store.update_meta(job.id, parent_id=None)).meta == {"spoiler": True}
    assert [j.id for j in await store.pending()] == [job.id]
    assert {j.id for j in await store.pending(guilds_only=False)} == {job.id, local.id}
    for record in (job, local):
        await store.transition(record.id, JobStatus.DONE, [JobStatus.QUEUED])
    assert [j.id for j in await store.undelivered()] == [job.id]
    await store.mark_delivered(job.id)
    assert await store.undelivered() == []
    assert [j.id for j in await store.recent(10, [JobStatus.DONE])] == [local.id, job.id]


async def test_two_workers_claiming_at_once_never_claim_one_job_twice(postgres_url):
    workers = [await PgJobStore.open(postgres_url, worker_name=f"w{i}") for i in range(4)]
    try:
        limits = {"max_pending_per_user": 100, "max_queued": 100}
        ids = [(await workers[0].submit(JobKind.IMAGINE, f"u{i}", {}, **limits))[0].id for i in range(40)]
        claimed = await asyncio.gather(*(w.claim(ids) for w in workers for _ in range(3)))
        got = [job.id for batch in claimed for job in batch]
        assert sorted(got) == ids  # each exactly once
        assert {job.worker for batch in claimed for job in batch} <= {"w0", "w1", "w2", "w3"}
    finally:
        for w in workers:
            await w.close()


async def test_an_expired_lease_requeues_the_job_and_the_late_completion_is_refused(postgres_url):
    late = await PgJobStore.open(postgres_url, lease_s=1, worker_name="late")
    other = await PgJobStore.open(postgres_url, lease_s=30, worker_name="other")
    try:
        job, _ = await late.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
        [mine] = await late.claim([job.id])
        assert await other.recover(3) == ([], [])  # the lease is live: not another's to take
        with psycopg.connect(postgres_url, autocommit=True) as db:  # a second passes (without sleeping)
            db.execute("UPDATE jobs SET lease_until = lease_until - 2")
        assert await other.recover(3) == ([job.id], [])
        requeued = await other.get(job.id)
        assert requeued.status is JobStatus.QUEUED and requeued.attempts == 1 and requeued.solo
        [theirs] = await other.claim([job.id])
        assert theirs.attempts == 2 and theirs.worker == "other"
        # The first worker comes back and posts its result: refused (its fence is stale), nothing changes.
        assert await late.transition(job.id, JobStatus.DONE, [JobStatus.RUNNING], results=("x.png",)) is None
        assert await late.renew_leases() == 0
        done = await other.transition(job.id, JobStatus.DONE, [JobStatus.RUNNING], results=("y.png",))
        assert done is not None and done.results == ("y.png",)
    finally:
        await late.close()
        await other.close()


async def test_a_batch_whose_lease_expired_is_not_blamed_and_runs_solo(store, postgres_url):
    ids = [(await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS))[0].id for _ in range(2)]
    await store.claim(ids)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE jobs SET lease_until = 0")
    assert await store.recover(3) == (ids, [])
    for job_id in ids:
        job = await store.get(job_id)
        assert job.attempts == 0 and job.solo and job.deaths == ()


async def test_the_heartbeat_advertises_the_worker_and_renews_its_leases(store, postgres_url):
    job, _ = await store.submit(JobKind.IMAGINE, "ann", {}, **LIMITS)
    await store.claim([job.id])
    await store.start_worker(lambda: ("cuda:0", ["demo"]))
    [row] = await store.workers()
    assert (row["name"], row["gpu"], row["models"], row["jobs"]) == ("w1", "cuda:0", ["demo"], [job.id])
    with psycopg.connect(postgres_url, autocommit=True) as db:
        before = db.execute("SELECT lease_until FROM jobs").fetchone()[0]
    assert await store.renew_leases() == 1
    with psycopg.connect(postgres_url, autocommit=True) as db:
        assert db.execute("SELECT lease_until FROM jobs").fetchone()[0] >= before


async def test_people_take_turns_across_workers(postgres_url):
    from jobs.scheduling import FairScheduler

    first = await PgJobStore.open(postgres_url, worker_name="a")
    second = await PgJobStore.open(postgres_url, worker_name="b")
    try:
        for owner in ("ann", "ann", "ann", "bob"):
            await first.submit(JobKind.IMAGINE, owner, {}, **LIMITS)

        async def next_owner(store: PgJobStore) -> str:  # as the run loop picks a batch (jobs/running.py)
            scheduler = FairScheduler()  # each worker its own scheduler: the turns come from the rows
            queued = await store.queued()
            scheduler.served_at = await store.served(queued)
            [job] = scheduler.next_batch(queued, None, 1)
            [claimed] = await store.claim([job.id])
            return claimed.owner

        assert [await next_owner(s) for s in (first, second, first, second)] == ["ann", "bob", "ann", "ann"]
    finally:
        await first.close()
        await second.close()


async def test_an_unreachable_server_is_one_clear_line_without_the_password(monkeypatch):
    import jobs.pg_store
    from jobs.pg_schema import DatabaseUnavailable
    from tests.postgres import _free_port

    monkeypatch.setattr(jobs.pg_store, "CONNECT_TIMEOUT_S", 1.0)
    url = f"postgresql://salon:secret@127.0.0.1:{_free_port()}/salon"
    with pytest.raises(DatabaseUnavailable, match="cannot reach the queue's database") as raised:
        await PgJobStore.open(url)
    assert "secret" not in str(raised.value) and "salon:***@127.0.0.1" in str(raised.value)
