"""The community store on PostgreSQL: the interface of `CommunityStore` (community/store.py) in the shared database.

Chosen by the composition root (app/stores.py) when `[database] url` is set, so every bot, web and API process
against that database reads the same settings, schedules, digests, web links and browse sessions. The checks
(setting values, the channel overlay, web tokens) are community/store.py's; only the SQL differs. A digest's
claim is one `INSERT … ON CONFLICT DO NOTHING`: of several processes claiming it at once, exactly one wins.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from psycopg.types.json import Jsonb

from community.pg_schema import CommunityDatabaseUnavailable, migrate
from community.settings import CommunitySettings
from community.store import BrowseSession, check_key, check_setting, overlay, token_parts
from community.web_links import sign_token

CONNECT_TIMEOUT_S = 30.0  # opening the store waits this long for the server (it may be starting too)


class PgCommunityStore:
    """Settings and browse sessions in PostgreSQL. Open with `await PgCommunityStore.open(url)`."""

    def __init__(self, pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PgCommunityStore:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        pool = AsyncConnectionPool(
            url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True, "row_factory": dict_row}
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            async with pool.connection() as connection:
                await migrate(connection)
        except PoolTimeout:
            await pool.close()
            raise CommunityDatabaseUnavailable(
                f"cannot reach the community store's database ({without_password(url)}) within "
                f"{CONNECT_TIMEOUT_S:.0f} s: is PostgreSQL running, and [database] url right?"
            ) from None
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def _execute(self, sql: str, args: tuple | dict = ()) -> list[dict[str, Any]]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, args)
            return await cursor.fetchall() if cursor.description else []

    # ----- schedules and digests -------------------------------------------------------------------------------
    async def set_schedule(
        self, guild: str, kind: str, cron: str, user: str, options: dict | None = None
    ) -> None:
        await self._execute(
            "INSERT INTO schedules (guild, kind, cron, options, set_by, set_at) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (guild, kind) DO UPDATE SET cron = EXCLUDED.cron, options = EXCLUDED.options, "
            "set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at",
            (guild, kind, cron, Jsonb(options or {}), user, time.time()),
        )

    async def drop_schedule(self, guild: str, kind: str) -> bool:
        rows = await self._execute(
            "DELETE FROM schedules WHERE guild = %s AND kind = %s RETURNING guild", (guild, kind)
        )
        return bool(rows)

    async def schedules(self) -> list[dict[str, Any]]:
        return await self._execute("SELECT * FROM schedules ORDER BY guild, kind")

    async def ran(self, guild: str, kind: str, when: float) -> None:
        await self._execute(
            "UPDATE schedules SET last_run = %s WHERE guild = %s AND kind = %s", (when, guild, kind)
        )

    async def digest(self, guild: str, period: str) -> dict[str, Any] | None:
        rows = await self._execute("SELECT * FROM digests WHERE guild = %s AND period = %s", (guild, period))
        return rows[0] if rows else None

    async def claim_digest(self, guild: str, period: str, channel: str) -> bool:
        """Note that a digest is about to be posted (before posting: a crash after it leaves this trace); True
        for the one call, of any process, that claimed it."""
        rows = await self._execute(
            "INSERT INTO digests (guild, period, channel, claimed_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (guild, period) DO NOTHING RETURNING guild",
            (guild, period, channel, time.time()),
        )
        return bool(rows)

    async def record_digest(self, guild: str, period: str, message: str) -> None:
        await self._execute(
            "UPDATE digests SET message = %s WHERE guild = %s AND period = %s", (message, guild, period)
        )

    # ----- web gallery links ----------------------------------------------------------------------------------
    async def web_link(self, guild: str, user: str, secret: bytes, renew: bool = False) -> str:
        """The guild's signed web-gallery token (made on first use; `renew` revokes the old one)."""
        nonce = secrets.token_urlsafe(12)
        if renew:
            sql = (
                "INSERT INTO web_links VALUES (%s, %s, %s, %s) ON CONFLICT (guild) DO UPDATE SET "
                "nonce = EXCLUDED.nonce, created_by = EXCLUDED.created_by, created_at = EXCLUDED.created_at "
                "RETURNING nonce"
            )
        else:  # a link made at the same moment by another process wins: both hand out the same one
            sql = (
                "WITH made AS (INSERT INTO web_links VALUES (%s, %s, %s, %s) ON CONFLICT (guild) DO NOTHING "
                "RETURNING nonce) SELECT nonce FROM made UNION ALL SELECT nonce FROM web_links "
                "WHERE guild = %s AND NOT EXISTS (SELECT 1 FROM made)"
            )
        args = (guild, nonce, user, time.time()) + (() if renew else (guild,))
        rows = await self._execute(sql, args)
        while not rows:  # another process's link came between this statement's snapshot and its insert
            rows = await self._execute(sql, args)
        return sign_token(guild, rows[0]["nonce"], secret)

    async def revoke_web_link(self, guild: str) -> bool:
        return bool(await self._execute("DELETE FROM web_links WHERE guild = %s RETURNING guild", (guild,)))

    async def guild_of_token(self, token: str, secret: bytes) -> str | None:
        """The guild a web token opens, or None (malformed, forged, revoked or replaced)."""
        parts = token_parts(token, secret)
        if parts is None:
            return None
        guild, nonce = parts
        rows = await self._execute("SELECT nonce FROM web_links WHERE guild = %s", (guild,))
        return guild if rows and hmac.compare_digest(rows[0]["nonce"], nonce) else None

    # ----- settings -------------------------------------------------------------------------------------------
    async def set(self, guild: str, key: str, value: str, user: str, channel: str | None = None) -> Any:
        """Check and store one setting (for the whole guild, or one channel); returns the parsed value."""
        parsed = check_setting(key, value)
        await self._execute(
            "INSERT INTO community_settings VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (guild, channel, key) "
            "DO UPDATE SET value = EXCLUDED.value, set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at",
            (guild, channel or "", key, Jsonb(parsed), user, time.time()),
        )
        return parsed

    async def reset(self, guild: str, key: str, channel: str | None = None) -> bool:
        """Remove one setting (the guild's or the machine's default applies again); True if it was set."""
        check_key(key)
        rows = await self._execute(
            "DELETE FROM community_settings WHERE guild = %s AND channel = %s AND key = %s RETURNING key",
            (guild, channel or "", key),
        )
        return bool(rows)

    async def values(self, guild: str, channel: str | None = None) -> dict[str, Any]:
        """The values set for the guild (channel None) or set for one channel only."""
        rows = await self._execute(
            "SELECT key, value FROM community_settings WHERE guild = %s AND channel = %s",
            (guild, channel or ""),
        )
        return {row["key"]: row["value"] for row in rows}

    async def effective(self, guild: str | None, channel: str | None = None) -> CommunitySettings:
        """What applies in this channel: the guild's values, then the channel's over them."""
        if guild is None:
            return CommunitySettings()
        return overlay(await self.values(guild), await self.values(guild, channel) if channel else None)

    # ----- browse sessions --------------------------------------------------------------------------------------
    async def new_browse(self, guild: str, channel: str, user: str, options: dict[str, Any]) -> BrowseSession:
        [row] = await self._execute(
            "INSERT INTO browse_sessions (guild, channel, owner, options, created) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING *",
            (guild, channel, user, Jsonb(options), time.time()),
        )
        return _session(row)

    async def browse(self, session_id: int) -> BrowseSession | None:
        rows = await self._execute("SELECT * FROM browse_sessions WHERE id = %s", (session_id,))
        return _session(rows[0]) if rows else None

    async def move_browse(
        self, session_id: int, page: int, selected: int | None, message: str | None = None
    ) -> None:
        """Remember the page and selected image shown (and the message showing them)."""
        await self._execute(
            "UPDATE browse_sessions SET page = %s, selected = %s, message = COALESCE(%s, message) WHERE id = %s",
            (page, selected, message, session_id),
        )


def _session(row: dict[str, Any]) -> BrowseSession:
    return BrowseSession(
        row["id"],
        row["guild"],
        row["channel"],
        row["owner"],
        row["options"],
        row["page"],
        row["selected"],
        row["message"],
    )


def without_password(url: str) -> str:
    """The URL as it may be shown (a password replaced by ***)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
