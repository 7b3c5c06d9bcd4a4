"""An animation's page in the web gallery: its video in a `<video>` element (its first frame as the poster, the
frames in the family strip below) and its Deforum settings file.

The video and the settings file are found from the image's catalog id within the page's guild
(`catalog.animation`, catalog/animations.py), never from a name in the request, and served only while they are
exactly the files the catalog recorded (`catalog.paths.exact_file`: no link planted on the path since), as
image files are; one made on another host is fetched through the result files (jobs/results.py).
"""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from catalog.paths import exact_file
from catalog.records import ImageRecord


async def animation_of(catalog, image: ImageRecord):
    """The image's animation media (None for an ordinary image, or a catalog without animations)."""
    find = getattr(catalog, "animation", None)
    return await find(image.guild, image.id) if find is not None else None


def player(image: ImageRecord, animation) -> str:
    """The figure's video, relative to the image's page, with a link to the settings file."""
    alt = html.escape(image.prompt[:200])
    video = (
        f'<video class=full controls loop muted playsinline preload=metadata poster="../file/{image.id}" '
        f'src="../video/{image.id}" aria-label="{alt}">'
        f'<a href="../video/{image.id}">the video</a></video>'
    )
    settings = (
        f' · <a href="../settings/{image.id}.txt">Deforum settings file</a>'
        if animation.settings_file
        else ""
    )
    return (
        video + f"<p class=count>animation · {animation.frames} frames at {animation.fps:g} fps{settings}</p>"
    )


async def serve(server, request: web.Request, settings_file: bool) -> web.StreamResponse:
    """The animation's video (or its settings file) of the image in the request, or 404."""
    image = await server._image(request)
    animation = await animation_of(server.catalog, image)
    if animation is None or (settings_file and animation.settings_file is None):
        raise web.HTTPNotFound()
    path = animation.settings_file if settings_file else animation.video
    if server.results is not None:
        path = Path(await server.results.local(path))
    if not exact_file(str(path)):
        raise web.HTTPNotFound()
    kind = "text/plain; charset=utf-8" if settings_file else animation.video_type
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "max-age=86400"})
