"""`/imagine`, `/img2img`, `/inpaint` and `/pnginfo`: check the options, defer, queue, follow the job."""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.delivery import follow_new_job
from bot.interact import Place, place_of, refuse
from catalog.records import Relation
from commands.options import (
    generation_info,
    generation_request,
    img2img_request,
    inpaint_request,
    load_input_image,
    output_size_for,
    region_mask,
)
from commands.styles import apply_style, load_styles
from core.errors import InvalidRequest
from engine.image_io import mask_from_image
from engine.models.registry import ModelKind, native_resolution
from engine.requests import GenerationRequest, InpaintArea, MaskedContent, ResizeMode
from engine.tasks.samplers import SCHEDULE_TYPES, sampler_names
from jobs.codec import AnyRequest
from jobs.records import JobRecord

if TYPE_CHECKING:
    from bot.app import SalonBot

log = logging.getLogger(__name__)

AUTOCOMPLETE_LIMIT = 25  # choices Discord shows


def _choices(values: list[str], current: str) -> list[app_commands.Choice[str]]:
    folded = current.casefold()
    hits = [v for v in values if folded in v.casefold()]
    hits.sort(key=lambda v: (not v.casefold().startswith(folded), v.casefold()))
    return [app_commands.Choice(name=v[:100], value=v[:100]) for v in hits[:AUTOCOMPLETE_LIMIT]]


def _enum_choices(enum: type) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=member.value, value=member.value) for member in enum]


def model_names(bot: SalonBot) -> list[str]:
    registry = bot.services.registry
    names = [entry.name for entry in registry.builtin_entries()]
    return names + [name for name in registry.names(ModelKind.CHECKPOINT) if name not in names]


