"""The durable part of the queue: job rows in SQLite (WAL), written by one connection, one transaction each.

Writes are serialized `BEGIN IMMEDIATE` transactions, the schema numbered migrations (core/sqlite.py).
Status changes go through `transition`, which never leaves a terminal state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from core.errors import InvalidRequest
from core.sqlite import Database, Migration
from jobs import fair_heads
from jobs.blame import Point, judge
from jobs.fair_heads import index_sql
from jobs.fair_places import FOLLOWED_AT_MOST, places, places_of, rounds
from jobs.fair_sql import SQLITE, leads, mates, positions
from jobs.records import JobKind, JobRecord, JobStatus
from jobs.scheduling import MAX_SKIPS, Choice, FairScheduler, job_images

MIGRATIONS: tuple[Migration, ...] = (
    (
        "create jobs",
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            owner TEXT NOT NULL,
            guild TEXT,
            channel TEXT,
            request TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            phase TEXT NOT NULL DEFAULT '',
            progress REAL NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            results TEXT NOT NULL DEFAULT '[]',
            idempotency_key TEXT UNIQUE,
            attempts INTEGER NOT NULL DEFAULT 0,
            batch_key TEXT NOT NULL DEFAULT '',
            model TEXT
        );
        CREATE INDEX jobs_by_status ON jobs (status, id);
        CREATE INDEX jobs_by_owner ON jobs (owner, status);
        """,
    ),
    (
        "long jobs in slices, cancel requests",
        """
        ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
        ALTER TABLE jobs ADD COLUMN slices INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        "front-end details and delivery",
        """
        ALTER TABLE jobs ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE jobs ADD COLUMN delivered_at REAL;
        CREATE INDEX jobs_undelivered ON jobs (finished_at) WHERE delivered_at IS NULL;
        """,
    ),
    (
        "crash blame: solo jobs and where they died",
        """
        ALTER TABLE jobs ADD COLUMN solo INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN deaths TEXT NOT NULL DEFAULT '[]';
        """,
    ),
    (
        "the fair order person by person: indexes of the waiting people's lines (jobs/fair_heads.py)",
        index_sql(SQLITE),
    ),
)

SELECT_JOB = "SELECT * FROM jobs WHERE id = ?"
SELECT_QUEUED = "SELECT * FROM jobs WHERE status = 'queued' ORDER BY id"
# A submission's limits: the submitter's queued and running jobs (the index `jobs_by_owner`), then the queue's
# jobs up to the limit only (`jobs_by_status`): all of them are counted only to say how full a full queue is.
COUNT_PENDING_OF_OWNER = "SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ('queued', 'running')"
COUNT_QUEUED_UPTO = "SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE status = 'queued' LIMIT ?)"
COUNT_QUEUED = "SELECT COUNT(*) FROM jobs WHERE status = 'queued'"
SELECT_BY_KEY = "SELECT * FROM jobs WHERE idempotency_key = ?"
SELECT_POSITIONS = positions(SQLITE)
SELECT_ROUNDS, SELECT_PLACES = rounds(SQLITE), places(SQLITE)
# The fair order person by person (jobs/fair_heads.py; one worker, nothing locked: exact for `depth` ≥
# `limit`), or the whole queue ranked (jobs/fair_sql.py) when `fair_heads.WHOLE_QUEUE` says so.
SELECT_LEADS = {False: fair_heads.leads(SQLITE), True: leads(SQLITE)}
SELECT_LEAD = {False: fair_heads.leads(SQLITE, "ranked.id"), True: leads(SQLITE, "ranked.id")}  # narrow sort
SELECT_MATES = {False: fair_heads.mates(SQLITE), True: mates(SQLITE)}
INSERT_JOB = """
    INSERT INTO jobs (kind, owner, guild, channel, request, status, created_at, idempotency_key, batch_key, model,
                      meta)
    VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)
"""


class QueueLimit(InvalidRequest):
    """A submission refused because the user or the whole queue has too many jobs waiting."""


def check_queue_limits(pending: int, max_pending_per_user: int, queued: int, max_queued: int) -> None:
    """The queue's two limits, with the messages people see (the SQLite and the PostgreSQL store):
    `pending` is the submitter's queued and running jobs, `queued` every queued job."""
    if pending >= max_pending_per_user:
        raise QueueLimit(
            "queue",
            f"you already have {pending} jobs waiting or running, the most allowed per "
            "person; wait for one to finish or cancel one",
        )
    if queued >= max_queued:
        raise QueueLimit("queue", f"the queue is full ({queued} jobs waiting); try again in a few minutes")


