"""Lists and housekeeping: `/models`, `/loras`, `/embeddings`, `/queue`, `/cancel`, `/settings`."""

from __future__ import annotations

import asyncio
import datetime as dt

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.client import Salon
from bot.interact import NotAllowed, is_admin, place_of
from community.settings import SETTINGS
from core.errors import InvalidRequest
from engine.models.registry import ModelKind
from jobs.records import JobStatus


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


class AdminCog(commands.Cog):
    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    # ----- installed files ---------------------------------------------------------------------------------
    async def _listing(self, interaction: discord.Interaction, kind: ModelKind, title: str) -> None:
        registry = self.bot.services.registry
        await interaction.response.defer(ephemeral=True, thinking=True)

        def rows() -> list[str]:
            registry.refresh()
            entries = registry.entries(kind)
            if kind is ModelKind.CHECKPOINT:
                entries = registry.builtin_entries() + [
                    e for e in entries if e not in registry.builtin_entries()
                ]
            lines = []
            for entry in entries:
                when = dt.datetime.fromtimestamp(entry.mtime_ns / 1e9).strftime("%Y-%m-%d")
                lines.append(f"`{entry.name}` [{registry.short_hash(entry)}] · {_size(entry.size)} · {when}")
            return lines

        lines = await asyncio.to_thread(rows)  # hashing a new file reads it once
        text = f"**{title}** ({len(lines)})\n" + ("\n".join(lines) if lines else "none installed")
        await interaction.followup.send(render.clip(text, 2000), ephemeral=True)

    @app_commands.command(name="models", description="Checkpoints installed on this machine")
    async def models(self, interaction: discord.Interaction) -> None:
        await self._listing(interaction, ModelKind.CHECKPOINT, "Checkpoints")

    @app_commands.command(name="loras", description="LoRAs installed (use them as <lora:name:1> in a prompt)")
    async def loras(self, interaction: discord.Interaction) -> None:
        await self._listing(interaction, ModelKind.LORA, "LoRAs")

    @app_commands.command(name="embeddings", description="Textual-inversion embeddings installed")
    async def embeddings(self, interaction: discord.Interaction) -> None:
        await self._listing(interaction, ModelKind.EMBEDDING, "Embeddings")

    @app_commands.command(
        name="extensions", description="Extensions installed on this machine (A1111's Extensions tab)"
    )
    async def extensions(self, interaction: discord.Interaction) -> None:
        found = self.bot.extensions_found
        lines = []
        for ext in found:
            state = (
                "✅"
                if ext.enabled and not ext.error
                else ("⏸️ disabled" if not ext.enabled else f"⚠️ {ext.error}")
            )
            url = f" · <{ext.url}>" if ext.url else ""
            lines.append(
                f"• **{ext.name}** {ext.version} ({ext.distribution}, installed {ext.installed}) {state}{url}"
            )
        text = f"**Extensions** ({len(lines)})\n" + ("\n".join(lines) if lines else "none installed")
        text += "\nExtensions are installed by the machine's owner with pip, never from Discord."
        await interaction.response.send_message(render.clip(text, 2000), ephemeral=True)

    # ----- queue -------------------------------------------------------------------------------------------
    @app_commands.command(name="queue", description="What is running and waiting, and where your jobs are")
    async def queue(self, interaction: discord.Interaction) -> None:
        queue = self.bot.services.queue
        pending = await queue.store.pending(guilds_only=False)
        positions = await queue.positions()
        me = str(interaction.user.id)
        lines = []
        for job in sorted(pending, key=lambda j: (j.status is not JobStatus.RUNNING, positions.get(j.id, 0))):
            mine = " ← yours" if job.owner == me else ""
            if job.status is JobStatus.RUNNING:
                where = f"running, {job.progress:.0%}"
            else:
                where = f"#{positions.get(job.id, '?')} in line"
            who = f"<@{job.owner}>" if job.owner.isdigit() else job.owner
            lines.append(f"job {job.id} · {job.kind.value} · {who} · {where}{mine}")
        text = "\n".join(lines[:30]) if lines else "The queue is empty."
        await interaction.response.send_message(
            render.clip(text, 2000), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(
        name="cancel", description="Cancel your queued or running job (moderators: any job)"
    )
    @app_commands.describe(job="job number; default: your latest unfinished job")
    async def cancel(self, interaction: discord.Interaction, job: int | None = None) -> None:
        queue = self.bot.services.queue
        place = await place_of(interaction)
        if job is None:
            mine = [j for j in await queue.store.pending() if j.owner == place.user]
            if not mine:
                raise InvalidRequest("job", "you have no queued or running job")
            job = mine[-1].id
        record = await queue.store.get(job)
        if record is None or record.guild != place.guild:
            raise InvalidRequest("job", f"there is no job {job} in this server")
        result = await queue.cancel(job, requester=place.user, moderator=place.moderator)
        if result.status is JobStatus.RUNNING:
            text = f"Job {job} is running; it stops at its next step."
        else:
            text = f"Job {job}: {result.status.value}."
        await interaction.response.send_message(text, ephemeral=True)

    # ----- settings ----------------------------------------------------------------------------------------
    settings = app_commands.Group(
        name="settings",
        description="This server's defaults and limits (Manage Server)",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )

    @settings.command(name="show", description="The settings in force here")
    @app_commands.describe(channel="show one channel's own settings too")
    async def settings_show(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        place = await place_of(interaction)
        community = self.bot.services.community
        guild_values = await community.values(place.guild)
        lines = ["**Server settings**"]
        lines += [f"`{key}` = {value}" for key, value in guild_values.items()] or ["(none set)"]
        if channel is not None:
            lines.append(f"**{channel.mention} only**")
            channel_values = await community.values(place.guild, str(channel.id))
            lines += [f"`{key}` = {value}" for key, value in channel_values.items()] or ["(none set)"]
        lines.append("Keys: " + ", ".join(f"`{key}`" for key in SETTINGS))
        await interaction.response.send_message(render.clip("\n".join(lines), 2000), ephemeral=True)

    @settings.command(name="set", description="Set a default or limit for the server (or one channel)")
    @app_commands.describe(key="which setting", value="its new value", channel="only in this channel")
    @app_commands.choices(
        key=[app_commands.Choice(name=f"{k}: {s.description}"[:100], value=k) for k, s in SETTINGS.items()][
            :25
        ]
    )
    async def settings_set(
        self,
        interaction: discord.Interaction,
        key: str,
        value: str,
        channel: discord.TextChannel | None = None,
    ) -> None:
        place = await self._admin_place(interaction)
        parsed = await self.bot.services.community.set(
            place.guild, key, value, place.user, str(channel.id) if channel else None
        )
        where = channel.mention if channel else "this server"
        await interaction.response.send_message(f"`{key}` = {parsed} in {where}.", ephemeral=True)

    @settings.command(name="reset", description="Remove a setting (the default applies again)")
    @app_commands.describe(key="which setting", channel="only this channel's own value")
    @app_commands.choices(key=[app_commands.Choice(name=k, value=k) for k in SETTINGS][:25])
    async def settings_reset(
        self, interaction: discord.Interaction, key: str, channel: discord.TextChannel | None = None
    ) -> None:
        place = await self._admin_place(interaction)
        removed = await self.bot.services.community.reset(
            place.guild, key, str(channel.id) if channel else None
        )
        await interaction.response.send_message(
            f"`{key}` reset." if removed else f"`{key}` was not set there.", ephemeral=True
        )

    async def _admin_place(self, interaction: discord.Interaction):
        place = await place_of(interaction)
        if not is_admin(interaction.permissions):
            raise NotAllowed("settings", "only members with Manage Server can change settings")
        return place
