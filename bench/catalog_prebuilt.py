"""bench/catalog.py's query mix on catalogs built before (e.g. 1,000,000 rows), in one run:
`python bench/catalog_prebuilt.py [--postgresql URL] [--sqlite FOLDER] [--whoosh FOLDER] [--repeats 10]`.

For PostgreSQL the mix runs twice per repeat, interleaved so that both see the same machine: "before" with
the exact-search changes of catalog/pg_search.py switched off (`COUNT_APART`: the count apart and the page by
windows of the sort index; `BY_RUNS`: needed texts looked up by their runs of letters and digits), "after"
with them on; both must show the same pages. Prints p50 and the slowest run per query, p50 and p95 of the
whole mix (a search refused for running out of its regex time budget counts with the time it took), and the
load average at the start and the end (a shared machine makes every figure noisy).
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # (as bench/catalog.py: the repository first)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench.catalog import QUERIES, percentile  # noqa: E402
from catalog import pg_search  # noqa: E402
from commands.browse import count_text  # noqa: E402
from core.errors import InvalidRequest  # noqa: E402


def _switch(on: bool) -> None:
    pg_search.COUNT_APART = pg_search.BY_RUNS = on


async def run_mix(catalog, repeats: int, modes: dict[str, bool | None]) -> None:
    """Time every query `repeats` times in each mode (None: nothing to switch) and print the figures."""
    await catalog.search(QUERIES["keyword"])  # (the first search opens connections and warms caches)
    times = {mode: {name: [] for name in QUERIES} for mode in modes}
    pages: dict[tuple[str, str], tuple[str, list[int]]] = {}
    refused: dict[tuple[str, str], int] = {}
    print(f"  load average at the start: {os.getloadavg()[0]:.1f}")
    for _ in range(repeats):
        for mode, on in modes.items():
            if on is not None:
                _switch(on)
            for name, browse in QUERIES.items():
                started = time.perf_counter()
                try:
                    page = await catalog.search(browse)
                    pages[mode, name] = (count_text(page), [image.id for image in page.images])
                except InvalidRequest:  # (the regex's time budget ran out: timed all the same)
                    pages[mode, name] = pages.get((mode, name), ("refused", []))
                    refused[mode, name] = refused.get((mode, name), 0) + 1
                times[mode][name].append(time.perf_counter() - started)
    _switch(True)
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    for name in QUERIES:
        print(f"  {name:<14}", "  ".join(
            f"{mode} {pages[mode, name][0]:>7} p50 {percentile(times[mode][name], 0.5) * 1000:6.1f} ms "
            f"max {max(times[mode][name]) * 1000:6.1f} ms"
            + (f" ({refused[mode, name]} refused)" if (mode, name) in refused else "") for mode in modes
        ))  # fmt: skip
    for mode in modes:
        every = [t for runs in times[mode].values() for t in runs]
        print(f"  {mode}: whole mix p50 {percentile(every, 0.5) * 1000:.1f} ms, "
              f"p95 {percentile(every, 0.95) * 1000:.1f} ms")  # fmt: skip
    if len(modes) > 1:
        differing = [name for name in QUERIES if len({repr(pages[mode, name]) for mode in modes}) > 1]
        print(
            f"  the same pages in every mode: {not differing}"
            + (f" (not: {', '.join(differing)})" * bool(differing))
        )


async def postgresql(url: str, repeats: int) -> None:
    from catalog.pg_catalog import PgCatalog

    print(f"PostgreSQL catalog at {url.rsplit('@', 1)[-1]}:")
    with tempfile.TemporaryDirectory() as folder:
        catalog = await PgCatalog.open(url, Path(folder) / "catalog")
        try:
            await run_mix(catalog, repeats, {"before": False, "after": True})
        finally:
            await catalog.close()


async def embedded(folder: Path, engine: str, repeats: int) -> None:
    from catalog.catalog import Catalog

    print(f"SQLite catalog with the {engine} text index in {folder}:")
    catalog = await Catalog.open(folder, text_index=engine)
    try:
        await run_mix(catalog, repeats, {engine: None})
    finally:
        await catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgresql", metavar="URL", help="a PostgreSQL catalog's database")
    parser.add_argument("--sqlite", type=Path, metavar="FOLDER", help="a catalog folder with its FTS5 index")
    parser.add_argument(
        "--whoosh", type=Path, metavar="FOLDER", help="a catalog folder with its Whoosh index"
    )
    parser.add_argument("--repeats", type=int, default=10, help="runs of the query mix (default 10)")
    args = parser.parse_args()
    if not (args.postgresql or args.sqlite or args.whoosh):
        parser.error("give a catalog: --postgresql URL, --sqlite FOLDER or --whoosh FOLDER")
    if args.repeats < 1:
        parser.error("--repeats: give a positive number")
    for option, folder in (("--sqlite", args.sqlite), ("--whoosh", args.whoosh)):
        if folder is not None and not (folder / "catalog.db").is_file():
            parser.error(f"{option}: {folder} holds no catalog.db")
    if args.postgresql:
        asyncio.run(postgresql(args.postgresql, args.repeats))
    for engine, folder in (("sqlite", args.sqlite), ("whoosh", args.whoosh)):
        if folder is not None:
            asyncio.run(embedded(folder, engine, args.repeats))


if __name__ == "__main__":
    main()
