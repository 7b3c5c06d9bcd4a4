"""A local fake of Discord's REST API and gateway, so a real discord.py client can be tested end to end.

The fake is an aiohttp server on 127.0.0.1. Build the world (guilds, channels, users) before the client
connects, act as users (slash commands, clicks, modals, reactions) and assert on what users would see:

    async with FakeDiscord() as fake:
        fake.add_guild(1)
        fake.add_channel(1, 10)
        fake.add_user(2, "ann", guild_id=1)
        async with running_client(fake, MyBot()):
            interaction = await fake.slash(2, 10, "echo", {"text": "hi"})
            await interaction.wait_done()
            assert interaction.original.content == "hi"

Users act through coroutines that send gateway dispatches (`slash`, `autocomplete`, `context_menu`, `click`,
`select`, `submit_modal`, `react`, `unreact`, `say`); they fail at once (LookupError, TypeError, ValueError,
PermissionError) where the Discord client would not let a user do that. The bot's mistakes come back to it
as Discord's HTTP errors (40060 double ack, 50006 empty message, 50035 invalid form body, 10062 late ack...).
Messages the bot creates are also dispatched back as MESSAGE_CREATE/UPDATE/DELETE, as Discord does.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import json
import math
import mimetypes
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import discord
import yarl
from aiohttp import WSMsgType, web
from discord.gateway import DiscordWebSocket
from discord.http import Route

__all__ = [
    "Edit",
    "FakeChannel",
    "FakeDiscord",
    "FakeFile",
    "FakeGuild",
    "FakeMessage",
    "FakeUser",
    "Interaction",
    "RecordedRequest",
    "running_client",
]

API = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
LISTEN_BACKLOG = 4096  # pending connections the REST server queues (the kernel caps it at somaxconn)
EPHEMERAL = 1 << 6
LOADING = 1 << 7
COMPONENTS_V2 = 1 << 15

# Gateway intents that gate the events the fake sends.
GUILD_MESSAGES = 1 << 9
GUILD_REACTIONS = 1 << 10
DM_MESSAGES = 1 << 12
DM_REACTIONS = 1 << 13
MESSAGE_CONTENT = 1 << 15

_BODY = web.RequestKey("fakediscord_body", Any)
_FILES = web.RequestKey("fakediscord_files", list)

_P = discord.Permissions
EVERYONE_PERMS = _P(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    read_message_history=True,
    use_application_commands=True,
    connect=True,
    speak=True,
    change_nickname=True,
    create_instant_invite=True,
).value
MODERATOR_PERMS = _P(manage_messages=True).value
ADMIN_PERMS = _P(manage_guild=True, manage_messages=True).value
BOT_PERMS = _P(manage_messages=True, manage_threads=True).value
ALL_PERMS = _P.all().value
ADMINISTRATOR = _P(administrator=True).value

# Interaction callback types each interaction type may answer with (1 = PONG is always accepted).
_ALLOWED_CALLBACKS = {2: {1, 4, 5, 9}, 3: {1, 4, 5, 6, 7, 9}, 4: {8}, 5: {1, 4, 5, 6, 7}}


def _now_iso() -> str:
    """The current UTC time as Discord formats timestamps."""
    return datetime.now(UTC).isoformat()


def _json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response whose Content-Type is exactly what discord.py's json_or_text expects."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _emoji_key(emoji: str) -> str:
    """Normalise '<:name:id>', 'a:name:id' and unicode emoji to the key used in reactions."""
    match = re.fullmatch(r"<?a?:?(\w+):(\d+)>?", emoji)
    return f"{match.group(1)}:{match.group(2)}" if match else emoji


def _emoji_payload(key: str) -> dict[str, Any]:
    """The partial emoji object for a reaction key."""
    if re.fullmatch(r"\w+:\d+", key):
        name, emoji_id = key.split(":")
        return {"id": emoji_id, "name": name, "animated": False}
    return {"id": None, "name": key}


def _walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component in a tree of action rows, containers, sections and labels."""
    for comp in components:
        yield comp
        yield from _walk_components(comp.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(comp.get(key), dict):
                yield from _walk_components([comp[key]])


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of an image, or None when Pillow cannot read it."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return None


class _ApiError(Exception):
    """An HTTP error answered to the bot in Discord's JSON error shape."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def response(self) -> web.Response:
        """The error as a JSON response."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return _json_response(body, self.status)


def _form_error(path: str, message: str, code: str = "BASE_TYPE_BAD_LENGTH") -> _ApiError:
    """A 400 Invalid Form Body error for one field."""
    return _ApiError(
        400, 50035, "Invalid Form Body", {path: {"_errors": [{"code": code, "message": message}]}}
    )


def _not_found(code: int, what: str) -> _ApiError:
    """A 404 for an unknown Discord object."""
    return _ApiError(404, code, f"Unknown {what}")


# --------------------------------------------------------------------------------------------------- the world


@dataclass
class FakeFile:
    """An uploaded file: `id` is the upload index until the file is attached, then a snowflake."""

    filename: str
    data: bytes
    content_type: str | None = None
    url: str = ""
    id: int = 0
    description: str | None = None
    width: int | None = None
    height: int | None = None

    def payload(self) -> dict[str, Any]:
        """The attachment object Discord returns."""
        out: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "description": self.description,
        }
        if self.width is not None:
            out["width"], out["height"] = self.width, self.height
        return out


@dataclass
class RecordedRequest:
    """One HTTP request the bot made; `path` is relative to /api/v10 for API routes."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[FakeFile]
    at: float
    status: int = 0


class Edit(NamedTuple):
    """One edit of a message: when, the payload as sent and any new files."""

    at: float
    payload: dict[str, Any]
    files: list[FakeFile]


@dataclass
class FakeUser:
    """A Discord user (the bot is one too)."""

    id: int
    name: str
    bot: bool = False
    dms_open: bool = True


@dataclass
class FakeRole:
    """A guild role."""

    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False


@dataclass
class FakeChannel:
    """A guild text channel (type 0) or a DM channel (type 1)."""

    id: int
    name: str
    guild_id: int | None
    type: int = 0
    nsfw: bool = False
    recipient_id: int | None = None
    position: int = 0


@dataclass
class FakeMember:
    """A user's membership in a guild."""

    user_id: int
    role_ids: list[int]
    joined_at: str = field(default_factory=_now_iso)


@dataclass
class FakeGuild:
    """A guild with its roles ('everyone', 'moderator', 'admin', 'bot'), members and channels."""

    id: int
    name: str
    owner_id: int
    roles: dict[str, FakeRole]
    members: dict[int, FakeMember] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    joined_at: str = field(default_factory=_now_iso)

    def permissions(self, user_id: int) -> int:
        """The member's guild-wide permission bits (owner and administrators get everything)."""
        if user_id == self.owner_id:
            return ALL_PERMS
        member = self.members.get(user_id)
        perms = self.roles["everyone"].permissions
        for role in self.roles.values():
            if member is not None and role.id in member.role_ids:
                perms |= role.permissions
        return ALL_PERMS if perms & ADMINISTRATOR else perms


@dataclass(eq=False)
class FakeMessage:
    """A message as users see it; `components` and `embeds` are stored as the bot sent them."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeFile] = field(default_factory=list)
    flags: int = 0
    interaction_id: int | None = None
    webhook_id: int | None = None
    edits: list[Edit] = field(default_factory=list)
    deleted: bool = False
    reactions: dict[str, set[int]] = field(default_factory=dict)
    type: int = 0
    reference_id: int | None = None
    created_at: float = field(default_factory=time.monotonic)
    timestamp: str = field(default_factory=_now_iso)
    edited_timestamp: str | None = None

    @property
    def ephemeral(self) -> bool:
        """Whether only the interaction's user can see this message."""
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Whether this is a deferred response still showing 'is thinking...'."""
        return bool(self.flags & LOADING)

    def text(self) -> str:
        """Content plus embed titles, descriptions, fields and footers, and text displays, one per line."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
            parts.append((embed.get("footer") or {}).get("text") or "")
        parts += [c.get("content") or "" for c in _walk_components(self.components) if c.get("type") == 10]
        return "\n".join(p for p in parts if p)

    def buttons(self) -> list[tuple[str | None, str | None, str | None]]:
        """(custom_id, label, emoji name) for every button, in order."""
        out = []
        for comp in _walk_components(self.components):
            if comp.get("type") == 2:
                emoji = (comp.get("emoji") or {}).get("name")
                out.append((comp.get("custom_id"), comp.get("label"), emoji))
        return out

    def find_button(self, label_or_emoji: str) -> str:
        """The custom_id of the button whose label, emoji or custom_id matches."""
        for custom_id, label, emoji in self.buttons():
            if label_or_emoji in (label, emoji, custom_id) and custom_id is not None:
                return custom_id
        raise AssertionError(f"no button {label_or_emoji!r} on message {self.id}; buttons: {self.buttons()}")

    def selects(self) -> list[dict[str, Any]]:
        """Every select menu component on the message."""
        return [c for c in _walk_components(self.components) if c.get("type") in (3, 5, 6, 7, 8)]

    def component(self, custom_id: str) -> dict[str, Any] | None:
        """The component with this custom_id, if any."""
        return next((c for c in _walk_components(self.components) if c.get("custom_id") == custom_id), None)


