"""Galleries in Discord: the gallery channel where images that reach the server's threshold are posted once
(and unposted when deleted), and `/gallery` for shared collections any member can browse.
"""

from __future__ import annotations

import io
import logging
import time

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.browser import open_browse
from bot.client import Salon
from bot.images import image_bytes
from bot.interact import NotAllowed, place_of
from catalog.galleries import Threshold
from core.errors import InvalidRequest

log = logging.getLogger(__name__)


class GalleryPoster:
    """Posts images to their guild's gallery channel when they reach its threshold."""

    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    async def consider(self, guild: str, image_ids: list[int]) -> list[int]:
        """Post those of `image_ids` that reached the threshold and were never posted; returns them."""
        services = self.bot.services
        community = await services.community.effective(guild)
        if not community.gallery_channel:
            return []
        rule = Threshold(community.gallery_min_rank, community.gallery_min_ratings, community.gallery_stars)
        galleries = services.catalog.galleries
        posted = []
        for image_id in image_ids:
            image = await services.catalog.get(guild, image_id)
            if image is None or image.deleted:
                continue
            stars = await galleries.stars(image_id)
            if not rule.reached(image.rank_mean, image.rank_count, stars):
                continue
            if not await galleries.claim_post(guild, image_id):
                continue  # posted already (or being posted by another event)
            try:
                message = await self._post(int(community.gallery_channel), image, stars)
            except (discord.HTTPException, ValueError) as exc:
                log.warning("gallery post of image %d failed: %s", image_id, exc)
                await galleries.release_post(guild, image_id)
                continue
            await galleries.record_post(guild, image_id, str(message.channel.id), str(message.id))
            posted.append(image_id)
        return posted

    async def _post(self, channel_id: int, image, stars: int) -> discord.Message:
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise ValueError(f"channel {channel_id} cannot take messages")
        rank = f"rank {image.rank_mean:.1f} ({image.rank_count})" if image.rank_count else "unrated"
        link = (
            f" · [original](https://discord.com/channels/{image.guild}/{image.channel}/{image.message})"
            if image.channel and image.message
            else ""
        )
        content = f"🖼️ image #{image.id} by <@{image.author}> · {rank} · ⭐ {stars}{link}\n" + render.clip(
            image.prompt.replace("\n", " "), 1500
        )
        data = await image_bytes(self.bot, image)  # fetched when made on another host
        limit = self.bot.services.settings.discord.attachment_limit_bytes
        files = (
            [discord.File(io.BytesIO(data), filename=image.filename)] if data and len(data) <= limit else []
        )
        return await channel.send(
            content=render.clip(content, render.MAX_CONTENT),
            files=files,
            allowed_mentions=discord.AllowedMentions.none(),  # credit, not a ping
        )

    async def forget(self, guild: str, image_ids: list[int]) -> None:
        """Deleted images: remove their gallery posts."""
        galleries = self.bot.services.catalog.galleries
        for image_id in image_ids:
            post = await galleries.post_of(guild, image_id)
            if post is None or post.channel is None or post.message is None:
                continue
            channel = self.bot.get_channel(int(post.channel))
            try:
                if channel is None:
                    channel = await self.bot.fetch_channel(int(post.channel))
                await channel.get_partial_message(int(post.message)).delete()  # type: ignore[union-attr]
            except discord.NotFound:
                pass
            except discord.HTTPException as exc:
                log.warning("gallery post of image %d not removed: %s", image_id, exc)


def _ids(text: str) -> list[int]:
    parts = [part.strip().lstrip("#") for part in text.replace(",", " ").split()]
    if not parts or not all(part.isdigit() for part in parts) or len(parts) > 100:
        raise InvalidRequest("image_ids", f"{text!r} is not image numbers, e.g. 12, 15 (at most 100)")
    return [int(part) for part in parts]


