"""`/xyz`: A1111's X/Y/Z plot as one queue job; the grid is posted as the result, every cell kept in the
gallery with its own infotext. Axes are typed as `Seed=1-3`, `Steps=4,8`, `Sampler=Euler,DPM++ 2M`. With an
image attached every cell is an img2img of it, and the Denoising axis its denoising strength."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Salon
from bot.interact import place_of
from bot.submit import follow_new_job, submit_long_job
from commands.generation import GenerationOptions, generation_request_for
from commands.options import img2img_request, load_input_image, output_size_for
from commands.xyz import axis_completions, xyz_job
from core.errors import InvalidRequest
from engine.models.registry import ModelKind

AXIS_HELP = "AXIS=VALUES, e.g. Seed=1-3, Steps=10-20 [3], CFG Scale=5,7.5, Prompt S/R=cat,dog"


async def complete_axis(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The axes' names, then a Hires upscaler axis's values (built-in and installed model upscalers)."""
    upscalers = interaction.client.services.registry.names(ModelKind.UPSCALER)  # type: ignore[attr-defined]
    return [
        app_commands.Choice(name=text, value=text)
        for text in axis_completions(current, upscalers)
        if len(text) <= 100
    ]


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
        hires="hires fix scale (needed by the Hires axes, and by Denoising without an image)",
        image="img2img plot: every cell starts from this image (its size unless width/height)",
        denoising_strength="the img2img denoising strength of cells the Denoising axis does not set (0.75)",
    )
    @app_commands.autocomplete(x=complete_axis, y=complete_axis, z=complete_axis)
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
        image: discord.Attachment | None = None,
        denoising_strength: app_commands.Range[float, 0.0, 1.0] | None = None,
    ) -> None:
        place = await place_of(interaction)
        services = self.bot.services
        init_image = None
        if image is not None:
            if image.size > place.limits.max_upload_bytes:
                raise InvalidRequest(
                    "image", f"the file is {image.size:,} bytes; at most {place.limits.max_upload_bytes:,}"
                )
            await interaction.response.defer(thinking=True)  # the download may outlast Discord's 3 s
            try:
                data = await image.read()
            except discord.HTTPException as exc:
                raise InvalidRequest(
                    "image", f"the attachment could not be downloaded ({exc.status})"
                ) from None
            init_image = load_input_image(data, place.limits, "image")
        elif denoising_strength is not None:
            raise InvalidRequest("denoising_strength", "applies to an img2img plot: attach an image")
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
        size = None if init_image is None else output_size_for(init_image)
        base = generation_request_for(
            options, services.settings, services.registry, place.limits, place.community, size
        )
        init = None
        if init_image is not None:
            strength = 0.75 if denoising_strength is None else denoising_strength
            init = img2img_request(base, init_image, denoising_strength=strength)
        job = xyz_job(base, x, y, z, place.limits, services.registry, init)
        nsfw = any(
            place.community.check_prompt(_params(cell), place.age_restricted) for cell in job.params["cells"]
        )
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        record = await submit_long_job(self.bot, interaction, place, job, {"spoiler": nsfw, "nsfw": nsfw})
        cells = len(job.params["cells"])
        await follow_new_job(self.bot, interaction, place, record, f"{cells} cells")


def _params(cell: dict):
    from jobs.codec import request_from_json
    from jobs.records import JobKind

    return request_from_json(JobKind.IMAGINE, cell, None)
