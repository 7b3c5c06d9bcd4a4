"""`/train`: a LoRA, an embedding, a hypernetwork or a Dreambooth checkpoint from attached images (or a zip), or
from the server's images a search finds.

The images are checked and stored when the command runs (attachment links expire), then training runs as a
queue job in slices; the reply shows the step, the loss and its sparkline, and announces the result.
"""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Salon
from bot.interact import Place, place_of
from bot.submit import follow_new_job, submit_long_job
from commands.training import images_from_files, images_from_zip, training_job
from core.errors import InvalidRequest
from engine.models.registry import native_resolution
from engine.models.trained_files import HYPERNETWORK_WEIGHT_INITS

MAX_FROM_CATALOG = 50


def _numbers(option: str, text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidRequest(option, f"{text!r} is not numbers separated by commas, e.g. 1, 2, 1") from None


class TrainCog(commands.Cog):
    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    @app_commands.command(
        name="train",
        description="Train a LoRA, embedding, hypernetwork or checkpoint on images; all here can use it",
    )
    @app_commands.describe(
        kind="LoRA, textual-inversion embedding, hypernetwork, or a Dreambooth checkpoint",
        name="its name: <lora:name:1> in prompts, or for an embedding the name itself",
        images="a zip of images (with .txt captions of the same name), or one image",
        image2="another image, or dreambooth: a concepts list JSON (its folders are the zip's in images)",
        image3="another image",
        image4="another image",
        query="or train on this server's images that match a /browse query (captions from their prompts)",
        steps="optimizer steps",
        learning_rate="a rate, or an A1111 schedule like 5e-3:100, 1e-4",
        rank="LoRA rank (network dim)",
        resolution="training size in pixels (default: the model's)",
        seed="seed of the run",
        overwrite="replace your own earlier result of that name",
        init_text="embedding: the words its vectors start from",
        template="embedding: the training prompt, with [name] and [filewords]",
        layer_structure="hypernetwork: layer sizes, e.g. 1, 2, 1",
        activation="hypernetwork: activation after each layer",
        weight_init="hypernetwork: layer weights initialization (A1111's)",
        dropout_structure="hypernetwork: dropout after each layer, e.g. 0, 0.3, 0 (empty: no dropout)",
        vectors="embedding: vectors per token",
        instance_prompt="dreambooth: the subject's prompt, e.g. a photo of [name] dog",
        class_prompt="dreambooth: e.g. a photo of a dog; generates class images to keep the class (prior)",
        class_images="dreambooth: how many class images to generate first",
        save_every="install the result every N steps, so a cancel keeps it (0: only at the end)",
        preview_every="show a preview image every N steps (0: none)",
    )
    @app_commands.choices(
        kind=[
            app_commands.Choice(name="LoRA", value="lora"),
            app_commands.Choice(name="Embedding", value="embedding"),
            app_commands.Choice(name="Hypernetwork", value="hypernetwork"),
            app_commands.Choice(name="Dreambooth checkpoint", value="dreambooth"),
        ],
        weight_init=[app_commands.Choice(name=name, value=name) for name in HYPERNETWORK_WEIGHT_INITS],
    )
    async def train(
        self,
        interaction: discord.Interaction,
        kind: str,
        name: str,
        images: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        query: str | None = None,
        steps: int = 500,
        learning_rate: str | None = None,
        rank: int = 4,
        resolution: int | None = None,
        seed: int = 0,
        overwrite: bool = False,
        init_text: str = "*",
        vectors: int = 1,
        template: str | None = None,
        layer_structure: str = "1, 2, 1",
        activation: str = "linear",
        weight_init: str = "Normal",
        dropout_structure: str = "",
        instance_prompt: str | None = None,
        class_prompt: str | None = None,
        class_images: int = 50,
        save_every: int = 0,
        preview_every: int = 0,
    ) -> None:
        attachments = [a for a in (images, image2, image3, image4) if a is not None]
        place = await place_of(interaction)
        if bool(attachments) == bool(query):
            raise InvalidRequest("images", "attach images (or a zip) or give a query, one of the two")
        await interaction.response.defer(thinking=True)
        concepts, notes = None, []
        if any(a.filename.lower().endswith(".json") for a in attachments):
            if kind != "dreambooth":
                raise InvalidRequest(
                    "concepts", "a concepts list trains a Dreambooth checkpoint (kind dreambooth)"
                )
            concepts, notes = await self._concepts(place, attachments)
            found = []
        else:
            found = await (
                self._from_attachments(place, attachments)
                if attachments
                else self._from_catalog(place, query or "")
            )
        settings = self.bot.services.settings
        model = self.bot.services.registry.checkpoint(place.community.default_model or settings.default_model)
        options = {
            "steps": steps,
            **({"learning_rate": learning_rate} if learning_rate else {}),  # else the trainer's default
            "init_text": init_text,
            "vectors": vectors,
            "layer_structure": _numbers("layer_structure", layer_structure),
            "activation": activation,
            "weight_init": weight_init,
            "dropout_structure": _numbers("dropout_structure", dropout_structure),
            **({"template": template} if template else {}),
            "rank": rank,
            "resolution": resolution or native_resolution(model),
            "seed": seed,
            "class_prompt": class_prompt or "",
            "class_images": class_images,
            "save_every": save_every,
            "preview_every": preview_every,
            **({"instance_prompt": instance_prompt} if instance_prompt else {}),
        }
        job = training_job(
            settings,
            kind,
            name,
            found,
            place.user,
            model=model.name,
            overwrite=overwrite,
            options=options,
            concepts=concepts,
        )
        record = await submit_long_job(self.bot, interaction, place, job, {"spoiler": False})
        extra = "\n".join(f"note: {note}" for note in notes[:10])  # the concepts list's ignored keys
        await follow_new_job(self.bot, interaction, place, record, extra)

    async def _from_attachments(self, place: Place, attachments: list[discord.Attachment]):
        files = []
        for attachment in attachments:
            if attachment.size > place.limits.max_upload_bytes and not attachment.filename.lower().endswith(
                ".zip"
            ):
                raise InvalidRequest(
                    "images", f"{attachment.filename} is larger than {place.limits.max_upload_bytes:,} bytes"
                )
            files.append((attachment.filename, await attachment.read()))
        settings = self.bot.services.settings
        if len(files) == 1 and files[0][1][:4] == b"PK\x03\x04":
            return await asyncio.to_thread(images_from_zip, files[0][1], settings)
        return await asyncio.to_thread(images_from_files, files, settings)

    async def _concepts(self, place: Place, attachments: list[discord.Attachment]):
        """A concepts list JSON and the zip whose folders it names (instance and class images)."""
        from commands.training import images_from_files, zip_files
        from commands.training_concepts import concepts_from_zip

        lists = [a for a in attachments if a.filename.lower().endswith(".json")]
        zips = [a for a in attachments if a.filename.lower().endswith(".zip")]
        if len(lists) != 1 or len(zips) != 1 or len(attachments) != 2:
            raise InvalidRequest("concepts", "attach one concepts JSON and one zip holding its folders")
        if lists[0].size > 256 * 1024:
            raise InvalidRequest("concepts", "the concepts list is larger than 256 KiB")
        text, data = await lists[0].read(), await zips[0].read()
        settings = self.bot.services.settings

        def read():
            return concepts_from_zip(text, zip_files(data, settings), settings, images_from_files)

        return await asyncio.to_thread(read)

    async def _from_catalog(self, place: Place, query: str):
        from PIL import Image

        from commands.browse import browse_query

        catalog = self.bot.services.catalog
        browse = browse_query(
            place.guild, keyword=query, page_size=MAX_FROM_CATALOG, include_nsfw=place.age_restricted
        )
        page = await catalog.search(browse)
        if not page.images:
            raise InvalidRequest("query", f"no images in this server match {query!r}")

        def load():
            return [(Image.open(image.path).convert("RGB"), image.prompt) for image in page.images]

        return await asyncio.to_thread(load)
