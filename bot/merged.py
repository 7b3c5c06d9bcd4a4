"""What a finished `/merge` job (kind `merge`, A1111's Checkpoint Merger) posts: the new checkpoint's name and
short hash, and how to use it."""

from __future__ import annotations

import asyncio

from bot.render import clip
from commands.merging import merged_checkpoint
from core.errors import SalonError
from engine.models.registry import ModelRegistry
from jobs.records import JobRecord


async def merged_content(registry: ModelRegistry, job: JobRecord, user_id: str) -> str:
    """The announcement of a finished merge (the hash is read from the new file, in a thread)."""
    params = job.request
    try:
        name, short_hash = await asyncio.to_thread(merged_checkpoint, registry, str(params.get("name")))
        what = f"**{name}** [{short_hash}]"
    except SalonError:  # gone already (deleted by hand): say what was made without its hash
        name, what = str(params.get("name")), f"**{params.get('name')}**"
    mode, multiplier = params.get("mode", "?"), float(params.get("multiplier", 0))
    text = (
        f"✅ merged {what} · <@{user_id}>\n{mode}, M={multiplier:g} (job {job.id}); "
        f"everyone here can use it now: `/imagine model:{name}`"
    )
    return clip(text, 2000)
