"""The read-only web gallery: one guild's images with the `/browse` filters, as plain HTML and CSS.

Pages live under `/g/<token>/`, where the token is the guild's signed link from `/gallery web` (revocable);
`salon web --local` serves one guild at `/` on 127.0.0.1 for its owner, who may also curate there (rate,
favourite, delete, restore, the recycle bin: web/curation.py, forms with CSRF tokens); the shared gallery is
read-only. An image page shows the image's family (web/family.py). Images and thumbnails are found by
their catalog id within the token's guild, so a request never names a file and never sees another guild.
Thumbnails are made once (in a worker thread) and kept under `<data_dir>/cache/thumbs`.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web
from PIL import Image

from catalog.paths import exact_file
from catalog.records import ImageRecord, NegativeMode, SortOrder
from commands.browse import browse_query, count_text, has_next, has_previous, position_text
from community.store import CommunityStore
from community.web_links import web_secret
from config import Settings
from core.errors import InvalidRequest
from core.files import atomic_write_with
from engine.image_io import check_image_file
from jobs.queue import owner_for_cli
from jobs.results import ResultFiles
from web.animation import animation_of, player
from web.animation import serve as serve_animation
from web.curation import ACTIONS as curation_actions
from web.curation import Curation, FormRefused
from web.family import family_strip

log = logging.getLogger(__name__)

FILTER_KEYS = ("q", "neg", "case", "regex", "rank_min", "rank_max", "unrated", "sort", "asc", "gallery")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
_TRAVERSAL = re.compile(r"(^|/)(\.|%2e){2}(/|$)|%2f|\\\\", re.IGNORECASE)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",  # the link is the key: never send it to another site
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class Forbidden(Exception):
    pass


class GalleryServer:
    """The aiohttp application over a catalog and the community store (shared with the bot, or its own)."""

    def __init__(
        self,
        settings: Settings,
        catalog,
        community: CommunityStore,
        local_guild: str | None = None,
        results: ResultFiles | None = None,
    ):
        self.settings = settings
        self.results = results  # result files made on another host are fetched through it (jobs/results.py)
        self.catalog = catalog
        self.community = community
        self.local_guild = local_guild
        self.secret = web_secret(settings.data_dir)
        self.thumbs = settings.data_dir / "cache" / "thumbs"
        self.max_pixels = max(settings.limits.max_input_pixels, settings.limits.max_pixels)
        self._thumb_locks: dict[int, asyncio.Lock] = {}
        self.curation = (  # the owner's forms: only in the local gallery
            Curation(catalog, local_guild, owner_for_cli(), settings.web.page_size)
            if local_guild is not None
            else None
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        pages = [
            ("", self.index),
            ("image/{id:[0-9]{1,12}}", self.image_page),
            ("thumb/{id:[0-9]{1,12}}.jpg", self.thumbnail),
            ("file/{id:[0-9]{1,12}}", self.file),
            ("video/{id:[0-9]{1,12}}", self.video),  # an animation's (web/animation.py)
            ("settings/{id:[0-9]{1,12}}.txt", self.settings_file),
        ]
        prefix = "/" if self.local_guild is not None else "/g/{token:[A-Za-z0-9_.-]{10,120}}/"
        for path, handler in pages:
            app.router.add_get(prefix + path, handler)
        if self.curation is not None:
            actions = "|".join(curation_actions)
            app.router.add_post("/image/{id:[0-9]{1,12}}/{action:" + actions + "}", self.curation.post)
            app.router.add_get("/bin", self.bin_page)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        started = time.perf_counter()
        if _TRAVERSAL.search(request.raw_path.split("?")[0]):
            response = _page_response("Bad request", "<p>That address is not allowed.</p>", status=400)
        else:
            try:
                response = await handler(request)
            except Forbidden:
                response = _page_response(
                    "Link not valid",
                    "<p>This gallery link is not valid (any more). Ask for a new one.</p>",
                    403,
                )
            except InvalidRequest as exc:
                response = _page_response("Bad filter", f"<p>{html.escape(str(exc))}</p>", status=400)
            except FormRefused as exc:
                response = _page_response("Not done", f"<p>{html.escape(str(exc))}</p>", status=exc.status)
            except web.HTTPException as exc:
                response = exc
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        log.debug(
            "%s %s %d in %.1f ms",
            request.method,
            request.path,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def _guild(self, request: web.Request) -> str:
        if self.local_guild is not None:
            return self.local_guild
        guild = await self.community.guild_of_token(request.match_info["token"], self.secret)
        if guild is None:
            raise Forbidden()
        return guild

    async def _image(self, request: web.Request, allow_deleted: bool = False) -> ImageRecord:
        guild = await self._guild(request)
        record = await self.catalog.get(guild, int(request.match_info["id"]))
        hidden = record is None or (record.deleted and not allow_deleted)
        if hidden or record.nsfw:  # NSFW images stay in age-restricted channels
            raise web.HTTPNotFound()
        return record

    # ----- pages -------------------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        guild = await self._guild(request)
        params = request.query
        options = _filters(params)
        gallery_id = None
        if options["gallery"]:
            found = await self.catalog.galleries.get(guild, options["gallery"])
            if found is None:
                raise InvalidRequest("gallery", f"there is no gallery named {options['gallery']!r}")
            gallery_id = found.id
        query = browse_query(
            guild,
            keyword=options["q"],
            negative=options["neg"],
            case_sensitive=options["case"],
            regex=options["regex"],
            rank=options["rank"],
            gallery=gallery_id,
            sort=options["sort"],
            ascending=options["asc"],
            page=params.get("page", "1") or "1",
            page_size=self.settings.web.page_size,
            include_nsfw=False,
        )
        if query.regex:
            try:
                re.compile(query.keyword)
            except re.error as exc:
                raise InvalidRequest("q", f"not a valid regular expression: {exc}") from None
        page = await self.catalog.search(query)
        keep = {k: v for k, v in params.items() if k in FILTER_KEYS and v}
        number = "last" if page.page == -1 else page.page  # (-1: the unnumbered last page)
        back = {**keep, "page": number} if page.page != 1 else keep  # an image page links back to this one
        cards = (
            "\n".join(_card(image, back) for image in page.images) or "<p class=empty>No images match.</p>"
        )
        galleries = await self.catalog.galleries.list(guild)
        body = (
            _filter_form(options, galleries)
            + f"<p class=count>{count_text(page)} images · {position_text(page)}"
        )
        if self.curation is not None:
            body = '<p class=bin-link><a href="/bin">recycle bin</a></p>' + body
        body += f"</p><main class=grid>{cards}</main>" + _pager(page, keep)
        return _page_response("Salon gallery", body)

    async def bin_page(self, request: web.Request) -> web.Response:
        assert self.curation is not None
        return _page_response(*await self.curation.bin_page(request))

    async def image_page(self, request: web.Request) -> web.Response:
        image = await self._image(request, allow_deleted=self.curation is not None)  # the owner may restore
        back = "./?" + urlencode({k: v for k, v in request.query.items() if k in FILTER_KEYS or k == "page"})
        rank = (
            f"{image.rank_mean:.2f} from {image.rank_count} rating(s)"
            if image.rank_count
            else "not rated yet"
        )
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(image.created))
        picture = (
            f'<img class=full src="../file/{image.id}" alt="{html.escape(image.prompt[:200])}">'
            if not image.deleted
            else ""
        )
        animation = await animation_of(self.catalog, image) if not image.deleted else None
        if animation is not None:  # its video, its first frame as the poster (web/animation.py)
            picture = player(image, animation)
        forms = await self.curation.forms(image) if self.curation is not None else ""
        body = (
            f'<p><a href="{html.escape(back.replace("./", "../", 1))}">← back to the gallery</a></p>'
            f"<figure>{picture}"
            f"<figcaption>#{image.id} · rank {rank} · {created} UTC · {image.width}×{image.height}"
            f"</figcaption></figure>{forms}"
            f"<h2>Prompt</h2><p class=prompt>{html.escape(image.prompt)}</p>"
            + (
                f"<h2>Negative prompt</h2><p class=prompt>{html.escape(image.negative_prompt)}</p>"
                if image.negative_prompt
                else ""
            )
            + f"<h2>Parameters</h2><pre>{html.escape(image.infotext)}</pre>"
        )
        body += await family_strip(self.catalog, image.guild, image)
        return _page_response(f"Image #{image.id}", body)

    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        image = await self._image(request)
        size = self.settings.web.thumbnail_size
        target = self.thumbs / f"{image.id}-{size}.jpg"
        if not target.is_file():
            lock = self._thumb_locks.setdefault(image.id, asyncio.Lock())
            async with lock:
                if not target.is_file():
                    source = _servable(await self._here(image))
                    try:
                        await asyncio.to_thread(_make_thumbnail, source, target, size, self.max_pixels)
                    except (InvalidRequest, OSError, SyntaxError, ValueError) as exc:  # changed since added
                        log.warning("no thumbnail for image %d: %s", image.id, exc)
                        raise web.HTTPNotFound() from exc
        return web.FileResponse(
            target, headers={"Content-Type": "image/jpeg", "Cache-Control": "max-age=86400"}
        )

    async def file(self, request: web.Request) -> web.StreamResponse:
        image = await self._image(request)
        path = _servable(await self._here(image))
        kind = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "max-age=86400"})

    async def video(self, request: web.Request) -> web.StreamResponse:
        return await serve_animation(self, request, settings_file=False)

    async def settings_file(self, request: web.Request) -> web.StreamResponse:
        return await serve_animation(self, request, settings_file=True)

    async def _here(self, image: ImageRecord) -> ImageRecord:
        """The record with a path on this host (its file fetched from the blob store when another host made it)."""
        if self.results is None:
            return image
        [local] = await self.results.local_images([image])
        return local


def _filters(params) -> dict:
    rank = "all"
    if params.get("unrated"):
        rank = "none"
    elif params.get("rank_min") or params.get("rank_max"):
        low, high = params.get("rank_min") or "1", params.get("rank_max") or "5"
        rank = f"{low}-{high}"
    return {
        "q": params.get("q", ""),
        "neg": params.get("neg", "no") or "no",
        "case": bool(params.get("case")),
        "regex": bool(params.get("regex")),
        "rank": rank,
        "rank_min": params.get("rank_min", ""),
        "rank_max": params.get("rank_max", ""),
        "unrated": bool(params.get("unrated")),
        "sort": params.get("sort", "date") or "date",
        "asc": bool(params.get("asc")),
        "gallery": params.get("gallery", ""),
    }


def _servable(image: ImageRecord) -> Path:
    """The image's file, only if it is still exactly the file the catalog recorded: its real path, with no
    link planted on the path since (a link to a file elsewhere is never served); else 404."""
    if not exact_file(image.path):
        raise web.HTTPNotFound()
    return Path(image.path)


def _make_thumbnail(source: Path, target: Path, size: int, max_pixels: int) -> None:
    header = check_image_file(source, max_pixels=max_pixels, max_bytes=None)  # a file swapped for a bomb
    with Image.open(source, formats=[header.kind]) as image:
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        thumbnail = image.convert("RGB")
    atomic_write_with(target, lambda partial: thumbnail.save(partial, format="JPEG", quality=85))


def _card(image: ImageRecord, keep: dict) -> str:
    link = f"image/{image.id}" + (f"?{urlencode(keep)}" if keep else "")
    rank = f"★ {image.rank_mean:.1f}" if image.rank_count else ""
    alt = html.escape(image.prompt[:120].replace("\n", " "))
    return (
        f'<a class=card href="{html.escape(link)}"><img src="thumb/{image.id}.jpg" alt="{alt}" loading=lazy>'
        f"<span class=rank>{rank}</span><span class=id>#{image.id}</span></a>"
    )


def _pager(page, keep: dict) -> str:
    def link(number: int | str, label: str, rel: str, enabled: bool) -> str:
        if not enabled:
            return f"<span class=off>{label}</span>"
        return f'<a rel={rel} href="?{html.escape(urlencode({**keep, "page": number}))}">{label}</a>'

    later = has_next(page)  # also past a count that stopped at its cap ("10,000+")
    return (
        "<nav class=pager>"
        + link(1, "« first", "first", page.page != 1)
        + link(page.page - 1, "‹ previous", "prev", has_previous(page))
        + link(page.page + 1, "next ›", "next", later)
        + link("last", "last »", "last", later)
        + "</nav>"
    )


def _filter_form(options: dict, galleries) -> str:
    def selected(value: str, current: str) -> str:
        return " selected" if value == current else ""

    def checked(flag: bool) -> str:
        return " checked" if flag else ""

    negatives = "".join(
        f'<option value="{m.value}"{selected(m.value, options["neg"])}>{m.value}</option>'
        for m in NegativeMode
    )
    sorts = "".join(
        f'<option value="{s.value}"{selected(s.value, options["sort"])}>{s.value}</option>' for s in SortOrder
    )
    albums = '<option value="">all images</option>' + "".join(
        f'<option value="{html.escape(g.name)}"{selected(g.name, options["gallery"])}>{html.escape(g.name)} '
        f"({g.count})</option>"
        for g in galleries
    )
    return f"""<form class=filters method=get action="">
