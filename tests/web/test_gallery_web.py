"""The web gallery in headless Chromium: filters, pages, an image page; and what it refuses (traversal, other
guilds, revoked or forged links, bad filters)."""

from __future__ import annotations

import os

import aiohttp
import pytest
from PIL import Image

from catalog.catalog import Catalog
from catalog.records import NewImage
from community.store import CommunityStore
from community.web_links import web_secret
from config import load_settings
from tests.web.browser import CHROMIUM, Browser
from web.server import serve

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Debian's chromium package is not installed (CI installs it)", allow_module_level=True)

COLOURS = ["red", "blue", "green"]
SUBJECTS = ["cat", "dog", "castle", "forest", "boat"]


@pytest.fixture
async def gallery(tmp_path):
    settings = load_settings(None, data_dir=tmp_path / "data", web={"page_size": 6, "thumbnail_size": 96})
    catalog = await Catalog.open(settings.catalog_dir)
    community = await CommunityStore.open(settings.community_db)
    outputs = tmp_path / "data" / "outputs"
    outputs.mkdir(parents=True)
    ids = {}
    for index in range(15):
        colour, subject = COLOURS[index % 3], SUBJECTS[index % 5]
        path = outputs / f"{index:03d}.png"
        Image.new("RGB", (64, 48), (40 + index * 12, 90, 160)).save(path)
        prompt = f"a {colour} {subject}, painting"
        params = f"Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: {index}, Size: 64x48"
        info = f"{prompt}\nNegative prompt: blurry\n{params}"
        record = await catalog.add(NewImage(str(path), "100", "501", info, created=1_700_000_000 + index))
        ids[index] = record.id
        if index % 2 == 0:  # every other image rated: 5 for cats, 3 for the rest
            await catalog.rate("100", record.id, "502", 5 if subject == "cat" else 3)
    other = outputs / "other.png"
    Image.new("RGB", (64, 48), "black").save(other)
    secret_image = await catalog.add(
        NewImage(str(other), "200", "601", "a secret cat\nSteps: 20, Seed: 1, Size: 64x48")
    )
    await catalog.galleries.create("100", "Cats", "501")
    await catalog.galleries.add("100", "Cats", [ids[0], ids[5], ids[10]], "501")
    runner = await serve(settings, catalog, community, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    secret = web_secret(settings.data_dir)
    token = await community.web_link("100", "503", secret)
    other_token = await community.web_link("200", "603", secret)
    try:
        yield {
            "base": f"http://127.0.0.1:{port}",
            "url": f"http://127.0.0.1:{port}/g/{token}/",
            "token": token,
            "other_token": other_token,
            "ids": ids,
            "secret_image": secret_image.id,
            "community": community,
            "secret": secret,
        }
    finally:
        await runner.cleanup()
        await community.close()
        await catalog.close()


async def test_browse_filter_page_and_open_an_image_in_chromium(gallery, tmp_path):
    async with Browser.start() as browser:
        await browser.goto(gallery["url"])
        assert "15 images · page 1 of 3" in await browser.text(".count")
        assert len(await browser.texts(".card")) == 6
        await browser.fill_and_submit({"q": "cat", "rank_min": "4"})
        assert "2 images · page 1 of 1" in await browser.text(
            ".count"
        )  # cats 0 and 10 are rated 5; 5 is unrated
        ids = [int(t.split("#")[1]) for t in await browser.texts(".card .id")]
        assert sorted(ids) == sorted(gallery["ids"][i] for i in (0, 10))
        await browser.goto(gallery["url"] + "?q=painting&sort=seed&asc=1")
        assert "page 1 of 3" in await browser.text(".count")
        await browser.click(".pager a[rel=next]")
        assert "page 2 of 3" in await browser.text(".count") and "page=2" in await browser.url()
        first = await browser.text(".card .id")
        await browser.click(".card")
        body = await browser.text("body")
        assert first.strip() in body and "Negative prompt" in body and "Sampler: Euler a" in body
        assert await browser.evaluate("document.querySelector('img.full').naturalWidth") == 64
        await browser.click("a")  # back to the gallery, filters kept
        assert "page 2 of 3" in await browser.text(".count")
        await browser.goto(gallery["url"] + "?gallery=Cats")
        assert "3 images" in await browser.text(".count")
        phone = await browser.screenshot(tmp_path / "phone.png", 390, 844, mobile=True)
        desktop = await browser.screenshot(tmp_path / "desktop.png", 1280, 900)
        with Image.open(phone) as shot:
            assert shot.size == (390, 844)
        with Image.open(desktop) as shot:
            assert shot.size == (1280, 900)


async def test_rank_and_text_filters_agree_with_the_catalog(gallery):
    async with Browser.start() as browser:
        await browser.fill_and_submit({}) if False else await browser.goto(
            gallery["url"] + "?q=cat&rank_min=4"
        )
        ranks = await browser.texts(".card .rank")
        assert ranks and all(float(r.split()[1]) >= 4 for r in ranks)
        await browser.goto(gallery["url"] + "?unrated=1&q=dog")
        assert all(r == "" for r in await browser.texts(".card .rank"))


async def test_refusals(gallery):
    base, url = gallery["base"], gallery["url"]
    async with aiohttp.ClientSession() as http:

        async def status(path: str) -> int:
            async with http.get(path) as response:
                await response.read()
                return response.status

        assert await status(url) == 200
        assert await status(url + "../../../etc/passwd") in (400, 404)
        async with http.get(yarl_raw(f"{url}file/..%2f..%2fcatalog.db")) as response:
            assert response.status == 400
        async with http.get(
            yarl_raw(f"{base}/g/{gallery['token']}/../{gallery['other_token']}/")
        ) as response:
            assert response.status == 400
        assert await status(f"{url}file/{gallery['secret_image']}") == 404  # another guild's image
        assert await status(f"{url}image/{gallery['secret_image']}") == 404
        other = f"{base}/g/{gallery['other_token']}/"
        assert await status(f"{other}file/{gallery['ids'][0]}") == 404
        async with http.get(url + "?q=secret") as response:  # guild 100's link: guild 200's cat never shows
            assert "secret cat" not in await response.text() and "0 images" in await response.text()
        async with http.get(other) as response:
            assert "secret cat" in await response.text() and "painting" not in await response.text()
        forged = gallery["token"][:-3] + ("AAA" if not gallery["token"].endswith("AAA") else "BBB")
        assert await status(f"{base}/g/{forged}/") == 403
        assert await status(url + "?regex=1&q=((") == 400
        assert await status(url + "?rank_min=abc") == 400
        assert await status(url + "?sort=sideways") == 400
        assert await status(url + "?gallery=Nope") == 400
        async with http.get(url) as response:
            assert response.headers["Referrer-Policy"] == "no-referrer"
        await gallery["community"].web_link("100", "503", gallery["secret"], renew=True)
        assert await status(url) == 403  # the old link is revoked
        await gallery["community"].revoke_web_link("200")
        assert await status(other) == 403


def yarl_raw(url: str):
    import yarl

    return yarl.URL(url, encoded=True)
