"""Small pieces every cog uses: refusing with a clear ephemeral message, who may do what, the guild context.

Refusals are answered in one place: a command, button, select or modal raises `InvalidRequest` (or
`NotAllowed`), and `SalonTree.on_error` (slash commands), `refusing` (a button's or select's callback) or
`Modal.on_error` turns it into the same ephemeral message (`refuse`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import discord
from discord import app_commands

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


class SalonTree(app_commands.CommandTree):
    """The command tree: a slash command that raises `InvalidRequest` is refused to the asker only."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(original, InvalidRequest):
            await refuse(interaction, original)
            return
        await super().on_error(interaction, error)


Item = TypeVar("Item")


def refusing(
    callback: Callable[[Item, discord.Interaction], Awaitable[Any]],
) -> Callable[[Item, discord.Interaction], Awaitable[None]]:
    """For the callback of a button or select (a `DynamicItem`, which has no view's `on_error`): an
    `InvalidRequest` it raises is refused to the clicker only."""

    @functools.wraps(callback)
    async def answered(item: Item, interaction: discord.Interaction) -> None:
        try:
            await callback(item, interaction)
        except InvalidRequest as exc:
            await refuse(interaction, exc)

    return answered


class Modal(discord.ui.Modal):
    """A modal whose `on_submit` may raise `InvalidRequest`: it is refused to the submitter only."""

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        if isinstance(error, InvalidRequest):
            await refuse(interaction, error)
            return
        await super().on_error(interaction, error)


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
