"""Places in line of the jobs someone follows, without ranking the whole queue (both stores).

A job's place under the fair order (jobs/fair_sql.py: rank (`line_round`, `served`, `line_first`), one job
per person and round) is one more than the jobs ranked before it:
- its round `r`: one more than its owner's queued jobs before it in line, counted through the index of the
  people's lines (jobs/fair_heads.py `before`);
- per waiting person Q (walked through the index of the waiting people, jobs/fair_heads.py `people`), with
  `m` = min(Q's queued jobs, R), R the highest round asked for, counted through `jobs_queued_by_owner` (at
  most R index entries): Q's jobs in earlier rounds, min(m, r - 1), and Q's round-r job when Q has one
  (m ≥ r) and goes first within a round (Q's (`served`, `line_first`) is lower). The owner's own: r - 1.
So a place costs the index entries of the jobs before it (at most R per person) plus one probe per person,
not the queue's length. SQLite cannot take a LIMIT from an outer row, so the rounds are a first statement and
the places a second with R as a parameter (both stores, the same SQL).

`places` is exactly jobs/fair_sql.py `positions` for the ids asked for (tests/jobs/test_fair_places.py,
tests/pg/test_positions.py compare both over random queues); asking for every job (None), or with
`SALON_RANK_WHOLE_QUEUE=1` (jobs/fair_heads.py `WHOLE_QUEUE`, the "before" of bench/cluster.py), the stores
rank the whole queue as before.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from jobs.fair_heads import before, indexed_by, people
from jobs.fair_sql import LONG, POSTGRES, Dialect

# More jobs followed than this: the stores rank the whole queue once instead (finding each one's round costs
# its place in its owner's line, which adds up when one person's whole line is followed).
FOLLOWED_AT_MOST = 64


def _ids(d: Dialect, column: str) -> str:
    """`column` is one of the parameter `ids` (PostgreSQL: an array; SQLite: a JSON array)."""
    if d is POSTGRES:
        return f"{column} = ANY(%(ids)s)"
    return f"{column} IN (SELECT value FROM json_each(:ids))"


def rounds(d: Dialect) -> str:
    """Each queued job of `ids` with its round in its owner's line (`id`, `line_round`)."""
    return f"""
    WITH wanted AS MATERIALIZED (
        SELECT id, owner, {LONG} AS line_long, {d.died} AS line_died FROM jobs
        WHERE status = 'queued' AND {_ids(d, "id")}
    )
    SELECT wanted.id, 1 + {before(d, "wanted")} AS line_round FROM wanted"""


def places(d: Dialect) -> str:
    """The places in line (`id`, `place`) of the queued jobs of `rounds` (a JSON object: id → round, from
    `rounds`), `round` the highest of them (each person's jobs are counted up to it, which is enough for
    every lower round too), `ids` the same ids (a list the planner sees: it looks them up by primary key
    rather than hashing a JSON function it knows nothing of against every queued job); the turns as
    jobs/fair_sql.py `positions`."""
    p = d.param.format
    if d is POSTGRES:
        pairs = f"jsonb_each_text(CAST({p('rounds')} AS jsonb))"
        wanted = f"SELECT key::bigint AS id, value::int AS line_round FROM {pairs}"
    else:
        wanted = f"SELECT CAST(key AS INTEGER) AS id, value AS line_round FROM json_each({p('rounds')})"
    bounded = (
        f"SELECT 1 FROM jobs c {indexed_by(d, 'jobs_queued_by_owner')} "
        f"WHERE c.status = 'queued' AND c.owner = people.owner LIMIT {p('round')}"
    )
    first = "c.served < me.served OR (c.served = me.served AND c.line_first < me.line_first)"
    return f"""
    WITH RECURSIVE {people(d)}, counted AS MATERIALIZED (
        SELECT people.owner, people.served, people.line_first,
               (SELECT count(*) FROM ({bounded}) AS upto) AS m
        FROM people
    ), wanted AS MATERIALIZED ({wanted})
    SELECT w.id, 1 + (
        SELECT sum(CASE WHEN c.m < wanted.line_round THEN c.m ELSE wanted.line_round - 1 END
                   + CASE WHEN c.m >= wanted.line_round AND ({first}) THEN 1 ELSE 0 END)
        FROM counted c
    ) AS place
    FROM wanted JOIN jobs w ON w.id = wanted.id AND w.status = 'queued' AND {_ids(d, "w.id")}
    JOIN counted me ON me.owner = w.owner"""


Execute = Callable[[str, dict[str, Any]], Awaitable[Sequence[Any]]]


async def places_of(
    execute: Execute, rounds_sql: str, places_sql: str, ids: Sequence[int], encode, args: dict[str, Any]
) -> dict[int, int]:
    """The places of the queued jobs of `ids` (at most `FOLLOWED_AT_MOST`): `execute(sql, args)` returns rows
    with named columns, `encode` turns a list of ids into the store's `ids` parameter, `args` holds the
    turns (SQLite). Two statements, however many jobs."""
    found = {
        row["id"]: int(row["line_round"])
        for row in await execute(rounds_sql, {**args, "ids": encode(list(ids))})
    }
    if not found:
        return {}
    rounds_arg = {
        "rounds": json.dumps({str(job_id): r for job_id, r in found.items()}),
        "round": max(found.values()),
        "ids": encode(list(found)),
    }
    return {row["id"]: int(row["place"]) for row in await execute(places_sql, {**args, **rounds_arg})}
