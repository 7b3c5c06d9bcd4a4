"""`/upscale`: the Extras tab's upscale with a model upscaler (models/ESRGAN, RealESRGAN, SwinIR, DAT, HAT), of
an attached image or of one of this server's catalog images (which becomes the result's parent), as a queue
job: "Scale by" (`scale`) or "Scale to" (`size`, `crop`), a second upscaler blended in, then A1111's Extras
face restorers (`gfpgan`, `codeformer` visibilities, `codeformer_weight`). The upscaler defaults to the
server's `default_upscaler` setting; without one (or `None`), the faces are restored alone, as A1111 allows."""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands
from discord.ext import commands

from bot.choices import complete_upscaler
from bot.client import Salon
from bot.interact import Place, place_of
from bot.submit import acknowledge, follow_new_job, submit_long_job
from commands.faces import with_faces
from commands.upscaling import UpscaleInput, input_from_bytes, input_from_record, parse_size, upscale_job
from core.errors import InvalidRequest
from engine.upscaling.extras import DEFAULT_SCALE

# The queue's names for what this command calls otherwise (its check refuses by the queue's name).
OWN_OPTION = {"to": "size", "gfpgan_visibility": "gfpgan", "codeformer_visibility": "codeformer"}


class UpscaleCog(commands.Cog):
    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    @app_commands.command(
        name="upscale", description="Upscale an image with a model upscaler (A1111's Extras)"
    )
    @app_commands.describe(
        image="the image to upscale",
        image_id="or the id of one of this server's images (/browse shows ids)",
        upscaler="the model upscaler (default: the server's default_upscaler)",
        scale="upscale by this factor, 1 to 8 (the model runs, then the picture is resized)",
        size="or upscale to cover this size, WIDTHxHEIGHT (e.g. 1920x1080)",
        crop="with size: keep the centre at exactly that size",
        upscaler_2="a second upscaler, blended in",
        upscaler_2_visibility="how much of the second upscaler's result shows, 0 to 1 (default 0.5)",
        gfpgan="then restore faces with GFPGAN, blended at this visibility, 0 to 1",
        codeformer="then restore faces with CodeFormer, blended at this visibility, 0 to 1",
        codeformer_weight="CodeFormer's weight: 0 = maximum effect, 1 = minimum (default 0.5)",
    )
    @app_commands.autocomplete(upscaler=complete_upscaler, upscaler_2=complete_upscaler)
    async def upscale(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        image_id: int | None = None,
        upscaler: str | None = None,
        scale: float = DEFAULT_SCALE,
        size: str | None = None,
        crop: bool = False,
        upscaler_2: str | None = None,
        upscaler_2_visibility: app_commands.Range[float, 0.0, 1.0] = 0.5,
        gfpgan: app_commands.Range[float, 0.0, 1.0] = 0.0,
        codeformer: app_commands.Range[float, 0.0, 1.0] = 0.0,
        codeformer_weight: app_commands.Range[float, 0.0, 1.0] = 0.5,
    ) -> None:
        place = await place_of(interaction)
        if (image is None) == (image_id is None):
            raise InvalidRequest("image", "attach an image or give an image_id, one of the two")
        upscaler = upscaler or place.community.default_upscaler
        if not upscaler and not (gfpgan or codeformer):
            raise InvalidRequest(
                "upscaler", "name an upscaler (this server sets no default_upscaler), or restore faces alone"
            )
        to = parse_size(size, "size")
        if crop and to is None:
            raise InvalidRequest("crop", "crops to a size: give size too, e.g. 1920x1080")
        if not upscaler and (to or upscaler_2):  # the faces restored alone: nothing is resized
            raise InvalidRequest("size" if to else "upscaler_2", "resizes with an upscaler: name one")
        more = {
            "to": to,
            "crop": crop,
            "upscaler_2": upscaler_2,
            "upscaler_2_visibility": upscaler_2_visibility if upscaler_2 else 0.0,
        }
        await acknowledge(interaction)
        source = await (self._attached(place, image) if image is not None else self._catalog(place, image_id))
        settings = self.bot.services.settings
        job = await asyncio.to_thread(upscale_job, settings, source, upscaler, scale, **more)
        job = with_faces(job, gfpgan or None, codeformer or None, codeformer_weight if codeformer else None)
        try:
            record = await submit_long_job(
                self.bot, interaction, place, job, {"spoiler": False, **(job.meta or {})}
            )
        except InvalidRequest as error:  # the queue's check names the plan's `to`: this command's `size`…
            if error.option not in OWN_OPTION:
                raise
            raise type(error)(OWN_OPTION[error.option], error.message) from None
        await follow_new_job(self.bot, interaction, place, record)

    async def _attached(self, place: Place, image: discord.Attachment) -> UpscaleInput:
        if image.size > place.limits.max_upload_bytes:
            raise InvalidRequest(
                "image", f"{image.filename} is larger than {place.limits.max_upload_bytes:,} bytes"
            )
        data = await image.read()
        return await asyncio.to_thread(input_from_bytes, data, image.filename, place.limits)

    async def _catalog(self, place: Place, image_id: int | None) -> UpscaleInput:
        record = await self.bot.services.catalog.get(place.guild, int(image_id or 0))
        if record is None or record.deleted or (record.nsfw and not place.age_restricted):
            raise InvalidRequest("image_id", f"no image {image_id} on this server")
        local = await self.bot.services.queue.results.local_images([record])
        return await asyncio.to_thread(input_from_record, local[0], place.limits)
