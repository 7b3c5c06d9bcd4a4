"""Places in line on SQLite from each followed job's round (jobs/fair_places.py) are those of the whole queue
ranked (jobs/fair_sql.py `positions`, the reference, also behind `fair_heads.WHOLE_QUEUE`): over random queues
with turns and long lines, through `JobStore.positions`; and a place walks the indexes of the waiting people,
doing the same work with 100,000 queued as with 10,000 (SQLite's virtual-machine steps, counted)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs import fair_heads
from jobs.fair_places import places, rounds
from jobs.fair_sql import SQLITE, positions
from jobs.records import JobKind
from jobs.scheduling import FairScheduler
from jobs.store import JobStore
from tests.jobs.fair_queues import record
from tests.jobs.test_fair_heads import PEOPLE, _insert, _migrate, database, long_queues


async def _positions(path: Path, ids, served: dict[str, int], whole: bool) -> dict[int, int]:
    store = await JobStore.open(path)
    before, fair_heads.WHOLE_QUEUE = fair_heads.WHOLE_QUEUE, whole
    try:
        return await store.positions(ids, FairScheduler(served_at=dict(served)))
    finally:
        fair_heads.WHOLE_QUEUE = before
        await store.close()


@settings(max_examples=40, deadline=None)
@given(
    long_queues(),
    st.dictionaries(st.sampled_from(PEOPLE), st.integers(0, 50)),
    st.randoms(use_true_random=False),
)
def test_places_from_rounds_are_the_whole_queue_ranked(queued, served, rnd):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "queue.db"
        asyncio.run(_migrate(path))
        db = _insert(Path(folder), queued)
        args = {"served": json.dumps(served), "skipped": "{}", "ids": None}
        everything = {row[0]: row[1] for row in db.execute(positions(SQLITE), args)}
        db.close()
        assert sorted(everything.values()) == list(range(1, len(queued) + 1))
        wanted = [job.id for job in rnd.sample(queued, min(len(queued), 12))] + [10**9]  # one not queued
        got = asyncio.run(_positions(path, wanted, served, False))
        assert got == {job_id: everything[job_id] for job_id in wanted if job_id in everything}
        assert asyncio.run(_positions(path, wanted, served, True)) == got  # the "before" flag
        assert asyncio.run(_positions(path, [], served, False)) == {}
        # Every job followed (past FOLLOWED_AT_MOST: the whole queue ranked once).
        assert asyncio.run(_positions(path, [job.id for job in queued], served, False)) == everything


def _steps(db: sqlite3.Connection, sql: str, args: dict) -> tuple[list, int]:
    """The rows of a statement and SQLite's virtual-machine steps for it (one call of the handler each)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(count, 1)
    try:
        rows = db.execute(sql, args).fetchall()
    finally:
        db.set_progress_handler(None, 1)
    return rows, steps[0]


def _place_steps(folder: Path, queued_count: int, people: int) -> tuple[int, int, int]:
    """A round-3 job's place and the steps its two statements take, with `queued_count` jobs queued of
    `people` people (ids in turn: person i's k-th job is i + k * people), behind a history of finished jobs."""
    history = [
        record(i, f"p{i % people:03d}", JobKind.IMAGINE, "k", 1, False, 0, "m") for i in range(1, 1001)
    ]
    jobs = [
        record(1000 + i, f"p{i % people:03d}", JobKind.IMAGINE, "k", 1, False, 0, "m")
        for i in range(1, queued_count + 1)
    ]
    db = database(folder, history + jobs)
    with db:
        db.execute("UPDATE jobs SET status = 'done' WHERE id <= 1000")
    followed = 1000 + 1 + 2 * people  # the first person's third job
    args = {"served": "{}", "skipped": "{}", "ids": json.dumps([followed])}
    (row,), round_steps = _steps(db, rounds(SQLITE), args)
    assert row["line_round"] == 3
    (place,), place_steps = _steps(
        db, places(SQLITE), {**args, "rounds": json.dumps({followed: 3}), "round": 3}
    )
    db.close()
    return place["place"], round_steps, place_steps


def test_a_place_does_the_same_work_with_100000_queued_as_with_10000(tmp_path):
    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    small = _place_steps(tmp_path / "small", 10_000, 100)
    large = _place_steps(tmp_path / "large", 100_000, 100)
    assert small == large and small[0] == 2 * 100 + 1


def test_the_statements_walk_the_indexes_of_the_waiting_people(tmp_path):
    queued = [record(i, f"p{i % 7}", JobKind.IMAGINE, "k", 1, False, 0, "m1") for i in range(1, 2001)]
    db = database(tmp_path, queued)
    args = {"served": "{}", "skipped": "{}", "ids": "[1500]", "rounds": '{"1500": 3}', "round": 3}
    for statement, index in ((rounds(SQLITE), "jobs_line"), (places(SQLITE), "jobs_queued_by_owner")):
        plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement, args))
        assert f"INDEX {index}" in plan
        assert "SCAN jobs" not in plan.replace("SCAN jobs USING INDEX jobs_queued_by_owner", "")
    db.close()
