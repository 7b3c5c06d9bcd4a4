"""Catalog fault figures (issue 18, items 5, 15 and 4): the slowest catastrophic regex over a large catalog,
rating and add latency with 8 writer processes at once, and the time to rebuild a damaged text index.

`python bench/faults.py --only catalog [--quick]`; quick: 10k images instead of 100k, fewer writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.faults_common import Figure, p99

ROOT = Path(__file__).resolve().parents[1]
CATASTROPHIC = (
    "(a+)+$",
    "(a|aa)+$",
    "(.*a){20}",
    r"^(\w+\s?)*$",
    "(x+x+)+y",
    "(.*a.{20}){5}c",  # no backtracking, but more than RE2's DFA can cache: the time budget stops it
)
WRITERS = 8


def figures(quick: bool) -> list[Figure]:
    images = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="salon-faults-catalog-") as folder:
        root = Path(folder)
        found = [asyncio.run(_regex_worst_case(root / "regex", images))]
        found += _concurrent_writers(root / "writers", adds=10 if quick else 40, ratings=40 if quick else 200)
        found += asyncio.run(_rebuilt_index(root / "damaged", images))
    return found


# ----- regex worst case --------------------------------------------------------------------------------------
async def _large_catalog(folder: Path, images: int, text_index: str = "whoosh"):
    from bench.catalog import synthetic_rows
    from catalog.catalog import Catalog

    catalog = await Catalog.open(folder, text_index)
    rows = list(synthetic_rows(images))
    for number, row in enumerate(rows[: images // 100]):  # 1 % whose prompts make backtracking explode
        row["prompt"], row["params"] = "a" * 29 + "!", ""
        row["path"] = f"/synthetic/evil-{number}.png"
    await catalog.bulk_insert(rows)
    return catalog


async def _regex_worst_case(folder: Path, images: int) -> Figure:
    from catalog.records import BrowseQuery
    from core.errors import InvalidRequest

    catalog = await _large_catalog(folder, images)
    timings: list[tuple[float, str, str]] = []
    try:
        for pattern in CATASTROPHIC:
            started = time.perf_counter()
            try:
                page = await catalog.search(BrowseQuery("main", keyword=pattern, regex=True))
                outcome = f"{page.total} found"
            except InvalidRequest:
                outcome = "stopped"
            timings.append((time.perf_counter() - started, pattern, outcome))
    finally:
        await catalog.close()
    slowest, pattern, outcome = max(timings)
    stopped = sum(1 for _, _, o in timings if o == "stopped")
    return Figure(
        f"regex worst case ({images // 1000}k images)",
        f"{slowest:.2f} s slowest of {len(timings)} ({pattern}: {outcome}); {stopped} stopped by budget",
        "≤ 1 s",
        slowest <= 1.0,
    )


# ----- 8 writer processes ------------------------------------------------------------------------------------
WRITER = """
import asyncio, json, random, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from catalog.catalog import Catalog
from catalog.records import NewImage

