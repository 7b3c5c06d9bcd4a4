"""The fair order in SQL (jobs/fair_sql.py) is the fair order of jobs/scheduling.py: over random queues and
scheduler states, SQLite's statements give the same leads in the same order (with whom each passes over), the
same batch and the same places in line as `FairScheduler` over the whole queue (PostgreSQL's in
tests/pg/test_fair_sql.py), so the two cannot drift apart."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.records import JobRecord
from jobs.scheduling import FairScheduler
from jobs.store import JobStore
from tests.jobs.fair_queues import LIMITS, MODELS, queues, schedulers


def python_order(scheduler: FairScheduler, queued: list[JobRecord], loaded: str | None, max_images: int):
    """What `FairScheduler` says: every lead in turn order with whom it passes over, the batch, the places."""
    choices = scheduler.choices(queued, loaded, max_images, count=len(queued))
    leads = [(choice.lead.id, choice.passed_over) for choice in choices]
    batch = [job.id for job in choices[0].batch(max_images)] if choices else []
    return leads, batch, scheduler.positions(queued)


async def fill(store: JobStore, queued: list[JobRecord]) -> list[JobRecord]:
    """The jobs in the store (ids kept in order; solo and deaths on their rows), as the store reads them."""
    for job in queued:
        new, _ = await store.submit(
            job.kind, job.owner, job.request, batch_key=job.batch_key, model=job.model, **LIMITS
        )
        async with store.transaction() as db:
            await db.execute(
                "UPDATE jobs SET solo = ?, deaths = ? WHERE id = ?",
                (int(job.solo), json.dumps(list(job.deaths)), new.id),
            )
    return await store.queued()


async def sqlite_order(folder: Path, queued, scheduler: FairScheduler, loaded, max_images):
    store = await JobStore.open(folder / "queue.db")
    try:
        stored = await fill(store, queued)
        twin = dataclasses.replace(
            scheduler, served_at=dict(scheduler.served_at), skipped=dict(scheduler.skipped)
        )
        expected = python_order(twin, stored, loaded, max_images)
        leads = [
            (job.id, passes_over) for job, passes_over in await store.leads(scheduler, loaded, len(stored))
        ]
        batch, passes_over = await store.pick(scheduler, loaded, max_images)
        first = leads[0][1] if leads else None
        assert passes_over == first
        placed = await store.positions(None, scheduler)
        some = [job.id for job in stored[::2]]
        assert await store.positions(some, scheduler) == {i: placed[i] for i in some}
        return (leads, [job.id for job in batch], placed), expected
    finally:
        await store.close()


@settings(max_examples=150, deadline=None)
@given(queues(), schedulers(), st.sampled_from([None, *MODELS]), st.integers(1, 9))
def test_sqlite_orders_the_queue_as_the_scheduler_does(queued, scheduler, loaded, max_images):
    with tempfile.TemporaryDirectory() as folder:
        got, expected = asyncio.run(sqlite_order(Path(folder), queued, scheduler, loaded, max_images))
    assert got == expected
