"""The community store, `<data_dir>/community.db`: what a community keeps between restarts.

Server and channel settings (`/settings`, parsed by community/settings.py), scheduled posts and digests
(`/gallery digest`), web-gallery links (community/web_links.py) and `/browse` sessions. The third SQLite store
beside the catalog and the job queue, on the same layer (core/sqlite.py). With `[database] url` set, the same
interface on PostgreSQL is community/pg_store.py (it shares the checks below: `check_setting`, `overlay`,
`token_parts`).
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from community.settings import SETTINGS, CommunitySettings
from community.web_links import sign_token
from core.errors import InvalidRequest
from core.sqlite import Database, Migration

MIGRATIONS: tuple[Migration, ...] = (
    (
        "create community settings and browse sessions",
        """
        CREATE TABLE community_settings (
            guild TEXT NOT NULL,
            channel TEXT NOT NULL DEFAULT '',
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            set_by TEXT NOT NULL,
            set_at REAL NOT NULL,
            PRIMARY KEY (guild, channel, key)
        );
        CREATE TABLE browse_sessions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild TEXT NOT NULL,
            channel TEXT NOT NULL,
            user TEXT NOT NULL,
            options TEXT NOT NULL,
            page INTEGER NOT NULL DEFAULT 1,
            selected INTEGER,
            message TEXT,
            created REAL NOT NULL
        )
        """,
    ),
    (
        "schedules and digests",
        """
        CREATE TABLE schedules (
            guild TEXT NOT NULL,
            kind TEXT NOT NULL,
            cron TEXT NOT NULL,
            options TEXT NOT NULL DEFAULT '{}',
            set_by TEXT NOT NULL,
            set_at REAL NOT NULL,
            last_run REAL,
            PRIMARY KEY (guild, kind)
        );
        CREATE TABLE digests (
            guild TEXT NOT NULL,
            period TEXT NOT NULL,
            channel TEXT NOT NULL,
            message TEXT,
            claimed_at REAL NOT NULL,
            PRIMARY KEY (guild, period)
        )
        """,
    ),
    (
        "web gallery links",
        """
        CREATE TABLE web_links (
            guild TEXT PRIMARY KEY,
            nonce TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at REAL NOT NULL
        )
        """,
    ),
)


@dataclass(frozen=True)
class BrowseSession:
    """A `/browse` message's state, so its buttons keep working after a restart."""

    id: int
    guild: str
    channel: str
    user: str
    options: dict[str, Any]
    page: int
    selected: int | None
    message: str | None = None


def check_setting(key: str, value: str) -> Any:
    """The parsed value of one setting as a moderator typed it (InvalidRequest naming the key otherwise)."""
    check_key(key)
    return SETTINGS[key].parse(key, value)


def check_key(key: str) -> None:
    if key not in SETTINGS:
        raise InvalidRequest("key", f"{key!r} is not a setting; one of: {', '.join(SETTINGS)}")


def overlay(guild_values: dict[str, Any], channel_values: dict[str, Any] | None) -> CommunitySettings:
    """What applies in a channel: the guild's values, then the channel's (if any) over them."""
    values = {**guild_values, **(channel_values or {})}
    for key in ("banned_words", "nsfw_words"):
        if key in values:
            values[key] = tuple(values[key])
    return CommunitySettings(**values)