class GalleryCog(commands.GroupCog, group_name="gallery", group_description="The server's shared galleries"):
    def __init__(self, bot: Salon) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(
        name="channel", description="Where images that reach the threshold are posted (moderators)"
    )
    @app_commands.describe(channel="the gallery channel")
    async def channel(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        place = await place_of(interaction)
        if not place.moderator:
            raise NotAllowed("channel", "only moderators (Manage Messages) choose the gallery channel")
        await self.bot.services.community.set(place.guild, "gallery_channel", str(channel.id), place.user)
        community = await self.bot.services.community.effective(place.guild)
        await interaction.response.send_message(
            f"Images reaching a mean rank of {community.gallery_min_rank:g} from {community.gallery_min_ratings} "
            f"ratings, or {community.gallery_stars} ⭐, will be posted in <#{channel.id}> "
            "(change it with `/settings set gallery_min_rank|gallery_min_ratings|gallery_stars`).",
            ephemeral=True,
        )

    @app_commands.command(name="create", description="Start a shared gallery")
    @app_commands.describe(name="its name (letters, digits, spaces)")
    async def create(self, interaction: discord.Interaction, name: str) -> None:
        place = await place_of(interaction)
        gallery = await self.bot.services.catalog.galleries.create(place.guild, name, place.user)
        await interaction.response.send_message(
            f"🖼️ Gallery **{discord.utils.escape_markdown(gallery.name)}** created by <@{place.user}>; "
            f"add images with `/gallery add name:{gallery.name} image_ids:…`",
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="add", description="Add images to a gallery (its creator or a moderator)")
    @app_commands.describe(name="the gallery", image_ids="image numbers, e.g. 12, 15")
    async def add(self, interaction: discord.Interaction, name: str, image_ids: str) -> None:
        await self._change(interaction, name, image_ids, adding=True)

    @app_commands.command(
        name="remove", description="Take images out of a gallery (its creator or a moderator)"
    )
    @app_commands.describe(name="the gallery", image_ids="image numbers, e.g. 12, 15")
    async def remove(self, interaction: discord.Interaction, name: str, image_ids: str) -> None:
        await self._change(interaction, name, image_ids, adding=False)

    async def _change(
        self, interaction: discord.Interaction, name: str, image_ids: str, adding: bool
    ) -> None:
        place = await place_of(interaction)
        ids = _ids(image_ids)
        galleries = self.bot.services.catalog.galleries
        change = galleries.add if adding else galleries.remove
        count = await change(place.guild, name, ids, place.user, place.moderator)
        verb = "added to" if adding else "removed from"
        await interaction.response.send_message(f"{count} image(s) {verb} **{name}**", ephemeral=True)

    @app_commands.command(name="list", description="The server's galleries")
    async def list(self, interaction: discord.Interaction) -> None:
        place = await place_of(interaction)
        found = await self.bot.services.catalog.galleries.list(place.guild)
        lines = [
            f"• **{discord.utils.escape_markdown(g.name)}** — {g.count} image(s), by <@{g.owner}>"
            for g in found
        ]
        text = "\n".join(lines) if lines else "No galleries yet: `/gallery create`"
        await interaction.response.send_message(
            render.clip(text, 2000), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="show", description="Browse a gallery with the /browse view")
    @app_commands.describe(name="the gallery", keyword="only its images matching this /browse query")
    async def show(self, interaction: discord.Interaction, name: str, keyword: str = "") -> None:
        place = await place_of(interaction)
        gallery = await self.bot.services.catalog.galleries.get(place.guild, name)
        if gallery is None:
            raise InvalidRequest("name", f"there is no gallery named {name!r} here; /gallery list shows them")
        await open_browse(self.bot, interaction, place, {"keyword": keyword, "gallery": gallery.id})

    @app_commands.command(name="digest", description="Post the best images of each day or week (moderators)")
    @app_commands.describe(
        period="daily, weekly, or off", hour="hour of the day it is posted (UTC)", weekday="weekly: which day"
    )
    @app_commands.choices(
        period=[app_commands.Choice(name=p, value=p) for p in ("daily", "weekly", "off")],
        weekday=[
            app_commands.Choice(name=d, value=d) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        ],
    )
    async def digest(
        self,
        interaction: discord.Interaction,
        period: str,
        hour: app_commands.Range[int, 0, 23] = 18,
        weekday: str = "sun",
    ) -> None:
        from bot.schedule import digest_cron

        community = self.bot.services.community
        place = await place_of(interaction)
        if not place.moderator:
            raise NotAllowed("period", "only moderators (Manage Messages) schedule digests")
        if period == "off":
            await community.drop_schedule(place.guild, "digest")
            self.bot.schedule.remove_digest(place.guild)
            await interaction.response.send_message("No more digests.", ephemeral=True)
            return
        if not (await community.effective(place.guild)).gallery_channel:
            raise InvalidRequest("period", "choose the gallery channel first: /gallery channel")
        cron = digest_cron(period, hour, weekday)
        await community.set_schedule(place.guild, "digest", cron, place.user, {"period": period})
        await self.bot.schedule.add_digest(place.guild, cron, period, last_run=time.time())
        when = f"every day at {hour}:00 UTC" if period == "daily" else f"every {weekday} at {hour}:00 UTC"
        await interaction.response.send_message(f"The {period} digest is posted {when}.", ephemeral=True)

    @app_commands.command(name="web", description="A link to this server's web gallery (read-only)")
    @app_commands.describe(renew="moderators: make a new link; the old one stops working at once")
    async def web(self, interaction: discord.Interaction, renew: bool = False) -> None:
        from community.web_links import web_secret

        settings = self.bot.services.settings
        place = await place_of(interaction)
        if renew and not place.moderator:
            raise NotAllowed("renew", "only moderators (Manage Messages) can renew the web gallery link")
        if not settings.web.enabled:
            raise InvalidRequest("web", "the web gallery is not enabled on this Salon ([web] enabled = true)")
        token = await self.bot.services.community.web_link(
            place.guild, place.user, web_secret(settings.data_dir), renew
        )
        base = (settings.web.public_url or f"http://{settings.web.host}:{settings.web.port}").rstrip("/")
        note = " The old link no longer works." if renew else ""
        await interaction.response.send_message(
            f"This server's gallery (read-only; anyone with the link can look): {base}/g/{token}/{note}",
            ephemeral=True,
        )

    @add.autocomplete("name")
    @remove.autocomplete("name")
    @show.autocomplete("name")
    async def _names(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        found = await self.bot.services.catalog.galleries.list(str(interaction.guild_id))
        return [
            app_commands.Choice(name=g.name, value=g.name) for g in found if current.lower() in g.name.lower()
        ][:25]
