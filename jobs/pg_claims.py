"""Claiming on PostgreSQL without racing: the fair order computed by the database, the first free lead taken.

Every worker would compute the same fair order from the same rows, so workers looking at the same moment
would all go for the same job. Instead the database ranks the queued jobs by the rules of jobs/scheduling.py
(jobs/fair_heads.py `leads`, person by person, or jobs/fair_sql.py's over the whole queue as the fall-back:
people take turns across all workers, nobody passed over twice, model affinity) and one statement locks the
first lead no other worker holds (`ORDER BY … LIMIT 1 FOR UPDATE SKIP LOCKED`: a lead being claimed by
another worker is skipped; that is not a pass-over, it is being served). Then, in the same transaction, its
batch mates (jobs/fair_heads.py `mates`, again with SKIP LOCKED) are taken greedily within the image budget
(as `Choice.batch`: the one rule left in Python), and one UPDATE claims them all.

Model affinity: a lead that passes someone over raises their count (`passed_over`) only while it is below
MAX_SKIPS; when another worker passed them over meanwhile, the statement runs again (it now sees the count,
so their own job comes first). The owners of the claimed jobs were served: their counts start again.
"""

from __future__ import annotations

from typing import Any

from jobs import fair_heads
from jobs.fair_sql import POSTGRES, leads, mates
from jobs.scheduling import MAX_SKIPS, job_images, request_images

NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"  # the database's clock: one for all hosts

LEAD_COLUMNS = "jobs.id, jobs.batch_key, jobs.solo, jobs.request"
# Person by person (jobs/fair_heads.py: each waiting person's first `DEPTH` jobs), and the whole queue ranked
# (jobs/fair_sql.py): when the first is empty (nothing queued, or every one of those rounds held by other
# workers' claims under way), or always when `fair_heads.WHOLE_QUEUE` says so.
LOCK_HEAD_LEAD = fair_heads.leads(POSTGRES, LEAD_COLUMNS) + " FOR UPDATE OF jobs SKIP LOCKED"
LOCK_LEAD = leads(POSTGRES, LEAD_COLUMNS) + " FOR UPDATE OF jobs SKIP LOCKED"
SELECT_MATES = {False: fair_heads.mates(POSTGRES), True: mates(POSTGRES)}
LOCK_MATES = "SELECT * FROM jobs WHERE id = ANY(%s) AND status = 'queued' FOR UPDATE SKIP LOCKED"
PASS_OVER = (
    "INSERT INTO passed_over AS p (owner, times) VALUES (%s, 1) ON CONFLICT (owner) "
    "DO UPDATE SET times = p.times + 1 WHERE p.times < %s RETURNING times"
)
CLAIM = (
    f"UPDATE jobs SET status = 'running', started_at = {NOW}, attempts = attempts + 1, "
    "phase = 'starting', worker = %(worker)s, claim = %(claim)s, fence = fence + 1, "
    f"lease_until = {NOW} + %(lease)s WHERE id = ANY(%(ids)s) AND status = 'queued' RETURNING *"
)
PASS_OVER_RETRIES = 3  # another worker passing the same person over meanwhile, again and again


async def claim_next(
    connection, record, loaded_model: str | None, max_images: int, holder: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rows of the next batch this worker claims (the first free lead in the fair order and the mates
    it got), in batch order, or [] when nothing is queued or other workers hold every lead. `record` turns a
    row into a JobRecord; `holder`: the claim's worker, claim token and lease. Runs in the caller's
    transaction."""
    for _ in range(PASS_OVER_RETRIES + 1):
        row = await _lock_lead(connection, loaded_model)
        if row is None:
            return []
        if row["passes_over"] is None:
            break
        cursor = await connection.execute(PASS_OVER, (row["passes_over"], MAX_SKIPS))
        if await cursor.fetchone() is not None:
            break
        # Passed over by another worker meanwhile: rank again (their own job is first now).
    else:
        return []
    ids = [row["id"]]
    if row["batch_key"] and not row["solo"]:
        room = max_images - request_images(row["request"])
        for mate in await _lock_mates(connection, record, row["batch_key"], row["id"], room):
            if job_images(mate) <= room:  # `Choice.batch`: in rank order, each that still fits
                ids.append(mate.id)
                room -= job_images(mate)
    cursor = await connection.execute(CLAIM, {**holder, "ids": ids})
    rows = {claimed["id"]: claimed for claimed in await cursor.fetchall()}
    owners = sorted({claimed["owner"] for claimed in rows.values()})
    await connection.execute("DELETE FROM passed_over WHERE owner = ANY(%s)", (owners,))
    return [rows[job_id] for job_id in ids if job_id in rows]


async def _lock_lead(connection, loaded_model: str | None):
    """The first lead in the fair order no other worker holds, locked (with whom it passes over), or None."""
    args = {"loaded": loaded_model, "max_skips": MAX_SKIPS, "limit": 1}
    if not fair_heads.WHOLE_QUEUE:
        cursor = await connection.execute(LOCK_HEAD_LEAD, {**args, "depth": fair_heads.DEPTH})
        row = await cursor.fetchone()
        if row is not None:
            return row
    cursor = await connection.execute(LOCK_LEAD, args)
    return await cursor.fetchone()


async def _lock_mates(connection, record, key: str, lead: int, room: int) -> tuple:
    """The mates of a lead this worker locked, in rank order: those other workers hold are left out by asking
    again without them (jobs/fair_sql.py `mates`), until every mate the statement names is ours."""
    held: list[int] = []
    got: dict[int, Any] = {}
    while True:
        cursor = await connection.execute(
            SELECT_MATES[fair_heads.WHOLE_QUEUE], {"key": key, "lead": lead, "room": room, "held": held}
        )
        ids = [mate["id"] for mate in await cursor.fetchall()]
        new = [i for i in ids if i not in got]
        if not new:
            return tuple(got[i] for i in ids)
        cursor = await connection.execute(LOCK_MATES, (new,))
        got.update((mate["id"], record(mate)) for mate in await cursor.fetchall())
        if all(i in got for i in new):
            return tuple(got[i] for i in ids)
        held += [i for i in new if i not in got]
