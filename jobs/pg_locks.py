"""Session-level advisory locks on the shared PostgreSQL database: one process at a time does something.

Used for the bot's scheduler (digests, upkeep: bot/schedule.py) when `[database] url` is set: several bot
processes (shards) may run against one database, and only the one holding `SCHEDULE_LOCK` runs the schedule.
The composition root (app/bot.py) opens the lock and hands it to the bot, which never imports psycopg.

A lock is held by a connection of its own (`pg_try_advisory_lock`): it is released when that connection
ends, also when its process dies or loses the network, and another process's next try then takes it over.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)

SCHEDULE_LOCK = 0x5A10_0003  # the advisory lock key of the bot's scheduler ("Salon", 3)
CONNECT_TIMEOUT_S = 10


class SessionLock:
    """`await lock.acquire()` as often as wanted: True while this process holds the lock (it takes it when
    free, and checks its connection when held: a lost connection is a lost lock); `await close()` releases."""

    def __init__(self, url: str, key: int) -> None:
        self.url = url
        self.key = key
        self._connection = None
        self.held = False

    async def acquire(self) -> bool:
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                self.held = False
                self._connection = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                )
            if self.held:
                await self._connection.execute("SELECT 1")  # still connected, so still held
            else:
                cursor = await self._connection.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                self.held = bool((await cursor.fetchone())[0])
        except psycopg.Error as exc:  # the database is away: whatever was held is lost
            log.warning("advisory lock %#x: %s", self.key, exc)
            await self.close()
        return self.held

    async def close(self) -> None:
        """Release the lock (ending its connection)."""
        self.held = False
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


@asynccontextmanager
async def session_lock(url: str, key: int) -> AsyncIterator[SessionLock]:
    """A lock not tried yet, released on leaving."""
    lock = SessionLock(url, key)
    try:
        yield lock
    finally:
        await lock.close()
