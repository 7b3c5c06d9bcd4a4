"""The fair order of jobs/fair_sql.py read person by person: a claim's cost grows with the people waiting,
not with the jobs queued.

The whole-queue statements (jobs/fair_sql.py) number every queued job in its owner's line before sorting. But
the first rows of the fair order are only ever the first few jobs of each person's line (rank is
(`line_round`, `served`, `line_first`): rows of rounds 1…k come before every row of a later round), and a
batch mate is among the first few jobs of its person, size and key. So these statements walk the waiting
people through an index (a skip scan of `jobs_queued_by_owner`: one index probe per person, however many
jobs each has) and read, per person, only what the pick needs, through indexes on the line's order:
- `leads`: each person's first `depth` jobs in line order (`jobs_line`); `first` and the model-affinity
  alternative are round-1 jobs, so for `limit` ≤ `depth` the first rows are those of the whole-queue
  statement. On PostgreSQL a lead other workers hold is skipped (`SKIP LOCKED`): when every one of the
  first `depth` rounds is held or nothing is queued, the claim asks the whole-queue statement (rare: only
  the rows of claims under way are locked).
- `mates`: per person and size `n` (1 … `room` images), the first `room` waiting jobs with the lead's batch
  key (`jobs_mates`): only the first `room // n` of a size can join, so nothing that could is left out. Each
  one's round is its place in its owner's whole line, counted through `jobs_line` (its owner's jobs before
  it; cheap for the first jobs of a line, which mates are, and at most a per-person limit of rows).
Places in line are counted the same way, from a job's round (jobs/fair_places.py, through `before`).
Same parameters and same rows as the whole-queue statements (tests/jobs/test_fair_sql.py,
tests/pg/test_fair_sql.py compare both with `FairScheduler`), plus `depth` for `leads`.
"""

from __future__ import annotations

import os

from jobs.fair_sql import LONG, POSTGRES, RANK, Dialect, lead_rows, leads_over

DEPTH = 4  # a PostgreSQL claim's rounds per person before it falls back to ranking the whole queue
# Rank the whole queue instead, as before these statements (bench/cluster.py `--before`: the "before" of its
# figures, in the same run, through the environment of the worker processes it starts). Read at each claim.
WHOLE_QUEUE = os.environ.get("SALON_RANK_WHOLE_QUEUE") == "1"


def _pick(d: Dialect, alias: str, where: str, order: str, limit: str) -> str:
    """Join the first `limit` rows of `jobs` (as `j` in `where` and `order`) per outer row, as `alias`.
    PostgreSQL: a LATERAL subquery; SQLite (no LATERAL): a correlated `IN` on the primary key."""
    if d is POSTGRES:
        return f"CROSS JOIN LATERAL (SELECT * FROM jobs j WHERE {where} ORDER BY {order} LIMIT {limit}) AS {alias}"
    return (
        f"JOIN jobs AS {alias} ON {alias}.id IN "
        f"(SELECT j.id FROM jobs j WHERE {where} ORDER BY {order} LIMIT {limit})"
    )


def indexed_by(d: Dialect, index: str) -> str:
    """SQLite's planner would walk an index that also holds finished jobs (a long history): name the
    partial one. PostgreSQL's chooses by its statistics."""
    return "" if d is POSTGRES else f"INDEXED BY {index}"


def people(d: Dialect) -> str:
    """The CTEs `owners` (the waiting people, one index probe each) and `people` (each one's turn,
    pass-overs and oldest queued id)."""
    return f"""
    owners(owner) AS (
        SELECT (SELECT owner FROM jobs {indexed_by(d, "jobs_queued_by_owner")} WHERE status = 'queued'
                ORDER BY owner LIMIT 1)
        UNION ALL
        SELECT (SELECT j.owner FROM jobs j {indexed_by(d, "jobs_queued_by_owner")}
                WHERE j.status = 'queued' AND j.owner > owners.owner ORDER BY j.owner LIMIT 1)
        FROM owners WHERE owners.owner IS NOT NULL
    ), people AS MATERIALIZED (
        SELECT owners.owner, {d.served} AS served, {d.skipped} AS skipped,
               (SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.owner = owners.owner
                ORDER BY j.id LIMIT 1) AS line_first
        FROM owners {d.joins} WHERE owners.owner IS NOT NULL
    )"""