@dataclass(eq=False)
class Interaction:
    """A user's interaction and everything the bot answered to it."""

    id: int
    token: str
    type: int
    user_id: int
    channel_id: int
    guild_id: int | None
    payload: dict[str, Any]
    fake: FakeDiscord = field(repr=False)
    message_id: int | None = None
    created_at: float = field(default_factory=time.monotonic)
    responses: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    acked_at: float | None = None
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    expired: bool = False

    @property
    def original(self) -> FakeMessage | None:
        """The @original response message (the component's message for UPDATE/deferred update)."""
        return None if self.original_id is None else self.fake.messages.get(self.original_id)

    @property
    def followups(self) -> list[FakeMessage]:
        """Messages created by followup POSTs (a followup that replaced a 'thinking' response is the original)."""
        return [self.fake.messages[i] for i in self.followup_ids]

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot answered with (callback type 9), if any."""
        return next((data for rtype, data in self.responses if rtype == 9), None)

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """The autocomplete choices (callback type 8), if answered."""
        return next(((data or {}).get("choices", []) for rtype, data in self.responses if rtype == 8), None)

    @property
    def ephemeral(self) -> bool:
        """Whether the original response is ephemeral."""
        original = self.original
        return original is not None and original.ephemeral

    @property
    def done(self) -> bool:
        """Acknowledged, and a deferred 'thinking' response has been replaced by content."""
        if self.acked_at is None:
            return False
        if self.responses[0][0] != 5:
            return True
        original = self.original
        return original is None or original.deleted or not original.loading

    async def wait_acked(self, timeout: float = 5.0) -> None:
        """Wait until the bot sent the first callback."""
        await self.fake.wait_for(lambda: self.acked_at is not None, timeout, f"interaction {self.id} acked")

    async def wait_done(self, timeout: float = 10.0) -> None:
        """Wait until `done` (acked and no longer 'thinking')."""
        await self.fake.wait_for(lambda: self.done, timeout, f"interaction {self.id} done")


class _World:
    """The guilds, channels, users and messages, and their Discord JSON shapes."""

    TOKEN = "fake-bot-token"

    def __init__(
        self,
        *,
        application_id: int = 1000,
        bot_user_id: int = 1000,
        bot_name: str = "Salon",
        ack_deadline: float | None = 3.0,
    ) -> None:
        self.application_id, self.bot_user_id, self.ack_deadline = application_id, bot_user_id, ack_deadline
        self.users: dict[int, FakeUser] = {bot_user_id: FakeUser(bot_user_id, bot_name, bot=True)}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, Interaction] = {}
        self.files: dict[int, FakeFile] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.requests: list[RecordedRequest] = []
        self.unknown_routes: list[str] = []
        self.gateway_received: list[dict[str, Any]] = []
        self.port = 0
        self._last_id = 0
        self._tokens: dict[str, Interaction] = {}

    def next_id(self) -> int:
        """A fresh, increasing snowflake carrying the current time."""
        stamp = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(stamp, self._last_id + 1)
        return self._last_id

    # ------------------------------------------------------------------------------------- building the world

    def add_guild(self, guild_id: int, name: str = "Guild", owner_id: int = 1) -> FakeGuild:
        """A guild with @everyone, moderator, admin and bot roles; the bot is a member."""
        roles = {
            "everyone": FakeRole(guild_id, "@everyone", EVERYONE_PERMS),
            "moderator": FakeRole(self.next_id(), "Moderator", MODERATOR_PERMS, position=1),
            "admin": FakeRole(self.next_id(), "Admin", ADMIN_PERMS, position=2),
            "bot": FakeRole(
                self.next_id(), self.users[self.bot_user_id].name, BOT_PERMS, position=3, managed=True
            ),
        }
        guild = FakeGuild(guild_id, name, owner_id, roles)
        guild.members[self.bot_user_id] = FakeMember(self.bot_user_id, [roles["bot"].id])
        self.guilds[guild_id] = guild
        return guild

    def add_channel(self, guild_id: int, channel_id: int, name: str = "general", nsfw: bool = False) -> None:
        """A text channel in a guild."""
        guild = self.guilds[guild_id]
        self.channels[channel_id] = FakeChannel(
            channel_id, name, guild_id, nsfw=nsfw, position=len(guild.channel_ids)
        )
        guild.channel_ids.append(channel_id)

    def add_user(
        self,
        user_id: int,
        name: str,
        *,
        guild_id: int | None = None,
        moderator: bool = False,
        admin: bool = False,
        dms_open: bool = True,
    ) -> FakeUser:
        """A user, optionally a member of a guild (moderator: MANAGE_MESSAGES; admin: also MANAGE_GUILD)."""
        user = self.users.setdefault(user_id, FakeUser(user_id, name))
        user.name, user.dms_open = name, dms_open
        if guild_id is not None:
            self.add_member(guild_id, user_id, moderator=moderator, admin=admin)
        return user

    def add_member(
        self, guild_id: int, user_id: int, *, moderator: bool = False, admin: bool = False
    ) -> None:
        """Make an existing user a member of a guild."""
        guild = self.guilds[guild_id]
        roles = [guild.roles[k].id for k, on in (("moderator", moderator), ("admin", admin)) if on]
        guild.members[user_id] = FakeMember(user_id, roles)

    def dm_channel(self, user_id: int) -> int:
        """The id of the DM channel between the bot and a user (created on first use)."""
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient_id == user_id:
                return channel.id
        channel_id = self.next_id()
        self.channels[channel_id] = FakeChannel(channel_id, "", None, type=1, recipient_id=user_id)
        return channel_id

    def permissions(self, user_id: int, channel_id: int) -> int:
        """A user's permission bits in a channel (everything in DMs)."""
        channel = self.channels[channel_id]
        return ALL_PERMS if channel.guild_id is None else self.guilds[channel.guild_id].permissions(user_id)

    # ---------------------------------------------------------------------------------------------- payloads

    def user_payload(self, user_id: int) -> dict[str, Any]:
        """A user object."""
        user = self.users.get(user_id) or FakeUser(user_id, f"user{user_id}")
        return {
            "id": str(user.id),
            "username": user.name,
            "global_name": user.name,
            "discriminator": "0",
            "avatar": None,
            "bot": user.bot,
            "public_flags": 0,
            "flags": 0,
        }

    def member_payload(self, guild: FakeGuild, user_id: int, *, with_user: bool = True) -> dict[str, Any]:
        """A guild member object, including `permissions` (as in interactions)."""
        member = guild.members[user_id]
        out: dict[str, Any] = {
            "roles": [str(r) for r in member.role_ids],
            "joined_at": member.joined_at,
            "premium_since": None,
            "nick": None,
            "avatar": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "permissions": str(guild.permissions(user_id)),
        }
        if with_user:
            out["user"] = self.user_payload(user_id)
        return out

    @staticmethod
    def role_payload(role: FakeRole) -> dict[str, Any]:
        """A role object."""
        return {
            "id": str(role.id),
            "name": role.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": role.position,
            "permissions": str(role.permissions),
            "managed": role.managed,
            "mentionable": False,
            "flags": 0,
        }

    def channel_payload(self, channel: FakeChannel, *, viewer: int | None = None) -> dict[str, Any]:
        """A channel object; with `viewer`, it carries that user's permissions (as in interactions)."""
        if channel.type == 1:
            recipient = self.user_payload(channel.recipient_id or 0)
            return {
                "id": str(channel.id),
                "type": 1,
                "recipients": [recipient],
                "last_message_id": None,
                "flags": 0,
            }
        out: dict[str, Any] = {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": [],
            "nsfw": channel.nsfw,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if viewer is not None:
            out["permissions"] = str(self.permissions(viewer, channel.id))
        return out

    def guild_payload(self, guild: FakeGuild) -> dict[str, Any]:
        """A full guild object as in GUILD_CREATE (roles, channels, members)."""
        return {
            "id": str(guild.id),
            "name": guild.name,
            "owner_id": str(guild.owner_id),
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "features": [],
            "roles": [self.role_payload(r) for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "channels": [self.channel_payload(self.channels[c]) for c in guild.channel_ids],
            "members": [self.member_payload(guild, uid) for uid in guild.members],
            "member_count": len(guild.members),
            "large": False,
            "unavailable": False,
            "joined_at": guild.joined_at,
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "preferred_locale": "en-US",
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "system_channel_flags": 0,
            "afk_timeout": 300,
            "afk_channel_id": None,
            "system_channel_id": None,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "premium_progress_bar_enabled": False,
            "nsfw": False,
        }

    def message_payload(self, msg: FakeMessage) -> dict[str, Any]:
        """A full message object."""
        out: dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": self.user_payload(msg.author_id),
            "content": msg.content,
            "timestamp": msg.timestamp,
            "edited_timestamp": msg.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [self.user_payload(int(u)) for u in re.findall(r"<@!?(\d+)>", msg.content)],
            "mention_roles": [],
            "attachments": [f.payload() for f in msg.attachments],
            "embeds": msg.embeds,
            "components": msg.components,
            "reactions": self._reactions_payload(msg),
            "pinned": False,
            "type": msg.type,
            "flags": msg.flags,
        }
        if msg.guild_id is not None:
            out["guild_id"] = str(msg.guild_id)
        if msg.webhook_id is not None:
            out["webhook_id"] = str(msg.webhook_id)
            out["application_id"] = str(self.application_id)
        if msg.interaction_id in self.interactions:
            out["interaction_metadata"] = self._interaction_metadata(self.interactions[msg.interaction_id])
        if msg.reference_id is not None:
            out["message_reference"] = {
                "type": 0,
                "message_id": str(msg.reference_id),
                "channel_id": str(msg.channel_id),
            }
        return out

    def _reactions_payload(self, msg: FakeMessage) -> list[dict[str, Any]]:
        """The reactions summary of a message."""
        return [
            {
                "emoji": _emoji_payload(key),
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": self.bot_user_id in users,
                "me_burst": False,
                "burst_count": 0,
                "burst_colors": [],
            }
            for key, users in msg.reactions.items()
        ]

    def _interaction_metadata(self, inter: Interaction) -> dict[str, Any]:
        """The interaction_metadata of a response message."""
        out: dict[str, Any] = {
            "id": str(inter.id),
            "type": inter.type,
            "user": self.user_payload(inter.user_id),
            "authorizing_integration_owners": {"0": str(inter.guild_id or 0)},
        }
        if inter.message_id is not None:
            out["interacted_message_id"] = str(inter.message_id)
        return out

    def app_info_payload(self) -> dict[str, Any]:
        """The application object (GET /oauth2/applications/@me)."""
        return {
            "id": str(self.application_id),
            "name": self.users[self.bot_user_id].name,
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.user_payload(1),
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "summary": "",
            "rpc_origins": [],
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(self.guilds),
            "bot": self.user_payload(self.bot_user_id),
        }

    # ------------------------------------------------------------------------------------------ what users see

    def channel_messages(
        self, channel_id: int, *, include_ephemeral_for: int | None = None
    ) -> list[FakeMessage]:
        """Non-deleted messages in a channel, oldest first; ephemeral ones only for `include_ephemeral_for`."""
        return [
            m
            for m in sorted(self.messages.values(), key=lambda m: m.id)
            if m.channel_id == channel_id
            and not m.deleted
            and (not m.ephemeral or self._sees(m, include_ephemeral_for))
        ]

    def _sees(self, msg: FakeMessage, user_id: int | None) -> bool:
        """Whether an ephemeral message was shown to this user."""
        inter = self.interactions.get(msg.interaction_id or 0)
        return user_id is not None and inter is not None and inter.user_id == user_id

    def dms(self, user_id: int) -> list[FakeMessage]:
        """Non-deleted messages in the DM channel with a user, oldest first."""
        return self.channel_messages(self.dm_channel(user_id))

    def last_message(self, channel_id: int) -> FakeMessage:
        """The newest visible message in a channel."""
        messages = self.channel_messages(channel_id)
        assert messages, f"channel {channel_id} has no messages"
        return messages[-1]

    @property
    def error_responses(self) -> list[RecordedRequest]:
        """Requests the fake answered with an HTTP error status."""
        return [r for r in self.requests if r.status >= 400]

    def expire(self, interaction: Interaction) -> None:
        """Expire an interaction token: webhook calls get 401 Invalid Webhook Token (50027)."""
        interaction.expired = True

    def summary(self, last: int = 15) -> str:
        """The last requests and any unknown routes, for failure messages."""
        lines = [f"  {r.method} {r.path} -> {r.status}" for r in self.requests[-last:]]
        unknown = f"\nunknown routes: {self.unknown_routes}" if self.unknown_routes else ""
        return "last requests:\n" + ("\n".join(lines) or "  (none)") + unknown

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 30.0, what: str | None = None
    ) -> None:
        """Poll `predicate` every 0.02 s until it is true, else fail with the recent requests."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                desc = what or _describe(predicate)
                raise AssertionError(f"timed out after {timeout} s waiting for {desc}\n{self.summary()}")
            await asyncio.sleep(0.02)


def _describe(predicate: Callable[[], bool]) -> str:
    """The source line of a predicate, for error messages."""
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)


# ------------------------------------------------------------------------------------------------- gateway


@dataclass(eq=False)
class _Session:
    """One gateway websocket connection."""

    ws: web.WebSocketResponse
    session_id: str = ""
    seq: int = 0
    intents: int = 0
    ready: bool = False
    shard: tuple[int, int] = (0, 1)  # [shard_id, num_shards] of its IDENTIFY

    def carries(self, guild_id: int | None) -> bool:
        """Whether this shard gets the guild's events: Discord's (guild_id >> 22) % num_shards; DMs: shard 0."""
        shard_id, count = self.shard
        return (guild_id >> 22) % count == shard_id if guild_id else shard_id == 0


class _Gateway(_World):
    """The gateway websocket: HELLO, IDENTIFY/READY, GUILD_CREATE, heartbeats and dispatches."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sessions: list[_Session] = []
        self._session_seqs: dict[str, int] = {}
        self._session_shards: dict[str, tuple[int, int]] = {}
        self.recommended_shards = 1  # what GET /gateway/bot answers as `shards`

    @property
    def gateway_url(self) -> str:
        """The websocket URL discord.py connects to."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def connected(self) -> bool:
        """Whether a client has identified on the gateway."""
        return any(s.ready for s in self._sessions)

    @property
    def shards_connected(self) -> list[tuple[int, int]]:
        """The `(shard_id, num_shards)` of every identified connection, sorted."""
        return sorted(s.shard for s in self._sessions if s.ready)

    async def _h_gateway(self, request: web.Request) -> web.StreamResponse:
        """Serve one gateway connection (plain JSON text frames; transport compression is not needed)."""
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session = _Session(ws)
        self._sessions.append(session)
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_op(session, json.loads(msg.data))
        finally:
            self._sessions.remove(session)
        return ws

    async def _on_op(self, session: _Session, msg: dict[str, Any]) -> None:
        """Handle one opcode from the client."""
        op, data = msg.get("op"), msg.get("d")
        if op == 1:
            await session.ws.send_str(json.dumps({"op": 11}))
            return
        self.gateway_received.append(msg)
        if op == 2:
            await self._identify(session, data)
        elif op == 6:
            await self._resume(session, data)
        elif op == 8:
            await self._send_member_chunk(session, data)

    async def _identify(self, session: _Session, data: dict[str, Any]) -> None:
        """Check the token, then send READY and a GUILD_CREATE per guild."""
        if data.get("token") != self.TOKEN:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard_id, count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < count:
            await session.ws.close(code=4010, message=b"Invalid shard.")
            return
        session.session_id, session.intents = secrets.token_hex(16), int(data.get("intents") or 0)
        session.shard, self._session_shards[session.session_id] = (shard_id, count), (shard_id, count)
        session.ready = True
        guilds = [guild for guild in self.guilds.values() if session.carries(guild.id)]
        ready = {
            "v": 10,
            "user": {**self.user_payload(self.bot_user_id), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "shard": [shard_id, count],
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
        }
        await self._send_dispatch(session, "READY", ready)
        for guild in guilds:
            await self._send_dispatch(session, "GUILD_CREATE", self.guild_payload(guild))

    async def _resume(self, session: _Session, data: dict[str, Any]) -> None:
        """Resume a known session (nothing is replayed) or invalidate it."""
        if data.get("token") != self.TOKEN or data.get("session_id") not in self._session_seqs:
            await session.ws.send_str(json.dumps({"op": 9, "d": False}))
            return
        session.session_id, session.seq = data["session_id"], self._session_seqs[data["session_id"]]
        session.shard = self._session_shards[session.session_id]
        session.ready = True
        await self._send_dispatch(session, "RESUMED", {})

    async def _send_member_chunk(self, session: _Session, data: dict[str, Any]) -> None:
        """Answer REQUEST_GUILD_MEMBERS with every member in one chunk."""
        guild = self.guilds.get(int(data.get("guild_id") or 0))
        members = [self.member_payload(guild, uid) for uid in guild.members] if guild else []
        chunk = {
            "guild_id": str(data.get("guild_id")),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
        }
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", {**chunk, "nonce": data.get("nonce")})

    async def _send_dispatch(self, session: _Session, event: str, data: dict[str, Any]) -> bool:
        """Send one DISPATCH with the session's next sequence number."""
        session.seq += 1
        self._session_seqs[session.session_id] = session.seq
        try:
            await session.ws.send_str(json.dumps({"op": 0, "t": event, "s": session.seq, "d": data}))
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def dispatch(
        self, event: str, data: dict[str, Any], *, intent: int = 0, private: bool = False
    ) -> int:
        """Send an event to every identified client that has `intent` and carries the event's guild (its
        shard; DMs go to shard 0); returns how many got it.

        `private`: strip content, embeds, attachments and components for clients without MESSAGE_CONTENT.
        """
        sent = 0
        guild_id = int(data.get("guild_id") or 0) or None
        for session in list(self._sessions):
            if not (session.ready and session.carries(guild_id)) or (intent and not session.intents & intent):
                continue
            payload = data
            if private and not session.intents & MESSAGE_CONTENT:
                payload = {**data, "content": "", "embeds": [], "attachments": [], "components": []}
            sent += await self._send_dispatch(session, event, payload)
        return sent

    async def _dispatch_message(self, event: str, msg: FakeMessage) -> None:
        """MESSAGE_CREATE/UPDATE for a visible (non-ephemeral) message."""
        if msg.ephemeral:
            return
        data = self.message_payload(msg)
        guild = self.guilds.get(msg.guild_id or 0)
        if guild is not None and msg.author_id in guild.members:
            data["member"] = self.member_payload(guild, msg.author_id, with_user=False)
        private = msg.author_id != self.bot_user_id and not self._mentions_bot(msg) and guild is not None
        await self.dispatch(event, data, intent=GUILD_MESSAGES if guild else DM_MESSAGES, private=private)

    def _mentions_bot(self, msg: FakeMessage) -> bool:
        """Whether a message mentions the bot (such content is delivered without MESSAGE_CONTENT)."""
        return f"<@{self.bot_user_id}>" in msg.content or f"<@!{self.bot_user_id}>" in msg.content

    async def _dispatch_delete(self, msg: FakeMessage) -> None:
        """MESSAGE_DELETE for a visible message."""
        if msg.ephemeral:
            return
        data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
        await self.dispatch("MESSAGE_DELETE", data, intent=GUILD_MESSAGES if msg.guild_id else DM_MESSAGES)

    async def _dispatch_reaction(self, event: str, msg: FakeMessage, user_id: int, key: str) -> None:
        """MESSAGE_REACTION_ADD/REMOVE as a raw event."""
        data: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(msg.channel_id),
            "message_id": str(msg.id),
            "emoji": _emoji_payload(key),
            "type": 0,
            "burst": False,
            "burst_colors": [],
            "message_author_id": str(msg.author_id),
        }
        guild = self.guilds.get(msg.guild_id or 0)
        if guild is not None:
            data["guild_id"] = str(guild.id)
            if event == "MESSAGE_REACTION_ADD" and user_id in guild.members:
                data["member"] = self.member_payload(guild, user_id)
        await self.dispatch(event, data, intent=GUILD_REACTIONS if guild else DM_REACTIONS)


