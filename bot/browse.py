"""`/browse`: search and page through the server's images in the Image Browser (bot/browser.py)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.browser import open_browse
from bot.choices import complete_model
from bot.client import Salon
from bot.interact import NotAllowed, place_of
from catalog.records import NegativeMode, SortOrder
from commands.browse import NEGATIVE_HELP


class BrowseCog(commands.Cog):
    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    @app_commands.command(name="browse", description="Search and page through this server's images")
    @app_commands.describe(
        query='words in the prompt and parameters: and, or, not, "phrases", model: lora: sampler: seed: neg:',
        filename="part of the file name",
        negative=NEGATIVE_HELP[:100],
        case_sensitive="match upper and lower case exactly",
        regex="the query is a regular expression",
        rank="all, none (unrated), a score 1-5, or a range like 3-5",
        min_rank="lowest mean score (1-5)",
        max_rank="highest mean score (1-5)",
        author="only images made by this member",
        model="only images made with this checkpoint",
        sort="order of the images",
        ascending="oldest / lowest first",
        favourites="only my favourites",
        recycle_bin="browse deleted images (moderators)",
    )
    @app_commands.choices(
        negative=[app_commands.Choice(name=m.value, value=m.value) for m in NegativeMode],
        sort=[app_commands.Choice(name=s.value, value=s.value) for s in SortOrder],
    )
    @app_commands.autocomplete(model=complete_model)
    async def browse(
        self,
        interaction: discord.Interaction,
        query: str = "",
        filename: str = "",
        negative: str = "no",
        case_sensitive: bool = False,
        regex: bool = False,
        rank: str = "all",
        min_rank: float | None = None,
        max_rank: float | None = None,
        author: discord.User | None = None,
        model: str | None = None,
        sort: str = "date",
        ascending: bool = False,
        favourites: bool = False,
        recycle_bin: bool = False,
    ) -> None:
        if min_rank is not None or max_rank is not None:
            rank = f"{min_rank or 1:g}-{max_rank or 5:g}"
        options: dict[str, Any] = {
            "keyword": query,
            "filename": filename,
            "negative": negative,
            "case_sensitive": case_sensitive,
            "regex": regex,
            "rank": rank,
            "author": str(author.id) if author else None,
            "model": model,
            "sort": sort,
            "ascending": ascending,
            "favourites": favourites,
            "deleted": recycle_bin,
        }
        place = await place_of(interaction)
        if recycle_bin and not place.moderator:
            raise NotAllowed("recycle_bin", "only moderators (Manage Messages) can browse deleted images")
        await open_browse(self.bot, interaction, place, options)
