"""Catalog figures of bench/cluster.py: bench/catalog.py's query mix at N rows on SQLite FTS5, Whoosh and the
PostgreSQL catalog, p50/p95 of the whole mix per backend.

Every backend is used only through the public `Catalog` interface (`bulk_insert`, `rebuild_index`,
`search`; ratings as bench/catalog.py loads them). The PostgreSQL catalog is the one the composition root
opens (`app.stores.open_catalog` with `[database] url` set); while that still opens catalog.db in the data
folder (no PostgreSQL catalog yet), its column says "not built yet" instead of a figure.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.catalog import QUERIES, add_ratings, percentile, synthetic_rows

CHUNK = 20_000
NOT_BUILT = "PostgreSQL catalog: not built yet"


@dataclass
class Backend:
    name: str
    times: list[float] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    ingest_s: float = 0.0
    note: str = ""

    def figure(self) -> str:
        if not self.times:
            return self.note
        p50, p95 = percentile(self.times, 0.5) * 1000, percentile(self.times, 0.95) * 1000
        return f"p50 {p50:,.1f} ms, p95 {p95:,.1f} ms"


async def _load(catalog, rows: int, text_index: bool = True) -> float:
    """The synthetic rows, then (`text_index`) the separate text index."""
    started = time.perf_counter()
    batch = []
    for row in synthetic_rows(rows):
        batch.append(row)
        if len(batch) == CHUNK:
            await catalog.bulk_insert(batch)
            batch = []
    if batch:
        await catalog.bulk_insert(batch)
    if text_index:
        await catalog.rebuild_index()
    return time.perf_counter() - started


async def _mix(catalog, backend: Backend, repeats: int) -> None:
    await catalog.search(QUERIES["keyword"])  # a first query warms caches, as a running bot's would be
    for _ in range(repeats):
        for name, browse in QUERIES.items():
            started = time.perf_counter()
            page = await catalog.search(browse)
            backend.times.append(time.perf_counter() - started)
            backend.totals[name] = page.total


async def embedded(text_index: str, rows: int, repeats: int, folder: Path) -> Backend:
    from catalog.catalog import Catalog

    backend = Backend("SQLite FTS5" if text_index == "sqlite" else "Whoosh")
    catalog = await Catalog.open(folder, text_index=text_index)
    try:
        backend.ingest_s = await _load(catalog, rows)
    finally:
        await catalog.close()
    add_ratings(folder / "catalog.db", rows)
    catalog = await Catalog.open(folder, text_index=text_index)
    try:
        await _mix(catalog, backend, repeats)
    finally:
        await catalog.close()
    return backend


async def postgres(url: str, rows: int, repeats: int, folder: Path) -> Backend:
    from app.stores import open_catalog
    from config import load_settings

    backend = Backend("PostgreSQL")
    settings = load_settings(None, data_dir=folder, database={"url": url})
    async with open_catalog(settings) as catalog:
        if (settings.catalog_dir / "catalog.db").exists():  # the composition root opened the SQLite catalog
            backend.note = NOT_BUILT
            return backend
        held = (await catalog.fetch("SELECT count(*) AS n FROM images"))[0]["n"]
        if held not in (0, rows):
            raise SystemExit(f"--database-url: its catalog holds {held:,} images, not 0 or {rows:,}")
        if not held:  # (a database loaded by an earlier run with the same rows is measured again as it is)
            backend.ingest_s = await _load(catalog, rows, text_index=False)  # its words are in each row
            await _ratings(catalog, rows)
        await _mix(catalog, backend, repeats)
    return backend


async def _ratings(catalog, count: int, seed: int = 1) -> None:
    """The same ratings as bench/catalog.py's `add_ratings`, written the same way: directly in the tables (the
    bench needs the state, not the API; 700,000 calls of `Catalog.rate` took longer than the rest at 1M)."""
    rng = random.Random(seed)
    ratings = [
        (image_id, f"user{user}", rng.randint(1, 5), 0.0)
        for image_id in rng.sample(range(1, count + 1), count // 5)
        for user in rng.sample(range(300), rng.randint(1, 6))
    ]
    async with catalog.transaction() as connection:
        copying = connection.cursor().copy('COPY ratings (image_id, "user", score, rated_at) FROM STDIN')
        async with copying as copy:
            for row in ratings:
                await copy.write_row(row)
        await connection.execute(
            "UPDATE images SET (rank_mean, rank_count) = (found.mean, found.votes) FROM (SELECT image_id, "
            "AVG(score)::float8 AS mean, COUNT(*) AS votes FROM ratings GROUP BY image_id) AS found "
            "WHERE images.id = found.image_id"
        )
    # As autovacuum would after a load: the visibility map and the planner's statistics.
    await catalog.fetch("VACUUM ANALYZE images")


BACKENDS = ("sqlite", "whoosh", "postgresql")


def measure(
    url: str, rows: int, repeats: int, say=print, backends_asked: tuple[str, ...] = BACKENDS
) -> list[Backend]:
    """The mix on each backend asked for (the first one measured is the reference for hit counts)."""
    backends = []
    with tempfile.TemporaryDirectory(prefix="salon-cluster-catalog-") as tmp:
        for text_index in ("sqlite", "whoosh"):
            if text_index in backends_asked:
                say(f"catalog: {rows:,} rows on {text_index} …")
                backends.append(asyncio.run(embedded(text_index, rows, repeats, Path(tmp) / text_index)))
        if "postgresql" in backends_asked:
            say(f"catalog: {rows:,} rows on PostgreSQL …")
            backends.append(asyncio.run(postgres(url, rows, repeats, Path(tmp) / "pg")))
    reference = backends[0].totals
    for backend in backends[1:]:
        differ = [name for name, total in backend.totals.items() if total != reference.get(name)]
        if differ:
            backend.note = f"hits differ from {backends[0].name} in: {', '.join(differ)}"
    return backends
