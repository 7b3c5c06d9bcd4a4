"""The fair order person by person (jobs/fair_heads.py) is the whole queue's (jobs/fair_sql.py) on SQLite: over
random queues of many people with long lines (several hundred jobs), the same first leads with whom each
passes over, the same batch mates for any budget and any held jobs, and the batch `FairScheduler` picks; and
its statements walk the indexes of the waiting people, not every queued job."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs import fair_heads
from jobs.fair_sql import SQLITE, leads, mates
from jobs.records import JobKind
from jobs.scheduling import MAX_SKIPS, FairScheduler
from jobs.store import JobStore
from tests.jobs.fair_queues import KEYS, MODELS, record

PEOPLE = [f"p{i:02d}" for i in range(30)]


@st.composite
def long_queues(draw):
    """Up to 400 jobs of 1 to 30 people (few people: long lines)."""
    people = PEOPLE[: draw(st.integers(1, len(PEOPLE)))]
    specs = st.tuples(
        st.sampled_from(people),
        st.sampled_from([JobKind.IMAGINE, JobKind.IMAGINE, JobKind.IMG2IMG, JobKind.TRAIN]),
        st.sampled_from(KEYS),
        st.integers(1, 5),
        st.booleans(),
        st.integers(0, 2),
        st.sampled_from(MODELS),
    )
    count = draw(st.integers(1, 400))
    return [record(i, *draw(specs)) for i in range(1, count + 1)]


INSERT = (
    "INSERT INTO jobs (id, kind, owner, request, status, created_at, batch_key, model, solo, deaths) "
    "VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)"
)


def database(folder: Path, queued) -> sqlite3.Connection:
    """A queue database with the store's schema (its migrations) holding `queued`."""
    asyncio.run(_migrate(folder / "queue.db"))
    return _insert(folder, queued)


def _insert(folder: Path, queued) -> sqlite3.Connection:
    db = sqlite3.connect(folder / "queue.db")
    db.row_factory = sqlite3.Row
    with db:
        db.executemany(INSERT, [
            (job.id, job.kind.value, job.owner, json.dumps(job.request), job.batch_key, job.model, int(job.solo),
             json.dumps(list(job.deaths)))
            for job in queued
        ])  # fmt: skip
    return db


async def _migrate(path: Path) -> None:
    await (await JobStore.open(path)).close()


@settings(max_examples=40, deadline=None)
@given(
    long_queues(),
    st.dictionaries(st.sampled_from(PEOPLE), st.integers(0, 50)),
    st.dictionaries(st.sampled_from(PEOPLE), st.integers(0, 1)),
    st.sampled_from([None, *MODELS]),
    st.integers(1, 9),
    st.randoms(use_true_random=False),
)
def test_person_by_person_is_the_whole_queue_order(queued, served, skipped, loaded, max_images, rnd):
    turns = {"served": json.dumps(served), "skipped": json.dumps(skipped)}
    with tempfile.TemporaryDirectory() as folder:
        db = database(Path(folder), queued)
        for limit in (1, 3, 8):
            args = {**turns, "loaded": loaded, "max_skips": MAX_SKIPS, "limit": limit}
            whole = [tuple(row) for row in db.execute(leads(SQLITE, "ranked.id"), args)]
            heads = [
                tuple(row)
                for row in db.execute(fair_heads.leads(SQLITE, "ranked.id"), {**args, "depth": limit})
            ]
            assert heads == whole
        lead = db.execute(fair_heads.leads(SQLITE, "ranked.id"), {**args, "limit": 1, "depth": 1}).fetchone()
        keyed = [job for job in queued if job.batch_key]
        for room in (0, 1, 4, 8):
            for key in {job.batch_key for job in keyed[:3]}:
                held = [job.id for job in rnd.sample(keyed, min(len(keyed), 5))]
                margs = {**turns, "key": key, "lead": lead["id"], "room": room, "held": json.dumps(held)}
                assert [row[0] for row in db.execute(fair_heads.mates(SQLITE), margs)] == [
                    row[0] for row in db.execute(mates(SQLITE), margs)
                ]
        db.close()
    # The batch of the store's pick (person by person) is the scheduler's over the whole queue.
    scheduler = FairScheduler(served_at=dict(served), skipped=dict(skipped))
    expected = FairScheduler(served_at=dict(served), skipped=dict(skipped))
    choices = expected.choices(queued, loaded, max_images)

    async def pick():
        with tempfile.TemporaryDirectory() as folder:
            await _migrate(Path(folder) / "queue.db")
            _insert(Path(folder), queued).close()
            store = await JobStore.open(Path(folder) / "queue.db")
            try:
                batch, passes_over = await store.pick(scheduler, loaded, max_images)
            finally:
                await store.close()
        return [job.id for job in batch], passes_over

    assert asyncio.run(pick()) == ([job.id for job in choices[0].batch(max_images)], choices[0].passed_over)


def test_the_statements_walk_the_indexes_of_the_waiting_people(tmp_path):
    queued = [record(i, f"p{i % 7}", JobKind.IMAGINE, "k", 1, False, 0, "m1") for i in range(1, 2001)]
    db = database(tmp_path, queued)
    with db:  # a long history of finished jobs, which the people's walk must not visit
        db.execute("UPDATE jobs SET status = 'done' WHERE id <= 1000")
    turns = {"served": "{}", "skipped": "{}"}
    args = {**turns, "loaded": "m1", "max_skips": MAX_SKIPS, "limit": 1, "depth": 1}
    plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + fair_heads.leads(SQLITE), args))
    assert "INDEX jobs_queued_by_owner" in plan and "INDEX jobs_line (owner=?)" in plan
    assert "SCAN jobs" not in plan.replace("SCAN jobs USING INDEX jobs_queued_by_owner", "")
    margs = {**turns, "key": "k", "lead": 1001, "room": 3, "held": "[]"}
    plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + fair_heads.mates(SQLITE), margs))
    assert "INDEX jobs_mates (owner=? AND batch_key=? AND <expr>=?)" in plan
    assert "SCAN jobs" not in plan.replace("SCAN jobs USING INDEX jobs_queued_by_owner", "")
    db.close()