class JobStore:
    """Async access to the jobs table. Open with `await JobStore.open(path)`, close with `await close()`."""

    exclusive_worker = True  # one worker per data folder (a lock file); jobs/pg_store.py has many

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.connection
        self.transaction = database.transaction

    @classmethod
    async def open(cls, path: Path) -> JobStore:
        return cls(await Database.open(path, MIGRATIONS))

    async def close(self) -> None:
        await self._database.close()

    # ----- reading -------------------------------------------------------------------------------------------
    async def get(self, job_id: int) -> JobRecord | None:
        async with self._db.execute(SELECT_JOB, (job_id,)) as cursor:
            row = await cursor.fetchone()
        return _record(row) if row else None

    async def queued(self) -> list[JobRecord]:
        async with self._db.execute(SELECT_QUEUED) as cursor:
            return [_record(row) for row in await cursor.fetchall()]

    async def leads(
        self, scheduler: FairScheduler, loaded_model: str | None, limit: int = 1
    ) -> list[tuple[JobRecord, str | None]]:
        """The first `limit` queued jobs in the order they would lead a batch (jobs/fair_sql.py), each with
        whom it passes over for model affinity; the turns are `scheduler`'s (this store's one worker's)."""
        args = {
            **_turns(scheduler),
            "loaded": loaded_model,
            "max_skips": MAX_SKIPS,
            "limit": limit,
            "depth": limit,
        }
        whole = fair_heads.WHOLE_QUEUE
        async with self._db.execute(SELECT_LEADS[whole], _without_depth(args, whole)) as cursor:
            return [(_record(row), row["passes_over"]) for row in await cursor.fetchall()]

    async def pick(
        self, scheduler: FairScheduler, loaded_model: str | None, max_images: int
    ) -> tuple[list[JobRecord], str | None]:
        """The next batch in the fair order, computed by SQLite (jobs/fair_sql.py; mates taken greedily within
        `max_images` by `Choice.batch`), and whom it passes over. Claims nothing and changes nothing."""
        args = {**_turns(scheduler), "loaded": loaded_model, "max_skips": MAX_SKIPS, "limit": 1, "depth": 1}
        whole = fair_heads.WHOLE_QUEUE
        async with self._db.execute(SELECT_LEAD[whole], _without_depth(args, whole)) as cursor:
            first = await cursor.fetchone()
        lead = await self.get(first["id"]) if first else None
        if lead is None:
            return [], None
        passes_over = first["passes_over"]
        batch = [lead]
        if lead.batch_key and not lead.solo:
            args = {**_turns(scheduler), "key": lead.batch_key, "lead": lead.id, "held": "[]"}
            args["room"] = max_images - job_images(lead)
            async with self._db.execute(SELECT_MATES[whole], args) as cursor:
                ids = [row[0] for row in await cursor.fetchall()]
            if ids:
                sql = f"SELECT * FROM jobs WHERE id IN ({', '.join('?' * len(ids))})"
                async with self._db.execute(sql, ids) as cursor:
                    found = {job.id: job for job in map(_record, await cursor.fetchall())}
                batch = Choice(lead, tuple(found[i] for i in ids if i in found)).batch(max_images)
        return batch, passes_over

    async def positions(self, job_ids: Sequence[int] | None, scheduler: FairScheduler) -> dict[int, int]:
        """The places in line (1 = next) of those of `job_ids` that are queued (None: all), in `scheduler`'s
        turns (jobs/fair_sql.py): counted from each job's round (jobs/fair_places.py), or every queued job
        ranked for None, for more than `FOLLOWED_AT_MOST` or when `fair_heads.WHOLE_QUEUE` says so."""
        if job_ids is not None and not job_ids:
            return {}
        if job_ids is not None and len(job_ids) <= FOLLOWED_AT_MOST and not fair_heads.WHOLE_QUEUE:
            return await places_of(
                self._rows, SELECT_ROUNDS, SELECT_PLACES, job_ids, json.dumps, _turns(scheduler)
            )
        args = {**_turns(scheduler), "ids": None if job_ids is None else json.dumps(list(job_ids))}
        async with self._db.execute(SELECT_POSITIONS, args) as cursor:
            return {row[0]: row[1] for row in await cursor.fetchall()}

    async def _rows(self, sql: str, args: dict[str, Any]) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

    async def has_queued(self, besides: Sequence[int] = ()) -> bool:
        """Whether any job other than `besides` waits."""
        others = ", ".join("?" * len(besides))
        sql = f"SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued' AND id NOT IN ({others}))"
        async with self._db.execute(sql, tuple(besides)) as cursor:
            return bool((await cursor.fetchone())[0])

    async def recent(self, limit: int = 50, statuses: Iterable[JobStatus] | None = None) -> list[JobRecord]:
        """The newest jobs, optionally only those in `statuses`."""
        where, args = "", []
        if statuses is not None:
            wanted = list(statuses)
            where = f"WHERE status IN ({', '.join('?' * len(wanted))})"
            args = [s.value for s in wanted]
        sql = f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?"
        async with self._db.execute(sql, (*args, limit)) as cursor:
            return [_record(row) for row in await cursor.fetchall()]

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
        async with self.transaction() as db:
            if idempotency_key is not None:
                async with db.execute(SELECT_BY_KEY, (idempotency_key,)) as cursor:
                    existing = await cursor.fetchone()
                if existing:
                    return _record(existing), False
            await self._check_limits(owner, max_pending_per_user, max_queued)
            args = (
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
            )
            cursor = await db.execute(INSERT_JOB, args)
            job_id = cursor.lastrowid
        record = await self.get(job_id)
        assert record is not None
        return record, True

    async def _check_limits(self, owner: str, max_pending_per_user: int, max_queued: int) -> None:
        async with self._db.execute(COUNT_PENDING_OF_OWNER, (owner,)) as cursor:
            pending = (await cursor.fetchone())[0]
        async with self._db.execute(COUNT_QUEUED_UPTO, (max_queued,)) as cursor:
            queued = (await cursor.fetchone())[0]
        if queued >= max_queued:  # refused: say how many wait
            async with self._db.execute(COUNT_QUEUED) as cursor:
                queued = (await cursor.fetchone())[0]
        check_queue_limits(pending, max_pending_per_user, queued, max_queued)

    async def transition(
        self, job_id: int, status: JobStatus, allowed_from: Sequence[JobStatus], **fields: Any
    ) -> JobRecord | None:
        """Move a job to `status` if it is in one of `allowed_from` (never out of a terminal state).

        `fields` sets other columns (phase, progress, error, results, started_at, finished_at, attempts,
        checkpoint, slices, meta, deaths).
        Returns the updated record, or None when the job was not in an allowed state.
        """
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
        columns = ", ".join(["status = ?", *(f"{name} = ?" for name in values)])
        sql = f"UPDATE jobs SET {columns} WHERE id = ? AND status IN ({', '.join('?' * len(sources))})"
        async with self.transaction() as db:
            cursor = await db.execute(sql, (status.value, *values.values(), job_id, *sources))
            changed = cursor.rowcount
        return await self.get(job_id) if changed else None

    async def claim(self, job_ids: Sequence[int]) -> list[JobRecord]:
        """Queued → running for these jobs (counting the attempt); returns those that were still queued."""
        now = time.time()
        claimed = []
        async with self.transaction() as db:
            for job_id in job_ids:
                cursor = await db.execute(
                    "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, phase = 'starting' "
                    "WHERE id = ? AND status = 'queued'",
                    (now, job_id),
                )
                if cursor.rowcount:
                    claimed.append(job_id)
        return [record for job_id in claimed if (record := await self.get(job_id)) is not None]

    async def update_meta(self, job_id: int, **changes: Any) -> JobRecord | None:
        """Merge `changes` into a job's front-end details (in any state)."""
        async with self.transaction() as db:
            await db.execute(
                "UPDATE jobs SET meta = json_patch(meta, ?) WHERE id = ?", (json.dumps(changes), job_id)
            )
        return await self.get(job_id)

    async def mark_delivered(self, job_id: int) -> None:
        """A front end has shown this finished job's outcome to its owner."""
        async with self.transaction() as db:
            await db.execute("UPDATE jobs SET delivered_at = ? WHERE id = ?", (time.time(), job_id))

    async def undelivered(self, since: float = 0.0, guilds_only: bool = True) -> list[JobRecord]:
        """Jobs finished after `since` whose outcome no front end has shown yet (oldest first)."""
        sql = (
            "SELECT * FROM jobs WHERE delivered_at IS NULL AND status IN ('done', 'failed', 'cancelled') "
            "AND finished_at >= ?" + (" AND guild IS NOT NULL" if guilds_only else "") + " ORDER BY id"
        )
        async with self._db.execute(sql, (since,)) as cursor:
            return [_record(row) for row in await cursor.fetchall()]

    async def pending(self, guilds_only: bool = True) -> list[JobRecord]:
        """Queued and running jobs, oldest first."""
        sql = (
            "SELECT * FROM jobs WHERE status IN ('queued', 'running')"
            + (" AND guild IS NOT NULL" if guilds_only else "")
            + " ORDER BY id"
        )
        async with self._db.execute(sql) as cursor:
            return [_record(row) for row in await cursor.fetchall()]

    async def request_cancel(self, job_id: int) -> bool:
        """Ask whichever process runs this job to stop it (True if it was running)."""
        async with self.transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,)
            )
            return cursor.rowcount > 0

    async def cancel_requests(self, job_ids: Sequence[int]) -> list[int]:
        """Those of `job_ids` someone asked to cancel."""
        if not job_ids:
            return []
        sql = f"SELECT id FROM jobs WHERE cancel_requested = 1 AND id IN ({', '.join('?' * len(job_ids))})"
        async with self._db.execute(sql, tuple(job_ids)) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def mark_waiting(self, phase: str) -> None:
        """Say on every queued job's row why it waits (`salon queue` shows it)."""
        async with self.transaction() as db:
            await db.execute("UPDATE jobs SET phase = ? WHERE status = 'queued'", (phase,))

    async def clear_waiting(self, prefix: str) -> None:
        """Queued jobs whose phase starts with `prefix` no longer wait for that."""
        async with self.transaction() as db:
            await db.execute(
                "UPDATE jobs SET phase = '' WHERE status = 'queued' AND substr(phase, 1, ?) = ?",
                (len(prefix), prefix),
            )

    async def recover(self, max_attempts: int, point: Point | None = None) -> tuple[list[int], list[int]]:
        """After a restart: jobs left running go back to the queue, or fail (see jobs/blame.py for who is
        blamed, judged from `point`, where the dead worker was). Returns (requeued, failed) job ids."""
        async with self.transaction() as db:
            async with db.execute(
                "SELECT id, attempts, cancel_requested, deaths FROM jobs WHERE status = 'running'"
            ) as cursor:
                rows = await cursor.fetchall()
            for row in rows:
                if row["cancel_requested"]:  # its owner wanted it stopped anyway
                    await db.execute(
                        "UPDATE jobs SET status = 'cancelled', phase = 'cancelled', finished_at = ? WHERE id = ?",
                        (time.time(), row["id"]),
                    )
            rows = [row for row in rows if not row["cancel_requested"]]
            running = [row["id"] for row in rows]
            requeued, failed = [], []
            for row in rows:
                verdict = judge(row["id"], json.loads(row["deaths"]), running, point, max_attempts)
                attempts = row["attempts"] if verdict.counted else max(0, row["attempts"] - 1)
                deaths = json.dumps(list(verdict.deaths))
                if verdict.failed_reason is None:
                    phase = (
                        "the worker died during this job; queued again"
                        if verdict.counted
                        else "the worker died during its batch; queued again to run alone"
                    )
                    await db.execute(
                        "UPDATE jobs SET status = 'queued', phase = ?, attempts = ?, deaths = ?, solo = 1 "
                        "WHERE id = ?",
                        (phase, attempts, deaths, row["id"]),
                    )
                    requeued.append(row["id"])
                else:
                    await db.execute(
                        "UPDATE jobs SET status = 'failed', phase = 'failed', error = ?, finished_at = ?, "
                        "attempts = ?, deaths = ? WHERE id = ?",
                        (verdict.failed_reason, time.time(), attempts, deaths, row["id"]),
                    )
                    failed.append(row["id"])
        return requeued, failed