async def main(catalog_dir, files, worker, ratings, go):
    catalog = await Catalog.open(Path(catalog_dir))
    adds, rates, errors, ids = [], [], [], []
    rng = random.Random(worker)
    mine = sorted(Path(files).glob("*.png"))
    per_add = max(1, ratings // len(mine))
    while not Path(go).exists():
        await asyncio.sleep(0.01)
    try:
        for number, path in enumerate(mine):
            started = time.perf_counter()
            try:
                info = f"a kite over the sea w{worker} n{number}\\nSteps: 20, Sampler: Euler, Seed: {number}"
                [record] = await catalog.add_many([NewImage(str(path), "main", f"w{worker}", info)])
                ids.append(record.id)
            except Exception as exc:
                errors.append(repr(exc))
            adds.append(time.perf_counter() - started)
            for _ in range(per_add):
                started = time.perf_counter()
                try:
                    await catalog.rate("main", rng.choice(ids), f"u{rng.randrange(50)}", rng.randint(1, 5))
                except Exception as exc:
                    errors.append(repr(exc))
                rates.append(time.perf_counter() - started)
    finally:
        await catalog.close()
    print(json.dumps({"adds": adds, "rates": rates, "errors": errors}), flush=True)

asyncio.run(main(*sys.argv[2:4], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]))
"""


def _concurrent_writers(folder: Path, adds: int, ratings: int) -> list[Figure]:
    from PIL import Image

    from catalog.catalog import Catalog

    asyncio.run(_create(Catalog, folder / "catalog"))
    for worker in range(WRITERS):
        files = folder / "files" / str(worker)
        files.mkdir(parents=True)
        for number in range(adds):
            colour = (worker * 30 % 256, number * 5 % 256, random.randrange(256))
            Image.new("RGB", (64, 64), colour).save(files / f"{worker}-{number}.png")
    go = folder / "go"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(ROOT),
                str(folder / "catalog"),
                str(folder / "files" / str(w)),
                str(w),
                str(ratings),
                str(go),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        for w in range(WRITERS)
    ]
    time.sleep(3.0)  # every writer has opened the catalog
    go.touch()
    results = [json.loads(p.communicate(timeout=1800)[0].strip().splitlines()[-1]) for p in processes]
    add_times = [t for r in results for t in r["adds"]]
    rate_times = [t for r in results for t in r["rates"]]
    errors = [e for r in results for e in r["errors"]]
    return [
        Figure(
            f"rating p99, {WRITERS} writer processes",
            f"{p99(rate_times) * 1000:.0f} ms over {len(rate_times)} ratings, {len(errors)} errors",
            "≤ 50 ms, 0 errors",
            p99(rate_times) <= 0.050 and not errors,
        ),
        Figure(
            f"catalog add p99, {WRITERS} processes",
            f"{p99(add_times) * 1000:.0f} ms over {len(add_times)} adds (searchable on return)",
            "reported (no LockError)",
            not errors,
        ),
    ]


async def _create(catalog_class, folder: Path) -> None:
    await (await catalog_class.open(folder)).close()


# ----- a damaged text index, rebuilt at open -----------------------------------------------------------------
async def _rebuilt_index(folder: Path, images: int) -> list[Figure]:
    import logging

    from catalog.catalog import Catalog
    from catalog.records import BrowseQuery

    logging.getLogger("catalog").setLevel(logging.ERROR)  # (the rebuild's warnings are expected here)
    found = []
    for text_index in ("whoosh", "sqlite"):
        catalog = await _large_catalog(folder / text_index, images, text_index)
        try:
            await catalog.rebuild_index()
            expected = (await catalog.search(BrowseQuery("main", keyword="lighthouse"))).total
        finally:
            await catalog.close()
        _damage(folder / text_index, text_index)
        started = time.perf_counter()
        catalog = await Catalog.open(folder / text_index, text_index)
        try:
            total = (await catalog.search(BrowseQuery("main", keyword="lighthouse"))).total
        finally:
            await catalog.close()
        seconds = time.perf_counter() - started
        name = "Whoosh segment" if text_index == "whoosh" else "FTS5 words table"
        found.append(
            Figure(
                f"damaged {name} → rebuilt ({images // 1000}k)",
                f"{seconds:.1f} s to open and answer, {total} of {expected} found",
                "rebuilt at open, same answer",
                total == expected > 0,
            )
        )
    return found


def _damage(folder: Path, text_index: str) -> None:
    import sqlite3

    if text_index == "whoosh":
        for segment in (folder / "index").glob("*.seg"):
            with open(segment, "r+b") as file:
                file.seek(segment.stat().st_size // 2)
                file.write(random.Random(1).randbytes(4096))
            with open(segment, "r+b") as file:
                file.truncate(segment.stat().st_size - 100)
        return
    db = sqlite3.connect(folder / "catalog.db")
    with db:
        db.execute("UPDATE images_words_data SET block = randomblob(length(block)) WHERE id > 10")
    db.close()
