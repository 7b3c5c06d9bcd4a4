"""`/imagine`, `/img2img`, `/inpaint` and `/pnginfo`: defer, check the options, queue, follow the job."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.choices import (
    autocomplete_generation,
    complete_model,
    complete_sampler,
    model_names,
    upscaler_names,
)
from bot.client import Salon
from bot.images import image_bytes
from bot.interact import Place, place_of, refusing
from bot.submit import acknowledge, start_job
from catalog.records import Relation
from commands.generation import GenerationOptions, generation_request_for
from commands.hires_options import hires_suggestions, parse_hires_text
from commands.options import (
    generation_info,
    img2img_request,
    inpaint_request,
    load_input_image,
    output_size_for,
    region_mask,
)
from core.errors import InvalidRequest
from engine.controlnet.unit_text import PREPROCESSORS, with_defaults
from engine.image_io import mask_from_image
from engine.requests import ControlNetUnit, GenerationRequest, InpaintArea, MaskedContent, ResizeMode
from jobs.codec import AnyRequest
from jobs.records import JobRecord

log = logging.getLogger(__name__)


async def complete_refiner(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """/imagine's refiner: "None" (no refiner, whatever the server's default), then the checkpoints."""
    return [
        app_commands.Choice(name="None", value="None"),
        *(await complete_model(interaction, current))[:24],
    ]


async def complete_hires(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """/imagine's hires text: what was typed, then each key not yet given."""
    return [app_commands.Choice(name=text or "2", value=text or "2") for text in hires_suggestions(current)]


def _enum_choices(enum: type) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=member.value, value=member.value) for member in enum]


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
    "vae": "a VAE of models/VAE (Automatic = the checkpoint's own)",
    "lora": "add a LoRA to the prompt at weight 1",
    "embedding": "add a textual-inversion embedding to the prompt",
    "spoiler": "blur the result until clicked",
}


