"""Small pieces every cog uses: refusing with a clear ephemeral message, who may do what, the guild context."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import discord

from community.settings import CommunitySettings
from config import Limits
from core.errors import InvalidRequest

log = logging.getLogger(__name__)


class NotAllowed(InvalidRequest):
    """The user may not do this here (someone else's image, a moderator action, a DM)."""


def explain(error: InvalidRequest) -> str:
    """The message a user reads: the option in bold, then what is allowed."""
    return f"**{error.option}**: {discord.utils.escape_mentions(error.message)}"[:2000]


async def refuse(interaction: discord.Interaction, error: InvalidRequest) -> None:
    """Answer with an ephemeral message, whether or not the interaction was already acknowledged.

    After a public `defer`, the "thinking…" reply is deleted so that only the asker sees the refusal."""
    text = explain(error)
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    if interaction.type is discord.InteractionType.application_command or _deferred_thinking(interaction):
        try:
            await interaction.delete_original_response()
        except discord.HTTPException:
            pass
    await interaction.followup.send(text, ephemeral=True)


def _deferred_thinking(interaction: discord.Interaction) -> bool:
    return interaction.response.type is discord.InteractionResponseType.deferred_channel_message


def is_moderator(permissions: discord.Permissions) -> bool:
    """Manage Messages (SPEC §10): may delete and cancel other people's things."""
    return permissions.manage_messages or permissions.administrator


def is_admin(permissions: discord.Permissions) -> bool:
    """Manage Guild: may change the server's settings."""
    return permissions.manage_guild or permissions.administrator


@dataclass(frozen=True)
class Place:
    """Where a command runs: the guild and channel as catalog/queue keys, their settings and limits."""

    guild: str
    channel: str
    user: str
    age_restricted: bool
    community: CommunitySettings
    limits: Limits
    moderator: bool


async def place_of(interaction: discord.Interaction) -> Place:
    """The guild context of an interaction; Salon works in servers only (catalogs are per guild)."""
    if interaction.guild_id is None or interaction.channel_id is None:
        raise NotAllowed("server", "Salon works in a server's channels, not in direct messages")
    bot = interaction.client
    services = bot.services  # type: ignore[attr-defined]
    community = await services.community.effective(str(interaction.guild_id), str(interaction.channel_id))
    channel = interaction.channel
    age_restricted = bool(channel is not None and getattr(channel, "is_nsfw", lambda: False)())
    return Place(
        guild=str(interaction.guild_id),
        channel=str(interaction.channel_id),
        user=str(interaction.user.id),
        age_restricted=age_restricted,
        community=community,
        limits=community.limits(services.settings.limits),
        moderator=is_moderator(interaction.permissions),
    )
