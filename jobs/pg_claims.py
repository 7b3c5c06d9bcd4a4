"""Claiming on PostgreSQL without racing: the fair pick and its fall-backs, tried in one transaction.

Every worker computes the same fair order (jobs/scheduling.py) from the same rows, so workers looking at the
same moment would all go for the same job. Instead of one winner and everyone else reading the queue again,
a worker hands the store its choices in turn order (`FairScheduler.choices`: the fair pick, then the next
leads) and the store takes, in one transaction, the first whose lead no other worker holds:
`SELECT … FOR UPDATE SKIP LOCKED` on the lead (a lead being claimed by another worker is skipped: that is not
a pass-over, it is being served), then the batch mates in turn order, again with SKIP LOCKED, at most as many
as the image budget could hold (each job makes an image at least), then one UPDATE of the lead and the mates
that fit the budget.

Model affinity: a choice that passes someone over raises their count (`passed_over`) only while it is below
MAX_SKIPS; when another worker passed them over meanwhile, that choice is dropped and the next one (in turn
order, their own job first) is tried. The owners of the claimed jobs were served: their counts start again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobs.scheduling import MAX_SKIPS, Choice, job_images

NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"  # the database's clock: one for all hosts

LOCK_LEAD = "SELECT id FROM jobs WHERE id = %s AND status = 'queued' FOR UPDATE SKIP LOCKED"
LOCK_MATES = (
    "SELECT id FROM jobs WHERE id = ANY(%(ids)s) AND status = 'queued' "
    "ORDER BY array_position(%(ids)s, id) LIMIT %(most)s FOR UPDATE SKIP LOCKED"
)
PASS_OVER = (
    "INSERT INTO passed_over AS p (owner, times) VALUES (%s, 1) ON CONFLICT (owner) "
    "DO UPDATE SET times = p.times + 1 WHERE p.times < %s RETURNING times"
)
CLAIM = (
    f"UPDATE jobs SET status = 'running', started_at = {NOW}, attempts = attempts + 1, "
    "phase = 'starting', worker = %(worker)s, claim = %(claim)s, fence = fence + 1, "
    f"lease_until = {NOW} + %(lease)s WHERE id = ANY(%(ids)s) AND status = 'queued' RETURNING *"
)


async def claim_first(
    connection, choices: Sequence[Choice], max_images: int, holder: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rows of the first of `choices` this worker could claim (its lead and the mates it got), in batch
    order, or [] when other workers hold every lead. `holder`: the claim's worker, claim token and lease.
    Runs in the caller's transaction."""
    for choice in choices:
        cursor = await connection.execute(LOCK_LEAD, (choice.lead.id,))
        if await cursor.fetchone() is None:
            continue  # claimed or being claimed by another worker: the next choice
        if choice.passed_over is not None:
            cursor = await connection.execute(PASS_OVER, (choice.passed_over, MAX_SKIPS))
            if await cursor.fetchone() is None:
                continue  # passed over already by another worker: not again (their job is a later choice)
        available: set[int] = set()
        if choice.mates:
            most = max(0, max_images - job_images(choice.lead))
            cursor = await connection.execute(
                LOCK_MATES, {"ids": [job.id for job in choice.mates], "most": most}
            )
            available = {row["id"] for row in await cursor.fetchall()}
        batch = choice.batch(max_images, available)
        cursor = await connection.execute(CLAIM, {**holder, "ids": [job.id for job in batch]})
        rows = {row["id"]: row for row in await cursor.fetchall()}
        owners = sorted({row["owner"] for row in rows.values()})
        await connection.execute("DELETE FROM passed_over WHERE owner = ANY(%s)", (owners,))
        return [rows[job.id] for job in batch if job.id in rows]
    return []
