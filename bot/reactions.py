"""Reactions on result messages: 1️⃣–5️⃣ rate, ⭐ favourite, ✉️ DM the image, 🗑 delete (SPEC §2).

Raw events are used, so reactions on messages the client has not cached (older results, after a restart)
count too. A message's images are found in the catalog by message id; other messages are ignored.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.interact import is_moderator
from engine.errors import InvalidRequest

if TYPE_CHECKING:
    from bot.app import SalonBot

log = logging.getLogger(__name__)

SCORES = {"1️⃣": 1, "2️⃣": 2, "3️⃣": 3, "4️⃣": 4, "5️⃣": 5}
FAVOURITE = "⭐"
DIRECT_MESSAGE = "✉️"
DELETE = ("🗑️", "🗑")


class ReactionsCog(commands.Cog):
    def __init__(self, bot: SalonBot) -> None:
        self.bot = bot
        # One user's reactions are handled in the order they came (discord.py runs each event as its own
        # task): changing 2️⃣ to 5️⃣ then removing 2️⃣ must leave 5.
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._react(payload, added=True)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._react(payload, added=False)

    async def _react(self, payload: discord.RawReactionActionEvent, added: bool) -> None:
        if payload.guild_id is None or self.bot.user is None or payload.user_id == self.bot.user.id:
            return
        async with self._locks[payload.user_id]:
            await self._handle(payload, added)

    async def _handle(self, payload: discord.RawReactionActionEvent, added: bool) -> None:
        emoji = str(payload.emoji)
        if emoji not in SCORES and emoji not in (FAVOURITE, DIRECT_MESSAGE, *DELETE):
            return
        catalog = self.bot.services.catalog
        guild, user = str(payload.guild_id), str(payload.user_id)
        images = [i for i in await catalog.of_message(guild, str(payload.message_id)) if not i.deleted]
        if not images:
            return
        try:
            if emoji in SCORES:
                await self._rate(guild, user, [i.id for i in images], SCORES[emoji], added)
            elif emoji == FAVOURITE:
                for image in images:
                    await catalog.favourite(guild, image.id, user, on=added)
            elif emoji == DIRECT_MESSAGE and added:
                await self._send_dm(payload.user_id, images)
            elif emoji in DELETE and added:
                await self._delete(payload, images)
        except (InvalidRequest, discord.HTTPException) as exc:
            log.warning("reaction %s by %s on message %s: %s", emoji, user, payload.message_id, exc)

    async def _rate(self, guild: str, user: str, image_ids: list[int], score: int, added: bool) -> None:
        """Adding sets the user's score (the latest reaction wins); removing unsets it only if it is that score."""
        catalog = self.bot.services.catalog
        for image_id in image_ids:
            if added:
                await catalog.rate(guild, image_id, user, score)
            elif await catalog.rating_of(image_id, user) == score:
                await catalog.rate(guild, image_id, user, None)

    async def _send_dm(self, user_id: int, images) -> None:
        user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
        limit = self.bot.services.settings.discord.attachment_limit_bytes
        for image in images[:10]:
            text = (
                f"**#{image.id}** `{image.filename}`\n```\n{image.infotext.replace('```', chr(39) * 3)}\n```"
            )
            data = await _read(image.path)
            files = (
                [discord.File(io.BytesIO(data), filename=image.filename)]
                if data and len(data) <= limit
                else []
            )
            await user.send(text[:2000], files=files)

    async def _delete(self, payload: discord.RawReactionActionEvent, images) -> None:
        member = payload.member
        moderator = member is not None and is_moderator(member.guild_permissions)
        if not moderator and any(image.author != str(payload.user_id) for image in images):
            log.info("user %s may not delete message %s (not theirs)", payload.user_id, payload.message_id)
            return
        await self.bot.services.catalog.delete(str(payload.guild_id), [image.id for image in images])
        channel = self.bot.get_channel(payload.channel_id)
        if isinstance(channel, discord.abc.Messageable):
            await channel.get_partial_message(payload.message_id).delete()  # type: ignore[attr-defined]


async def _read(path: str) -> bytes | None:
    from pathlib import Path

    file = Path(path)
    return await asyncio.to_thread(file.read_bytes) if file.is_file() else None