def _without_depth(args: dict[str, Any], whole: bool) -> dict[str, Any]:
    """The whole-queue statements take no `depth` (SQLite refuses a named parameter it does not use)."""
    return {name: value for name, value in args.items() if name != "depth"} if whole else args


def _turns(scheduler: FairScheduler) -> dict[str, str]:
    """A scheduler's turns and pass-overs as the JSON objects SQLite's fair order reads."""
    return {"served": json.dumps(scheduler.served_at), "skipped": json.dumps(scheduler.skipped)}


def _record(row: aiosqlite.Row) -> JobRecord:
    return record_from_row(row, json.loads)


def record_from_row(row: Any, decode: Callable[[Any], Any]) -> JobRecord:
    """A jobs row as a record, for both stores: `decode` reads a JSON column (SQLite keeps JSON as text,
    PostgreSQL hands back the value already decoded)."""
    checkpoint = row["checkpoint"]
    return JobRecord(
        id=row["id"],
        kind=JobKind(row["kind"]),
        owner=row["owner"],
        guild=row["guild"],
        channel=row["channel"],
        request=decode(row["request"]),
        status=JobStatus(row["status"]),
        phase=row["phase"],
        progress=row["progress"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        results=tuple(decode(row["results"])),
        idempotency_key=row["idempotency_key"],
        attempts=row["attempts"],
        batch_key=row["batch_key"],
        model=row["model"],
        checkpoint=decode(checkpoint) if checkpoint not in (None, "") else None,
        slices=row["slices"],
        meta=decode(row["meta"]),
        delivered_at=row["delivered_at"],
        solo=bool(row["solo"]),
        deaths=tuple(decode(row["deaths"])),
        worker=row["worker"] if "worker" in row.keys() else None,  # a PostgreSQL queue names its workers
    )