async def complete_model(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return _choices(model_names(interaction.client), current)  # type: ignore[arg-type]


async def complete_lora(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return _choices(interaction.client.services.registry.names(ModelKind.LORA), current)  # type: ignore[attr-defined]


async def complete_embedding(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    registry = interaction.client.services.registry  # type: ignore[attr-defined]
    return _choices(registry.names(ModelKind.EMBEDDING), current)


async def complete_sampler(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return _choices(list(sampler_names()), current)


async def complete_schedule(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return _choices(list(SCHEDULE_TYPES), current)


async def complete_style(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    settings = interaction.client.services.settings  # type: ignore[attr-defined]
    return _choices(list(load_styles(settings.styles_file)), current)


# Autocomplete of the options /imagine and /img2img share.
autocomplete_generation = app_commands.autocomplete(
    model=complete_model,
    sampler=complete_sampler,
    schedule=complete_schedule,
    style=complete_style,
    lora=complete_lora,
    embedding=complete_embedding,
)

# The options /imagine, /img2img and /inpaint share, with their descriptions (every option is described).
COMMON_DESCRIPTIONS = {
    "prompt": "what to draw (A1111 syntax: (word:1.2), [word], BREAK, <lora:name:1>)",
    "negative_prompt": "what to keep out of the image",
    "model": "checkpoint to use",
    "sampler": "sampling method, as in A1111",
    "schedule": "schedule type (Automatic = the sampler's default)",
    "steps": "sampling steps",
    "cfg_scale": "how closely to follow the prompt (CFG scale)",
    "seed": "seed; -1 or empty = random",
    "width": "width in pixels (a multiple of 8)",
    "height": "height in pixels (a multiple of 8)",
    "batch_size": "images made together",
    "batch_count": "batches made one after another",
    "clip_skip": "CLIP layers to skip (1 = none)",
    "style": "a saved prompt style (styles.csv)",
    "lora": "add a LoRA to the prompt at weight 1",
    "embedding": "add a textual-inversion embedding to the prompt",
    "spoiler": "blur the result until clicked",
}


class GenerateCog(commands.Cog):
    """Generation commands. Each checks everything before it defers, then queues and follows the job."""

    def __init__(self, bot: SalonBot) -> None:
        self.bot = bot

    # ----- /imagine --------------------------------------------------------------------------------------------
    @app_commands.command(name="imagine", description="Make images from a prompt (txt2img)")
    @app_commands.describe(
        **COMMON_DESCRIPTIONS,
        hires="hires fix: upscale by this factor (e.g. 2) with a second pass",
        tiling="make a seamless tile",
    )
    @autocomplete_generation
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: str,
        negative_prompt: str = "",
        model: str | None = None,
        sampler: str | None = None,
        schedule: str = "Automatic",
        steps: int | None = None,
        cfg_scale: float | None = None,
        seed: int = -1,
        width: int | None = None,
        height: int | None = None,
        batch_size: int = 1,
        batch_count: int = 1,
        clip_skip: int = 1,
        hires: float | None = None,
        tiling: bool = False,
        style: str | None = None,
        lora: str | None = None,
        embedding: str | None = None,
        spoiler: bool = False,
    ) -> None:
        options = dict(locals())
        del options["self"], options["interaction"]
        try:
            place = await place_of(interaction)
            request = self.generation(place, options, default_size=None)
        except InvalidRequest as exc:
            await refuse(interaction, exc)
            return
        await self.queue_job(interaction, place, request, spoiler=spoiler)

    # ----- /img2img --------------------------------------------------------------------------------------------
    @app_commands.command(name="img2img", description="Redraw an image from a prompt (img2img)")
    @app_commands.describe(
        **COMMON_DESCRIPTIONS,
        image="the image to start from",
        image_id="or a catalog image id (from /browse) to start from",
        denoising_strength="how much to change: 0 = nothing, 1 = everything",
        resize_mode="how the image is fitted to the output size",
    )
    @autocomplete_generation
    @app_commands.choices(resize_mode=_enum_choices(ResizeMode))
    async def img2img(
        self,
        interaction: discord.Interaction,
        prompt: str,
        image: discord.Attachment | None = None,
        image_id: int | None = None,
        denoising_strength: float = 0.75,
        resize_mode: str = ResizeMode.JUST_RESIZE.value,
        negative_prompt: str = "",
        model: str | None = None,
        sampler: str | None = None,
        schedule: str = "Automatic",
        steps: int | None = None,
        cfg_scale: float | None = None,
        seed: int = -1,
        width: int | None = None,
        height: int | None = None,
        batch_size: int = 1,
        batch_count: int = 1,
        clip_skip: int = 1,
        style: str | None = None,
        lora: str | None = None,
        embedding: str | None = None,
        spoiler: bool = False,
    ) -> None:
        options = dict(locals())
        for name in ("self", "interaction", "image", "image_id", "denoising_strength", "resize_mode"):
            del options[name]
        try:
            place = await place_of(interaction)
            _precheck_attachment(image, place, "image")
            await interaction.response.defer(thinking=True)
            source, parent = await self.input_image(place, image, image_id, "image")
            params = self.generation(place, options, default_size=output_size_for(source))
            request = img2img_request(
                place.limits, params, source, denoising_strength=denoising_strength, resize_mode=resize_mode
            )
        except InvalidRequest as exc:
            await refuse(interaction, exc)
            return
        await self.queue_job(
            interaction, place, request, parent=parent, relation=Relation.IMG2IMG, spoiler=spoiler
        )

    # ----- /inpaint --------------------------------------------------------------------------------------------
    @app_commands.command(
        name="inpaint", description="Repaint part of an image (white in the mask = repaint)"
    )
    @app_commands.describe(
        prompt=COMMON_DESCRIPTIONS["prompt"],
        negative_prompt=COMMON_DESCRIPTIONS["negative_prompt"],
        image="the image to repaint",
        image_id="or a catalog image id (from /browse)",
        mask="mask image: white = repaint, black = keep",
        region="or a rectangle to repaint: x,y,w,h in pixels",
        denoising_strength="how much to change the masked part: 0 to 1",
        mask_blur="blur of the mask edge in pixels",
        masked_content="what the masked part starts from",
        inpaint_area="work on the whole picture, or only the masked part at full resolution",
        padding="pixels around the masked part (only masked)",
        model=COMMON_DESCRIPTIONS["model"],
        sampler=COMMON_DESCRIPTIONS["sampler"],
        steps=COMMON_DESCRIPTIONS["steps"],
        cfg_scale=COMMON_DESCRIPTIONS["cfg_scale"],
        seed=COMMON_DESCRIPTIONS["seed"],
        batch_size=COMMON_DESCRIPTIONS["batch_size"],
        spoiler=COMMON_DESCRIPTIONS["spoiler"],
    )
    @app_commands.autocomplete(model=complete_model, sampler=complete_sampler)
    @app_commands.choices(
        masked_content=_enum_choices(MaskedContent), inpaint_area=_enum_choices(InpaintArea)
    )
    async def inpaint(
        self,
        interaction: discord.Interaction,
        prompt: str,
        image: discord.Attachment | None = None,
        image_id: int | None = None,
        mask: discord.Attachment | None = None,
        region: str | None = None,
        denoising_strength: float = 0.75,
        mask_blur: int = 4,
        masked_content: str = MaskedContent.ORIGINAL.value,
        inpaint_area: str = InpaintArea.WHOLE_PICTURE.value,
        padding: int = 32,
        negative_prompt: str = "",
        model: str | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        seed: int = -1,
        batch_size: int = 1,
        spoiler: bool = False,
    ) -> None:
        options = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "model": model,
            "sampler": sampler,
            "steps": steps,
            "cfg_scale": cfg_scale,
            "seed": seed,
            "batch_size": batch_size,
        }
        try:
            place = await place_of(interaction)
            if (mask is None) == (region is None):
                raise InvalidRequest("mask", "give either a mask image or a region x,y,w,h (one of them)")
            _precheck_attachment(image, place, "image")
            _precheck_attachment(mask, place, "mask")
            await interaction.response.defer(thinking=True)
            source, parent = await self.input_image(place, image, image_id, "image")
            if mask is not None:
                mask_image = mask_from_image(await self.download(mask, place, "mask"), source.size)
            else:
                mask_image = region_mask(source, region or "")
            params = self.generation(place, options, default_size=output_size_for(source))
            request = inpaint_request(
                place.limits,
                params,
                source,
                mask_image,
                denoising_strength=denoising_strength,
                mask_blur=mask_blur,
                masked_content=masked_content,
                inpaint_area=inpaint_area,
                padding=padding,
            )
        except InvalidRequest as exc:
            await refuse(interaction, exc)
            return
        await self.queue_job(
            interaction, place, request, parent=parent, relation=Relation.INPAINT, spoiler=spoiler
        )

    # ----- /pnginfo --------------------------------------------------------------------------------------------
    @app_commands.command(name="pnginfo", description="Read the generation parameters inside an image")
    @app_commands.describe(image="a PNG (or JPEG/WebP) made by A1111, ComfyUI, Salon or another generator")
    async def pnginfo(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        try:
            place = await place_of(interaction)
            _precheck_attachment(image, place, "image")
            text = generation_info(await image.read(), place.limits)
        except InvalidRequest as exc:
            await refuse(interaction, exc)
            return
        if not text:
            await interaction.response.send_message(
                "No generation parameters found in this image.", ephemeral=True
            )
            return
        shown = render.clip(text, 1800).replace("```", "'''")
        view = discord.ui.View(timeout=None)
        view.add_item(RunAgainButton())
        await interaction.response.send_message(
            f"```\n{shown}\n```",
            file=discord.File(io.BytesIO(text.encode()), filename="parameters.txt"),
            view=view,
        )

    # ----- shared steps ----------------------------------------------------------------------------------------
    def generation(
        self, place: Place, options: dict[str, Any], default_size: tuple[int, int] | None
    ) -> GenerationRequest:
        """The txt2img part of a request from slash options, the channel's defaults and limits applied."""
        community, settings = place.community, self.bot.services.settings
        prompt, negative = options["prompt"], options.get("negative_prompt") or ""
        if options.get("style"):
            prompt, negative = apply_style(
                load_styles(settings.styles_file), options["style"], prompt, negative
            )
        registry = self.bot.services.registry
        if options.get("lora"):
            prompt += f" <lora:{registry.find_fresh(ModelKind.LORA, options['lora']).name}:1>"
        if options.get("embedding"):
            prompt += f", {registry.find_fresh(ModelKind.EMBEDDING, options['embedding']).name}"
        model = options.get("model") or community.default_model or settings.default_model
        width, height = options.get("width"), options.get("height")
        if default_size is None:
            default = community.default_size
            if default:
                default_size = tuple(int(v) for v in default.split("x"))  # type: ignore[assignment]
            else:
                side = native_resolution(registry.checkpoint(model))
                default_size = (side, side)
        assert default_size is not None
        hires = options.get("hires")
        request = generation_request(
            place.limits,
            prompt,
            negative_prompt=negative,
            model=model,
            sampler=options.get("sampler") or community.default_sampler or GenerationRequest.sampler,
            schedule=options.get("schedule") or "Automatic",
            steps=options.get("steps") or community.default_steps or 20,
            cfg_scale=options.get("cfg_scale") or community.default_cfg_scale or 7.0,
            seed=options.get("seed", -1) if options.get("seed") is not None else -1,
            size=(width or default_size[0], height or default_size[1]),
            batch_size=options.get("batch_size") or 1,
            batch_count=options.get("batch_count") or 1,
            clip_skip=options.get("clip_skip") or 1,
            tiling=bool(options.get("tiling")),
            hires_scale=hires,
        )
        return community.apply(request, place.limits)

    async def input_image(
        self, place: Place, attachment: discord.Attachment | None, image_id: int | None, option: str
    ):
        """The input image from an upload or a catalog id, checked by content; and its catalog id if any."""
        if (attachment is None) == (image_id is None):
            raise InvalidRequest(option, f"attach an {option} or give {option}_id (one of them)")
        if attachment is not None:
            return await self.download(attachment, place, option), None
        record = await self.bot.services.catalog.get(place.guild, image_id or 0)
        if record is None or record.deleted or (record.nsfw and not place.age_restricted):
            raise InvalidRequest(f"{option}_id", f"there is no image {image_id} in this server")
        data = await render.read_file(record.path)
        if data is None:
            raise InvalidRequest(f"{option}_id", f"the file of image {image_id} is gone")
        return load_input_image(data, place.limits, option), record.id

    async def download(self, attachment: discord.Attachment, place: Place, option: str):
        try:
            data = await attachment.read()
        except discord.HTTPException as exc:
            raise InvalidRequest(option, f"the attachment could not be downloaded ({exc.status})") from None
        return load_input_image(data, place.limits, option)

    async def queue_job(
        self,
        interaction: discord.Interaction,
        place: Place,
        request: AnyRequest,
        *,
        parent: int | None = None,
        relation: Relation | None = None,
        spoiler: bool = False,
    ) -> JobRecord | None:
        return await start_job(self.bot, interaction, place, request, parent, relation, spoiler)


def _precheck_attachment(attachment: discord.Attachment | None, place: Place, option: str) -> None:
    """What Discord says of an upload, checked before anything is downloaded (the content is checked after)."""
    if attachment is None:
        return
    if attachment.size > place.limits.max_upload_bytes:
        raise InvalidRequest(
            option,
            f"the file is {attachment.size:,} bytes; at most {place.limits.max_upload_bytes:,} are allowed",
        )
    if (
        attachment.width
        and attachment.height
        and attachment.width * attachment.height > place.limits.max_input_pixels
    ):
        raise InvalidRequest(
            option,
            f"{attachment.width}x{attachment.height} is more than {place.limits.max_input_pixels:,} pixels",
        )


async def start_job(
    bot: SalonBot,
    interaction: discord.Interaction,
    place: Place,
    request: AnyRequest,
    parent: int | None = None,
    relation: Relation | None = None,
    spoiler: bool = False,
) -> JobRecord | None:
    """Queue a checked request for this interaction and follow it on its reply (deferring first if needed)."""
    params = request if isinstance(request, GenerationRequest) else request.params
    try:
        nsfw = place.community.check_prompt(params, place.age_restricted)
    except InvalidRequest as exc:
        await refuse(interaction, exc)
        return None
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    meta = {"spoiler": spoiler, "nsfw": nsfw}
    if parent is not None:
        meta.update(parent_id=parent, relation=(relation or Relation.REROLL).value)
    try:
        job = await bot.services.queue.submit(
            request,
            place.user,
            guild=place.guild,
            channel=place.channel,
            idempotency_key=f"discord:{interaction.id}",
            meta=meta,
            max_pending=place.community.max_pending_per_user,
        )
    except InvalidRequest as exc:
        await refuse(interaction, exc)
        return None
    await follow_new_job(bot, interaction, place, job, spoiler=spoiler)
    return job


class RunAgainButton(discord.ui.DynamicItem[discord.ui.Button], template=r"salon:pnginfo:run"):
    """Under a /pnginfo reply: run those parameters again (read back from the attached parameters.txt)."""

    def __init__(self) -> None:
        super().__init__(
            discord.ui.Button(
                label="Run again",
                emoji="🔁",
                style=discord.ButtonStyle.primary,
                custom_id="salon:pnginfo:run",
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ):
        return cls()

    async def callback(self, interaction: discord.Interaction) -> None:
        from commands.followups import from_infotext

        bot: SalonBot = interaction.client  # type: ignore[assignment]
        try:
            place = await place_of(interaction)
            attachment = next(
                (
                    a
                    for a in (interaction.message.attachments if interaction.message else [])
                    if a.filename == "parameters.txt"
                ),
                None,
            )
            if attachment is None:
                raise InvalidRequest("image", "the parameters of this message are gone")
            text = (await attachment.read()).decode("utf-8", errors="replace")
            request, notes = from_infotext(text, place.limits, set(model_names(bot)))
            request = place.community.apply(request, place.limits)
        except InvalidRequest as exc:
            await refuse(interaction, exc)
            return
        if notes:
            log.info("run again from pnginfo: %s", "; ".join(notes))
        await start_job(bot, interaction, place, request, spoiler=False)


def generate_items() -> list[type[discord.ui.DynamicItem]]:
    return [RunAgainButton]
