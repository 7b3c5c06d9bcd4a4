"""Autocomplete of the generation options (models, LoRAs, embeddings, samplers, schedule types, styles),
shared by /imagine, /img2img, /inpaint and /browse."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.client import Salon
from commands.styles import load_styles
from engine.models.registry import ModelKind
from engine.requests import OWN_VAE_NAMES
from engine.tasks.samplers import SCHEDULE_TYPES

AUTOCOMPLETE_LIMIT = 25  # choices Discord shows


def _choices(values: list[str], current: str) -> list[app_commands.Choice[str]]:
    folded = current.casefold()
    hits = [v for v in values if folded in v.casefold()]
    hits.sort(key=lambda v: (not v.casefold().startswith(folded), v.casefold()))
    return [app_commands.Choice(name=v[:100], value=v[:100]) for v in hits[:AUTOCOMPLETE_LIMIT]]


def model_names(bot: Salon) -> list[str]:
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


def upscaler_names(bot: Salon) -> set[str]:
    """The installed model upscalers (a hires upscaler read from an infotext is kept when it is one)."""
    return set(bot.services.registry.names(ModelKind.UPSCALER))


async def complete_upscaler(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The installed model upscalers (models/ESRGAN, RealESRGAN, SwinIR, DAT, HAT)."""
    return _choices(interaction.client.services.registry.names(ModelKind.UPSCALER), current)  # type: ignore[attr-defined]


async def complete_sampler(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The process's samplers: the built-ins and the enabled extensions'."""
    return _choices(list(interaction.client.services.samplers.names), current)  # type: ignore[attr-defined]


async def complete_schedule(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return _choices(list(SCHEDULE_TYPES), current)


async def complete_style(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    settings = interaction.client.services.settings  # type: ignore[attr-defined]
    return _choices(list(load_styles(settings.styles_file)), current)


async def complete_vae(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    registry = interaction.client.services.registry  # type: ignore[attr-defined]
    return _choices([*OWN_VAE_NAMES, *registry.names(ModelKind.VAE)], current)


# Autocomplete of the options /imagine and /img2img share.
autocomplete_generation = app_commands.autocomplete(
    model=complete_model,
    sampler=complete_sampler,
    schedule=complete_schedule,
    style=complete_style,
    lora=complete_lora,
    embedding=complete_embedding,
    vae=complete_vae,
)
