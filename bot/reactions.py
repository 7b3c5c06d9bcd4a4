"""Reactions on result messages: 1️⃣–5️⃣ rate, ⭐ favourite, ✉️ DM the image, 🗑 delete (SPEC §2).

Raw events are used, so reactions on messages the client has not cached (older results, after a restart)
count too. A message's images are found in the catalog by message id; other messages are ignored.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import defaultdict

import discord
from discord.ext import commands

from bot import render
from bot.client import Salon
from bot.images import image_bytes
from bot.interact import is_moderator
from core.errors import InvalidRequest

log = logging.getLogger(__name__)

SCORES = {"1️⃣": 1, "2️⃣": 2, "3️⃣": 3, "4️⃣": 4, "5️⃣": 5}
FAVOURITE = "⭐"
DIRECT_MESSAGE = "✉️"
DELETE = ("🗑️", "🗑")
LINK_WAIT_S = 60.0  # how long a reaction waits for a result being shown in its channel to be linked


class ReactionsCog(commands.Cog):
    def __init__(self, bot: Salon) -> None:
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
        guild, user = str(payload.guild_id), str(payload.user_id)
        links = self.bot.deliveries.links
        mark = links.mark(payload.channel_id)
        images = await self._images_of(guild, payload.message_id)
        if not images and await links.settled(payload.channel_id, mark, LINK_WAIT_S):
            images = await self._images_of(guild, payload.message_id)  # a result shown as they reacted
        if not images:
            log.debug("reaction %s on message %s: not a result message", emoji, payload.message_id)
            return
        catalog = self.bot.services.catalog
        try:
            if emoji in SCORES:
                await self._rate(guild, user, [i.id for i in images], SCORES[emoji], added)
                await self.bot.gallery.consider(guild, [i.id for i in images])
            elif emoji == FAVOURITE:
                for image in images:
                    await catalog.favourite(guild, image.id, user, on=added)
                await self.bot.gallery.consider(guild, [i.id for i in images])
            elif emoji == DIRECT_MESSAGE and added:
                await self._send_dm(payload.user_id, images)
            elif emoji in DELETE and added:
                await self._delete(payload, images)
        except (InvalidRequest, discord.HTTPException) as exc:
            log.warning("reaction %s by %s on message %s: %s", emoji, user, payload.message_id, exc)

    async def _images_of(self, guild: str, message_id: int) -> list:
        images = await self.bot.services.catalog.of_message(guild, str(message_id))
        return [image for image in images if not image.deleted]

    async def reconcile(self, messages: int = 50) -> int:
        """After a start: read the reactions of the newest result messages and make the catalog agree
        (scores added or removed while the bot was offline; favourites are only added, since the ⭐ of
        `/browse` also sets them). Returns how many ratings changed."""
        catalog = self.bot.services.catalog
        changed = 0
        for guild, channel_id, message_id in await catalog.recent_messages(messages):
            try:
                scores, stars = await self._reactions_on(int(channel_id), int(message_id))
            except (discord.HTTPException, ValueError) as exc:
                log.info("reactions of message %s not read: %s", message_id, exc)
                continue
            for image in await catalog.of_message(guild, message_id):
                changed += await self._agree(guild, image.id, scores)
                for user in stars:
                    await catalog.favourite(guild, image.id, user)
        if changed:
            log.info("%d ratings changed by reactions made while the bot was offline", changed)
        return changed

    async def _reactions_on(self, channel_id: int, message_id: int) -> tuple[dict[str, list[int]], list[str]]:
        """Users' scores (every score emoji they left) and ⭐ users of one message."""
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        message = await channel.fetch_message(message_id)  # type: ignore[union-attr]
        scores: dict[str, list[int]] = defaultdict(list)
        stars: list[str] = []
        bot_id = self.bot.user.id if self.bot.user else None
        for reaction in message.reactions:
            emoji = str(reaction.emoji)
            if emoji not in SCORES and emoji != FAVOURITE:
                continue
            async for user in reaction.users():
                if user.id == bot_id:
                    continue
                if emoji == FAVOURITE:
                    stars.append(str(user.id))
                else:
                    scores[str(user.id)].append(SCORES[emoji])
        return scores, stars

    async def _agree(self, guild: str, image_id: int, reacted: dict[str, list[int]]) -> int:
        """Set each reacting user's score (their stored one if still among their reactions, else their
        highest); unset scores whose reaction is gone."""
        catalog = self.bot.services.catalog
        stored = await catalog.ratings(image_id)
        changed = 0
        for user, options in reacted.items():
            wanted = stored[user] if stored.get(user) in options else max(options)
            if stored.get(user) != wanted:
                await catalog.rate(guild, image_id, user, wanted)
                changed += 1
        for user in stored.keys() - reacted.keys():
            await catalog.rate(guild, image_id, user, None)
            changed += 1
        return changed

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
            text = render.infotext_block(image)
            data = await image_bytes(self.bot, image)  # fetched when made on another host
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
        await self.bot.gallery.forget(str(payload.guild_id), [image.id for image in images])
        channel = self.bot.get_channel(payload.channel_id)
        if isinstance(channel, discord.abc.Messageable):
            await channel.get_partial_message(payload.message_id).delete()  # type: ignore[attr-defined]