<input type=search name=q value="{html.escape(options["q"])}" aria-label=search
 placeholder='cat and not dog, "red hat", model:…'>
<label>negative prompt <select name=neg>{negatives}</select></label>
<label><input type=checkbox name=case value=1{checked(options["case"])}> case sensitive</label>
<label><input type=checkbox name=regex value=1{checked(options["regex"])}> regex</label>
<label>rank <input type=number name=rank_min min=1 max=5 step=0.5 aria-label="lowest rank"
 value="{html.escape(options["rank_min"])}"> – <input type=number name=rank_max min=1 max=5 step=0.5
 aria-label="highest rank" value="{html.escape(options["rank_max"])}"></label>
<label><input type=checkbox name=unrated value=1{checked(options["unrated"])}> unrated only</label>
<label>sort <select name=sort>{sorts}</select></label>
<label><input type=checkbox name=asc value=1{checked(options["asc"])}> ascending</label>
<label>gallery <select name=gallery>{albums}</select></label>
<button type=submit>Filter</button>
</form>"""


STYLE = (Path(__file__).parent / "style.css").read_text(encoding="utf-8")


def _page_response(title: str, body: str, status: int = 200) -> web.Response:
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=page, status=status, content_type="text/html")


async def serve(
    settings: Settings,
    catalog,
    community: CommunityStore,
    host: str,
    port: int,
    local_guild: str | None = None,
    results: ResultFiles | None = None,
) -> web.AppRunner:
    """Start the gallery on host:port; returns the runner (call `await runner.cleanup()` to stop).
    `results`: how result files made on other hosts are fetched (with a database URL)."""
    gallery = GalleryServer(settings, catalog, community, local_guild, results)
    runner = web.AppRunner(gallery.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("web gallery on http://%s:%d/", host, port)
    return runner
