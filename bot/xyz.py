"""`/xyz`: A1111's X/Y/Z plot as one queue job; the grid is posted as the result, every cell kept in the
gallery with its own infotext. Axes are typed as `Seed=1-3`, `Steps=4,8`, `Sampler=Euler,DPM++ 2M`."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Salon
from bot.interact import place_of
from bot.submit import follow_new_job, submit_long_job
from commands.generation import GenerationOptions, generation_request_for
from commands.xyz import xyz_job

AXIS_HELP = "AXIS=VALUES, e.g. Seed=1-3, Steps=10-20 [3], CFG Scale=5,7.5, Prompt S/R=cat,dog"


class XyzCog(commands.Cog):
    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    @app_commands.command(name="xyz", description="X/Y/Z plot: one image per combination of up to three axes")
    @app_commands.describe(
        prompt="the prompt (Prompt S/R replaces its first value in it)",
        x=f"the columns: {AXIS_HELP}",
        y="the rows (optional), e.g. Steps=4,8",
        z="one grid per value (optional), e.g. Sampler=Euler,DPM++ 2M",
        negative_prompt="what to avoid",
        model="checkpoint",
        sampler="sampler of every cell its axis does not change",
        steps="denoising steps",
        cfg_scale="CFG scale",
        seed="seed (-1: random, fixed once for the whole plot)",
        width="image width",
        height="image height",
        hires="hires fix scale (needed by the Hires and Denoising axes)",
    )
    async def xyz(
        self,
        interaction: discord.Interaction,
        prompt: str,
        x: str,
        y: str | None = None,
        z: str | None = None,
        negative_prompt: str | None = None,
        model: str | None = None,
        sampler: str | None = None,
        steps: app_commands.Range[int, 0, 150] | None = None,
        cfg_scale: app_commands.Range[float, 0.0, 30.0] | None = None,
        seed: int | None = None,
        width: app_commands.Range[int, 0, 2048] | None = None,
        height: app_commands.Range[int, 0, 2048] | None = None,
        hires: app_commands.Range[float, 1.0, 4.0] | None = None,
    ) -> None:
        place = await place_of(interaction)
        services = self.bot.services
        options = GenerationOptions(
            prompt=prompt,
            negative_prompt=negative_prompt or "",
            model=model,
            sampler=sampler,
            steps=steps or None,
            cfg_scale=cfg_scale or None,
            seed=seed,
            width=width or None,
            height=height or None,
            hires_scale=hires,
        )
        base = generation_request_for(
            options, services.settings, services.registry, place.limits, place.community, None
        )
        job = xyz_job(base, x, y, z, place.limits, services.registry)
        nsfw = any(
            place.community.check_prompt(_params(cell), place.age_restricted) for cell in job.params["cells"]
        )
        await interaction.response.defer(thinking=True)
        record = await submit_long_job(self.bot, interaction, place, job, {"spoiler": nsfw, "nsfw": nsfw})
        cells = len(job.params["cells"])
        await follow_new_job(self.bot, interaction, place, record, f"{cells} cells")


def _params(cell: dict):
    from jobs.codec import request_from_json
    from jobs.records import JobKind

    return request_from_json(JobKind.IMAGINE, cell, None)
