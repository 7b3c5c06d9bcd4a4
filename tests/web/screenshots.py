"""Screenshots of the web gallery for the README: `python -m tests.web.screenshots docs/`.

Makes a dozen images with the demo model (the corpus files are metadata samples, mostly 1×1 pixel), adds them
to a temporary catalog with ratings, serves the gallery with `--local` semantics and photographs it at phone
and desktop width in headless Chromium.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from catalog.catalog import Catalog
from commands.browse import browse_query
from community.store import CommunityStore
from config import load_settings
from tests.web.browser import Browser
from web.server import serve


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(None, data_dir=Path(folder), web={"page_size": 12, "thumbnail_size": 256})
        catalog = await Catalog.open(settings.catalog_dir)
        community = await CommunityStore.open(settings.community_db)
        from catalog.records import NewImage
        from engine.demo import DEMO_MODEL_NAME
        from engine.infotext_files import save_image_with_infotext
        from engine.requests import GenerationRequest
        from engine.runner import Engine

        engine = Engine(load_settings(None, data_dir=Path(folder), default_model=DEMO_MODEL_NAME))
        outputs = Path(folder) / "outputs"
        outputs.mkdir(parents=True, exist_ok=True)
        colours = ["red", "blue", "green", "yellow"]
        shapes = ["circle", "square", "star", "triangle"]
        for index in range(14):
            prompt = (
                f"a {colours[index % 4]} {shapes[index // 2 % 4]} on a {colours[(index + 1) % 4]} background"
            )
            result = engine.txt2img(
                GenerationRequest(prompt, width=128, height=128, steps=12, seed=index)
            ).images[0]
            path = save_image_with_infotext(result.image, outputs / f"{index:03d}.png", result.infotext)
            await catalog.add(NewImage(str(path), "local", "owner", result.infotext))
        page = await catalog.search(browse_query("local", page_size=100))
        for index, image in enumerate(page.images[:8]):
            await catalog.rate("local", image.id, "friend", 5 - index % 3)
        runner = await serve(settings, catalog, community, "127.0.0.1", 0, local_guild="local")
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        try:
            async with Browser.start() as browser:
                await browser.goto(base + "?sort=rank")
                await browser.screenshot(out / "web-gallery-desktop.png", 1280, 860)
                await browser.screenshot(out / "web-gallery-phone.png", 390, 844, mobile=True)
                await browser.goto(base + f"image/{page.images[0].id}")
                await browser.screenshot(out / "web-image-phone.png", 390, 844, mobile=True)
        finally:
            await runner.cleanup()
            await community.close()
            await catalog.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")))