# ---------------------------------------------------------------------------------------------------- REST


class _Messages(_Gateway):
    """Creating, validating and editing messages and their attachments."""

    def _attach(self, channel_id: int, body: dict[str, Any], files: list[FakeFile]) -> list[FakeFile]:
        """Give uploaded files snowflakes and URLs; descriptions come from the payload's `attachments`."""
        meta = {str(a.get("id")): a for a in body.get("attachments") or [] if isinstance(a, dict)}
        out = []
        for upload in files:
            info = meta.get(str(upload.id), {})
            upload.description = info.get("description", upload.description)
            upload.filename = info.get("filename") or upload.filename
            upload.id = self.next_id()
            if (upload.content_type or "").startswith("image/"):
                upload.width, upload.height = _image_size(upload.data) or (None, None)
            upload.url = (
                f"http://127.0.0.1:{self.port}/attachments/{channel_id}/{upload.id}/{quote(upload.filename)}"
            )
            self.files[upload.id] = upload
            out.append(upload)
        return out

    def new_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: list[FakeFile],
        *,
        author_id: int | None = None,
        interaction: Interaction | None = None,
        flags: int | None = None,
    ) -> FakeMessage:
        """Store a new message (no validation)."""
        channel = self.channels[channel_id]
        msg = FakeMessage(
            id=self.next_id(),
            channel_id=channel_id,
            guild_id=channel.guild_id,
            author_id=author_id or self.bot_user_id,
            content=body.get("content") or "",
            embeds=list(body.get("embeds") or []),
            components=list(body.get("components") or []),
            attachments=self._attach(channel_id, body, files),
            flags=int(body.get("flags") or 0) if flags is None else flags,
            interaction_id=interaction.id if interaction else None,
            webhook_id=self.application_id if interaction else None,
            type=20 if interaction and interaction.type == 2 else 0,
            reference_id=_reference_id(body),
        )
        self.messages[msg.id] = msg
        return msg

    def edit_message(self, msg: FakeMessage, body: dict[str, Any], files: list[FakeFile]) -> None:
        """Apply an edit as Discord does (listed attachments kept, new files added, 'thinking' cleared)."""
        self.check_message(body, files, editing=True)
        if "content" in body:
            msg.content = body["content"] or ""
        if "embeds" in body:
            msg.embeds = list(body["embeds"] or [])
        if "components" in body:
            msg.components = list(body["components"] or [])
        if body.get("flags") is not None:
            msg.flags = int(body["flags"]) | (msg.flags & EPHEMERAL)
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or [] if isinstance(a, dict)}
            msg.attachments = [a for a in msg.attachments if str(a.id) in keep]
        msg.attachments = msg.attachments + self._attach(msg.channel_id, body, files)
        msg.flags &= ~LOADING
        msg.edited_timestamp = _now_iso()
        msg.edits.append(Edit(time.monotonic(), body, files))

    def check_message(self, body: dict[str, Any], files: list[FakeFile], *, editing: bool = False) -> None:
        """Reject what Discord rejects: empty messages, over-long content, bad embeds/components, big files."""
        content = body.get("content") or ""
        if len(content) > 2000:
            raise _form_error("content", "Must be 2000 or fewer in length.")
        empty = not (
            content or body.get("embeds") or files or body.get("components") or body.get("sticker_ids")
        )
        if not editing and empty and not body.get("poll"):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        if len(files) > 10 or any(len(f.data) > ATTACHMENT_SIZE_LIMIT for f in files):
            raise _ApiError(413, 40005, "Request entity too large")
        _check_embeds(body.get("embeds") or [])
        _check_components(body.get("components") or [], v2=bool(int(body.get("flags") or 0) & COMPONENTS_V2))


