"""Web gallery page times on a large catalog, in one run: `python bench/web.py [--size 100000]`.

Builds a synthetic catalog (bench/catalog.py's rows, ratings on a fifth of them, every row a symbolic link to one
real 512×768 PNG so thumbnails can be made), serves the gallery on 127.0.0.1 and times pages as a browser
would fetch them: p50 and p95 per kind of page, against the catalog search alone for the same filter (the
baseline, measured in the same run), and the first and the cached thumbnail.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # `bench/queue.py` would hide the stdlib queue

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402
from PIL import Image  # noqa: E402

from bench.catalog import GUILD, add_ratings, percentile, synthetic_rows  # noqa: E402
from catalog.catalog import Catalog  # noqa: E402
from commands.browse import browse_query  # noqa: E402
from community.store import CommunityStore  # noqa: E402
from config import load_settings  # noqa: E402
from web.server import serve  # noqa: E402

PAGES = {
    "all, page 1": ("", {}),
    "all, page 500": ("", {"page": "500"}),
    "all, last page": ("", {"page": "last"}),
    "keyword": ("castle", {}),
    "keyword + rank 4–5": ("castle", {"rank_min": "4", "rank_max": "5"}),
    "negative only": ("watermark", {"neg": "only"}),
    "regex": (r"red dragon.*by (greg|alphonse)", {"regex": "1"}),
    "sorted by rank": ("portrait", {"sort": "rank"}),
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--engine", default="whoosh", choices=["whoosh", "sqlite"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(None, data_dir=Path(folder), catalog={"text_index": args.engine})
        picture = Path(folder) / "picture.png"
        Image.effect_mandelbrot((512, 768), (-2, -1.5, 1, 1.5), 60).convert("RGB").save(picture)
        catalog = await Catalog.open(settings.catalog_dir, args.engine)
        started = time.perf_counter()
        files = Path(folder) / "images"
        files.mkdir()
        rows = []
        for row in synthetic_rows(args.size):  # each row its own path: a symbolic link to the one picture
            path = files / row["filename"]
            os.symlink(picture, path)
            rows.append({**row, "path": str(path)})
        for start in range(0, len(rows), 20_000):
            await catalog.bulk_insert(rows[start : start + 20_000])
        await catalog.rebuild_index()
        await catalog.close()
        add_ratings(settings.catalog_dir / "catalog.db", args.size)
        print(
            f"{args.size:,} images ({args.engine} text index) built in {time.perf_counter() - started:.0f} s"
        )
        catalog = await Catalog.open(settings.catalog_dir, args.engine)
        community = await CommunityStore.open(settings.community_db)
        runner = await serve(settings, catalog, community, "127.0.0.1", 0, local_guild=GUILD)
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        try:
            async with aiohttp.ClientSession() as http:
                print(f"{'page':<22} {'p50 ms':>8} {'p95 ms':>8} {'search alone p95':>17} {'× search':>9}")
                for label, (keyword, query) in PAGES.items():
                    params = {**({"q": keyword} if keyword else {}), **query}
                    page_times, search_times = [], []
                    for _ in range(args.repeats):
                        started = time.perf_counter()
                        async with http.get(base, params=params) as response:
                            await response.read()
                            assert response.status == 200, (label, response.status, await response.text())
                        page_times.append(time.perf_counter() - started)
                        browse = browse_query(
                            GUILD, keyword=keyword, negative=query.get("neg", "no"), regex=bool(query.get("regex")),
                            rank=f"{query['rank_min']}-{query['rank_max']}" if "rank_min" in query else "all",
                            sort=query.get("sort", "date"), page=query.get("page", "1"), page_size=24,
                            include_nsfw=False,
                        )  # fmt: skip
                        started = time.perf_counter()
                        await catalog.search(browse)
                        search_times.append(time.perf_counter() - started)
                    p50, p95 = percentile(page_times, 0.5) * 1000, percentile(page_times, 0.95) * 1000
                    s95 = percentile(search_times, 0.95) * 1000
                    print(f"{label:<22} {p50:>8.1f} {p95:>8.1f} {s95:>17.1f} {p95 / max(s95, 1e-6):>9.2f}")
                ids = random.Random(0).sample(range(1, int(args.size * 0.9)), args.repeats)
                image_times = []
                for image_id in ids:
                    started = time.perf_counter()
                    async with http.get(f"{base}image/{image_id}") as response:
                        await response.read()
                    image_times.append(time.perf_counter() - started)
                print(f"{'image page':<22} {percentile(image_times, 0.5) * 1000:>8.1f} "
                      f"{percentile(image_times, 0.95) * 1000:>8.1f}")  # fmt: skip
                first, cached = [], []
                for image_id in ids[:20]:
                    for bucket in (first, cached):
                        started = time.perf_counter()
                        async with http.get(f"{base}thumb/{image_id}.jpg") as response:
                            await response.read()
                        bucket.append(time.perf_counter() - started)
                print(f"thumbnail: first {percentile(first, 0.5) * 1000:.1f} ms (p50), "
                      f"cached {percentile(cached, 0.5) * 1000:.1f} ms (p50)")  # fmt: skip
        finally:
            await runner.cleanup()
            await community.close()
            await catalog.close()


if __name__ == "__main__":
    asyncio.run(main())
