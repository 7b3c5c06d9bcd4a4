"""The fair order of jobs/scheduling.py written in SQL, for both stores: which queued job leads the next batch,
which waiting jobs may join it, and each queued job's place in line.

The rules are those of `FairScheduler` (jobs/scheduling.py), over the whole queue:
- A person's line: image jobs before long ones, fewer deaths first, then oldest (`line_key`): a job's place in
  it is its round (`line_round`), and the person's oldest queued id (`line_first`) breaks ties.
- People take turns: within a round, whoever was served longest ago goes first (never served: -1), then the
  person whose oldest job is oldest. So a job's rank is (`line_round`, `served`, `line_first`).
- Model affinity: when the first job's model is not the loaded one and its owner was passed over fewer than
  MAX_SKIPS times in a row, the first head (a round-1 job) for the loaded model goes first, passing them over.
- Batch mates: waiting non-solo jobs with the lead's batch key, in rank order, of at most the budget left
  beside the lead (`room`) images each. Per size `n`, only the first `room // n` can ever join (once one of
  size `n` does not fit, no later one does), so the statement returns those only.

What stays in Python (jobs/pg_claims.py, `Choice.batch`): taking the mates greedily, each one that still fits
the budget in rank order and skipping those that do not. That is a fold with a running budget that skips
rows, which SQL expresses only as a recursive query over the mates one row at a time. And on PostgreSQL,
mates another worker holds (`FOR UPDATE SKIP LOCKED` cannot go with the window that numbers them) are left out
by asking again without them, until every mate returned is this worker's.

Where turns and pass-overs come from differs: PostgreSQL reads them from the rows (`served`: the owner's last
`started_at` by any worker, through the index `jobs_served`; `skipped`: the `passed_over` table), SQLite's
one worker remembers them in its `FairScheduler` and hands them in as JSON objects (`:served`, `:skipped`).
tests/jobs/test_fair_sql.py and tests/pg/test_fair_sql.py compare both statements with `FairScheduler` over
random queues.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.records import JobKind

LONG_KINDS = tuple(kind.value for kind in JobKind if kind.long)
RANK = "line_round, served, line_first"


@dataclass(frozen=True)
class Dialect:
    """What differs between the stores' SQL: placeholders, JSON functions, where turns come from."""

    param: str  # a named placeholder, with {} for the name
    died: str
    images: str
    distinct: str  # null-safe "differs from"
    served: str
    skipped: str
    joins: str  # joins of `people` for `skipped`


LONG = "kind IN (" + ", ".join(f"'{kind}'" for kind in LONG_KINDS) + ")"


POSTGRES = Dialect(
    param="%({})s",
    died="jsonb_array_length(deaths)",
    images="COALESCE((request->'params'->>'batch_size')::int, 1)"
    " * COALESCE((request->'params'->>'batch_count')::int, 1)",
    distinct="IS DISTINCT FROM",
    served="COALESCE((SELECT max(s.started_at) FROM jobs s WHERE s.owner = owners.owner), -1)",
    skipped="COALESCE(p.times, 0)",
    joins="LEFT JOIN passed_over p ON p.owner = owners.owner",
)
SQLITE = Dialect(
    param=":{}",
    died="json_array_length(deaths)",
    images="CAST(COALESCE(json_extract(request, '$.params.batch_size'), 1) AS INTEGER)"
    " * CAST(COALESCE(json_extract(request, '$.params.batch_count'), 1) AS INTEGER)",
    distinct="IS NOT",
    served="COALESCE((SELECT value FROM json_each(:served) WHERE key = owners.owner), -1)",
    skipped="COALESCE((SELECT value FROM json_each(:skipped) WHERE key = owners.owner), 0)",
    joins="",
)


def ranked(d: Dialect) -> str:
    """The CTEs `line` (every queued job's place in its owner's line), `people` (each owner's turn and
    pass-overs, looked up once per person) and `ranked` (both together: order by RANK)."""
    return f"""
    line AS (
        SELECT id, owner, model, batch_key, solo,
               row_number() OVER (PARTITION BY owner ORDER BY {LONG}, {d.died}, id) AS line_round,
               min(id) OVER (PARTITION BY owner) AS line_first
        FROM jobs WHERE status = 'queued'
    ), people AS MATERIALIZED (
        SELECT owners.owner, {d.served} AS served, {d.skipped} AS skipped
        FROM (SELECT owner FROM line WHERE line_round = 1) AS owners {d.joins}
    ), ranked AS MATERIALIZED (
        SELECT line.*, people.served, people.skipped FROM line JOIN people ON people.owner = line.owner
    )"""


