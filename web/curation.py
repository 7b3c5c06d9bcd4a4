"""The owner's curation in `salon web --local`: rate, favourite, delete and restore from an image's page, and
the recycle bin's page with a restore button for each image. Plain HTML forms, no JavaScript.

Only the local gallery (its owner, on 127.0.0.1) has these forms and routes; the shared gallery (a guild's
signed link) stays read-only: its POST routes do not exist. Each form carries a token bound to its action and
image, signed with a secret made when the process starts (`FormTokens`), so a page of another site cannot
post a form here (a form without a valid token is refused, and so is a post that says it comes from another
origin). The owner is this machine's command-line owner (`jobs.queue.owner_for_cli`), as for `salon rate`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
from urllib.parse import urlsplit

from aiohttp import web

from catalog.records import ImageRecord
from commands.browse import browse_query, count_text, position_text
from core.errors import InvalidRequest

ACTIONS = ("rate", "favourite", "delete", "restore")
TOKEN_TTL_S = 12 * 3600  # a page left open longer asks for a reload


class FormRefused(Exception):
    """A post that is not done: the message says why (shown on a page with `status`)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class FormTokens:
    """Per-form tokens: `issued.nonce.mac`, the mac over them with the action and image id, keyed by a
    secret of this process (a restart voids the forms of pages served before it)."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def issue(self, action: str, image_id: int) -> str:
        head = f"{int(time.time())}.{secrets.token_urlsafe(12)}"
        return f"{head}.{self._mac(head, action, image_id)}"

    def valid(self, token: str, action: str, image_id: int) -> bool:
        issued, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if not issued.isdigit() or not nonce or not mac:
            return False
        if not 0 <= time.time() - int(issued) <= TOKEN_TTL_S:
            return False
        return hmac.compare_digest(mac, self._mac(f"{issued}.{nonce}", action, image_id))

    def _mac(self, head: str, action: str, image_id: int) -> str:
        message = f"{head}.{action}.{image_id}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


class Curation:
    """The local gallery's forms over `Catalog`'s public methods, for one guild and its owner."""

    def __init__(self, catalog, guild: str, owner: str, page_size: int) -> None:
        self.catalog = catalog
        self.guild = guild
        self.owner = owner
        self.page_size = page_size
        self.tokens = FormTokens()

    async def post(self, request: web.Request) -> web.Response:
        """POST /image/<id>/<action>: check the origin and the token, do it, and go back (303)."""
        image_id, action = int(request.match_info["id"]), request.match_info["action"]
        _same_origin(request)
        form = await request.post()
        if not self.tokens.valid(str(form.get("token", "")), action, image_id):
            raise FormRefused(
                "This form has expired or did not come from this gallery: reload the page and try again."
            )
        try:
            await self._do(action, image_id, form)
        except InvalidRequest as exc:
            raise FormRefused(str(exc), status=400) from None
        back = str(form.get("back", ""))
        target = "/bin" if back == "bin" else f"/image/{image_id}"
        raise web.HTTPSeeOther(target)

    async def _do(self, action: str, image_id: int, form) -> None:
        record = await self.catalog.get(self.guild, image_id)
        if record is None:
            raise InvalidRequest("image", f"there is no image {image_id} here")
        if action == "rate":
            typed = str(form.get("score", ""))
            if typed not in ("1", "2", "3", "4", "5", "none"):
                raise InvalidRequest("score", f"{typed!r} is not a score from 1 to 5, nor none")
            await self.catalog.rate(self.guild, image_id, self.owner, None if typed == "none" else int(typed))
        elif action == "favourite":
            await self.catalog.favourite(self.guild, image_id, self.owner, on=form.get("on") == "1")
        elif action == "delete":
            await self.catalog.delete(self.guild, [image_id])
        else:
            await self.catalog.restore(self.guild, [image_id])

    async def forms(self, image: ImageRecord) -> str:
        """The image page's forms: in the recycle bin, restore; else the owner's score, favourite, delete."""
        if image.deleted:
            return "<p class=binned>In the recycle bin.</p>" + self._form(image.id, "restore", "Restore")
        mine = await self.catalog.rating_of(image.id, self.owner)
        favourite = await self.catalog.is_favourite(image.id, self.owner)
        scores = "".join(
            f"<button name=score value={n}{' class=mine' if mine == n else ''}>{'★' * n}</button>"
            for n in range(1, 6)
        )
        if mine is not None:
            scores += "<button name=score value=none>remove my rating</button>"
        return (
            "<section class=curate><h2>Curate</h2>"
            + self._form(image.id, "rate", scores, label=f"your rating: {mine or 'none'}")
            + self._form(
                image.id,
                "favourite",
                "★ Remove from favourites" if favourite else "☆ Add to favourites",
                fields={"on": "0" if favourite else "1"},
            )
            + self._form(image.id, "delete", "Move to the recycle bin")
            + "</section>"
        )

    def _form(
        self, image_id: int, action: str, buttons: str, label: str = "", fields: dict[str, str] | None = None
    ) -> str:
        if not buttons.startswith("<button"):
            buttons = f"<button>{html.escape(buttons)}</button>"
        hidden = {"token": self.tokens.issue(action, image_id), **(fields or {})}
        inputs = "".join(
            f'<input type=hidden name={name} value="{html.escape(value)}">' for name, value in hidden.items()
        )
        caption = f"<span>{html.escape(label)}</span> " if label else ""
        return (
            f'<form method=post class="{action}" action="/image/{image_id}/{action}">'
            f"{inputs}{caption}{buttons}</form>"
        )

    async def bin_page(self, request: web.Request) -> tuple[str, str]:
        """GET /bin: the recycle bin's images, newest deletions' images first, each with a restore button."""
        query = browse_query(
            self.guild, deleted=True, page=request.query.get("page", "1") or "1", page_size=self.page_size
        )
        page = await self.catalog.search(query)
        rows = []
        for image in page.images:
            deleted = time.strftime("%Y-%m-%d %H:%M", time.gmtime(image.deleted_at or 0))
            form = self._form(image.id, "restore", "Restore", fields={"back": "bin"})
            prompt = html.escape(image.prompt[:120].replace("\n", " ")) or "(no prompt)"
            rows.append(
                f'<li class=binned-image><a href="/image/{image.id}">#{image.id}</a> {prompt} '
                f"<span class=when>deleted {deleted} UTC</span>{form}</li>"
            )
        listing = (
            f"<ul class=bin>{''.join(rows)}</ul>" if rows else "<p class=empty>The recycle bin is empty.</p>"
        )
        pager = ""
        if page.pages > 1:
            links = [
                f'<a href="/bin?page={n}">{n}</a>' if n != page.page else f"<span>{n}</span>"
                for n in range(1, page.pages + 1)
            ][:50]
            pager = f"<nav class=pager>{''.join(links)}</nav>"
        where = position_text(page)
        count = f"<p class=count>{count_text(page)} images in the recycle bin · {where}</p>"
        return "Recycle bin", '<p><a href="/">← back to the gallery</a></p>' + count + listing + pager


def _same_origin(request: web.Request) -> None:
    """A browser says where a post comes from: refuse one from another site (the token is checked as well)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise FormRefused("This form was sent from another site.")
    origin = request.headers.get("Origin")
    # (A browser sends "Origin: null" for its own forms under `Referrer-Policy: no-referrer`: the token decides.)
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise FormRefused("This form was sent from another site.")
