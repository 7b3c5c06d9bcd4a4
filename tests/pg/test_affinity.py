"""Model affinity across workers on PostgreSQL: a worker prefers the jobs for the model it has loaded, within
the fairness rule (people take turns; nobody is passed over twice in a row, whichever workers pass them over).
"""

from __future__ import annotations

import psycopg
import pytest

from jobs.pg_store import PgJobStore
from jobs.records import JobKind, JobRecord
from jobs.scheduling import FairScheduler
from tests.jobs.test_store import LIMITS


@pytest.fixture
async def stores(postgres_url):
    opened = [await PgJobStore.open(postgres_url, worker_name=name) for name in ("w1", "w2")]
    yield opened
    for store in opened:
        await store.close()


async def choose(store: PgJobStore, loaded_model: str | None) -> tuple[list[JobRecord], str | None]:
    """A worker's choice, as the run loop makes it (jobs/running.py): its own scheduler, the turns and the
    passed-over counts from the rows."""
    scheduler = FairScheduler()
    queued = await store.queued()
    scheduler.served_at = await store.served(queued)
    scheduler.skipped = await store.passed_over(job.owner for job in queued)
    return scheduler.next_batch(queued, loaded_model, 1), scheduler.passed_over


async def take(store: PgJobStore, loaded_model: str | None) -> list[tuple[str, str]]:
    """(owner, model) of the jobs a worker with `loaded_model` claims next."""
    batch, passed_over = await choose(store, loaded_model)
    return [(job.owner, job.model) for job in await store.claim([job.id for job in batch], passed_over)]


async def submit(store: PgJobStore, *jobs: tuple[str, str]) -> None:
    for owner, model in jobs:
        await store.submit(JobKind.IMAGINE, owner, {}, model=model, **LIMITS)


def passed_over(url: str) -> dict[str, int]:
    with psycopg.connect(url) as db:
        return dict(db.execute("SELECT owner, times FROM passed_over").fetchall())


async def test_a_worker_with_b_loaded_claims_the_job_for_b(stores, postgres_url):
    first, second = stores
    await submit(first, ("ann", "A"), ("bob", "B"))  # equal standing: neither was served; ann's is older
    assert await take(second, "B") == [("bob", "B")]
    assert passed_over(postgres_url) == {"ann": 1}
    assert await take(first, "B") == [("ann", "A")]  # nothing else for B: ann's turn, and it counts as served
    assert passed_over(postgres_url) == {}


async def test_without_a_loaded_model_or_a_job_for_it_the_turn_order_holds(stores, postgres_url):
    first, _ = stores
    await submit(first, ("ann", "A"), ("bob", "B"))
    assert await take(first, None) == [("ann", "A")]
    assert await take(first, "C") == [("bob", "B")]
    assert passed_over(postgres_url) == {}


async def test_fairness_wins_over_affinity_on_another_worker(stores, postgres_url):
    first, second = stores
    await submit(first, ("ann", "A"), ("bob", "B"), ("cat", "B"))
    assert await take(first, "B") == [("bob", "B")]  # ann passed over once…
    assert await take(second, "B") == [("ann", "A")]  # …not twice, though this worker has B loaded too
    assert await take(first, "B") == [("cat", "B")]
    assert passed_over(postgres_url) == {}


async def test_two_workers_passing_over_one_person_at_once_pass_her_over_only_once(stores, postgres_url):
    first, second = stores
    await submit(first, ("ann", "A"), ("bob", "B"), ("cat", "B"))
    (first_batch, first_passed), (second_batch, second_passed) = [await choose(s, "B") for s in stores]
    assert first_passed == second_passed == "ann"  # both read the rows before either claimed
    assert first_batch[0].owner == second_batch[0].owner == "bob"
    assert [job.owner for job in await first.claim([j.id for j in first_batch], first_passed)] == ["bob"]
    # ann was passed over meanwhile: the second claim is refused
    assert await second.claim([j.id for j in second_batch], second_passed) == []
    await submit(first, ("dan", "B"))
    batch, passed = await choose(second, "B")
    assert [job.owner for job in batch] == ["ann"] and passed is None
    # A late claim that would pass ann over a second time is refused even for a job still queued.
    cat = next(job for job in await second.queued() if job.owner == "cat")
    assert await second.claim([cat.id], "ann") == []
    assert (await second.get(cat.id)).status.value == "queued"
    assert passed_over(postgres_url) == {"ann": 1}
