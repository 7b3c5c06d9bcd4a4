"""The job store on PostgreSQL, for many workers on one queue: the interface of `JobStore` (jobs/store.py).

Chosen by the composition root (app/stores.py) when `[database] url` is set; `JobQueue` runs on either.

Claiming. The database computes the fair order of the SQLite queue's scheduler (jobs/scheduling.py, in SQL:
jobs/fair_sql.py), its turns taken from the rows (when each person was last served, by any worker), and
`claim_next` takes the first lead no other worker holds with `SELECT … FOR UPDATE SKIP LOCKED`, then its batch
mates, in one transaction (jobs/pg_claims.py): a job another worker claims at the same moment is skipped,
never claimed twice, and no job row is read but the claimed ones. Model affinity (a worker prefers jobs for
the model it has loaded) passes a person over at most once in a row, counted in `passed_over` across workers:
the count is raised in the claim's transaction, only while it is below the limit.

Leases, not locks. There is no one-worker lock: a claimed job carries a lease (`lease_until`, the database's
clock plus `lease_s`), renewed by its worker's heartbeat (every lease_s / 3). Any process re-queues the jobs
whose lease expired (their worker died or lost the network), with the SQLite queue's crash blame
(jobs/blame.py): a batch that died is not blamed and runs solo; a job that died alone counts the attempt.

Fencing. Every claim increments the job's `fence` (the claim's number; unlike `attempts` it never goes down),
and this store remembers the fence of each job it claimed: its changes to a running job apply only while the
row still carries that fence, so a worker cut off and coming back late cannot post a second result.

Workers. A worker advertises itself in the `workers` table (name, host, GPU, loaded models, heartbeat);
`salon workers` lists them and `salon queue` shows which worker runs or ran each job. A one-shot command
(`salon imagine`) leaves its job to a live one (`live_workers`: a heartbeat younger than `lease_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from jobs import fair_heads
from jobs.blame import Point, judge
from jobs.fair_places import FOLLOWED_AT_MOST, places, places_of, rounds
from jobs.fair_sql import POSTGRES, positions
from jobs.pg_claims import claim_next
from jobs.pg_schema import DatabaseUnavailable, migrate
from jobs.records import JobKind, JobRecord, JobStatus
from jobs.scheduling import MAX_SKIPS
from jobs.store import check_queue_limits, record_from_row

log = logging.getLogger(__name__)

NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"  # the database's clock: one for all hosts
JSON_COLUMNS = ("results", "deaths", "checkpoint", "meta")
REQUEUED = "the worker died during this job; queued again"
CONNECT_TIMEOUT_S = 30.0  # opening the store waits this long for the server (it may be starting too)
REQUEUED_SOLO = "the worker died during its batch; queued again to run alone"
LONG_KINDS = [kind.value for kind in JobKind if kind.long]


POSITIONS = positions(POSTGRES)  # every queued job ranked: all places, or before jobs/fair_places.py
ROUNDS, PLACES = rounds(POSTGRES), places(POSTGRES)


class PgJobStore:
    """Async access to the jobs and workers tables. `await PgJobStore.open(url)`, `await close()`."""

    exclusive_worker = False  # many workers share the queue (no lock file, no point file)

    def __init__(self, pool, lease_s: float, max_attempts: int, worker_name: str | None) -> None:
        self._pool = pool
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.worker_name = worker_name or socket.gethostname()
        self.claim_token = f"{self.worker_name}/{uuid.uuid4().hex[:12]}"  # this process, as a worker
        self._fences: dict[int, int] = {}  # job id → the fence of this store's claim of it
        self._heartbeat: asyncio.Task | None = None

    @classmethod
    async def open(
        cls, url: str, *, lease_s: float = 30.0, max_attempts: int = 3, worker_name: str | None = None
    ) -> PgJobStore:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "options": NO_JIT,
                **_network_timeouts(lease_s),
            },
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            async with pool.connection() as connection:
                await migrate(connection)
        except PoolTimeout:
            await pool.close()
            raise DatabaseUnavailable(
                f"cannot reach the queue's database ({_without_password(url)}) within {CONNECT_TIMEOUT_S:.0f} s: "
                "is PostgreSQL running, and [database] url right?"
            ) from None
        except BaseException:
            await pool.close()
            raise
        return cls(pool, lease_s, max_attempts, worker_name)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._heartbeat
            with contextlib.suppress(Exception):
                await self._execute(
                    "UPDATE workers SET stopped_at = " + NOW + " WHERE claim = %s", (self.claim_token,)
                )
        await self._pool.close()

    async def _execute(self, sql: str, args: Sequence[Any] | dict = ()) -> list[dict]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, args)
            return await cursor.fetchall() if cursor.description else []

    # ----- reading -------------------------------------------------------------------------------------------
    async def get(self, job_id: int) -> JobRecord | None:
        rows = await self._execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return _record(rows[0]) if rows else None

    async def queued(self) -> list[JobRecord]:
        return [
            _record(row)
            for row in await self._execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id")
        ]

    async def recent(self, limit: int = 50, statuses: Iterable[JobStatus] | None = None) -> list[JobRecord]:
        """The newest jobs, optionally only those in `statuses`."""
        if statuses is None:
            rows = await self._execute("SELECT * FROM jobs ORDER BY id DESC LIMIT %s", (limit,))
        else:
            wanted = [s.value for s in statuses]
            rows = await self._execute(
                "SELECT * FROM jobs WHERE status = ANY(%s) ORDER BY id DESC LIMIT %s", (wanted, limit)
            )
        return [_record(row) for row in rows]

    async def undelivered(self, since: float = 0.0, guilds_only: bool = True) -> list[JobRecord]:
        """Jobs finished after `since` whose outcome no front end has shown yet (oldest first)."""
        sql = (
            "SELECT * FROM jobs WHERE delivered_at IS NULL AND status IN ('done', 'failed', 'cancelled') "
            "AND finished_at >= %s" + (" AND guild IS NOT NULL" if guilds_only else "") + " ORDER BY id"
        )
        return [_record(row) for row in await self._execute(sql, (since,))]

    async def pending(self, guilds_only: bool = True) -> list[JobRecord]:
        """Queued and running jobs, oldest first."""
        sql = "SELECT * FROM jobs WHERE status IN ('queued', 'running')" + (
            " AND guild IS NOT NULL" if guilds_only else ""
        )
        return [_record(row) for row in await self._execute(sql + " ORDER BY id")]

    async def has_queued(self, besides: Sequence[int] = ()) -> bool:
        """Whether any job other than `besides` waits (an index probe, no row read)."""
        rows = await self._execute(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued' AND id <> ALL(%s)) AS waits",
            (list(besides),),
        )
        return bool(rows[0]["waits"])

    async def positions(self, job_ids: Sequence[int] | None, scheduler=None) -> dict[int, int]:
        """The places in line (1 = next) of those of `job_ids` that are queued (None: all), in the fair order
        of the rows (jobs/fair_sql.py; `scheduler` is for the SQLite store: here the turns are in the rows)."""
        if job_ids is not None and not job_ids:
            return {}
        few = job_ids is not None and len(job_ids) <= FOLLOWED_AT_MOST
        if few and not fair_heads.WHOLE_QUEUE:  # from each job's round (jobs/fair_places.py)
            async with self._pool.connection() as connection, connection.transaction():
                # One snapshot for the rounds and the places.
                await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")

                async def rows(sql: str, args: dict[str, Any]) -> list[dict]:
                    return await (await connection.execute(sql, args)).fetchall()

                return await places_of(rows, ROUNDS, PLACES, job_ids, list, {})
        rows = await self._execute(POSITIONS, {"ids": None if job_ids is None else list(job_ids)})
        return {row["id"]: row["place"] for row in rows}

    async def served(self, queued: Sequence[JobRecord]) -> dict[str, float]:
        """When each owner of `queued` was last served by any worker (the scheduler's turns, shared: whoever
        was served longest ago goes first, whichever worker serves them)."""
        owners = sorted({job.owner for job in queued})
        if not owners:
            return {}
        rows = await self._execute(
            "SELECT owner, MAX(started_at) AS served FROM jobs WHERE owner = ANY(%s) AND started_at IS NOT NULL "
            "GROUP BY owner",
            (owners,),
        )
        return {row["owner"]: row["served"] for row in rows}

    async def cancel_requests(self, job_ids: Sequence[int]) -> list[int]:
        """Those of `job_ids` someone asked to cancel."""
        if not job_ids:
            return []
        rows = await self._execute(
            "SELECT id FROM jobs WHERE cancel_requested AND id = ANY(%s)", (list(job_ids),)
        )
        return [row["id"] for row in rows]

    # ----- writing -------------------------------------------------------------------------------------------
    async def submit(
        self,
        kind: JobKind,
        owner: str,
        request: dict[str, Any],
        *,
        guild: str | None = None,
        channel: str | None = None,
        idempotency_key: str | None = None,
        batch_key: str = "",
        model: str | None = None,
        meta: dict[str, Any] | None = None,
        max_pending_per_user: int,
        max_queued: int,
    ) -> tuple[JobRecord, bool]:
        """Persist a new queued job; returns it and True, or the existing job with this key and False."""
        async with self._pool.connection() as connection, connection.transaction():
            # One submitter at a time checks the limits (a transaction-scoped lock), as SQLite's single writer.
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (0x5A10_0002,))
            if idempotency_key is not None:
                cursor = await connection.execute(
                    "SELECT * FROM jobs WHERE idempotency_key = %s", (idempotency_key,)
                )
                existing = await cursor.fetchone()
                if existing:
                    return _record(existing), False
            await _check_limits(connection, owner, max_pending_per_user, max_queued)
            cursor = await connection.execute(
                "INSERT INTO jobs (kind, owner, guild, channel, request, status, created_at, idempotency_key, "
                "batch_key, model, meta) VALUES (%s, %s, %s, %s, %s, 'queued', %s, %s, %s, %s, %s) RETURNING *",
                (
                    kind.value,
                    owner,
                    guild,
                    channel,
                    json.dumps(request),
                    time.time(),
                    idempotency_key,
                    batch_key,
                    model,
                    json.dumps(meta or {}),
                ),
            )
            return _record(await cursor.fetchone()), True

    async def transition(
        self, job_id: int, status: JobStatus, allowed_from: Sequence[JobStatus], **fields: Any
    ) -> JobRecord | None:
        """Move a job to `status` if it is in one of `allowed_from` (never out of a terminal state), and, for a
        job this store claimed, only while the row carries this claim's fence. As `JobStore.transition`."""
        sources = [s.value for s in allowed_from if not s.terminal]
        if not sources:
            return None
        values = dict(fields)
        for name in ("results", "deaths"):
            if name in values:
                values[name] = json.dumps(list(values[name]))
        for name in ("checkpoint", "meta"):
            if name in values:
                values[name] = json.dumps(values[name])
        if status.terminal:
            values.setdefault("finished_at", time.time())
        if status is not JobStatus.RUNNING:
            values.update(lease_until=None)
        columns = ", ".join(["status = %s", *(f"{name} = %s" for name in values)])
        sql = f"UPDATE jobs SET {columns} WHERE id = %s AND status = ANY(%s)"
        args: list[Any] = [status.value, *values.values(), job_id, sources]
        fence = self._fences.get(job_id)
        if fence is not None:
            sql += " AND (status <> 'running' OR fence = %s)"
            args.append(fence)
        rows = await self._execute(sql + " RETURNING *", args)
        if status is not JobStatus.RUNNING:  # out of this claim's hands (or it was lost already)
            self._fences.pop(job_id, None)
        return _record(rows[0]) if rows else None

    async def holds(self, job_id: int) -> bool:
        """Whether this store's claim of the job still stands (its row running under this claim's fence), as
        its worker is about to post the outcome. Asked until the database answers: a worker cut off from it
        waits for the link, and then hears whether its lease lapsed meanwhile (the job went to another
        worker, so its outcome is refused)."""
        fence = self._fences.get(job_id)
        if fence is None:
            return False
        from psycopg import OperationalError
        from psycopg_pool import PoolTimeout

        delay = 1.0
        while True:
            try:
                rows = await self._execute(
                    "SELECT 1 FROM jobs WHERE id = %s AND status = 'running' AND fence = %s", (job_id, fence)
                )
                break
            except (OperationalError, PoolTimeout) as exc:
                log.warning("job %d: the queue's database is unreachable (%s); trying again", job_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        if not rows:
            self._fences.pop(job_id, None)
        return bool(rows)

    async def passed_over(self, owners: Iterable[str]) -> dict[str, int]:
        """How many times in a row each of `owners` was passed over for model affinity, by any worker (the
        scheduler's `skipped`, shared: nobody is passed over twice, whichever workers pass them over)."""
        rows = await self._execute(
            "SELECT owner, times FROM passed_over WHERE owner = ANY(%s)", (sorted(set(owners)),)
        )
        return {row["owner"]: row["times"] for row in rows}

    async def claim(self, job_ids: Sequence[int], passed_over: str | None = None) -> list[JobRecord]:
        """Queued → running for those of these jobs no other worker holds or claims now (counting the attempt,
        with a lease and a new fence); returns them in the order asked.

        `passed_over`: the person whose turn these jobs take (model affinity, jobs/scheduling.py). Their count
        goes up in the same transaction, and only while it is below MAX_SKIPS: when another worker passed them
        over meanwhile, nothing is claimed (the run loop picks again, and their job goes first). The owners
        of the claimed jobs were served: their counts start again."""
        from psycopg import Rollback

        if not job_ids:
            return []
        rows: list[dict] = []
        async with self._pool.connection() as connection, connection.transaction():
            if passed_over is not None:
                cursor = await connection.execute(
                    "INSERT INTO passed_over AS p (owner, times) VALUES (%s, 1) ON CONFLICT (owner) "
                    "DO UPDATE SET times = p.times + 1 WHERE p.times < %s RETURNING times",
                    (passed_over, MAX_SKIPS),
                )
                if await cursor.fetchone() is None:
                    raise Rollback
            cursor = await connection.execute(
                f"UPDATE jobs SET status = 'running', started_at = {NOW}, attempts = attempts + 1, "
                "phase = 'starting', worker = %(worker)s, claim = %(claim)s, fence = fence + 1, "
                f"lease_until = {NOW} + %(lease)s "
                "WHERE id IN (SELECT id FROM jobs WHERE id = ANY(%(ids)s) AND status = 'queued' "
                "FOR UPDATE SKIP LOCKED) RETURNING *",
                {
                    "worker": self.worker_name,
                    "claim": self.claim_token,
                    "lease": self.lease_s,
                    "ids": list(job_ids),
                },
            )
            rows = await cursor.fetchall()
            if not rows:
                raise Rollback  # nobody was served, so nobody was passed over either
            owners = sorted({row["owner"] for row in rows})
            await connection.execute("DELETE FROM passed_over WHERE owner = ANY(%s)", (owners,))
        by_id = {row["id"]: row for row in rows}
        for row in rows:
            self._fences[row["id"]] = row["fence"]
        return [_record(by_id[job_id]) for job_id in job_ids if job_id in by_id]

    async def claim_next(self, loaded_model: str | None, max_images: int) -> list[JobRecord]:
        """The next batch in the fair order (jobs/fair_sql.py) whose lead no other worker holds, claimed with
        the mates it could get, in one transaction (jobs/pg_claims.py); [] when nothing is free."""
        holder = {"worker": self.worker_name, "claim": self.claim_token, "lease": self.lease_s}
        async with self._pool.connection() as connection, connection.transaction():
            rows = await claim_next(connection, _record, loaded_model, max_images, holder)
        for row in rows:
            self._fences[row["id"]] = row["fence"]
        return [_record(row) for row in rows]

    async def update_meta(self, job_id: int, **changes: Any) -> JobRecord | None:
        """Merge `changes` into a job's front-end details (in any state; a None value removes the key)."""
        removed = [key for key, value in changes.items() if value is None]
        kept = {key: value for key, value in changes.items() if value is not None}
        await self._execute(
            "UPDATE jobs SET meta = (meta || %s::jsonb) - %s::text[] WHERE id = %s",
            (json.dumps(kept), removed, job_id),
        )
        return await self.get(job_id)

    async def mark_delivered(self, job_id: int) -> None:
        """A front end has shown this finished job's outcome to its owner."""
        await self._execute("UPDATE jobs SET delivered_at = %s WHERE id = %s", (time.time(), job_id))

    async def request_cancel(self, job_id: int) -> bool:
        """Ask whichever worker runs this job to stop it (True if it was running)."""
        rows = await self._execute(
            "UPDATE jobs SET cancel_requested = TRUE WHERE id = %s AND status = 'running' RETURNING id",
            (job_id,),
        )
        return bool(rows)

    async def mark_waiting(self, phase: str) -> None:
        """Say on every queued job's row why it waits (`salon queue` shows it)."""
        await self._execute("UPDATE jobs SET phase = %s WHERE status = 'queued'", (phase,))

    async def clear_waiting(self, prefix: str) -> None:
        """Queued jobs whose phase starts with `prefix` no longer wait for that."""
        await self._execute(
            "UPDATE jobs SET phase = '' WHERE status = 'queued' AND starts_with(phase, %s)", (prefix,)
        )

    # ----- leases --------------------------------------------------------------------------------------------
    async def recover(self, max_attempts: int, point: Point | None = None) -> tuple[list[int], list[int]]:
        """Jobs whose lease expired go back to the queue, or fail (jobs/blame.py: a batch that died together
        is not blamed). Jobs other workers run under a live lease are theirs. Returns (requeued, failed)."""
        requeued, failed = [], []
        async with self._pool.connection() as connection, connection.transaction():
            cursor = await connection.execute(
                "SELECT id, attempts, cancel_requested, deaths, claim FROM jobs "
                f"WHERE status = 'running' AND lease_until < {NOW} FOR UPDATE SKIP LOCKED"
            )
            rows = await cursor.fetchall()
            for row in [row for row in rows if row["cancel_requested"]]:  # its owner wanted it stopped anyway
                await connection.execute(
                    "UPDATE jobs SET status = 'cancelled', phase = 'cancelled', finished_at = %s, "
                    "lease_until = NULL WHERE id = %s",
                    (time.time(), row["id"]),
                )
            rows = [row for row in rows if not row["cancel_requested"]]
            for row in rows:
                together = [other["id"] for other in rows if other["claim"] == row["claim"]]
                verdict = judge(row["id"], row["deaths"], together, None, max_attempts)
                attempts = row["attempts"] if verdict.counted else max(0, row["attempts"] - 1)
                deaths = json.dumps(list(verdict.deaths))
                if verdict.failed_reason is None:
                    await connection.execute(
                        "UPDATE jobs SET status = 'queued', phase = %s, attempts = %s, deaths = %s, solo = TRUE, "
                        "lease_until = NULL WHERE id = %s",
                        (REQUEUED if verdict.counted else REQUEUED_SOLO, attempts, deaths, row["id"]),
                    )
                    requeued.append(row["id"])
                else:
                    await connection.execute(
                        "UPDATE jobs SET status = 'failed', phase = 'failed', error = %s, finished_at = %s, "
                        "attempts = %s, deaths = %s, lease_until = NULL WHERE id = %s",
                        (verdict.failed_reason, time.time(), attempts, deaths, row["id"]),
                    )
                    failed.append(row["id"])
        for job_id in requeued:
            log.warning("job %d: its worker stopped renewing its lease; queued again", job_id)
        return requeued, failed

    async def renew_leases(self) -> int:
        """Extend the lease of every job this worker still holds; how many."""
        held = list(self._fences)
        if not held:
            return 0
        rows = await self._execute(
            f"UPDATE jobs SET lease_until = {NOW} + %s WHERE id = ANY(%s) AND status = 'running' AND claim = %s "
            "RETURNING id",
            (self.lease_s, held, self.claim_token),
        )
        return len(rows)

    # ----- workers -------------------------------------------------------------------------------------------
    async def start_worker(self, describe: Callable[[], tuple[str, list[str]]]) -> None:
        """Advertise this process as a worker and keep its heartbeat (leases, its row, expired leases) until
        `close`. `describe` gives its GPU ("cpu" without one) and loaded models."""
        await self._beat(describe)
        if self._heartbeat is None:
            self._heartbeat = asyncio.ensure_future(self._beat_forever(describe))

    async def _beat(self, describe: Callable[[], tuple[str, list[str]]]) -> None:
        gpu, models = describe()
        await self._execute(
            "INSERT INTO workers (claim, name, host, pid, gpu, models, started_at, heartbeat) "
            f"VALUES (%s, %s, %s, %s, %s, %s, {NOW}, {NOW}) ON CONFLICT (claim) DO UPDATE SET "
            "gpu = EXCLUDED.gpu, models = EXCLUDED.models, heartbeat = EXCLUDED.heartbeat",
            (self.claim_token, self.worker_name, socket.gethostname(), os.getpid(), gpu, json.dumps(models)),
        )
        await self.recover(self.max_attempts)  # first: a lease of ours that lapsed is lost, not renewed
        await self.renew_leases()

    async def _beat_forever(self, describe: Callable[[], tuple[str, list[str]]]) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._beat(describe)
            except Exception as exc:  # the database is away: the leases lapse, another worker takes over
                log.warning("worker heartbeat failed: %s", exc)

    async def live_workers(self) -> list[str]:
        """The names of the other processes' workers that are alive: not stopped, their heartbeat younger
        than `lease_s` (a one-shot command waits for one of them instead of running a worker itself)."""
        rows = await self._execute(
            f"SELECT name FROM workers WHERE stopped_at IS NULL AND claim <> %s AND heartbeat > {NOW} - %s "
            "ORDER BY heartbeat DESC",
            (self.claim_token, self.lease_s),
        )
        return [row["name"] for row in rows]

    async def workers(self, include_stopped: bool = False) -> list[dict[str, Any]]:
        """The workers (newest heartbeat first) with the jobs each runs now."""
        rows = await self._execute(
            "SELECT w.name, w.host, w.gpu, w.models, w.heartbeat, w.stopped_at, "
            f"{NOW} - w.heartbeat AS silent_s, "
            "COALESCE((SELECT array_agg(j.id ORDER BY j.id) FROM jobs j WHERE j.claim = w.claim "
            "AND j.status = 'running'), '{}') AS jobs FROM workers w "
            + ("" if include_stopped else "WHERE w.stopped_at IS NULL ")
            + "ORDER BY w.heartbeat DESC"
        )
        return rows


# As jobs/store.py: the submitter's jobs by index (`jobs_by_owner`), the queue's only up to the limit, in the
# order of the index of the queued jobs `jobs_queued_by_owner` (else a scan of the table or its primary key
# might read a long history of finished jobs before them).
COUNT_PENDING_OF_OWNER = "SELECT COUNT(*) AS n FROM jobs WHERE owner = %s AND status IN ('queued', 'running')"
COUNT_QUEUED_UPTO = (
    "SELECT COUNT(*) AS n FROM (SELECT 1 FROM jobs WHERE status = 'queued' "
    "ORDER BY owner, id LIMIT %s) AS upto"
)


async def _check_limits(connection, owner: str, max_pending_per_user: int, max_queued: int) -> None:
    cursor = await connection.execute(COUNT_PENDING_OF_OWNER, (owner,))
    pending = (await cursor.fetchone())["n"]
    cursor = await connection.execute(COUNT_QUEUED_UPTO, (max_queued,))
    queued = (await cursor.fetchone())["n"]
    if queued >= max_queued:  # refused: say how many wait
        cursor = await connection.execute("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'")
        queued = (await cursor.fetchone())["n"]
    check_queue_limits(pending, max_pending_per_user, queued, max_queued)


# The queue's statements are short and read a few index entries each, but the planner's estimates of the
# per-person statements (jobs/fair_heads.py: correlated counts over recursive CTEs) pass `jit_above_cost`:
# compiling them took 0.5 s of a 5 ms claim.
NO_JIT = "-c jit=off"


def _network_timeouts(lease_s: float) -> dict[str, int]:
    """libpq options so that a link cut mid-query fails that query within about a lease instead of TCP's
    quarter of an hour (the pool then opens new connections), and a dead server is noticed by keepalives."""
    lease_ms = max(1000, int(lease_s * 1000))
    return {
        "connect_timeout": max(10, int(lease_s)),
        "tcp_user_timeout": lease_ms,
        "keepalives": 1,
        "keepalives_idle": max(1, int(lease_s)),
        "keepalives_interval": max(1, int(lease_s / 3)),
        "keepalives_count": 3,
    }


def _record(row: dict[str, Any]) -> JobRecord:
    return record_from_row(row, lambda value: value)  # psycopg decodes jsonb columns itself


def _without_password(url: str) -> str:
    """The URL as it may be shown (a password replaced by ***)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