class GenerateCog(commands.Cog):
    """Generation commands. Each defers first (before reading the database), checks everything, then queues
    and follows the job; a refusal after the deferral is still shown to the asker only."""

    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    # ----- /imagine --------------------------------------------------------------------------------------------
    @app_commands.command(name="imagine", description="Make images from a prompt (txt2img)")
    @app_commands.describe(
        **COMMON_DESCRIPTIONS,
        hires="hires fix: a factor (2), or scale=2,denoise=0.5,upscaler=Latent,steps=10,sampler=…,cfg=…,prompt=…",
        tiling="make a seamless tile",
        controlnet="a ControlNet of models/ControlNet, guided by control_image",
        control_module="the control image's preprocessor (none: use it as it is)",
        control_image="the ControlNet's control image",
        control_image_id="or a catalog image id (from /browse) as the control image",
        refiner="a refiner checkpoint (SDXL), switched to at the server's switch point; None: no refiner",
    )
    @autocomplete_generation
    @app_commands.autocomplete(hires=complete_hires, refiner=complete_refiner)
    @app_commands.choices(control_module=[app_commands.Choice(name=m, value=m) for m in PREPROCESSORS])
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
        hires: str | None = None,
        tiling: bool = False,
        style: str | None = None,
        lora: str | None = None,
        embedding: str | None = None,
        vae: str | None = None,
        spoiler: bool = False,
        controlnet: str | None = None,
        control_module: str = "none",
        control_image: discord.Attachment | None = None,
        control_image_id: int | None = None,
        refiner: str | None = None,
    ) -> None:
        options = dict(locals())
        for name in (
            "self",
            "interaction",
            "controlnet",
            "control_module",
            "control_image",
            "control_image_id",
        ):
            del options[name]
        await acknowledge(interaction)  # first: Discord's 3 s never wait on the database
        place = await place_of(interaction)
        if controlnet is not None or control_image is not None or control_image_id is not None:
            if controlnet is None:
                raise InvalidRequest("controlnet", "a control image needs a ControlNet: choose one")
            _precheck_attachment(control_image, place, "control_image")
            image = (await self.input_image(place, control_image, control_image_id, "control_image"))[0]
            unit = with_defaults(ControlNetUnit(controlnet, module=control_module, image=image))
            options["controlnet_units"] = (unit,)
        request = self.generation(place, options, default_size=None)
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
        vae: str | None = None,
        spoiler: bool = False,
    ) -> None:
        options = dict(locals())
        for name in ("self", "interaction", "image", "image_id", "denoising_strength", "resize_mode"):
            del options[name]
        await acknowledge(interaction)
        place = await place_of(interaction)
        _precheck_attachment(image, place, "image")
        source, parent = await self.input_image(place, image, image_id, "image")
        params = self.generation(place, options, default_size=output_size_for(source))
        request = img2img_request(
            params, source, denoising_strength=denoising_strength, resize_mode=resize_mode
        )
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
        await acknowledge(interaction)
        place = await place_of(interaction)
        if (mask is None) == (region is None):
            raise InvalidRequest("mask", "give either a mask image or a region x,y,w,h (one of them)")
        _precheck_attachment(image, place, "image")
        _precheck_attachment(mask, place, "mask")
        source, parent = await self.input_image(place, image, image_id, "image")
        if mask is not None:
            mask_image = mask_from_image(await self.download(mask, place, "mask"), source.size)
        else:
            mask_image = region_mask(source, region or "")
        params = self.generation(place, options, default_size=output_size_for(source))
        request = inpaint_request(
            params,
            source,
            mask_image,
            denoising_strength=denoising_strength,
            mask_blur=mask_blur,
            masked_content=masked_content,
            inpaint_area=inpaint_area,
            padding=padding,
        )
        await self.queue_job(
            interaction, place, request, parent=parent, relation=Relation.INPAINT, spoiler=spoiler
        )

    # ----- /pnginfo --------------------------------------------------------------------------------------------
    @app_commands.command(name="pnginfo", description="Read the generation parameters inside an image")
    @app_commands.describe(image="a PNG (or JPEG/WebP) made by A1111, ComfyUI, Salon or another generator")
    async def pnginfo(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        place = await place_of(interaction)
        _precheck_attachment(image, place, "image")
        text = generation_info(await image.read(), place.limits)
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
        """The txt2img part of a request from slash options, the channel's defaults and limits applied (a
        0 given for a number counts as not given, as Discord users leave 0 for "the default")."""
        numbers = ("steps", "cfg_scale", "width", "height", "batch_size", "batch_count", "clip_skip")
        given = {name: options.get(name) or None for name in numbers}
        chosen = GenerationOptions(
            prompt=options["prompt"],
            negative_prompt=options.get("negative_prompt") or "",
            model=options.get("model"),
            sampler=options.get("sampler"),
            schedule=options.get("schedule"),
            seed=options.get("seed"),
            tiling=bool(options.get("tiling")),
            style=options.get("style"),
            lora=options.get("lora"),
            embedding=options.get("embedding"),
            vae=options.get("vae"),
            controlnet=options.get("controlnet_units", ()),
            refiner=options.get("refiner"),
            **given,
            **(parse_hires_text(options["hires"]) if options.get("hires") else {}),
        )
        services = self.bot.services
        return generation_request_for(
            chosen, services.settings, services.registry, place.limits, place.community, default_size
        )

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
        data = await image_bytes(self.bot, record)  # fetched when made on another host
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
    ) -> JobRecord:
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

    @refusing
    async def callback(self, interaction: discord.Interaction) -> None:
        from commands.followups import from_infotext

        bot: Salon = interaction.client  # type: ignore[assignment]
        await acknowledge(interaction)
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
        request, notes = from_infotext(text, set(model_names(bot)), known_upscalers=upscaler_names(bot))
        request = place.community.apply(request, place.limits)
        if notes:
            log.info("run again from pnginfo: %s", "; ".join(notes))
        await start_job(bot, interaction, place, request, spoiler=False)


def generate_items() -> list[type[discord.ui.DynamicItem]]:
    return [RunAgainButton]
