"""Queueing a job for an interaction and following it on its reply: what the commands, the result buttons,
the browser and /pnginfo's "Run again" share.

An `InvalidRequest` (the server's prompt rules, the queue's checks) goes up to the one error handler
(bot/interact.py), which refuses it to the asker only.
"""

from __future__ import annotations

import discord

from bot import render
from bot.client import Salon
from bot.delivery import Reply
from bot.interact import Place
from catalog.records import Relation
from jobs.codec import AnyRequest
from jobs.records import JobEvent, JobRecord, JobStatus


async def acknowledge(interaction: discord.Interaction) -> None:
    """Defer with "thinking…" unless the interaction was already answered: the first thing a command that
    queues a job does, before it reads the database or does any real work, so that Discord's 3 s are never
    spent waiting on the database or on other people's work (a refusal after it is still shown to the asker
    only: bot/interact.py's `refuse` deletes the "thinking…" reply)."""
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)


async def start_job(
    bot: Salon,
    interaction: discord.Interaction,
    place: Place,
    request: AnyRequest,
    parent: int | None = None,
    relation: Relation | None = None,
    spoiler: bool = False,
) -> JobRecord:
    """Queue a generation request for this interaction and follow it on its reply (deferring first if needed)."""
    await acknowledge(interaction)
    nsfw = place.community.check_prompt(request.params, place.age_restricted)
    meta = {"spoiler": spoiler, "nsfw": nsfw}
    if parent is not None:
        meta.update(parent_id=parent, relation=(relation or Relation.REROLL).value)
    job = await bot.services.queue.submit(
        request,
        place.user,
        guild=place.guild,
        channel=place.channel,
        idempotency_key=f"discord:{interaction.id}",
        meta=meta,
        max_pending=place.community.max_pending_per_user,
        limits=place.limits,  # the server's limits: the queue checks the request against them
    )
    await follow_new_job(bot, interaction, place, job, spoiler=spoiler)
    return job


async def submit_long_job(
    bot: Salon, interaction: discord.Interaction, place: Place, job, meta: dict
) -> JobRecord:
    """Queue a long job (training, animation) for this interaction; InvalidRequest when the queue refuses it."""
    return await bot.services.queue.submit_task(
        job.kind,
        job.params,
        place.user,
        guild=place.guild,
        channel=place.channel,
        idempotency_key=f"discord:{interaction.id}",
        meta=meta,
        max_pending=place.community.max_pending_per_user,
    )


async def follow_new_job(
    bot: Salon,
    interaction: discord.Interaction,
    place: Place,
    record: JobRecord,
    extra: str = "",
    files=(),
    spoiler: bool = False,
) -> None:
    """Show a job just queued for this interaction (its place in line, and `extra` lines) and follow it."""
    position = (await bot.services.queue.positions([record.id])).get(record.id)
    reply = Reply(bot, interaction.channel_id or int(place.channel), interaction.user.id, interaction)
    event = JobEvent(record.id, "queued", JobStatus.QUEUED, position=position)
    content = render.progress_content(record, place.user, event) + (f"\n{extra}" if extra else "")
    await reply.show(render.clip(content, render.MAX_CONTENT), list(files))
    bot.deliveries.follow(record, reply, spoiler)