def token_parts(token: str, secret: bytes) -> tuple[str, str] | None:
    """The guild and nonce of a well-formed web token signed with `secret` (None: malformed or forged); the
    store then checks the nonce is still the guild's."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() and parts[0] != "local":
        return None
    guild, nonce, _ = parts
    if not hmac.compare_digest(sign_token(guild, nonce, secret), token):
        return None
    return guild, nonce


class CommunityStore:
    """Settings and browse sessions in `<data_dir>/community.db`. Open with `await CommunityStore.open(path)`."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.connection

    @classmethod
    async def open(cls, path: Path) -> CommunityStore:
        return cls(await Database.open(path, MIGRATIONS))

    async def close(self) -> None:
        await self._database.close()

    # ----- schedules and digests -------------------------------------------------------------------------------
    async def set_schedule(
        self, guild: str, kind: str, cron: str, user: str, options: dict | None = None
    ) -> None:
        async with self._database.transaction() as db:
            await db.execute(
                "INSERT INTO schedules (guild, kind, cron, options, set_by, set_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (guild, kind) DO UPDATE SET cron = excluded.cron, options = excluded.options, "
                "set_by = excluded.set_by, set_at = excluded.set_at",
                (guild, kind, cron, json.dumps(options or {}), user, time.time()),
            )

    async def drop_schedule(self, guild: str, kind: str) -> bool:
        async with self._database.transaction() as db:
            cursor = await db.execute("DELETE FROM schedules WHERE guild = ? AND kind = ?", (guild, kind))
            return cursor.rowcount > 0

    async def schedules(self) -> list[dict[str, Any]]:
        async with self._db.execute("SELECT * FROM schedules ORDER BY guild, kind") as cursor:
            rows = await cursor.fetchall()
        return [{**dict(row), "options": json.loads(row["options"])} for row in rows]

    async def ran(self, guild: str, kind: str, when: float) -> None:
        async with self._database.transaction() as db:
            await db.execute(
                "UPDATE schedules SET last_run = ? WHERE guild = ? AND kind = ?", (when, guild, kind)
            )

    async def digest(self, guild: str, period: str) -> dict[str, Any] | None:
        async with self._db.execute(
            "SELECT * FROM digests WHERE guild = ? AND period = ?", (guild, period)
        ) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row else None

    async def claim_digest(self, guild: str, period: str, channel: str) -> bool:
        """Note that a digest is about to be posted (before posting: a crash after it leaves this trace); True
        for the one call that claimed it, False when it was claimed already."""
        async with self._database.transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO digests (guild, period, channel, claimed_at) VALUES (?, ?, ?, ?)",
                (guild, period, channel, time.time()),
            )
            return cursor.rowcount > 0

    async def record_digest(self, guild: str, period: str, message: str) -> None:
        async with self._database.transaction() as db:
            await db.execute(
                "UPDATE digests SET message = ? WHERE guild = ? AND period = ?", (message, guild, period)
            )

    # ----- web gallery links ----------------------------------------------------------------------------------
    async def web_link(self, guild: str, user: str, secret: bytes, renew: bool = False) -> str:
        """The guild's signed web-gallery token (made on first use; `renew` revokes the old one)."""
        async with self._db.execute("SELECT nonce FROM web_links WHERE guild = ?", (guild,)) as cursor:
            row = await cursor.fetchone()
        if row is None or renew:
            nonce = secrets.token_urlsafe(12)
            async with self._database.transaction() as db:
                await db.execute(
                    "INSERT INTO web_links VALUES (?, ?, ?, ?) ON CONFLICT (guild) DO UPDATE SET "
                    "nonce = excluded.nonce, created_by = excluded.created_by, created_at = excluded.created_at",
                    (guild, nonce, user, time.time()),
                )
        else:
            nonce = row[0]
        return sign_token(guild, nonce, secret)

    async def revoke_web_link(self, guild: str) -> bool:
        async with self._database.transaction() as db:
            cursor = await db.execute("DELETE FROM web_links WHERE guild = ?", (guild,))
            return cursor.rowcount > 0

    async def guild_of_token(self, token: str, secret: bytes) -> str | None:
        """The guild a web token opens, or None (malformed, forged, revoked or replaced)."""
        parts = token_parts(token, secret)
        if parts is None:
            return None
        guild, nonce = parts
        async with self._db.execute("SELECT nonce FROM web_links WHERE guild = ?", (guild,)) as cursor:
            row = await cursor.fetchone()
        return guild if row is not None and hmac.compare_digest(row[0], nonce) else None

    # ----- settings -------------------------------------------------------------------------------------------
    async def set(self, guild: str, key: str, value: str, user: str, channel: str | None = None) -> Any:
        """Check and store one setting (for the whole guild, or one channel); returns the parsed value."""
        parsed = check_setting(key, value)
        async with self._database.transaction() as db:
            await db.execute(
                "INSERT INTO community_settings VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild, channel, key) "
                "DO UPDATE SET value = excluded.value, set_by = excluded.set_by, set_at = excluded.set_at",
                (guild, channel or "", key, json.dumps(parsed), user, time.time()),
            )
        return parsed

    async def reset(self, guild: str, key: str, channel: str | None = None) -> bool:
        """Remove one setting (the guild's or the machine's default applies again); True if it was set."""
        check_key(key)
        async with self._database.transaction() as db:
            cursor = await db.execute(
                "DELETE FROM community_settings WHERE guild = ? AND channel = ? AND key = ?",
                (guild, channel or "", key),
            )
            return cursor.rowcount > 0

    async def values(self, guild: str, channel: str | None = None) -> dict[str, Any]:
        """The values set for the guild (channel None) or set for one channel only."""
        async with self._db.execute(
            "SELECT key, value FROM community_settings WHERE guild = ? AND channel = ?",
            (guild, channel or ""),
        ) as cursor:
            return {row["key"]: json.loads(row["value"]) for row in await cursor.fetchall()}

    async def effective(self, guild: str | None, channel: str | None = None) -> CommunitySettings:
        """What applies in this channel: the guild's values, then the channel's over them."""
        if guild is None:
            return CommunitySettings()
        return overlay(await self.values(guild), await self.values(guild, channel) if channel else None)

    # ----- browse sessions --------------------------------------------------------------------------------------
    async def new_browse(self, guild: str, channel: str, user: str, options: dict[str, Any]) -> BrowseSession:
        async with self._database.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO browse_sessions (guild, channel, user, options, created) VALUES (?, ?, ?, ?, ?)",
                (guild, channel, user, json.dumps(options), time.time()),
            )
            session_id = cursor.lastrowid
        session = await self.browse(session_id)
        assert session is not None
        return session

    async def browse(self, session_id: int) -> BrowseSession | None:
        async with self._db.execute("SELECT * FROM browse_sessions WHERE id = ?", (session_id,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return BrowseSession(
            row["id"],
            row["guild"],
            row["channel"],
            row["user"],
            json.loads(row["options"]),
            row["page"],
            row["selected"],
            row["message"],
        )

    async def move_browse(
        self, session_id: int, page: int, selected: int | None, message: str | None = None
    ) -> None:
        """Remember the page and selected image shown (and the message showing them)."""
        async with self._database.transaction() as db:
            await db.execute(
                "UPDATE browse_sessions SET page = ?, selected = ?, message = COALESCE(?, message) WHERE id = ?",
                (page, selected, message, session_id),
            )
