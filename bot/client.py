"""The client as the rest of the bot sees it: what cogs, views and helpers use of `bot.app.SalonBot`.

A `typing.Protocol`, so that no module of the bot imports `bot.app` (not even for type hints): the client is
built last, from the modules that use it (the composition root of the bot).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import discord

from bot.links import ResultLinks
from bot.ratelimits import RateLimits
from bot.services import Services
from jobs.records import JobRecord


class Following(Protocol):
    """The jobs the process follows on Discord (`bot.delivery.Deliveries`)."""

    links: ResultLinks

    def follow(self, job: JobRecord, reply: Any, spoiler: bool = False) -> asyncio.Task: ...

    def active_in(self, channel_id: int) -> int: ...


class GalleryPosts(Protocol):
    """The gallery channel's posts (`bot.gallery.GalleryPoster`)."""

    async def consider(self, guild: str, image_ids: list[int]) -> list[int]: ...

    async def forget(self, guild: str, image_ids: list[int]) -> None: ...


class Digests(Protocol):
    """The guilds' scheduled digests (`bot.schedule.Scheduler`)."""

    async def add_digest(self, guild: str, cron: str, period: str, last_run: float | None = None) -> None: ...

    def remove_digest(self, guild: str) -> None: ...


class Salon(Protocol):
    """What the bot's modules use of the client."""

    services: Services
    rate_limits: RateLimits
    deliveries: Following
    gallery: GalleryPosts
    schedule: Digests
    extensions_found: list

    @property
    def user(self) -> discord.ClientUser | None: ...

    def get_channel(self, id: int, /) -> Any: ...

    def carries_guild(self, guild_id: int) -> bool: ...

    async def fetch_channel(self, channel_id: int, /) -> Any: ...

    def get_user(self, id: int, /) -> discord.User | None: ...

    async def fetch_user(self, user_id: int, /) -> discord.User: ...