def _reference_id(body: dict[str, Any]) -> int | None:
    """The message a new message replies to."""
    ref = body.get("message_reference") or {}
    return int(ref["message_id"]) if ref.get("message_id") else None


def _check_embeds(embeds: list[dict[str, Any]]) -> None:
    """Discord's embed limits."""
    if len(embeds) > 10:
        raise _form_error("embeds", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        texts = {
            "title": (embed.get("title") or "", 256),
            "description": (embed.get("description") or "", 4096),
            "footer.text": ((embed.get("footer") or {}).get("text") or "", 2048),
            "author.name": ((embed.get("author") or {}).get("name") or "", 256),
        }
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise _form_error(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
        for j, fld in enumerate(fields):
            texts[f"fields.{j}.name"] = (fld.get("name") or "", 256)
            texts[f"fields.{j}.value"] = (fld.get("value") or "", 1024)
            if not fld.get("name") or not fld.get("value"):
                raise _form_error(f"embeds.{i}.fields.{j}", "This field is required", "BASE_TYPE_REQUIRED")
        for name, (text, limit) in texts.items():
            if len(text) > limit:
                raise _form_error(f"embeds.{i}.{name}", f"Must be {limit} or fewer in length.")
            total += len(text)
    if total > 6000:
        raise _form_error("embeds", "Embed size exceeds maximum size of 6000")


def _check_components(components: list[dict[str, Any]], *, v2: bool) -> None:
    """Discord's component limits: rows, buttons per row, custom_id length and uniqueness, labels."""
    if not v2 and len(components) > 5:
        raise _form_error("components", "Must be 5 or fewer in length.")
    seen: set[str] = set()
    for comp in _walk_components(components):
        if comp.get("type") == 1 and not v2 and len(comp.get("components") or []) > 5:
            raise _form_error("components", "Must be 5 or fewer in length.")
        custom_id = comp.get("custom_id")
        if custom_id is not None:
            if len(custom_id) > 100 or custom_id in seen:
                raise _form_error("components", f"custom_id {custom_id!r} is too long or duplicated")
            seen.add(custom_id)
        if len(comp.get("label") or "") > 80:
            raise _form_error("components", "label must be 80 or fewer in length.")
        if len(comp.get("options") or []) > 25:
            raise _form_error("components", "options must be 25 or fewer in length.")


class _Rest(_Messages):
    """The REST routes discord.py uses."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rate_limits: list[_RateLimit] = []
        self._limited: list[_RateLimit] = []  # held limits: (needle, method) refused until `until`
        self._hooks: list[_Hook] = []

    def rate_limit_next(
        self,
        path_substring: str,
        retry_after: float = 0.05,
        *,
        method: str | None = None,
        is_global: bool = False,
        when: Callable[[RecordedRequest], bool] | None = None,
        hold: bool = False,
    ) -> None:
        """Answer the next request whose path contains `path_substring` (and that `when` accepts) with a 429.

        `hold`: as Discord does, go on answering 429 (with the time left) to every request of that method
        and path until `retry_after` has passed; each of those is an extra 429, an invalid request.
        """
        self._rate_limits.append(_RateLimit(path_substring, method, retry_after, is_global, when, hold))

    def before_answer(
        self, when: Callable[[RecordedRequest], bool], action: Callable[[RecordedRequest], Any]
    ) -> None:
        """Once: when a request that `when` accepts has been handled, run `action` (awaited if it is a
        coroutine) before the bot gets the answer, e.g. a user reacting to the message just edited."""
        self._hooks.append(_Hook(when, action))

    @property
    def rate_limited(self) -> list[RecordedRequest]:
        """Requests the fake answered with 429, in order."""
        return [r for r in self.requests if r.status == 429]

    def after(self, request: RecordedRequest) -> RecordedRequest | None:
        """The next request of the same method and path after this one (the bot's next try of a route)."""
        index = next(i for i, r in enumerate(self.requests) if r is request)
        later = self.requests[index + 1 :]
        return next((r for r in later if (r.method, r.path) == (request.method, request.path)), None)

    def _routes(self) -> list[tuple[str, str, Callable[[web.Request], Any]]]:
        """(method, path under /api/v10, handler); order matters where paths overlap."""
        app = "/applications/{app:\\d+}"
        msg = "/channels/{channel:\\d+}/messages/{message:\\d+}"
        hook = "/webhooks/{app:\\d+}/{token}"
        return [
            ("GET", "/users/@me", self._h_me),
            ("POST", "/users/@me/channels", self._h_create_dm),
            ("GET", "/users/{user:\\d+}", self._h_user),
            ("GET", "/oauth2/applications/@me", self._h_app_info),
            ("GET", "/applications/@me", self._h_app_info),
            ("GET", "/gateway", self._h_gateway_info),
            ("GET", "/gateway/bot", self._h_gateway_info),
            ("GET", app + "/commands", self._h_get_commands),
            ("PUT", app + "/commands", self._h_put_commands),
            ("POST", app + "/commands", self._h_post_command),
            ("DELETE", app + "/commands/{command:\\d+}", self._h_delete_command),
            ("GET", app + "/guilds/{guild:\\d+}/commands", self._h_get_commands),
            ("PUT", app + "/guilds/{guild:\\d+}/commands", self._h_put_commands),
            ("POST", app + "/guilds/{guild:\\d+}/commands", self._h_post_command),
            ("DELETE", app + "/guilds/{guild:\\d+}/commands/{command:\\d+}", self._h_delete_command),
            ("POST", "/interactions/{interaction:\\d+}/{token}/callback", self._h_callback),
            ("POST", hook, self._h_followup),
            ("GET", hook + "/messages/{message}", self._h_webhook_get),
            ("PATCH", hook + "/messages/{message}", self._h_webhook_edit),
            ("DELETE", hook + "/messages/{message}", self._h_webhook_delete),
            ("GET", "/channels/{channel:\\d+}", self._h_channel),
            ("POST", "/channels/{channel:\\d+}/typing", self._h_no_content),
            ("GET", "/channels/{channel:\\d+}/messages", self._h_history),
            ("POST", "/channels/{channel:\\d+}/messages", self._h_send),
            ("POST", "/channels/{channel:\\d+}/messages/bulk-delete", self._h_bulk_delete),
            ("GET", msg, self._h_get_message),
            ("PATCH", msg, self._h_edit_message),
            ("DELETE", msg, self._h_delete_message),
            ("PUT", msg + "/reactions/{emoji}/@me", self._h_add_reaction),
            ("DELETE", msg + "/reactions/{emoji}/@me", self._h_remove_reaction),
            ("DELETE", msg + "/reactions/{emoji}/{user:\\d+}", self._h_remove_reaction),
            ("GET", msg + "/reactions/{emoji}", self._h_reaction_users),
            ("DELETE", msg + "/reactions/{emoji}", self._h_clear_reactions),
            ("DELETE", msg + "/reactions", self._h_clear_reactions),
            ("GET", "/guilds/{guild:\\d+}", self._h_guild),
            ("GET", "/guilds/{guild:\\d+}/channels", self._h_guild_channels),
            ("GET", "/guilds/{guild:\\d+}/roles", self._h_guild_roles),
            ("GET", "/guilds/{guild:\\d+}/members", self._h_guild_members),
            ("GET", "/guilds/{guild:\\d+}/members/{user:\\d+}", self._h_guild_member),
        ]

    # -------------------------------------------------------------------------------- middleware and parsing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Record the request, inject rate limits, check auth and turn _ApiError into responses."""
        if request.path == "/gateway":
            return await handler(request)
        path = request.path.removeprefix(API)
        body, files = await _parse_body(request)
        record = RecordedRequest(request.method, path, dict(request.query), body, files, time.monotonic())
        self.requests.append(record)
        request[_BODY], request[_FILES] = body if isinstance(body, dict | list) else {}, files
        try:
            response = self._rate_limited(record) or await self._authorized(request, handler)
        except _ApiError as exc:
            response = exc.response()
        record.status = response.status
        for hook in [h for h in self._hooks if h.when(record)]:
            self._hooks.remove(hook)
            done = hook.action(record)
            if inspect.isawaitable(done):
                await done
        return response

    async def _authorized(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Reject bad tokens on bot routes (webhook, callback and attachment routes need none)."""
        if request.match_info.route.name == "unknown":
            return await handler(request)
        path = request.path.removeprefix(API)
        public = not request.path.startswith(API) or path.startswith(("/webhooks/", "/interactions/"))
        if not public and request.headers.get("Authorization") != f"Bot {self.TOKEN}":
            raise _ApiError(401, 0, "401: Unauthorized")
        return await handler(request)

    def _rate_limited(self, record: RecordedRequest) -> web.Response | None:
        """A 429 while a held limit lasts, or for the first pending rate_limit_next() that matches."""
        self._limited = [limit for limit in self._limited if limit.until > record.at]
        for limit in self._limited:
            if limit.needle == record.path and limit.method == record.method:
                return _too_many(limit.until - record.at, limit.is_global)
        for limit in self._rate_limits:
            matches = limit.needle in record.path and limit.method in (None, record.method)
            if matches and (limit.when is None or limit.when(record)):
                self._rate_limits.remove(limit)
                if limit.hold:
                    until = record.at + limit.retry_after
                    self._limited.append(
                        _RateLimit(record.path, record.method, 0, limit.is_global, until=until)
                    )
                return _too_many(limit.retry_after, limit.is_global)
        return None

    async def _h_unknown(self, request: web.Request) -> web.Response:
        """Any route the fake does not know: 404, and remembered in `unknown_routes`."""
        self.unknown_routes.append(f"{request.method} {request.path}")
        raise _ApiError(404, 0, "404: Not Found")

    async def _h_attachment(self, request: web.Request) -> web.Response:
        """Serve an attachment's bytes (what discord.Attachment.read() fetches)."""
        upload = self.files.get(int(request.match_info["attachment"]))
        if upload is None:
            raise _ApiError(404, 0, "404: Not Found")
        return web.Response(body=upload.data, content_type=upload.content_type or "application/octet-stream")

    @staticmethod
    async def _h_no_content(request: web.Request) -> web.Response:
        """204 No Content (typing indicator)."""
        return web.Response(status=204)

    # --------------------------------------------------------------------------------------- lookups

    def _channel(self, request: web.Request) -> FakeChannel:
        """The channel in the route, or 404 Unknown Channel."""
        channel = self.channels.get(_int(request.match_info["channel"]))
        if channel is None:
            raise _not_found(10003, "Channel")
        return channel

    def _channel_message(self, request: web.Request) -> FakeMessage:
        """The (visible, non-ephemeral) message in the route, or 404 Unknown Message."""
        channel = self._channel(request)
        msg = self.messages.get(_int(request.match_info["message"]))
        if msg is None or msg.deleted or msg.ephemeral or msg.channel_id != channel.id:
            raise _not_found(10008, "Message")
        return msg

    def _guild(self, request: web.Request) -> FakeGuild:
        """The guild in the route, or 404 Unknown Guild."""
        guild = self.guilds.get(_int(request.match_info["guild"]))
        if guild is None:
            raise _not_found(10004, "Guild")
        return guild

    # --------------------------------------------------------------------------------- users, app, gateway

    async def _h_me(self, request: web.Request) -> web.Response:
        """The bot user."""
        return _json_response({**self.user_payload(self.bot_user_id), "verified": True, "mfa_enabled": False})

    async def _h_user(self, request: web.Request) -> web.Response:
        """Any known user."""
        user_id = _int(request.match_info["user"])
        if user_id not in self.users:
            raise _not_found(10013, "User")
        return _json_response(self.user_payload(user_id))

    async def _h_create_dm(self, request: web.Request) -> web.Response:
        """Open (or reuse) the DM channel with a recipient."""
        user_id = _int(str(request[_BODY].get("recipient_id")))
        if user_id not in self.users:
            raise _not_found(10013, "User")
        return _json_response(self.channel_payload(self.channels[self.dm_channel(user_id)]))

    async def _h_app_info(self, request: web.Request) -> web.Response:
        """Application info (discord.py fetches it on login)."""
        return _json_response(self.app_info_payload())

    async def _h_gateway_info(self, request: web.Request) -> web.Response:
        """The gateway URL and the recommended shard count (discord.py's Client does not ask; AutoShardedClient
        does when it is given no shard_count)."""
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        body = {"url": self.gateway_url, "shards": self.recommended_shards, "session_start_limit": limit}
        return _json_response(body)

    # ------------------------------------------------------------------------------------- app commands

    def _scope(self, request: web.Request) -> int | None:
        """The guild id of a guild-command route, None for global commands; checks the application id."""
        if _int(request.match_info["app"]) != self.application_id:
            raise _not_found(10002, "Application")
        guild = request.match_info.get("guild")
        return None if guild is None else _int(guild)

    async def _h_get_commands(self, request: web.Request) -> web.Response:
        """The synced commands of a scope."""
        return _json_response(self.commands.get(self._scope(request), []))

    async def _h_put_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite: validate, keep ids of commands with the same name and type, assign new ones."""
        scope = self._scope(request)
        body = request[_BODY] if isinstance(request[_BODY], list) else []
        for i, cmd in enumerate(body):
            _check_command(cmd, str(i))
        old = {(c["name"], c.get("type", 1)): c["id"] for c in self.commands.get(scope, [])}
        self.commands[scope] = [self._stored_command(c, scope, old) for c in body]
        return _json_response(self.commands[scope])

    async def _h_post_command(self, request: web.Request) -> web.Response:
        """Create or replace one command."""
        scope, cmd = self._scope(request), request[_BODY]
        _check_command(cmd, "")
        existing = self.commands.setdefault(scope, [])
        old = {(c["name"], c.get("type", 1)): c["id"] for c in existing}
        stored = self._stored_command(cmd, scope, old)
        self.commands[scope] = [c for c in existing if c["id"] != stored["id"]] + [stored]
        return _json_response(stored, 200 if stored["id"] in old.values() else 201)

    async def _h_delete_command(self, request: web.Request) -> web.Response:
        """Delete one command."""
        scope, command_id = self._scope(request), request.match_info["command"]
        existing = self.commands.get(scope, [])
        if not any(c["id"] == command_id for c in existing):
            raise _not_found(10063, "application command")
        self.commands[scope] = [c for c in existing if c["id"] != command_id]
        return web.Response(status=204)

    def _stored_command(self, cmd: dict[str, Any], scope: int | None, old: dict[Any, str]) -> dict[str, Any]:
        """A command as Discord stores and returns it."""
        stored = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **cmd,
            "id": old.get((cmd["name"], cmd.get("type", 1))) or str(self.next_id()),
            "application_id": str(self.application_id),
            "version": str(self.next_id()),
        }
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    # ---------------------------------------------------------------------------------------- interactions

    async def _h_callback(self, request: web.Request) -> web.Response:
        """The initial response to an interaction; a second one gets 400 code 40060."""
        inter = self.interactions.get(_int(request.match_info["interaction"]))
        if inter is None or inter.token != request.match_info["token"] or inter.expired:
            raise _not_found(10062, "interaction")
        if inter.acked_at is not None:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.ack_deadline is not None and time.monotonic() - inter.created_at > self.ack_deadline:
            raise _not_found(10062, "interaction")
        body, files = request[_BODY], request[_FILES]
        rtype, data = int(body.get("type", 0)), body.get("data")
        self._check_callback(inter, rtype, data or {}, files)
        inter.acked_at = time.monotonic()
        inter.responses.append((rtype, data))
        msg = await self._apply_callback(inter, rtype, data or {}, files)
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        return _json_response(self._callback_body(inter, rtype, msg))

    def _check_callback(
        self, inter: Interaction, rtype: int, data: dict[str, Any], files: list[FakeFile]
    ) -> None:
        """Reject callback types the interaction cannot take and invalid messages, modals and choices."""
        allowed = set(_ALLOWED_CALLBACKS.get(inter.type, set()))
        if inter.message_id is None:
            allowed -= {6, 7}
        if rtype not in allowed:
            raise _form_error("type", f"Callback type {rtype} is not valid for interaction type {inter.type}")
        if rtype in (4, 7):
            self.check_message(data, files, editing=rtype == 7)
        elif rtype == 9:
            _check_modal(data)
        elif rtype == 8:
            _check_choices(data.get("choices") or [])

    async def _apply_callback(
        self, inter: Interaction, rtype: int, data: dict[str, Any], files: list[FakeFile]
    ) -> FakeMessage | None:
        """Create or update the message a callback stands for."""
        if rtype == 4:
            msg = self.new_message(inter.channel_id, data, files, interaction=inter)
        elif rtype == 5:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            msg = self.new_message(inter.channel_id, {}, [], interaction=inter, flags=flags)
        elif rtype in (6, 7):
            msg = self.messages[inter.message_id or 0]
            if rtype == 7:
                self.edit_message(msg, data, files)
                await self._dispatch_message("MESSAGE_UPDATE", msg)
            inter.original_id = msg.id
            return msg
        else:
            return None
        inter.original_id = msg.id
        await self._dispatch_message("MESSAGE_CREATE", msg)
        return msg

    def _callback_body(self, inter: Interaction, rtype: int, msg: FakeMessage | None) -> dict[str, Any]:
        """The InteractionCallbackResponse body for ?with_response=true."""
        info: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
        if msg is not None:
            info.update(
                response_message_id=str(msg.id),
                response_message_loading=msg.loading,
                response_message_ephemeral=msg.ephemeral,
            )
        body: dict[str, Any] = {"interaction": info}
        if rtype in (4, 5, 7) and msg is not None:
            body["resource"] = {"type": rtype, "message": self.message_payload(msg)}
        elif rtype != 8:
            body["resource"] = {"type": rtype}
        return body

    def _webhook_interaction(self, request: web.Request) -> Interaction:
        """The interaction behind a webhook token (401 50027 once expired)."""
        inter = self._tokens.get(request.match_info["token"])
        if inter is None or _int(request.match_info["app"]) != self.application_id:
            raise _not_found(10015, "Webhook")
        if inter.expired:
            raise _ApiError(401, 50027, "Invalid Webhook Token")
        return inter

    def _webhook_message(self, request: web.Request) -> tuple[Interaction, FakeMessage]:
        """The @original or followup message named in a webhook route."""
        inter = self._webhook_interaction(request)
        ref = request.match_info["message"]
        msg_id = inter.original_id if ref == "@original" else _int(ref)
        if msg_id is None or (msg_id != inter.original_id and msg_id not in inter.followup_ids):
            raise _not_found(10008, "Message")
        msg = self.messages.get(msg_id)
        if msg is None or msg.deleted:
            raise _not_found(10008, "Message")
        return inter, msg

    async def _h_followup(self, request: web.Request) -> web.Response:
        """A followup message; the first one after a 'thinking' defer replaces the thinking message."""
        inter = self._webhook_interaction(request)
        if inter.acked_at is None or inter.type == 4:
            raise _not_found(10015, "Webhook")
        body, files = request[_BODY], request[_FILES]
        original = inter.original
        if original is not None and original.loading and not original.deleted:
            self.check_message(body, files)
            self.edit_message(original, {k: v for k, v in body.items() if k != "flags"}, files)
            msg = original
            await self._dispatch_message("MESSAGE_UPDATE", msg)
        else:
            self.check_message(body, files)
            msg = self.new_message(inter.channel_id, body, files, interaction=inter)
            inter.followup_ids.append(msg.id)
            await self._dispatch_message("MESSAGE_CREATE", msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return _json_response(self.message_payload(msg))
        return web.Response(status=204)

    async def _h_webhook_get(self, request: web.Request) -> web.Response:
        """GET @original or a followup."""
        return _json_response(self.message_payload(self._webhook_message(request)[1]))

    async def _h_webhook_edit(self, request: web.Request) -> web.Response:
        """PATCH @original or a followup."""
        _, msg = self._webhook_message(request)
        self.edit_message(msg, request[_BODY], request[_FILES])
        await self._dispatch_message("MESSAGE_UPDATE", msg)
        return _json_response(self.message_payload(msg))

    async def _h_webhook_delete(self, request: web.Request) -> web.Response:
        """DELETE @original or a followup."""
        _, msg = self._webhook_message(request)
        msg.deleted = True
        await self._dispatch_delete(msg)
        return web.Response(status=204)

    # -------------------------------------------------------------------------------------------- channels

    async def _h_channel(self, request: web.Request) -> web.Response:
        """A channel object."""
        return _json_response(self.channel_payload(self._channel(request)))

    async def _h_history(self, request: web.Request) -> web.Response:
        """Channel history, newest first (limit, before, after)."""
        channel = self._channel(request)
        limit = min(100, int(request.query.get("limit", 50)))
        before = _int(request.query.get("before", str(1 << 63)))
        after = _int(request.query.get("after", "0"))
        msgs = [m for m in self.channel_messages(channel.id) if after < m.id < before]
        msgs = msgs[:limit] if "after" in request.query else msgs[-limit:]
        return _json_response([self.message_payload(m) for m in reversed(msgs)])

    async def _h_send(self, request: web.Request) -> web.Response:
        """POST a message as the bot."""
        channel = self._channel(request)
        recipient = self.users.get(channel.recipient_id or 0)
        if recipient is not None and (recipient.bot or not recipient.dms_open):
            raise _ApiError(403, 50007, "Cannot send messages to this user")
        self.check_message(request[_BODY], request[_FILES])
        msg = self.new_message(channel.id, request[_BODY], request[_FILES])
        await self._dispatch_message("MESSAGE_CREATE", msg)
        return _json_response(self.message_payload(msg))

    async def _h_get_message(self, request: web.Request) -> web.Response:
        """GET one message."""
        return _json_response(self.message_payload(self._channel_message(request)))

    async def _h_edit_message(self, request: web.Request) -> web.Response:
        """PATCH a message the bot wrote."""
        msg = self._channel_message(request)
        if msg.author_id != self.bot_user_id:
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        self.edit_message(msg, request[_BODY], request[_FILES])
        await self._dispatch_message("MESSAGE_UPDATE", msg)
        return _json_response(self.message_payload(msg))

    async def _h_delete_message(self, request: web.Request) -> web.Response:
        """DELETE a message."""
        msg = self._channel_message(request)
        msg.deleted = True
        await self._dispatch_delete(msg)
        return web.Response(status=204)

    async def _h_bulk_delete(self, request: web.Request) -> web.Response:
        """Delete several messages."""
        channel = self._channel(request)
        for raw in request[_BODY].get("messages") or []:
            msg = self.messages.get(_int(str(raw)))
            if msg is not None and msg.channel_id == channel.id and not msg.deleted:
                msg.deleted = True
                await self._dispatch_delete(msg)
        return web.Response(status=204)

    # ------------------------------------------------------------------------------------------- reactions

    async def _h_add_reaction(self, request: web.Request) -> web.Response:
        """The bot reacts."""
        msg, key = self._channel_message(request), _emoji_key(request.match_info["emoji"])
        if not re.fullmatch(r"\w+:\d+", key) and key.isascii():
            raise _ApiError(400, 10014, "Unknown Emoji")
        if key not in msg.reactions and len(msg.reactions) >= 20:
            raise _ApiError(403, 30010, "Maximum number of reactions reached (20)")
        users = msg.reactions.setdefault(key, set())
        if self.bot_user_id not in users:
            users.add(self.bot_user_id)
            await self._dispatch_reaction("MESSAGE_REACTION_ADD", msg, self.bot_user_id, key)
        return web.Response(status=204)

    async def _h_remove_reaction(self, request: web.Request) -> web.Response:
        """Remove the bot's or a user's reaction."""
        msg, key = self._channel_message(request), _emoji_key(request.match_info["emoji"])
        user_id = _int(request.match_info.get("user", str(self.bot_user_id)))
        users = msg.reactions.get(key, set())
        if user_id in users:
            users.discard(user_id)
            if not users:
                del msg.reactions[key]
            await self._dispatch_reaction("MESSAGE_REACTION_REMOVE", msg, user_id, key)
        return web.Response(status=204)

    async def _h_reaction_users(self, request: web.Request) -> web.Response:
        """Users who reacted with an emoji (limit, after)."""
        msg, key = self._channel_message(request), _emoji_key(request.match_info["emoji"])
        after = _int(request.query.get("after", "0"))
        users = sorted(u for u in msg.reactions.get(key, set()) if u > after)
        limit = int(request.query.get("limit", 25))
        return _json_response([self.user_payload(u) for u in users[:limit]])

    async def _h_clear_reactions(self, request: web.Request) -> web.Response:
        """Remove all reactions, or all of one emoji."""
        msg = self._channel_message(request)
        emoji = request.match_info.get("emoji")
        if emoji is None:
            msg.reactions.clear()
        else:
            msg.reactions.pop(_emoji_key(emoji), None)
        return web.Response(status=204)

    # ---------------------------------------------------------------------------------------------- guilds

    async def _h_guild(self, request: web.Request) -> web.Response:
        """A guild object (without members and channels, as REST returns it)."""
        payload = self.guild_payload(self._guild(request))
        for key in ("members", "channels", "voice_states", "presences", "threads"):
            payload.pop(key)
        return _json_response(payload)

    async def _h_guild_channels(self, request: web.Request) -> web.Response:
        """A guild's channels."""
        guild = self._guild(request)
        return _json_response([self.channel_payload(self.channels[c]) for c in guild.channel_ids])

    async def _h_guild_roles(self, request: web.Request) -> web.Response:
        """A guild's roles."""
        return _json_response([self.role_payload(r) for r in self._guild(request).roles.values()])

    async def _h_guild_members(self, request: web.Request) -> web.Response:
        """A guild's members (limit, after)."""
        guild = self._guild(request)
        after, limit = _int(request.query.get("after", "0")), int(request.query.get("limit", 1))
        ids = sorted(u for u in guild.members if u > after)[:limit]
        return _json_response([self.member_payload(guild, u) for u in ids])

    async def _h_guild_member(self, request: web.Request) -> web.Response:
        """One guild member."""
        guild, user_id = self._guild(request), _int(request.match_info["user"])
        if user_id not in guild.members:
            raise _not_found(10007, "Member")
        return _json_response(self.member_payload(guild, user_id))


@dataclass
class _RateLimit:
    """A 429 to answer: to the next matching request, or while a held limit lasts (`until`)."""

    needle: str
    method: str | None
    retry_after: float
    is_global: bool
    when: Callable[[RecordedRequest], bool] | None = None
    hold: bool = False
    until: float = 0.0


@dataclass
class _Hook:
    """Something to do once a matching request is handled, before the bot gets the answer."""

    when: Callable[[RecordedRequest], bool]
    action: Callable[[RecordedRequest], Any]


def _too_many(retry_after: float, is_global: bool) -> web.Response:
    """Discord's 429: the wait in the body (exact) and in the headers (Retry-After rounded up)."""
    headers = {
        "Content-Type": "application/json",
        "Via": "1.1 google",
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": "fake-bucket",
        "X-RateLimit-Scope": "global" if is_global else "user",
    }
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
    return web.Response(body=json.dumps(body).encode(), status=429, headers=headers)


def _int(value: str) -> int:
    """A snowflake from a route or query, or 404 when it is not a number."""
    try:
        return int(value)
    except ValueError:
        raise _ApiError(404, 0, "404: Not Found") from None


async def _parse_body(request: web.Request) -> tuple[Any, list[FakeFile]]:
    """The JSON body, or payload_json and files[n] of a multipart body."""
    if request.content_type != "multipart/form-data":
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode(errors="replace"), []
    body: Any = None
    files: list[FakeFile] = []
    reader = await request.multipart()
    async for part in reader:
        name = getattr(part, "name", None) or ""
        if name == "payload_json":
            body = json.loads(await part.text())  # type: ignore[union-attr]
        elif name.startswith("files["):
            data = bytes(await part.read())  # type: ignore[union-attr]
            filename = getattr(part, "filename", None) or name
            ctype = part.headers.get("Content-Type")
            if ctype in (None, "application/octet-stream"):
                ctype = mimetypes.guess_type(filename)[0] or ctype
            files.append(FakeFile(filename, data, ctype, id=int(name[6:-1])))
    return body, files


def _check_command(cmd: dict[str, Any], where: str) -> None:
    """Discord's checks on a command definition: names, descriptions, option order and counts."""
    name = cmd.get("name") or ""
    ctype = cmd.get("type", 1)
    pattern = r"[-_\w]{1,32}" if ctype in (1, None) else r".{1,32}"
    if not re.fullmatch(pattern, name) or (ctype == 1 and name != name.lower()):
        raise _form_error(
            f"{where}.name", f"Invalid command name {name!r}", "APPLICATION_COMMAND_INVALID_NAME"
        )
    if ctype == 1 and not 1 <= len(cmd.get("description") or "") <= 100:
        raise _form_error(f"{where}.description", f"/{name}: description must be 1-100 characters")
    _check_options(cmd.get("options") or [], f"{where}.options")


def _check_options(options: list[dict[str, Any]], where: str) -> None:
    """Option limits: at most 25, required before optional, at most 25 choices."""
    if len(options) > 25:
        raise _form_error(where, "Must be 25 or fewer in length.")
    seen_optional = False
    for i, opt in enumerate(options):
        if opt.get("type") in (1, 2):
            _check_command({**opt, "type": 1}, f"{where}.{i}")
            continue
        if opt.get("required") and seen_optional:
            raise _form_error(f"{where}.{i}", "Required options must be placed before non-required options")
        seen_optional = seen_optional or not opt.get("required")
        if len(opt.get("choices") or []) > 25:
            raise _form_error(f"{where}.{i}.choices", "Must be 25 or fewer in length.")


def _check_modal(data: dict[str, Any]) -> None:
    """Modal limits: title, 1 to 5 components, custom_ids."""
    if not 1 <= len(data.get("title") or "") <= 45:
        raise _form_error("data.title", "Must be between 1 and 45 in length.")
    if not 1 <= len(data.get("components") or []) <= 5:
        raise _form_error("data.components", "Must be between 1 and 5 in length.")
    if not 1 <= len(data.get("custom_id") or "") <= 100:
        raise _form_error("data.custom_id", "Must be between 1 and 100 in length.")
    for comp in _walk_components(data["components"]):
        if comp.get("type") == 4 and len(comp.get("label") or "") > 45:
            raise _form_error("data.components", "Text input labels must be 45 or fewer in length.")


def _check_choices(choices: list[dict[str, Any]]) -> None:
    """Autocomplete limits: at most 25 choices with 1-100 character names."""
    if len(choices) > 25:
        raise _form_error("data.choices", "Must be 25 or fewer in length.")
    for i, choice in enumerate(choices):
        if not 1 <= len(str(choice.get("name") or "")) <= 100:
            raise _form_error(f"data.choices.{i}.name", "Must be between 1 and 100 in length.")


# ------------------------------------------------------------------------------------------------ users act


class _Users(_Rest):
    """Users acting: slash commands, autocomplete, clicks, selects, modals, reactions, messages."""

    def _interaction_base(
        self, itype: int, user_id: int, channel_id: int, data: dict[str, Any]
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload without `message`."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise LookupError(f"unknown channel {channel_id}; add it with add_channel() or dm_channel()")
        inter_id = self.next_id()
        payload: dict[str, Any] = {
            "id": str(inter_id),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "channel_id": str(channel_id),
            "channel": self.channel_payload(channel, viewer=user_id),
            "token": f"{inter_id}.{secrets.token_urlsafe(24)}",
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "authorizing_integration_owners": {"0": str(channel.guild_id or 0)},
            "context": 0 if channel.guild_id else 1,
            "app_permissions": str(self.permissions(self.bot_user_id, channel_id)),
        }
        if channel.guild_id is None:
            payload["user"] = self.user_payload(user_id)
            return payload
        guild = self.guilds[channel.guild_id]
        if user_id not in guild.members:
            raise LookupError(
                f"user {user_id} is not a member of guild {guild.id}; use add_user(..., guild_id=)"
            )
        payload.update(
            guild_id=str(guild.id),
            guild={"id": str(guild.id), "locale": "en-US", "features": []},
            guild_locale="en-US",
            member=self.member_payload(guild, user_id),
        )
        return payload

    async def _fire(
        self,
        itype: int,
        user_id: int,
        channel_id: int,
        data: dict[str, Any],
        message: FakeMessage | None = None,
    ) -> Interaction:
        """Dispatch INTERACTION_CREATE and return its handle."""
        payload = self._interaction_base(itype, user_id, channel_id, data)
        if message is not None:
            payload["message"] = self.message_payload(message)
        inter = Interaction(
            id=int(payload["id"]),
            token=payload["token"],
            type=itype,
            user_id=user_id,
            channel_id=channel_id,
            guild_id=self.channels[channel_id].guild_id,
            payload=payload,
            fake=self,  # type: ignore[arg-type]
            message_id=message.id if message else None,
        )
        self.interactions[inter.id], self._tokens[inter.token] = inter, inter
        inter.created_at = time.monotonic()
        if not await self.dispatch("INTERACTION_CREATE", payload):
            raise AssertionError("no client is connected to the fake gateway (use running_client)")
        return inter

    # -------------------------------------------------------------------------------------- slash commands

    def find_command(self, channel_id: int, name: str, ctype: int = 1) -> tuple[dict[str, Any], int | None]:
        """The synced command a user in this channel sees (guild commands first) and its guild scope."""
        guild_id = self.channels[channel_id].guild_id
        scopes = ([guild_id] if guild_id is not None else []) + [None]
        for scope in scopes:
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name and cmd.get("type", 1) == ctype:
                    return cmd, scope
        synced = {scope: [c["name"] for c in cmds] for scope, cmds in self.commands.items()}
        raise LookupError(
            f"command {name!r} (type {ctype}) is not registered for channel {channel_id}; synced: {synced}"
        )

    def _check_invocable(self, cmd: dict[str, Any], user_id: int, channel_id: int) -> None:
        """Fail where Discord would not offer the command to this user in this channel."""
        channel = self.channels[channel_id]
        perms = self.permissions(user_id, channel_id)
        required = cmd.get("default_member_permissions")
        if channel.guild_id is not None and required is not None:
            needed = int(required)
            allowed = perms & ADMINISTRATOR or perms == ALL_PERMS if needed == 0 else perms & needed == needed
            if not allowed:
                raise PermissionError(
                    f"Discord hides /{cmd['name']} from user {user_id} (needs {needed}, has {perms})"
                )
        if cmd.get("nsfw") and not channel.nsfw and channel.guild_id is not None:
            raise PermissionError(f"Discord hides age-restricted /{cmd['name']} outside NSFW channels")
        contexts = cmd.get("contexts")
        in_dm = channel.guild_id is None
        if in_dm and (cmd.get("dm_permission") is False or (contexts is not None and 1 not in contexts)):
            raise PermissionError(f"/{cmd['name']} is not available in DMs")

    @staticmethod
    def _leaf_options(cmd: dict[str, Any], subcommand: str | None) -> tuple[list[dict[str, Any]], list[str]]:
        """The option definitions of the (sub)command invoked, and the subcommand path."""
        options = cmd.get("options") or []
        path = subcommand.split() if subcommand else []
        for part in path:
            found = next((o for o in options if o["name"] == part and o["type"] in (1, 2)), None)
            if found is None:
                names = [o["name"] for o in options if o["type"] in (1, 2)]
                raise LookupError(f"/{cmd['name']} has no subcommand {part!r}; available: {names}")
            options = found.get("options") or []
        if any(o["type"] in (1, 2) for o in options):
            names = [o["name"] for o in options]
            raise ValueError(f"/{cmd['name']} {subcommand or ''} needs a subcommand: {names}")
        return options, path

    @staticmethod
    def _nest(path: list[str], options: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Wrap leaf options in their subcommand (type 1) and group (type 2)."""
        for depth, name in reversed(list(enumerate(path))):
            options = [{"type": 1 if depth == len(path) - 1 else 2, "name": name, "options": options}]
        return options

    def _build_options(
        self,
        defs: list[dict[str, Any]],
        values: dict[str, Any],
        channel_id: int,
        resolved: dict[str, dict[str, Any]],
        focused: str | None = None,
    ) -> list[dict[str, Any]]:
        """Typed option values in registration order; resolved objects are added to `resolved`."""
        known = {d["name"] for d in defs}
        unknown = set(values) - known - ({focused} if focused else set())
        if unknown or (focused is not None and focused not in known):
            raise LookupError(
                f"unknown option(s) {sorted(unknown or {focused})}; registered: {sorted(known)}"
            )
        out = []
        for d in defs:
            name = d["name"]
            if name == focused:
                out.append({"name": name, "type": d["type"], "value": values.get(name, ""), "focused": True})
            elif name in values:
                value = self._option_value(d, values[name], channel_id, resolved)
                out.append({"name": name, "type": d["type"], "value": value})
            elif d.get("required") and focused is None:
                raise ValueError(f"option {name!r} is required")
        return out

    def _option_value(self, d: dict[str, Any], value: Any, channel_id: int, resolved: dict[str, Any]) -> Any:
        """An option value typed as Discord sends it (snowflake options as strings plus resolved data)."""
        otype = d["type"]
        if otype in (3, 4, 5, 10):
            return _scalar_option(d, value)
        if otype == 11:
            return self._attachment_option(value, channel_id, resolved)
        object_id = value.id if hasattr(value, "id") else value
        if not isinstance(object_id, int):
            raise TypeError(f"option {d['name']!r} needs an id (int), got {value!r}")
        guild = self.guilds.get(self.channels[channel_id].guild_id or 0)
        if otype in (6, 9) and object_id in self.users:
            resolved.setdefault("users", {})[str(object_id)] = self.user_payload(object_id)
            if guild is not None and object_id in guild.members:
                member = self.member_payload(guild, object_id, with_user=False)
                resolved.setdefault("members", {})[str(object_id)] = member
        elif otype in (8, 9) and guild is not None:
            role = next((r for r in guild.roles.values() if r.id == object_id), None)
            if role is None:
                raise LookupError(f"unknown role {object_id}")
            resolved.setdefault("roles", {})[str(object_id)] = self.role_payload(role)
        elif otype == 7 and object_id in self.channels:
            channel = self.channel_payload(self.channels[object_id], viewer=self.bot_user_id)
            resolved.setdefault("channels", {})[str(object_id)] = channel
        else:
            raise LookupError(f"option {d['name']!r}: unknown user, role or channel {object_id}")
        return str(object_id)

    def _attachment_option(self, value: Any, channel_id: int, resolved: dict[str, Any]) -> str:
        """Upload a user's attachment (filename, bytes, content_type) and resolve it."""
        if isinstance(value, FakeFile):
            value = (value.filename, value.data, value.content_type)
        if not (isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], bytes | bytearray)):
            raise TypeError(f"attachment options take (filename, data, content_type), got {value!r}")
        filename, data, ctype = value
        upload = FakeFile(filename, bytes(data), ctype or mimetypes.guess_type(filename)[0])
        (upload,) = self._attach(channel_id, {}, [upload])
        resolved.setdefault("attachments", {})[str(upload.id)] = upload.payload()
        return str(upload.id)

    async def slash(
        self,
        user_id: int,
        channel_id: int,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: str | None = None,
        attachments: dict[str, tuple[str, bytes, str]] | None = None,
        force: bool = False,
    ) -> Interaction:
        """A user runs a slash command; `force` skips the checks on who may see the command."""
        cmd, scope = self.find_command(channel_id, name)
        if not force:
            self._check_invocable(cmd, user_id, channel_id)
        defs, path = self._leaf_options(cmd, subcommand)
        resolved: dict[str, Any] = {}
        values = {**(options or {}), **(attachments or {})}
        built = self._build_options(defs, values, channel_id, resolved)
        data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": 1, "options": self._nest(path, built)}
        if resolved:
            data["resolved"] = resolved
        if scope is not None:
            data["guild_id"] = str(scope)
        return await self._fire(2, user_id, channel_id, data)

    async def autocomplete(
        self,
        user_id: int,
        channel_id: int,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        subcommand: str | None = None,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """A user types in an autocomplete option; returns the choices the bot answered."""
        cmd, scope = self.find_command(channel_id, name)
        defs, path = self._leaf_options(cmd, subcommand)
        target = next((d for d in defs if d["name"] == focused), None)
        if target is None or not target.get("autocomplete"):
            raise ValueError(f"option {focused!r} of /{name} does not have autocomplete")
        values = {k: v for k, v in options.items() if k != focused}
        built = self._build_options(
            defs, {**values, focused: options.get(focused, "")}, channel_id, {}, focused
        )
        data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": 1, "options": self._nest(path, built)}
        if scope is not None:
            data["guild_id"] = str(scope)
        inter = await self._fire(4, user_id, channel_id, data)
        await inter.wait_acked(timeout)
        assert inter.choices is not None, f"bot answered autocomplete with {inter.responses}"
        return inter.choices

    async def context_menu(self, user_id: int, channel_id: int, name: str, target_id: int) -> Interaction:
        """A user runs a user (target is a user) or message (target is a message) context-menu command."""
        target_msg = self.messages.get(target_id)
        cmd, scope = self.find_command(channel_id, name, 3 if target_msg else 2)
        self._check_invocable(cmd, user_id, channel_id)
        resolved: dict[str, Any] = {}
        if target_msg is not None:
            resolved["messages"] = {str(target_id): self.message_payload(target_msg)}
        else:
            self._option_value({"name": "target", "type": 6}, target_id, channel_id, resolved)
        data = {
            "id": cmd["id"],
            "name": name,
            "type": cmd["type"],
            "target_id": str(target_id),
            "resolved": resolved,
        }
        if scope is not None:
            data["guild_id"] = str(scope)
        return await self._fire(2, user_id, channel_id, data)

    # --------------------------------------------------------------------------------------------- components

    def _visible_message(self, user_id: int, message_id: int) -> FakeMessage:
        """A message the user can see, or a clear failure."""
        msg = self.messages.get(message_id)
        if msg is None or msg.deleted:
            raise LookupError(f"message {message_id} does not exist or was deleted")
        if msg.ephemeral and not self._sees(msg, user_id):
            raise PermissionError(f"message {message_id} is ephemeral and was not shown to user {user_id}")
        return msg

    def _enabled_component(self, msg: FakeMessage, custom_id: str, types: tuple[int, ...]) -> dict[str, Any]:
        """The enabled component with this custom_id and type on a message."""
        comp = msg.component(custom_id)
        if comp is None or comp.get("type") not in types:
            ids = [c.get("custom_id") for c in _walk_components(msg.components) if c.get("custom_id")]
            raise LookupError(
                f"no component {custom_id!r} of type {types} on message {msg.id}; custom_ids: {ids}"
            )
        if comp.get("disabled"):
            raise PermissionError(f"component {custom_id!r} on message {msg.id} is disabled")
        return comp

    async def click(self, user_id: int, message_id: int, custom_id: str) -> Interaction:
        """A user clicks a button."""
        msg = self._visible_message(user_id, message_id)
        comp = self._enabled_component(msg, custom_id, (2,))
        data = {"custom_id": custom_id, "component_type": 2}
        if "id" in comp:
            data["id"] = comp["id"]
        return await self._fire(3, user_id, msg.channel_id, data, msg)

    async def select(self, user_id: int, message_id: int, custom_id: str, values: list[str]) -> Interaction:
        """A user picks values in a string select (component type 3)."""
        msg = self._visible_message(user_id, message_id)
        comp = self._enabled_component(msg, custom_id, (3,))
        options = [o["value"] for o in comp.get("options") or []]
        if any(v not in options for v in values):
            raise ValueError(f"values {values} not all in the select's options {options}")
        if not comp.get("min_values", 1) <= len(values) <= comp.get("max_values", 1):
            raise ValueError(
                f"select {custom_id!r} takes {comp.get('min_values', 1)}-{comp.get('max_values', 1)}"
            )
        data = {"custom_id": custom_id, "component_type": 3, "values": list(values)}
        return await self._fire(3, user_id, msg.channel_id, data, msg)

    def _shown_modal(self, user_id: int, custom_id: str) -> tuple[Interaction, dict[str, Any]]:
        """The most recent modal with this custom_id shown to the user (or, failing that, to anyone)."""
        shown = [(i, i.modal) for i in reversed(self.interactions.values()) if i.modal is not None]
        for inter, modal in sorted(shown, key=lambda x: x[0].user_id != user_id):
            if modal is not None and modal.get("custom_id") == custom_id:
                return inter, modal
        raise LookupError(
            f"no modal {custom_id!r} was shown; shown: {[m.get('custom_id') for _, m in shown if m]}"
        )

    async def submit_modal(
        self,
        user_id: int,
        channel_id: int,
        custom_id: str,
        values: dict[str, str | list[str]],
        *,
        message_id: int | None = None,
    ) -> Interaction:
        """A user submits a modal the bot showed; unset text inputs keep their pre-filled value."""
        source, modal = self._shown_modal(user_id, custom_id)
        inputs = {c["custom_id"] for c in _walk_components(modal["components"]) if c.get("custom_id")}
        if set(values) - inputs:
            raise LookupError(
                f"modal {custom_id!r} has no input(s) {sorted(set(values) - inputs)}; has {inputs}"
            )
        components = [_submitted(c, values) for c in modal["components"]]
        message_id = message_id if message_id is not None else source.message_id
        message = self.messages.get(message_id) if message_id is not None else None
        data = {"custom_id": custom_id, "components": components}
        return await self._fire(5, user_id, channel_id, data, message)

    # ------------------------------------------------------------------------------------ reactions, messages

    async def react(self, user_id: int, message_id: int, emoji: str) -> None:
        """A user adds a reaction (MESSAGE_REACTION_ADD)."""
        msg, key = self._visible_message(user_id, message_id), _emoji_key(emoji)
        users = msg.reactions.setdefault(key, set())
        if user_id not in users:
            users.add(user_id)
            await self._dispatch_reaction("MESSAGE_REACTION_ADD", msg, user_id, key)

    async def unreact(self, user_id: int, message_id: int, emoji: str) -> None:
        """A user removes a reaction (MESSAGE_REACTION_REMOVE)."""
        msg, key = self._visible_message(user_id, message_id), _emoji_key(emoji)
        users = msg.reactions.get(key, set())
        if user_id in users:
            users.discard(user_id)
            if not users:
                del msg.reactions[key]
            await self._dispatch_reaction("MESSAGE_REACTION_REMOVE", msg, user_id, key)

    async def say(
        self,
        user_id: int,
        channel_id: int,
        content: str,
        *,
        attachments: list[tuple[str, bytes, str]] | None = None,
    ) -> FakeMessage:
        """A user posts a message (MESSAGE_CREATE; content needs the MESSAGE_CONTENT intent in guilds)."""
        files = [FakeFile(name, bytes(data), ctype) for name, data, ctype in attachments or []]
        msg = self.new_message(channel_id, {"content": content}, files, author_id=user_id)
        await self._dispatch_message("MESSAGE_CREATE", msg)
        return msg


def _scalar_option(d: dict[str, Any], value: Any) -> Any:
    """Check a string/integer/boolean/number value against its option definition."""
    otype, name = d["type"], d["name"]
    ok = {
        3: isinstance(value, str),
        4: isinstance(value, int) and not isinstance(value, bool),
        5: isinstance(value, bool),
        10: isinstance(value, int | float) and not isinstance(value, bool),
    }[otype]
    if not ok:
        raise TypeError(f"option {name!r} has type {otype}; {value!r} does not fit")
    choices = [c["value"] for c in d.get("choices") or []]
    if choices and value not in choices:
        raise ValueError(f"option {name!r} must be one of {choices}, got {value!r}")
    low, high = d.get("min_value"), d.get("max_value")
    if otype in (4, 10) and ((low is not None and value < low) or (high is not None and value > high)):
        raise ValueError(f"option {name!r} must be within [{low}, {high}], got {value}")
    if otype == 3 and not d.get("min_length", 0) <= len(value) <= d.get("max_length", 6000):
        raise ValueError(f"option {name!r} has a length limit; got {len(value)} characters")
    return value


def _submitted(comp: dict[str, Any], values: dict[str, str | list[str]]) -> dict[str, Any]:
    """The submitted form of one modal component (rows and labels keep their shape)."""
    if comp.get("type") == 1:
        return {"type": 1, "components": [_submitted(c, values) for c in comp.get("components") or []]}
    if comp.get("type") == 18:
        return {"type": 18, "id": comp.get("id"), "component": _submitted(comp["component"], values)}
    custom_id = comp.get("custom_id")
    if custom_id is None:
        return {"type": comp.get("type"), "id": comp.get("id")}
    if comp.get("type") == 4:
        value = values.get(custom_id, comp.get("value") or "")
        if not isinstance(value, str):
            raise TypeError(f"text input {custom_id!r} takes a str")
        if comp.get("required", True) and not value:
            raise ValueError(f"text input {custom_id!r} is required")
        if value and not comp.get("min_length", 0) <= len(value) <= comp.get("max_length", 4000):
            raise ValueError(
                f"text input {custom_id!r}: {len(value)} characters is outside its length limits"
            )
        return {"type": 4, "id": comp.get("id"), "custom_id": custom_id, "value": value}
    chosen = values.get(custom_id, [])
    return {
        "type": comp["type"],
        "custom_id": custom_id,
        "values": [chosen] if isinstance(chosen, str) else chosen,
    }


# ------------------------------------------------------------------------------------------------- the server


class FakeDiscord(_Users):
    """The fake Discord: REST under /api/v10, the gateway at /gateway, attachments under /attachments."""

    def __init__(
        self,
        *,
        application_id: int = 1000,
        bot_user_id: int = 1000,
        bot_name: str = "Salon",
        ack_deadline: float | None = 3.0,
    ) -> None:
        super().__init__(
            application_id=application_id,
            bot_user_id=bot_user_id,
            bot_name=bot_name,
            ack_deadline=ack_deadline,
        )
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """What discord.http.Route.BASE must be set to."""
        return f"http://127.0.0.1:{self.port}{API}"

    def _app(self) -> web.Application:
        """The aiohttp application with every route."""
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._h_gateway)
        app.router.add_get("/attachments/{channel}/{attachment}/{filename}", self._h_attachment)
        for method, path, handler in self._routes():
            app.router.add_route(method, API + path, handler)
        app.router.add_route("*", "/{tail:.*}", self._h_unknown, name="unknown")
        return app

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        # Discord accepts any number of connections at once: a short listen backlog (aiohttp's default 128)
        # would drop the SYNs of a burst of interactions' callbacks and delay them by TCP's 1 s retry.
        await web.SockSite(self._runner, sock, backlog=LISTEN_BACKLOG).start()

    async def stop(self) -> None:
        """Close gateway connections and the server."""
        for session in list(self._sessions):
            await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and its default gateway (2.7 does not ask /gateway) at the fake."""
        old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.base_url
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@contextlib.asynccontextmanager
async def running_client(
    fake: FakeDiscord,
    client: discord.Client,
    *,
    timeout: float = 10.0,
    guild_ready_timeout: float | None = 0.05,
) -> AsyncIterator[discord.Client]:
    """Log in, connect and wait for ready; close the client and its connect task on exit.

    `guild_ready_timeout` shortens discord.py's wait after the last GUILD_CREATE before on_ready (2 s).
    """
    with fake.patch_discord():
        if guild_ready_timeout is not None:
            client._connection.guild_ready_timeout = guild_ready_timeout
        try:
            await client.login(FakeDiscord.TOKEN)
        except BaseException:
            await client.close()
            raise
        task = asyncio.create_task(client.connect(reconnect=False), name="fakediscord-connect")
        try:
            await _wait_ready(client, task, timeout)
            yield client
        finally:
            await client.close()
            await asyncio.wait_for(task, timeout)


async def _wait_ready(client: discord.Client, task: asyncio.Task[None], timeout: float) -> None:
    """Wait for on_ready, failing early if the connect task ends first."""
    ready = asyncio.create_task(client.wait_until_ready())
    done, _ = await asyncio.wait({ready, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        if task in done:
            task.result()
            raise AssertionError("client.connect() returned before the client was ready")
        raise AssertionError(f"client not ready after {timeout} s")
