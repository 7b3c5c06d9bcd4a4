"""What one claim reads on PostgreSQL, by the plan (bench/cluster.py's queue part, tests/pg/test_claim_reads.py):
rows of `jobs` read by the statement that picks the lead and by the one that finds its batch mates, with the
queue ranked person by person (jobs/fair_heads.py) and ranked in full (jobs/fair_sql.py: before), at several
queue lengths with the same people waiting; and those read for a followed job's place in line, from its
round (jobs/fair_places.py) and by ranking the whole queue (before).

"Rows read" is what `EXPLAIN (ANALYZE, FORMAT JSON)` says each scan of `jobs` returned, plus what its filter
removed, times its loops: the rows the statement touched, whatever they cost in time on a busy machine.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from jobs import pg_claims
from jobs.pg_store import NO_JIT
from jobs.scheduling import MAX_SKIPS

LEAD_ARGS = {"loaded": "m", "max_skips": MAX_SKIPS, "limit": 1}
MATES_ARGS = {"key": "k", "lead": 0, "room": 3, "held": []}  # a batch of 4 one-image jobs


def rows_read(db, sql: str, args: dict, table: str = "jobs") -> int:
    """Rows of `table` the statement's scans touched (returned or filtered out, over all their loops), run
    once in a transaction rolled back (the lead's statement locks rows)."""
    with db.transaction(force_rollback=True):
        plan = db.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, args).fetchone()[0][0]["Plan"]
    return _rows(plan, table)


def _rows(node: dict, table: str) -> int:
    own = 0
    if node.get("Relation Name") == table:
        removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        own = (node.get("Actual Rows", 0) + removed) * node.get("Actual Loops", 1)
    return own + sum(_rows(child, table) for child in node.get("Plans", ()))


def fill(url: str, count: int, owners: int) -> None:
    """`count` queued jobs of `owners` people, all batchable (one key, model `m`), and each person's turn
    (a finished job), replacing the queue."""
    import psycopg

    request = json.dumps({"params": {"batch_size": 1, "batch_count": 1}})
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("TRUNCATE jobs, passed_over")
        with db.cursor().copy(
            "COPY jobs (kind, owner, request, status, created_at, batch_key, model, started_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                copy.write_row(("imagine", f"u{i % owners}", request, "queued", 0, "k", "m", None))
            for owner in range(owners):  # finished jobs: each person's last turn
                copy.write_row(("imagine", f"u{owner}", request, "done", 0, "", "m", float(owner)))
        db.execute("VACUUM ANALYZE jobs")


@dataclass
class Reads:
    queued: int
    people: int
    lead: dict[str, int]  # "person by person" / "whole queue" → rows read
    mates: dict[str, int]
    lead_ms: dict[str, float]
    place: dict[str, int]  # rows read for one followed job's place in line (round 3 of its owner's line)
    place_ms: dict[str, float]


def measure(url: str, sizes: list[int], people: int = 100, say=print) -> list[Reads]:
    """The rows each claim statement reads at each queue length (the queue is replaced)."""
    import psycopg

    statements = {
        "person by person": (pg_claims.LOCK_HEAD_LEAD, {"depth": 4}, pg_claims.SELECT_MATES[False]),
        "whole queue": (pg_claims.LOCK_LEAD, {}, pg_claims.SELECT_MATES[True]),
    }
    found = []
    for count in sizes:
        say(f"queue: rows one claim and one place in line read, {count:,} queued of {people} people …")
        fill(url, count, people)
        reads = Reads(count, people, {}, {}, {}, {}, {})
        with psycopg.connect(url, autocommit=True, options=NO_JIT) as db:
            lead_id = db.execute("SELECT min(id) FROM jobs WHERE status = 'queued'").fetchone()[0]
            for name, (lead, extra, mates) in statements.items():
                reads.lead[name] = rows_read(db, lead, {**LEAD_ARGS, **extra})
                reads.mates[name] = rows_read(db, mates, {**MATES_ARGS, "lead": lead_id})
                with db.transaction(force_rollback=True):
                    started = time.perf_counter()
                    db.execute(lead, {**LEAD_ARGS, **extra}).fetchall()
                    reads.lead_ms[name] = (time.perf_counter() - started) * 1000
            followed = lead_id + 2 * people  # the first person's third job: round 3, place 2 * people + 1
            reads.place, reads.place_ms = place_reads(db, followed)
        found.append(reads)
    return found


def place_reads(db, job_id: int) -> tuple[dict[str, int], dict[str, float]]:
    """Rows of `jobs` read for one job's place in line, and the time its statements take, from its round
    (jobs/fair_places.py: the round's statement, then the places') and by ranking the whole queue
    (jobs/fair_sql.py `positions`: before)."""
    from jobs import pg_store

    ids = {"ids": [job_id]}
    ((_, line_round),) = db.execute(pg_store.ROUNDS, ids).fetchall()
    statements = {
        "person by person": [
            (pg_store.ROUNDS, ids),
            (pg_store.PLACES, {**ids, "rounds": json.dumps({str(job_id): line_round}), "round": line_round}),
        ],
        "whole queue": [(pg_store.POSITIONS, ids)],
    }
    reads, took = {}, {}
    for name, steps in statements.items():
        reads[name] = sum(rows_read(db, sql, args) for sql, args in steps)
        times = []
        for _ in range(3):  # the best of three: a busy machine's noise aside
            started = time.perf_counter()
            for sql, args in steps:
                db.execute(sql, args).fetchall()
            times.append((time.perf_counter() - started) * 1000)
        took[name] = min(times)
    return reads, took


def rows(found: list[Reads]) -> list[tuple[str, str, str]]:
    """(what, figure, note) rows for bench/cluster.py's table."""
    out = []
    for reads in found:
        for name in ("whole queue", "person by person"):
            before = " (before)" if name == "whole queue" else ""
            out.append((
                f"rows of jobs one claim reads, {reads.queued:,} queued, {reads.people} people, {name}{before}",
                f"lead {reads.lead[name]:,}, mates {reads.mates[name]:,}",
                f"EXPLAIN ANALYZE; the lead's statement alone {reads.lead_ms[name]:,.1f} ms",
            ))  # fmt: skip
        for name in ("whole queue", "person by person"):
            before = " (before)" if name == "whole queue" else ""
            out.append((
                f"rows of jobs one place in line reads, {reads.queued:,} queued, {reads.people} people, "
                f"{name}{before}",
                f"{reads.place[name]:,}",
                f"a round-3 job; EXPLAIN ANALYZE; its statements alone {reads.place_ms[name]:,.1f} ms (best of 3)",
            ))  # fmt: skip
    return out