def leads(d: Dialect, columns: str = "jobs.*") -> str:
    """Queued jobs in the order they would lead a batch, each with the person it passes over (model
    affinity: only the first row may, else NULL): `columns` of `jobs` (a claim takes only what it needs, so
    that the sort stays narrow) and `passes_over`. Parameters: `loaded` (the worker's loaded model or NULL),
    `max_skips`, `limit`. Columns of `ranked` only (`ranked.id`): the rows of `jobs` are not joined (nothing
    to lock: SQLite's one worker)."""
    return leads_over(d, f"WITH {ranked(d)}", columns, lead_rows(columns))


def lead_rows(columns: str) -> str:
    """The join of `leads` to the rows of `jobs`, none for columns of `ranked` only."""
    return (
        "" if columns.startswith("ranked.") else "JOIN jobs ON jobs.id = ranked.id AND jobs.status = 'queued'"
    )


def leads_over(d: Dialect, ranked_ctes: str, columns: str, rows: str) -> str:
    """The statement of `leads` after the CTEs `ranked_ctes` (WITH …, ending with `ranked`), joined to `rows`
    (here and in jobs/fair_heads.py, which ranks each person's first jobs only)."""
    p = d.param.format
    return f"""
    {ranked_ctes}, first AS MATERIALIZED (
        SELECT owner, model, skipped FROM ranked ORDER BY {RANK} LIMIT 1
    ), alternative AS MATERIALIZED (
        SELECT ranked.id, first.owner AS passes_over FROM ranked, first
        WHERE CAST({p("loaded")} AS TEXT) IS NOT NULL AND first.model {d.distinct} {p("loaded")}
          AND first.skipped < {p("max_skips")} AND ranked.line_round = 1 AND ranked.model = {p("loaded")}
        ORDER BY ranked.served, ranked.line_first LIMIT 1
    )
    SELECT {columns}, alternative.passes_over FROM ranked {rows}
    LEFT JOIN alternative ON alternative.id = ranked.id
    ORDER BY alternative.passes_over IS NULL, ranked.line_round, ranked.served, ranked.line_first
    LIMIT {p("limit")}"""


def mates(d: Dialect) -> str:
    """The ids of the waiting jobs that may join a lead's batch, in rank order (see the module's docstring).
    Parameters: `key` (the lead's batch key), `lead` (its id), `room` (images left beside it), `held` (ids
    other workers hold: PostgreSQL an array, SQLite a JSON array; they are left out as if not queued)."""
    p = d.param.format
    if d is POSTGRES:
        free = "ranked.id <> ALL(%(held)s)"
    else:
        free = "ranked.id NOT IN (SELECT value FROM json_each(:held))"
    return f"""
    WITH {ranked(d)}, sized AS (
        SELECT ranked.id, ranked.line_round, ranked.served, ranked.line_first, {d.images} AS images
        FROM ranked JOIN jobs ON jobs.id = ranked.id
        WHERE ranked.batch_key = {p("key")} AND NOT ranked.solo AND ranked.id <> {p("lead")} AND {free}
    ), numbered AS (
        SELECT id, images, {RANK}, row_number() OVER (PARTITION BY images ORDER BY {RANK}) AS nth
        FROM sized WHERE images <= {p("room")}
    )
    SELECT id FROM numbered WHERE nth * images <= {p("room")} ORDER BY {RANK}"""


def positions(d: Dialect) -> str:
    """The place in line (1 = next, affinity aside: `FairScheduler.positions`) of the queued jobs whose ids
    are in `ids` (PostgreSQL: an array; SQLite: a JSON array), or of all of them when `ids` is NULL, every
    queued job ranked: the stores ask it for all of them, jobs/fair_places.py for a few (the reference)."""
    if d is POSTGRES:
        wanted = "CAST(%(ids)s AS BIGINT[]) IS NULL OR id = ANY(%(ids)s)"
    else:
        wanted = ":ids IS NULL OR id IN (SELECT value FROM json_each(:ids))"
    return f"""
    WITH {ranked(d)}, placed AS (
        SELECT id, row_number() OVER (ORDER BY {RANK}) AS place FROM ranked
    )
    SELECT id, place FROM placed WHERE {wanted}"""
