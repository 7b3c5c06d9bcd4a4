"""The local gallery's curation forms (web/curation.py) as plain HTTP posts: refused without a valid token
(missing, forged, for another action or image, from another origin), done with one; the recycle bin page and
restore; the shared gallery stays read-only; and the family strip of an image page (web/family.py)."""

from __future__ import annotations

import html
import re

import aiohttp
import pytest
from PIL import Image

from catalog.catalog import Catalog
from catalog.records import NewImage, Relation
from community.store import CommunityStore
from community.web_links import web_secret
from config import load_settings
from jobs.queue import owner_for_cli
from web.server import serve


@pytest.fixture
async def galleries(tmp_path):
    """The same catalog served twice: locally (guild `local`, the owner's) and shared through a link."""
    settings = load_settings(None, data_dir=tmp_path / "data", web={"page_size": 6, "thumbnail_size": 64})
    catalog = await Catalog.open(settings.catalog_dir, text_index="sqlite")
    community = await CommunityStore.open(settings.community_db)
    outputs = tmp_path / "data" / "outputs"
    outputs.mkdir(parents=True)

    async def add(name: str, parent=None, relation=None, nsfw=False):
        path = outputs / f"{name}.png"
        Image.new("RGB", (32, 32), (len(name) * 30 % 256, 80, 120)).save(path)
        info = f"a {name}\nSteps: 20, Seed: 3, Size: 32x32"
        return await catalog.add(
            NewImage(str(path), "local", "me", info, parent_id=parent, relation=relation, nsfw=nsfw)
        )

    root = await add("castle")
    upscale = await add("castle upscaled", root.id, Relation.UPSCALE)
    again = await add("castle at night", upscale.id, Relation.IMG2IMG)
    hidden = await add("castle nsfw", root.id, Relation.VARIATION, nsfw=True)
    local = await serve(settings, catalog, community, "127.0.0.1", 0, local_guild="local")
    shared = await serve(settings, catalog, community, "127.0.0.1", 0)
    token = await community.web_link("local", "503", web_secret(settings.data_dir))
    try:
        async with aiohttp.ClientSession() as http:
            yield {
                "http": http,
                "local": f"http://127.0.0.1:{local.addresses[0][1]}",
                "shared": f"http://127.0.0.1:{shared.addresses[0][1]}/g/{token}/",
                "catalog": catalog,
                "ids": {"root": root.id, "upscale": upscale.id, "again": again.id, "nsfw": hidden.id},
            }
    finally:
        await local.cleanup()
        await shared.cleanup()
        await community.close()
        await catalog.close()


async def _page(g, path: str) -> str:
    async with g["http"].get(g["local"] + path) as response:
        assert response.status == 200, path
        return await response.text()


def _token(page: str, action: str, image_id: int) -> str:
    form = re.search(
        rf'<form method=post class="{action}" action="/image/{image_id}/{action}">(.*?)</form>', page
    )
    assert form, f"no {action} form for {image_id}"
    return html.unescape(re.search(r'name=token value="([^"]+)"', form.group(1)).group(1))