def ranked(d: Dialect) -> str:
    """`people`, then `ranked`: each person's first `depth` jobs with their round (columns as
    jobs/fair_sql.py `ranked`)."""
    p = d.param.format
    line = f"{LONG}, {d.died}, j.id"
    where = "j.status = 'queued' AND j.owner = people.owner"
    return f"""{people(d)}, ranked AS MATERIALIZED (
        SELECT head.id, people.owner, head.model, head.batch_key, head.solo,
               row_number() OVER (PARTITION BY people.owner ORDER BY {LONG}, {d.died}, head.id) AS line_round,
               people.line_first, people.served, people.skipped
        FROM people {_pick(d, "head", where, line, p("depth"))}
    )"""


def leads(d: Dialect, columns: str = "jobs.*") -> str:
    """As jobs/fair_sql.py `leads`, over each person's first `depth` jobs (parameter `depth` ≥ `limit`)."""
    rows = lead_rows(columns)
    if rows and d is POSTGRES:
        # Else the planner may hash `ranked` against a scan of every queued job: an id list it does not
        # know the length of makes it look them up by primary key.
        rows += " AND jobs.id = ANY(ARRAY(SELECT id FROM ranked))"
    return leads_over(d, f"WITH RECURSIVE {ranked(d)}", columns, rows)


def mates(d: Dialect) -> str:
    """As jobs/fair_sql.py `mates` (parameters `key`, `lead`, `room`, `held`), person by person."""
    p = d.param.format
    images = d.images.replace("request", "j.request")
    if d is POSTGRES:
        free = "j.id <> ALL(%(held)s)"
    else:
        free = "j.id NOT IN (SELECT value FROM json_each(:held))"
    where = (
        f"j.status = 'queued' AND j.owner = people.owner AND j.batch_key = {p('key')} AND {images} = sizes.n "
        f"AND NOT j.solo AND j.id <> {p('lead')} AND {free}"
    )
    line = f"{LONG}, {d.died}, j.id"
    return f"""
    WITH RECURSIVE {people(d)}, sizes(n) AS (
        SELECT 1 WHERE 1 <= {p("room")}
        UNION ALL
        SELECT n + 1 FROM sizes WHERE n < {p("room")}
    ), sized AS MATERIALIZED (
        SELECT mate.id, people.owner, people.served, people.line_first, sizes.n AS images,
               {LONG} AS line_long, {d.died} AS line_died
        FROM people CROSS JOIN sizes {_pick(d, "mate", where, line, p("room"))}
    ), placed AS (
        SELECT sized.*, 1 + {before(d, "sized")} AS line_round
        FROM sized
    ), numbered AS (
        SELECT id, images, {RANK}, row_number() OVER (PARTITION BY images ORDER BY {RANK}) AS nth FROM placed
    )
    SELECT id FROM numbered WHERE nth * images <= {p("room")} ORDER BY {RANK}"""


def before(d: Dialect, job: str) -> str:
    """How many of its owner's queued jobs come before `job` in line (a CTE's row with the columns `id`,
    `owner`, `line_long` and `line_died`), as three index ranges of `jobs_line` (a row-value comparison
    would not use the index on SQLite): its round is one more. Cheap for the first jobs of a line."""
    count = (
        f"SELECT count(*) FROM jobs c {indexed_by(d, 'jobs_line')} "
        f"WHERE c.status = 'queued' AND c.owner = {job}.owner"
    )
    same_long, same_died = f"{LONG} = {job}.line_long", f"{d.died} = {job}.line_died"
    return (
        f"({count} AND {LONG} < {job}.line_long)"
        f" + ({count} AND {same_long} AND {d.died} < {job}.line_died)"
        f" + ({count} AND {same_long} AND {same_died} AND c.id < {job}.id)"
    )


def index_sql(d: Dialect) -> str:
    """The indexes these statements walk (a migration of each store): the waiting people and each one's
    oldest job, each person's line in order, and the waiting jobs by person, batch key and size."""
    images = d.images if d is not POSTGRES else f"({d.images})"
    e = (lambda sql: f"({sql})") if d is POSTGRES else (lambda sql: sql)
    return f"""
    CREATE INDEX jobs_queued_by_owner ON jobs (owner, id) WHERE status = 'queued';
    CREATE INDEX jobs_line ON jobs (owner, {e(LONG)}, {e(d.died)}, id) WHERE status = 'queued';
    CREATE INDEX jobs_mates ON jobs (owner, batch_key, {images}, {e(LONG)}, {e(d.died)}, id)
        WHERE status = 'queued';
    """
