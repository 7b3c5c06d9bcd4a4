"""The buttons under a result (🎲 reroll, V1–V4, ⬆️ U1–U4, ✏️ edit, 📋 info, 🗑 delete) and the edit modal.

Buttons are `DynamicItem`s whose custom_id carries the job id (`salon:job:<id>:<action>`); the job's request
lives in the queue database, so buttons keep working after a restart.
"""

from __future__ import annotations

import re

import discord

from bot.client import Salon
from bot.images import AddToGalleryModal, may_delete, show_info
from bot.interact import Modal, Place, place_of, refusing
from bot.submit import start_job
from catalog.records import ImageRecord, Relation
from commands import followups
from core.errors import InvalidRequest
from jobs.codec import AnyRequest, request_from_json
from jobs.records import JobRecord

PER_IMAGE_BUTTONS = 4  # V1–V4 and U1–U4, as in Midjourney's grid of four


def result_view(job: JobRecord, images: int) -> discord.ui.View:
    """The buttons under a finished job's images."""
    view = discord.ui.View(timeout=None)
    for action, label, emoji, style in (
        ("reroll", None, "🎲", discord.ButtonStyle.secondary),
        ("edit", None, "✏️", discord.ButtonStyle.secondary),
        ("info", None, "📋", discord.ButtonStyle.secondary),
        ("delete", None, "🗑️", discord.ButtonStyle.danger),
        ("gallery", None, "🖼️", discord.ButtonStyle.secondary),
    ):
        view.add_item(ResultButton(job.id, action, label, emoji, style, row=0))
    for index in range(1, min(images, PER_IMAGE_BUTTONS) + 1):
        view.add_item(
            ResultButton(job.id, f"v{index}", f"V{index}", None, discord.ButtonStyle.primary, row=1)
        )
    for index in range(1, min(images, PER_IMAGE_BUTTONS) + 1):
        view.add_item(
            ResultButton(job.id, f"u{index}", f"U{index}", "⬆️", discord.ButtonStyle.secondary, row=2)
        )
    return view


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"salon:job:(?P<job>[0-9]{1,19}):(?P<action>reroll|edit|info|delete|gallery|[vu][1-4])",
):
    def __init__(
        self,
        job_id: int,
        action: str,
        label: str | None = None,
        emoji: str | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
    ) -> None:
        self.job_id = job_id
        self.action = action
        super().__init__(
            discord.ui.Button(
                label=label, emoji=emoji, style=style, row=row, custom_id=f"salon:job:{job_id}:{action}"
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> ResultButton:
        return cls(int(match["job"]), match["action"])

    @refusing
    async def callback(self, interaction: discord.Interaction) -> None:
        bot: Salon = interaction.client  # type: ignore[assignment]
        place = await place_of(interaction)
        job, images = await job_and_images(bot, place, self.job_id)
        if self.action == "info":
            await show_info(interaction, images)
        elif self.action == "delete":
            await delete_result(bot, interaction, place, job, images)
        elif self.action == "edit":
            await interaction.response.send_modal(EditModal(job, stored_request(bot, job), images))
        elif self.action == "gallery":
            await interaction.response.send_modal(AddToGalleryModal([i.id for i in images if not i.deleted]))
        else:
            await self.rerun(bot, interaction, place, job, images)

    async def rerun(
        self,
        bot: Salon,
        interaction: discord.Interaction,
        place: Place,
        job: JobRecord,
        images: list[ImageRecord],
    ) -> None:
        request = stored_request(bot, job)
        if self.action == "reroll":
            new, parent, relation = followups.reroll(request), images[0], Relation.REROLL
        else:
            index = int(self.action[1]) - 1
            if index >= len(images) or images[index].deleted:
                raise InvalidRequest("image", f"image {index + 1} of this result is gone")
            parent = images[index]
            if self.action[0] == "v":
                new, relation = followups.variation(request, parent), Relation.VARIATION
            else:
                upscaler = place.community.default_upscaler  # a model upscaler; None: Latent
                new, _ = followups.upscale(request, parent, place.limits, upscaler)
                relation = Relation.UPSCALE
        await start_job(bot, interaction, place, new, parent.id, relation, bool(job.meta.get("spoiler")))


async def job_and_images(bot: Salon, place: Place, job_id: int) -> tuple[JobRecord, list[ImageRecord]]:
    """The job behind a result message and its images, only within the guild it was made in."""
    job = await bot.services.queue.store.get(job_id)
    if job is None or job.guild != place.guild:
        raise InvalidRequest("result", "this result is no longer known")
    images = await bot.services.catalog.of_job(job.id)
    if not images:
        raise InvalidRequest("result", "the images of this result are gone")
    return job, images


def stored_request(bot: Salon, job: JobRecord) -> AnyRequest:
    return request_from_json(job.kind, job.request, bot.services.queue.inputs)


async def delete_result(
    bot: Salon, interaction: discord.Interaction, place: Place, job: JobRecord, images: list[ImageRecord]
) -> None:
    """🗑: the images go to the catalog's recycle bin and the message goes away."""
    may_delete(place, job.owner)
    moved = await bot.services.catalog.delete(place.guild, [image.id for image in images])
    await bot.gallery.forget(place.guild, [image.id for image in images])
    await interaction.response.send_message(f"Deleted {moved} image(s).", ephemeral=True)
    if interaction.message is not None:
        try:
            await interaction.message.delete()
        except discord.HTTPException:
            pass


class EditModal(Modal):
    """✏️: change the prompt and a few settings, then run again."""

    def __init__(self, job: JobRecord, request: AnyRequest, images: list[ImageRecord]) -> None:
        super().__init__(title="Edit and run again", custom_id=f"salon:edit:{job.id}", timeout=900)
        self.job = job
        self.request = request
        self.parent = images[0]
        params = request.params
        self.prompt = discord.ui.TextInput(
            label="Prompt", style=discord.TextStyle.paragraph, default=params.prompt[:4000], max_length=4000
        )
        self.negative = discord.ui.TextInput(
            label="Negative prompt",
            style=discord.TextStyle.paragraph,
            default=params.negative_prompt[:4000],
            required=False,
            max_length=4000,
        )
        self.seed = discord.ui.TextInput(
            label="Seed (-1 = random)", default=str(self.parent.seed or -1), max_length=20
        )
        self.steps = discord.ui.TextInput(label="Steps", default=str(params.steps), max_length=5)
        self.cfg = discord.ui.TextInput(label="CFG scale", default=f"{params.cfg_scale:g}", max_length=8)
        for item in (self.prompt, self.negative, self.seed, self.steps, self.cfg):
            self.add_item(item)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        from commands.options import normalize_prompt

        bot: Salon = interaction.client  # type: ignore[assignment]
        place = await place_of(interaction)
        request = followups.edited(
            self.request,
            prompt=normalize_prompt(self.prompt.value),
            negative_prompt=normalize_prompt(self.negative.value or ""),
            seed=_number("seed", self.seed.value, int),
            steps=_number("steps", self.steps.value, int),
            cfg_scale=_number("cfg_scale", self.cfg.value, float),
        )
        await start_job(
            bot,
            interaction,
            place,
            request,
            self.parent.id,
            Relation.EDIT,
            bool(self.job.meta.get("spoiler")),
        )


def _number(option: str, text: str, kind: type) -> int | float:
    try:
        return kind(text.strip())
    except ValueError:
        raise InvalidRequest(
            option, f"{text!r} is not a {'whole number' if kind is int else 'number'}"
        ) from None


def result_items() -> list[type[discord.ui.DynamicItem]]:
    return [ResultButton]
