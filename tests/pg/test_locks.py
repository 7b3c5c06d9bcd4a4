"""The scheduler's advisory lock (jobs/pg_locks.py): one holder at a time, taken over when the holder's
connection ends."""

from __future__ import annotations

import asyncio
import time

from jobs.pg_locks import SCHEDULE_LOCK, SessionLock, session_lock

TAKEOVER_S = 30.0  # the server ends a closed session's backend (and frees its locks) a moment after the close


async def taken(lock: SessionLock) -> bool:
    """Whether `lock` gets the lock once the server has ended its last holder's session, as the scheduler
    tries again until it does."""
    deadline = time.monotonic() + TAKEOVER_S
    while not await lock.acquire():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_only_one_holder_and_the_other_takes_over_when_it_closes(postgres_url):
    async with (
        session_lock(postgres_url, SCHEDULE_LOCK) as first,
        session_lock(postgres_url, SCHEDULE_LOCK) as second,
    ):
        assert await first.acquire()
        assert not await second.acquire()
        assert await first.acquire() and not await second.acquire()  # held: asking again keeps it
        await first.close()
        assert await taken(second)
        assert not await first.acquire()  # the first reconnects and finds it taken


async def test_a_lost_connection_is_a_lost_lock(postgres_url):
    holder, other = SessionLock(postgres_url, SCHEDULE_LOCK), SessionLock(postgres_url, SCHEDULE_LOCK)
    try:
        assert await holder.acquire() and not await other.acquire()
        pid = (await (await holder._connection.execute("SELECT pg_backend_pid()")).fetchone())[0]
        await other._connection.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # waits for its end
        assert await other.acquire()  # the server ended the holder's session: the lock is free
        assert not await holder.acquire()  # the holder notices, reconnects and finds it taken
    finally:
        await holder.close()
        await other.close()
