"""Per-guild and per-channel settings of a community (`/settings`), and how they shape a request.

A guild's values apply in all its channels; a channel's own values win over the guild's. Limits may only
lower the machine's limits (config.Limits), never raise them. Values are kept as text in SQLite
(`<data_dir>/community.db`), parsed by the same `SettingSpec` that checks what a moderator types.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalog.sqlite import Database, Migration
from config import Limits
from engine.errors import InvalidRequest
from engine.requests import GenerationRequest

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

NSFW_POLICIES = ("age-restricted", "allow")


def _positive_int(option: str, text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise InvalidRequest(option, f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _number(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(option, f"{text!r} is not a number") from None
    if not value > 0:
        raise InvalidRequest(option, f"{text!r} is not above 0")
    return value


def _count(option: str, text: str) -> int:
    if not text.strip().isdigit() or int(text) > 1_000_000:
        raise InvalidRequest(option, f"{text!r} is not a whole number from 0 (off) up")
    return int(text)


def _rank(option: str, text: str) -> float:
    value = _number(option, text)
    if not 1 <= value <= 5:
        raise InvalidRequest(option, f"{text!r} is not a mean rank from 1 to 5")
    return value


def _words(option: str, text: str) -> list[str]:
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    if any(len(word) > 100 for word in words) or len(words) > 500:
        raise InvalidRequest(option, "at most 500 comma-separated words of up to 100 characters")
    return words


def _text(option: str, text: str) -> str:
    if len(text) > 1000:
        raise InvalidRequest(option, "at most 1000 characters")
    return text.strip()


def _policy(option: str, text: str) -> str:
    value = text.strip().lower()
    if value not in NSFW_POLICIES:
        raise InvalidRequest(option, f"{text!r} is not one of: {', '.join(NSFW_POLICIES)}")
    return value


def _channel(option: str, text: str) -> str:
    match = re.fullmatch(r"\s*<?#?(\d{1,20})>?\s*", text)
    if match is None:
        raise InvalidRequest(option, f"{text!r} is not a channel (mention it, e.g. #gallery, or give its id)")
    return match.group(1)


def _size(option: str, text: str) -> str:
    from commands.options import parse_size

    width, height = parse_size(text)
    if width % 8 or height % 8 or min(width, height) < 64:
        raise InvalidRequest(option, f"{text!r}: both sides must be multiples of 8, at least 64")
    return f"{width}x{height}"


@dataclass(frozen=True)
class SettingSpec:
    key: str
    description: str
    parse: Callable[[str, str], Any]


SETTINGS: dict[str, SettingSpec] = {
    spec.key: spec
    for spec in (
        SettingSpec("max_steps", "most sampling steps one image may ask for", _positive_int),
        SettingSpec("max_size", "largest width and height in pixels", _positive_int),
        SettingSpec("max_batch", "most images one command may ask for (batch size × count)", _positive_int),
        SettingSpec("max_pending_per_user", "jobs one person may have waiting or running", _positive_int),
        SettingSpec("negative_prefix", "text put before every negative prompt", _text),
        SettingSpec("banned_words", "comma-separated words refused in prompts", _words),
        SettingSpec(
            "nsfw_words",
            "comma-separated words that make a prompt NSFW (allowed only in age-restricted channels)",
            _words,
        ),
        SettingSpec(
            "nsfw_policy",
            "age-restricted: NSFW prompts and images only in age-restricted channels; allow: anywhere",
            _policy,
        ),
        SettingSpec("gallery_channel", "channel where the community's best images are posted", _channel),
        SettingSpec("gallery_min_rank", "mean rank (1–5) that sends an image to the gallery channel", _rank),
        SettingSpec(
            "gallery_min_ratings", "ratings the mean rank needs first (0: rank never counts)", _count
        ),
        SettingSpec(
            "gallery_stars", "⭐ that send an image to the gallery channel (0: stars never count)", _count
        ),
        SettingSpec("default_model", "checkpoint used when a command names none", _text),
        SettingSpec("default_sampler", "sampler used when a command names none", _text),
        SettingSpec("default_steps", "steps used when a command gives none", _positive_int),
        SettingSpec("default_cfg_scale", "CFG scale used when a command gives none", _number),
        SettingSpec("default_size", "WIDTHxHEIGHT used when a command gives none", _size),
    )
}


@dataclass(frozen=True)
class CommunitySettings:
    """The settings in force in one channel (guild values overlaid with the channel's)."""

    max_steps: int | None = None
    max_size: int | None = None
    max_batch: int | None = None
    max_pending_per_user: int | None = None
    negative_prefix: str = ""
    banned_words: tuple[str, ...] = ()
    nsfw_words: tuple[str, ...] = ()
    nsfw_policy: str = "age-restricted"
    gallery_channel: str | None = None
    gallery_min_rank: float = 4.0
    gallery_min_ratings: int = 3
    gallery_stars: int = 3
    default_model: str | None = None
    default_sampler: str | None = None
    default_steps: int | None = None
    default_cfg_scale: float | None = None
    default_size: str | None = None

    def limits(self, base: Limits) -> Limits:
        """The machine's limits lowered by this community's."""
        changes: dict[str, Any] = {}
        if self.max_steps:
            changes["max_steps"] = min(base.max_steps, self.max_steps)
        if self.max_size:
            changes["max_width"] = min(base.max_width, self.max_size)
            changes["max_height"] = min(base.max_height, self.max_size)
        if self.max_batch:
            changes["max_batch_size"] = min(base.max_batch_size, self.max_batch)
            changes["max_batch_count"] = min(base.max_batch_count, self.max_batch)
        return base.model_copy(update=changes)

    def check_prompt(self, request: GenerationRequest, age_restricted: bool) -> bool:
        """Refuse banned words, and NSFW words outside age-restricted channels; True if the prompt is NSFW."""
        if (word := _first_word(self.banned_words, request.prompt)) is not None:
            raise InvalidRequest("prompt", f"{word!r} is not allowed in this server")
        nsfw = _first_word(self.nsfw_words, request.prompt) is not None  # not the negative prompt
        if nsfw and self.nsfw_policy == "age-restricted" and not age_restricted:
            raise InvalidRequest(
                "prompt", "this prompt is marked NSFW in this server; use it in an age-restricted channel"
            )
        return nsfw

    def apply(self, request: GenerationRequest, limits: Limits) -> GenerationRequest:
        """The request with the forced negative prefix and the batch limit applied."""
        if self.max_batch and request.batch_size * request.batch_count > self.max_batch:
            raise InvalidRequest(
                "batch_size",
                f"{request.batch_size} × {request.batch_count} images; this server allows at most "
                f"{self.max_batch} per command",
            )
        prefix = self.negative_prefix
        if prefix and not request.negative_prompt.startswith(prefix):
            negative = f"{prefix}, {request.negative_prompt}" if request.negative_prompt else prefix
            request = dataclasses.replace(request, negative_prompt=negative)
        return request


def _first_word(words: tuple[str, ...], text: str) -> str | None:
    folded = text.casefold()
    for word in words:
        if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", folded):
            return word
    return None


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

    async def claim_digest(self, guild: str, period: str, channel: str) -> None:
        """Note that a digest is about to be posted (before posting: a crash after it leaves this trace)."""
        async with self._database.transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO digests (guild, period, channel, claimed_at) VALUES (?, ?, ?, ?)",
                (guild, period, channel, time.time()),
            )

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
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() and parts[0] != "local":
            return None
        guild, nonce, _ = parts
        if not hmac.compare_digest(sign_token(guild, nonce, secret), token):
            return None
        async with self._db.execute("SELECT nonce FROM web_links WHERE guild = ?", (guild,)) as cursor:
            row = await cursor.fetchone()
        return guild if row is not None and hmac.compare_digest(row[0], nonce) else None

    # ----- settings -------------------------------------------------------------------------------------------
    async def set(self, guild: str, key: str, value: str, user: str, channel: str | None = None) -> Any:
        """Check and store one setting (for the whole guild, or one channel); returns the parsed value."""
        spec = SETTINGS.get(key)
        if spec is None:
            raise InvalidRequest("key", f"{key!r} is not a setting; one of: {', '.join(SETTINGS)}")
        parsed = spec.parse(key, value)
        async with self._database.transaction() as db:
            await db.execute(
                "INSERT INTO community_settings VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild, channel, key) "
                "DO UPDATE SET value = excluded.value, set_by = excluded.set_by, set_at = excluded.set_at",
                (guild, channel or "", key, json.dumps(parsed), user, time.time()),
            )
        return parsed

    async def reset(self, guild: str, key: str, channel: str | None = None) -> bool:
        """Remove one setting (the guild's or the machine's default applies again); True if it was set."""
        if key not in SETTINGS:
            raise InvalidRequest("key", f"{key!r} is not a setting; one of: {', '.join(SETTINGS)}")
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
        values = await self.values(guild)
        if channel is not None:
            values.update(await self.values(guild, channel))
        for key in ("banned_words", "nsfw_words"):
            if key in values:
                values[key] = tuple(values[key])
        return CommunitySettings(**values)

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


def sign_token(guild: str, nonce: str, secret: bytes) -> str:
    """`guild.nonce.signature`: the signature is an HMAC-SHA256 of the first two, so nobody can make one."""
    digest = hmac.new(secret, f"{guild}.{nonce}".encode(), hashlib.sha256).digest()
    return f"{guild}.{nonce}.{base64.urlsafe_b64encode(digest[:18]).decode()}"


def web_secret(data_dir: Path) -> bytes:
    """The key that signs web-gallery links (made once, readable by this user only)."""
    path = data_dir / "web-secret"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(32))
    return path.read_bytes()
