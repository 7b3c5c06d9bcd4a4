"""The Image Browser in a message (opened by `/browse` and `/gallery show`): a numbered contact sheet of one
page, page N of M, ⏮ ◀ ▶ ⏭ and 🔢 (jump to a page: a modal), a select for one image, and its actions (info,
rerun, favourite, delete, delete all results of the filter, add to a gallery, its family: bot/family.py). In
the recycle bin (moderators) the actions are info and restore.

The filter and position live in community.db (`browse_sessions`), and the custom_ids carry the session id
(`salon:browse:<id>:<action>`), so a browse message keeps working after a restart.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import Any

import discord

from bot import render
from bot.choices import model_names, upscaler_names
from bot.client import Salon
from bot.family import show_family
from bot.images import AddToGalleryModal, may_delete, show_info
from bot.interact import Modal, NotAllowed, Place, place_of, refusing
from bot.submit import start_job
from catalog.records import BrowseQuery, ImageRecord, Page, Relation
from commands.browse import browse_query, count_text, has_next, has_previous, position_text
from community.store import BrowseSession
from core.errors import InvalidRequest

NAVIGATION = (("first", "⏮️"), ("prev", "◀️"), ("next", "▶️"), ("last", "⏭️"))
ACTIONS = (
    ("info", "Info", "📋", discord.ButtonStyle.secondary),
    ("rerun", "Rerun", "🔁", discord.ButtonStyle.primary),
    ("fav", "Favourite", "⭐", discord.ButtonStyle.secondary),
    ("del", "Delete", "🗑️", discord.ButtonStyle.danger),
    ("delall", "Delete all results", "🧨", discord.ButtonStyle.danger),
)
BIN_ACTIONS = (  # the recycle bin's
    ("info", "Info", "📋", discord.ButtonStyle.secondary),
    ("restore", "Restore", "♻️", discord.ButtonStyle.success),
)


DEFAULT_OPTIONS: dict[str, Any] = {
    "keyword": "",
    "filename": "",
    "negative": "no",
    "case_sensitive": False,
    "regex": False,
    "rank": "all",
    "author": None,
    "model": None,
    "sort": "date",
    "ascending": False,
    "favourites": False,
    "deleted": False,
    "gallery": None,
}


async def open_browse(
    bot: Salon, interaction: discord.Interaction, place: Place, options: dict[str, Any]
) -> None:
    """Check the filter, then show its first page with the browse view (for /browse and /gallery show)."""
    options = {**DEFAULT_OPTIONS, **options}
    build_query(place, options, 0, 1, bot.services.settings.discord.browse_page_size)
    if options["regex"]:
        _check_regex(options["keyword"])
    await interaction.response.defer(thinking=True)
    community = bot.services.community
    session = await community.new_browse(place.guild, place.channel, place.user, options)
    shown = await render_page(bot, place, session, 1, None)
    message = await interaction.edit_original_response(**shown.edit())
    await community.move_browse(session.id, shown.page.page, None, str(message.id))


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRequest("query", f"not a valid regular expression: {exc}") from None


def build_query(
    place: Place, options: dict[str, Any], session_id: int, page: int | str, page_size: int
) -> BrowseQuery:
    return browse_query(
        place.guild,
        keyword=options["keyword"],
        filename=options["filename"],
        negative=options["negative"],
        case_sensitive=options["case_sensitive"],
        regex=options["regex"],
        rank=options["rank"],
        author=options["author"],
        model=options["model"],
        favourites_of=place.user if options["favourites"] else None,
        gallery=options.get("gallery"),
        sort=options["sort"],
        ascending=options["ascending"],
        page=page,
        page_size=page_size,
        deleted=options["deleted"],
        include_nsfw=place.age_restricted,
        random_seed=session_id,
    )


class Shown:
    """A rendered browse page: what goes into the message."""

    def __init__(
        self, page: Page, embeds: list[discord.Embed], uploads: list[render.Upload], view: discord.ui.View
    ):
        self.page = page
        self.embeds = embeds
        self.uploads = uploads
        self.view = view

    def edit(self) -> dict[str, Any]:
        return {
            "content": None,
            "embeds": self.embeds,
            "attachments": [upload.file() for upload in self.uploads],
            "view": self.view,
        }


async def render_page(
    bot: Salon, place: Place, session: BrowseSession, page: int, selected: int | None
) -> Shown:
    """Search for this page (page −1 = last) and draw it; `selected` is the image shown large, if on it."""
    size = bot.services.settings.discord.browse_page_size
    found = await bot.services.catalog.search(build_query(place, session.options, session.id, page, size))
    # Files made on another host are fetched here first (jobs/results.py), as the rest of the bot does.
    images = await bot.services.queue.results.local_images(found.images)
    chosen = next((image for image in images if image.id == selected), None)
    sheet = await asyncio.to_thread(render.contact_sheet, [image.path for image in images])
    uploads = [render.Upload("page.png", render.png_bytes(sheet))]
    embed = discord.Embed(title="Image Browser", description=_listing(found), colour=0x5865F2)
    embed.set_image(url="attachment://page.png")
    embed.set_footer(
        text=f"{position_text(found)} · {count_text(found)} images · {_summary(session.options)}"[:2048]
    )
    embeds = [embed]
    if chosen is not None:
        data = await render.read_file(chosen.path)
        if data is not None and len(data) <= bot.services.settings.discord.attachment_limit_bytes // 2:
            uploads.append(render.Upload(f"selected-{chosen.filename}", data))
        detail = discord.Embed(
            title=f"#{chosen.id} · {chosen.filename}", description=_detail(chosen), colour=0x57F287
        )
        detail.set_image(url=f"attachment://selected-{chosen.filename}")
        embeds.append(detail)
    await bot.services.community.move_browse(session.id, found.page, chosen.id if chosen else None)
    deleted = bool(session.options.get("deleted"))
    return Shown(found, embeds, uploads, browse_view(session.id, found, chosen, deleted))


def _listing(page: Page) -> str:
    if not page.images:
        return "No images match."
    lines = []
    for number, image in enumerate(page.images, start=1):
        rank = f"★{image.rank_mean:.1f} ({image.rank_count})" if image.rank_count else "unrated"
        prompt = render.clip(image.prompt.replace("\n", " "), 70) or "(no prompt)"
        lines.append(f"`{number}` **#{image.id}** {rank} · {discord.utils.escape_markdown(prompt)}")
    return "\n".join(lines)[:4096]


def _detail(image: ImageRecord) -> str:
    link = ""
    if image.channel and image.message:
        link = f"\n[open the message](https://discord.com/channels/{image.guild}/{image.channel}/{image.message})"
    author = f"<@{image.author}>" if image.author.isdigit() else image.author
    text = image.infotext.replace("```", "'''")
    return f"by {author}{link}\n```\n{render.clip(text, 3500)}\n```"


def _summary(options: dict[str, Any]) -> str:
    parts = [
        f"{key}={value}"
        for key, value in options.items()
        if value not in ("", None, False, "all", "no", "date")
    ]
    return ", ".join(parts) or "all images"


def browse_view(
    session_id: int, page: Page, chosen: ImageRecord | None, deleted: bool = False
) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    pages = max(1, page.pages)
    for action, emoji in NAVIGATION:
        at_end = not has_next(page)  # (an unnumbered last page has first, no previous: web/server.py too)
        at_start = page.page == 1 if action == "first" else not has_previous(page)
        disabled = (action in ("first", "prev") and at_start) or (action in ("next", "last") and at_end)
        view.add_item(BrowseButton(session_id, action, emoji=emoji, disabled=disabled, row=0))
    view.add_item(BrowseButton(session_id, "page", "Page…", "🔢", disabled=pages <= 1, row=0))
    if page.images and deleted:
        view.add_item(BrowseSelect(session_id, page.images, chosen))
        for action, label, emoji, style in BIN_ACTIONS:
            view.add_item(
                BrowseButton(session_id, action, label, emoji, style, disabled=chosen is None, row=2)
            )
    elif page.images:
        view.add_item(BrowseSelect(session_id, page.images, chosen))
        for action, label, emoji, style in ACTIONS:
            needs_choice = action in ("info", "rerun", "fav", "del")
            view.add_item(
                BrowseButton(
                    session_id, action, label, emoji, style, disabled=needs_choice and chosen is None, row=2
                )
            )
        view.add_item(
            BrowseButton(session_id, "gal", "Add to gallery", "🖼️", discord.ButtonStyle.secondary,
                         disabled=chosen is None, row=3)
        )  # fmt: skip
        view.add_item(BrowseButton(session_id, "family", "Family", "🌳", disabled=chosen is None, row=3))
    return view


TEMPLATE = (
    r"salon:browse:(?P<session>[0-9]{1,19}):"
    r"(?P<action>first|prev|next|last|page|info|rerun|fav|del|delall|confirm|gal|family|restore)"
)


class BrowseButton(discord.ui.DynamicItem[discord.ui.Button], template=TEMPLATE):
    def __init__(
        self,
        session_id: int,
        action: str,
        label: str | None = None,
        emoji: str | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        disabled: bool = False,
        row: int | None = None,
    ) -> None:
        self.session_id = session_id
        self.action = action
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=style,
                disabled=disabled,
                row=row,
                custom_id=f"salon:browse:{session_id}:{action}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ):
        return cls(int(match["session"]), match["action"])

    @refusing
    async def callback(self, interaction: discord.Interaction) -> None:
        bot: Salon = interaction.client  # type: ignore[assignment]
        place, session = await open_session(bot, interaction, self.session_id)
        await BrowseActions(bot, interaction, place, session).do(self.action)


class BrowseSelect(
    discord.ui.DynamicItem[discord.ui.Select], template=r"salon:browse:(?P<session>[0-9]{1,19}):pick"
):
    def __init__(
        self, session_id: int, images: tuple[ImageRecord, ...] = (), chosen: ImageRecord | None = None
    ):
        self.session_id = session_id
        options = [
            discord.SelectOption(
                label=f"{number}. #{image.id}",
                description=render.clip(image.prompt.replace("\n", " "), 100) or None,
                value=str(image.id),
                default=chosen is not None and image.id == chosen.id,
            )
            for number, image in enumerate(images[:25], start=1)
        ] or [discord.SelectOption(label="-", value="0")]
        super().__init__(
            discord.ui.Select(
                custom_id=f"salon:browse:{session_id}:pick",
                placeholder="Show an image…",
                options=options,
                row=1,
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Select, match: re.Match[str]
    ):
        return cls(int(match["session"]))

    @refusing
    async def callback(self, interaction: discord.Interaction) -> None:
        bot: Salon = interaction.client  # type: ignore[assignment]
        values = (interaction.data or {}).get("values", [])  # type: ignore[union-attr]
        place, session = await open_session(bot, interaction, self.session_id)
        chosen = int(values[0]) if values and str(values[0]).isdigit() else None
        shown = await render_page(bot, place, session, session.page, chosen)
        await interaction.response.edit_message(**shown.edit())


async def open_session(
    bot: Salon, interaction: discord.Interaction, session_id: int
) -> tuple[Place, BrowseSession]:
    place = await place_of(interaction)
    session = await bot.services.community.browse(session_id)
    if session is None or session.guild != place.guild:
        raise InvalidRequest("browse", "this browser is no longer known; open a new one with /browse")
    if session.user != place.user:
        raise NotAllowed("browse", f"this browser belongs to <@{session.user}>; open your own with /browse")
    return place, session


class BrowseActions:
    """What one click on a browse message does."""

    def __init__(
        self, bot: Salon, interaction: discord.Interaction, place: Place, session: BrowseSession
    ) -> None:
        self.bot = bot
        self.interaction = interaction
        self.place = place
        self.session = session

    async def do(self, action: str) -> None:
        if action in ("first", "prev", "next", "last"):
            target = {"first": 1, "prev": self.session.page - 1, "next": self.session.page + 1, "last": -1}[
                action
            ]
            await self.redraw(max(1, target) if target != -1 else -1, None)
            return
        handler = {
            "info": self.info,
            "rerun": self.rerun,
            "fav": self.favourite,
            "del": self.delete,
            "delall": self.ask_delete_all,
            "confirm": self.delete_all,
            "gal": self.add_to_gallery,
            "family": self.family,
            "restore": self.restore,
            "page": self.ask_page,
        }[action]
        await handler()

    async def redraw(self, page: int, selected: int | None) -> None:
        shown = await render_page(self.bot, self.place, self.session, page, selected)
        await self.interaction.response.edit_message(**shown.edit())

    async def selected(self) -> ImageRecord:
        image = None
        if self.session.selected is not None:
            image = await self.bot.services.catalog.get(self.place.guild, self.session.selected)
        if image is None:
            raise InvalidRequest("image", "choose an image in the list first")
        return image

    async def info(self) -> None:
        await show_info(self.interaction, [await self.selected()])

    async def rerun(self) -> None:
        from commands.followups import from_infotext

        image = await self.selected()
        request, notes = from_infotext(
            image.infotext, set(model_names(self.bot)), known_upscalers=upscaler_names(self.bot)
        )
        request = self.place.community.apply(request, self.place.limits)
        await start_job(self.bot, self.interaction, self.place, request, image.id, Relation.RERUN)

    async def favourite(self) -> None:
        image = await self.selected()
        catalog = self.bot.services.catalog
        on = not await catalog.is_favourite(image.id, self.place.user)
        await catalog.favourite(self.place.guild, image.id, self.place.user, on=on)
        word = "added to" if on else "removed from"
        await self.interaction.response.send_message(f"#{image.id} {word} your favourites.", ephemeral=True)
        await self.bot.gallery.consider(self.place.guild, [image.id])

    async def add_to_gallery(self) -> None:
        image = await self.selected()
        await self.interaction.response.send_modal(AddToGalleryModal([image.id]))

    async def delete(self) -> None:
        image = await self.selected()
        may_delete(self.place, image.author)
        await self.bot.services.catalog.delete(self.place.guild, [image.id])
        await self.bot.gallery.forget(self.place.guild, [image.id])
        await self.redraw(self.session.page, None)

    async def family(self) -> None:
        await show_family(self.bot, self.interaction, self.place, await self.selected())

    async def restore(self) -> None:
        """♻️ in the recycle bin: the image goes back where it was (who may delete it may restore it)."""
        image = await self.selected()
        may_delete(self.place, image.author)
        await self.bot.services.catalog.restore(self.place.guild, [image.id])
        await self.redraw(self.session.page, None)

    async def ask_page(self) -> None:
        await self.interaction.response.send_modal(PageModal(self.session.id))

    def _query(self) -> BrowseQuery:
        size = self.bot.services.settings.discord.browse_page_size
        return build_query(self.place, self.session.options, self.session.id, 1, size)

    async def ask_delete_all(self) -> None:
        if not self.place.moderator:
            raise NotAllowed(
                "delete", "only moderators (Manage Messages) can delete every result of a filter"
            )
        total = (await self.bot.services.catalog.search(replace(self._query(), count_cap=None))).total
        view = discord.ui.View(timeout=None)
        view.add_item(
            BrowseButton(
                self.session.id, "confirm", f"Delete all {total} images", "🧨", discord.ButtonStyle.danger
            )
        )
        await self.interaction.response.send_message(
            f"This deletes all **{total}** images matching this filter, also those not on this page. "
            "They go to the recycle bin. Sure?",
            view=view,
            ephemeral=True,
        )

    async def delete_all(self) -> None:
        if not self.place.moderator:
            raise NotAllowed(
                "delete", "only moderators (Manage Messages) can delete every result of a filter"
            )
        ids = await self.bot.services.catalog.matching_ids(self._query())
        moved = await self.bot.services.catalog.delete(self.place.guild, ids)
        await self.bot.gallery.forget(self.place.guild, ids)
        await self.interaction.response.edit_message(content=f"Deleted {moved} images.", view=None)
        if self.session.message is not None and self.interaction.channel is not None:
            shown = await render_page(self.bot, self.place, self.session, 1, None)
            message = self.interaction.channel.get_partial_message(int(self.session.message))  # type: ignore[union-attr]
            await message.edit(**shown.edit())


class PageModal(Modal):
    """🔢: jump to a page by number, or "last"; checked against the pages the filter has now."""

    def __init__(self, session_id: int) -> None:
        super().__init__(title="Go to page", timeout=600, custom_id=f"salon:browse:{session_id}:goto")
        self.session_id = session_id
        self.number = discord.ui.TextInput(
            label="Page number, or last", max_length=12, custom_id="page", placeholder="e.g. 3 or last"
        )
        self.add_item(self.number)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot: Salon = interaction.client  # type: ignore[assignment]
        place, session = await open_session(bot, interaction, self.session_id)
        typed = str(self.number.value).strip()
        page = build_query(place, session.options, session.id, typed, 1).page  # "3", "last" or refused
        shown = await render_page(bot, place, session, page, None)  # a page past the end is refused
        await interaction.response.edit_message(**shown.edit())


def browse_items() -> list[type[discord.ui.DynamicItem]]:
    return [BrowseButton, BrowseSelect]
