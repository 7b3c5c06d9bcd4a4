"""What the buttons under a result and the Image Browser both do with images: show their info, check who
may delete them, add them to a gallery."""

from __future__ import annotations

import io

import discord

from bot import render
from bot.client import Salon
from bot.interact import Modal, NotAllowed, Place, place_of
from catalog.records import ImageRecord


async def show_info(interaction: discord.Interaction, images: list[ImageRecord]) -> None:
    """📋: each image's file name and full A1111 infotext, to the asker only."""
    text = "\n".join(render.infotext_block(image) for image in images)
    if len(text) <= 2000:
        await interaction.response.send_message(text, ephemeral=True)
        return
    whole = "\n\n".join(f"#{image.id} {image.filename}\n{image.infotext}" for image in images)
    await interaction.response.send_message(
        "Generation info (too long for a message):",
        file=discord.File(io.BytesIO(whole.encode()), filename="parameters.txt"),
        ephemeral=True,
    )


async def image_bytes(bot: Salon, image: ImageRecord) -> bytes | None:
    """An image's file, fetched to this host first when a worker on another host made it (jobs/results.py);
    None when no host can supply it."""
    [local] = await bot.services.queue.results.local_images([image])
    return await render.read_file(local.path)


def may_delete(place: Place, author: str) -> None:
    if place.user != author and not place.moderator:
        raise NotAllowed(
            "delete", "only the person who made this image or a moderator (Manage Messages) can delete it"
        )


class AddToGalleryModal(Modal):
    """🖼️ under a result or in /browse: add its image(s) to a gallery by name."""

    def __init__(self, image_ids: list[int]) -> None:
        super().__init__(title="Add to a gallery", timeout=600, custom_id="salon:gallery-add")
        self.image_ids = image_ids
        self.name = discord.ui.TextInput(
            label="Gallery name (/gallery list shows them)", max_length=64, custom_id="name"
        )
        self.add_item(self.name)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot: Salon = interaction.client  # type: ignore[assignment]
        place = await place_of(interaction)
        name = str(self.name.value)
        added = await bot.services.catalog.galleries.add(
            place.guild, name, self.image_ids, place.user, place.moderator
        )
        ids = ", ".join(f"#{i}" for i in self.image_ids)
        await interaction.response.send_message(f"{ids}: {added} added to **{name}**", ephemeral=True)