async def _post(g, image_id: int, action: str, headers: dict | None = None, **fields) -> tuple[int, str, str]:
    url = f"{g['local']}/image/{image_id}/{action}"
    async with g["http"].post(url, data=fields, headers=headers or {}, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def test_forms_are_refused_without_a_valid_token(galleries):
    g, catalog = galleries, galleries["catalog"]
    root = g["ids"]["root"]
    page = await _page(g, f"/image/{root}")
    rate = _token(page, "rate", root)
    other_page = await _page(g, f"/image/{g['ids']['upscale']}")
    refused = [
        {},  # no token at all
        {"token": "1.abc.def"},  # forged
        {"token": rate[:-4] + "0000"},  # tampered
        {"token": _token(page, "favourite", root)},  # another action's
        {"token": _token(other_page, "rate", g["ids"]["upscale"])},  # another image's
    ]
    for fields in refused:
        status, _, text = await _post(g, root, "rate", score="5", **fields)
        assert status == 403 and "reload the page" in text, fields
    status, _, text = await _post(g, root, "rate", {"Origin": "http://evil.example"}, score="5", token=rate)
    assert status == 403 and "another site" in text
    status, _, text = await _post(g, root, "rate", {"Sec-Fetch-Site": "cross-site"}, score="5", token=rate)
    assert status == 403
    assert await catalog.rating_of(root, owner_for_cli()) is None
    status, _, text = await _post(g, root, "rate", score="9", token=rate)
    assert status == 400 and "not a score from 1 to 5" in text


async def test_rate_favourite_delete_and_restore_with_tokens(galleries):
    g, catalog = galleries, galleries["catalog"]
    root = g["ids"]["root"]
    page = await _page(g, f"/image/{root}")
    status, location, _ = await _post(
        g, root, "rate", {"Origin": g["local"]}, score="4", token=_token(page, "rate", root)
    )
    assert (status, location) == (303, f"/image/{root}")
    assert await catalog.rating_of(root, owner_for_cli()) == 4
    page = await _page(g, f"/image/{root}")
    assert "your rating: 4" in page and "rank 4.00 from 1 rating(s)" in page
    status, _, _ = await _post(g, root, "favourite", on="1", token=_token(page, "favourite", root))
    assert status == 303 and await catalog.is_favourite(root, owner_for_cli())
    page = await _page(g, f"/image/{root}")
    assert "Remove from favourites" in page
    status, _, _ = await _post(g, root, "rate", score="none", token=_token(page, "rate", root))
    assert status == 303 and await catalog.rating_of(root, owner_for_cli()) is None
    status, _, _ = await _post(g, root, "delete", token=_token(page, "delete", root))
    assert status == 303 and (await catalog.get("local", root)).deleted
    deleted_page = await _page(g, f"/image/{root}")  # the owner still sees it, to restore it
    assert "In the recycle bin" in deleted_page and "<img class=full" not in deleted_page
    index = await _page(g, "/")
    assert "2 images" in index and 'href="/bin"' in index
    bin_page = await _page(g, "/bin")
    assert "1 images in the recycle bin" in bin_page and "a castle" in bin_page
    status, location, _ = await _post(g, root, "restore", back="bin", token=_token(bin_page, "restore", root))
    assert (status, location) == (303, "/bin") and not (await catalog.get("local", root)).deleted
    assert "The recycle bin is empty" in await _page(g, "/bin")


async def test_the_shared_gallery_stays_read_only(galleries):
    g, catalog = galleries, galleries["catalog"]
    root = g["ids"]["root"]
    async with g["http"].get(f"{g['shared']}image/{root}") as response:
        page = await response.text()
    assert response.status == 200 and "<form method=post" not in page and "Curate" not in page
    async with g["http"].post(f"{g['shared']}image/{root}/delete", data={"token": "x"}) as response:
        assert response.status in (404, 405)
    async with g["http"].get(f"{g['shared']}bin") as response:
        assert response.status == 404
    await catalog.delete("local", [g["ids"]["upscale"]])
    async with g["http"].get(f"{g['shared']}image/{g['ids']['upscale']}") as response:
        assert response.status == 404  # deleted images are not shown to a link's visitors
    assert not (await catalog.get("local", root)).deleted


async def test_an_image_page_shows_its_family(galleries):
    g = galleries
    ids = g["ids"]
    page = await _page(g, f"/image/{ids['again']}")
    strip = re.search(r"<section class=family>(.*?)</section>", page).group(1)
    found = re.findall(
        r'<a class=kin href="(\d+)"( aria-current=page)?>.*?<span class=relation>([^<]+)</span>', strip
    )
    assert [(int(i), bool(current), relation) for i, current, relation in found] == [
        (ids["root"], False, "original"),
        (ids["upscale"], False, "upscale"),
        (ids["again"], True, "img2img"),
    ]  # the NSFW variation is left out
    async with g["http"].get(f"{g['shared']}image/{ids['root']}") as response:
        assert "<section class=family>" in await response.text()  # the shared gallery shows it too
    async with g["http"].get(f"{g['local']}/thumb/{ids['upscale']}.jpg") as response:
        assert response.status == 200  # the strip's thumbnails are served


async def test_the_forms_work_in_chromium_without_javascript(galleries):
    """A real browser posts the forms as a person would (it sends `Origin: null` under no-referrer)."""
    from tests.web.browser import CHROMIUM, Browser

    if CHROMIUM is None:
        pytest.skip("Debian's chromium package is not installed (CI installs it)")
    g, catalog = galleries, galleries["catalog"]
    root = g["ids"]["root"]
    async with Browser.start() as browser:
        await browser.goto(f"{g['local']}/image/{root}")
        await browser.click("form.rate button[value='5']")
        assert (
            await browser.url() == f"{g['local']}/image/{root}" and "your rating: 5" in await browser.text()
        )
        await browser.click("form.delete button")
        assert "In the recycle bin" in await browser.text() and (await catalog.get("local", root)).deleted
        await browser.goto(f"{g['local']}/bin")
        await browser.click("form.restore button")
        assert "The recycle bin is empty" in await browser.text()
    assert (
        await catalog.rating_of(root, owner_for_cli()) == 5 and not (await catalog.get("local", root)).deleted
    )
