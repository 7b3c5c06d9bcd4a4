"""`/merge`: A1111's Checkpoint Merger on Discord, for members with Manage Server (the new checkpoint is
installed for everyone this Salon serves). A, B, an optional C, the mode and the multiplier, queued as the
`merge` long job (jobs/merging.py) the command line uses; a name that is taken is refused (a merge never
overwrites), and the reply names the new checkpoint with its short hash (bot/merged.py)."""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands
from discord.ext import commands

from bot.choices import complete_model
from bot.client import Salon
from bot.interact import NotAllowed, is_admin, place_of
from bot.submit import acknowledge, follow_new_job, submit_long_job
from commands.merging import merge_job
from engine.models.merging import MergeOptions

MODES = [
    app_commands.Choice(name="weighted sum: A·(1−M) + B·M", value="weighted-sum"),
    app_commands.Choice(name="add difference: A + (B − C)·M", value="add-difference"),
    app_commands.Choice(name="no interpolation: A alone", value="no-interpolation"),
]


class MergeCog(commands.Cog):
    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    @app_commands.command(name="merge", description="Merge checkpoints into a new one (Manage Server)")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    @app_commands.describe(
        a="primary model A (its other weights and configs are kept)",
        name="the new checkpoint's name (a name that is taken is refused)",
        b="secondary model B (weighted sum, add difference)",
        c="tertiary model C (add difference only)",
        mode="how A, B and C are combined (default: weighted sum)",
        multiplier="M, from 0 to 1 (default 0.3)",
    )
    @app_commands.choices(mode=MODES)
    @app_commands.autocomplete(a=complete_model, b=complete_model, c=complete_model)
    async def merge(
        self,
        interaction: discord.Interaction,
        a: str,
        name: str,
        b: str | None = None,
        c: str | None = None,
        mode: str = "weighted-sum",
        multiplier: app_commands.Range[float, 0.0, 1.0] = 0.3,
    ) -> None:
        place = await place_of(interaction)
        if not is_admin(interaction.permissions):
            raise NotAllowed("merge", "only members with Manage Server can merge checkpoints")
        await acknowledge(interaction)
        options = MergeOptions(mode, a, b, c, multiplier, name.strip())
        job = await asyncio.to_thread(merge_job, self.bot.services.registry, options)
        record = await submit_long_job(self.bot, interaction, place, job, {"spoiler": False})
        await follow_new_job(self.bot, interaction, place, record, f"merging into **{options.name}**")
