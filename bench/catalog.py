"""Catalog figures on synthetic catalogs, in one run: `python bench/catalog.py [--sizes 10000,100000,1000000]`.

For each size: ingest rates (SQLite rows, Whoosh documents, and real PNG files through `Catalog.add_many`),
then p50/p95 latency of a fixed query mix through `Catalog.search`, and the same mix done the naive way
(every row of the guild read and filtered in Python, as A1111's Image Browser scans its files; reading rows
is kinder to it than reading files) as a ratio. Synthetic prompts use a realistic vocabulary and lengths
(subjects, styles, artists, quality tags, LoRA tags; 60 % with a negative prompt).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and its queue.py would hide the standard
# library's `queue`: look for modules from the repository root instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from catalog.catalog import Catalog  # noqa: E402
from catalog.keywords import SearchedTexts, Term, matches, parse_keywords  # noqa: E402
from catalog.records import (  # noqa: E402
    BrowseQuery,
    ImageRecord,
    NegativeMode,
    RankFilter,
    SortOrder,
    generation_fields,
    searched_columns,
)
from catalog.schema import record_of  # noqa: E402
from commands.browse import count_text  # noqa: E402
from engine.infotext import format_infotext  # noqa: E402

SUBJECTS = (
    "a castle on a hill|a portrait of a woman|a red dragon|a cyberpunk city street|a cat sitting on a windowsill|"
    "an astronaut riding a horse|a cozy cabin in the snowy woods|a samurai warrior|a bowl of ramen|"
    "a fantasy landscape with waterfalls|a robot in a garden|an old lighthouse at dusk|a knight in armor|"
    "a steampunk airship|a fox in an autumn forest|a wizard casting a spell|a sports car on a racetrack|"
    "a mermaid under the sea|a medieval village market|a giant tree house|a space station orbiting earth"
).split("|")
DETAILS = (
    "highly detailed|intricate|8k|sharp focus|dramatic lighting|volumetric light|golden hour|cinematic|"
    "bokeh|depth of field|octane render|unreal engine|concept art|oil painting|watercolor|digital painting|"
    "trending on artstation|studio ghibli style|by greg rutkowski|by alphonse mucha|by artgerm|pastel colors|"
    "neon lights|moody|foggy|rainy night|vibrant colors|soft lighting|wide angle|portrait photography|"
    "35mm film|matte painting|illustration|anime style|photorealistic|hdr|epic composition|fantasy art"
).split("|")
QUALITY = "masterpiece|best quality|(masterpiece:1.2)|(best quality:1.3)|ultra detailed|absurdres".split("|")
NEGATIVES = (
    "blurry|lowres|bad anatomy|bad hands|text|error|missing fingers|extra digit|cropped|worst quality|"
    "low quality|jpeg artifacts|signature|watermark|username|deformed|ugly|duplicate|mutated|disfigured"
).split("|")
LORAS = ("add_detail", "epi_noiseoffset", "more_details", "film_grain", "lowra")
MODELS = ("v1-5-pruned-emaonly", "dreamshaper_8", "realisticVision_v51", "sdxl_base_1.0", "juggernautXL_v9")
SAMPLERS = ("Euler a", "Euler", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DDIM", "UniPC", "LMS")
GUILD = "main"


def synthetic_rows(count: int, seed: int = 0):
    """Rows as the catalog stores them: 90 % in the main guild, the rest in two others."""
    rng = random.Random(seed)
    start = 1_700_000_000.0
    for i in range(count):
        parts = [
            rng.choice(SUBJECTS),
            *rng.sample(DETAILS, rng.randint(3, 12)),
            *rng.sample(QUALITY, rng.randint(0, 2)),
        ]
        if rng.random() < 0.2:
            parts.append(f"<lora:{rng.choice(LORAS)}:{rng.choice((0.5, 0.7, 0.8, 1))}>")
        prompt = ", ".join(parts)
        negative = ", ".join(rng.sample(NEGATIVES, rng.randint(2, 10))) if rng.random() < 0.6 else ""
        params = {
            "Steps": rng.choice((20, 25, 30, 40, 50)),
            "Sampler": rng.choice(SAMPLERS),
            "Schedule type": "Karras",
            "CFG scale": rng.choice((5, 6, 7, 7.5, 8, 9)),
            "Seed": rng.randrange(2**32),
            "Size": "512x768",
            "Model hash": f"{rng.randrange(16**10):010x}",
            "Model": rng.choice(MODELS),
        }
        infotext = format_infotext(prompt, negative, params)
        fields = generation_fields(infotext)
        guild = GUILD if rng.random() < 0.9 else rng.choice(("other-1", "other-2"))
        yield {
            "guild": guild, "channel": "c", "message": None, "author": f"user{rng.randrange(300)}",
            "created": start + i * 7.0, "path": f"/synthetic/{i:07d}.png", "filename": f"{i:07d}-{params['Seed']}.png",
            "sha256": f"{i:064x}", "width": 512, "height": 768, "model": fields["model"],
            "model_hash": fields["model_hash"], "sampler": fields["sampler"], "schedule": fields["schedule"],
            "steps": fields["steps"], "cfg": fields["cfg"], "seed": fields["seed"], "prompt": fields["prompt"],
            "negative_prompt": fields["negative_prompt"], "params": fields["params"], "infotext": infotext,
            "networks": json.dumps(list(fields["networks"])), "parent_id": None, "relation": None, "nsfw": 0,
            "job_id": None,
        }  # fmt: skip


QUERIES = {
    "keyword": BrowseQuery(GUILD, keyword="castle"),
    "field query": BrowseQuery(GUILD, keyword='model:dreamshaper_8 and sampler:"DPM++ 2M" and lighthouse'),
    "negative only": BrowseQuery(GUILD, keyword="watermark", negative=NegativeMode.ONLY),
    "regex": BrowseQuery(GUILD, keyword=r"red dragon.*by (greg|alphonse)", regex=True),
    "rank min-max": BrowseQuery(GUILD, rank=RankFilter.parse("4-5")),
    "sort by rank": BrowseQuery(GUILD, keyword="portrait", sort=SortOrder.RANK),
    "deep page": BrowseQuery(GUILD, keyword="cinematic", page=-1),  # the last page
}


def naive(rows: list, browse: BrowseQuery) -> tuple[list[int], int]:
    """The query done by scanning every row in Python (filters, sort, page)."""
    node = Term(browse.keyword) if browse.regex else parse_keywords(browse.keyword)
    hits = []
    for record in rows:
        if record.guild != browse.guild or record.deleted:
            continue
        if browse.keyword and not _naive_match(node, record, browse):
            continue
        rank = browse.rank
        if rank.kind == "range" and not (record.rank_count and rank.low <= record.rank_mean <= rank.high):
            continue
        hits.append(record)
    key = {SortOrder.DATE: lambda r: (r.created, r.id), SortOrder.RANK: lambda r: (r.rank_mean or 0, r.id)}[
        browse.sort
    ]
    hits.sort(key=key, reverse=True)
    start = (browse.page - 1) * browse.page_size
    return [r.id for r in hits[start : start + browse.page_size]], len(hits)


def searched_text(record: ImageRecord, negative: NegativeMode) -> str:
    """The text an exact keyword search looks at for terms without a field."""
    return "\n".join(getattr(record, column) for column in searched_columns(negative))


def searched_texts(record: ImageRecord, negative: NegativeMode) -> SearchedTexts:
    """A record's texts as the catalog's exact search reads them from its columns (catalog/search.py)."""
    return SearchedTexts(
        text=searched_text(record, negative),
        negative=record.negative_prompt,
        model=record.model or "",
        sampler=record.sampler or "",
        networks="\n".join(record.networks),
        seed="" if record.seed is None else str(record.seed),
    )


def _naive_match(node, record, browse: BrowseQuery) -> bool:
    if browse.regex or browse.case_sensitive:
        return matches(node, searched_texts(record, browse.negative), browse.case_sensitive, browse.regex)
    # Word search done by hand: lower-cased words of the searched fields.
    return _words_match(node, record, browse.negative)


def _words_match(node, record, negative) -> bool:
    from catalog.keywords import And, Not, Or

    if isinstance(node, And):
        return all(_words_match(n, record, negative) for n in node.items)
    if isinstance(node, Or):
        return any(_words_match(n, record, negative) for n in node.items)
    if isinstance(node, Not):
        return not _words_match(node.item, record, negative)
    if node.field == "model":
        return (record.model or "").lower() == node.text.lower()
    if node.field == "sampler":
        return (record.sampler or "").lower() == node.text.lower()
    text = record.negative_prompt if negative is NegativeMode.ONLY else f"{record.prompt} {record.params}"
    words = node.text.lower().split()
    tokens = re.findall(r"\w+", text.lower())
    return any(tokens[i : i + len(words)] == words for i in range(len(tokens)))


def add_ratings(db_path: Path, count: int, seed: int = 1) -> None:
    """A fifth of the images rated by 1–6 people (directly in SQLite: the bench needs the state, not the API)."""
    rng = random.Random(seed)
    db = sqlite3.connect(db_path)
    rated = rng.sample(range(1, count + 1), count // 5)
    ratings = [
        (i, f"user{u}", rng.randint(1, 5), 0.0)
        for i in rated
        for u in rng.sample(range(300), rng.randint(1, 6))
    ]
    db.executemany("INSERT INTO ratings VALUES (?, ?, ?, ?)", ratings)
    db.execute(
        "UPDATE images SET (rank_mean, rank_count) = "
        "(SELECT AVG(score), COUNT(*) FROM ratings WHERE image_id = images.id) "
        "WHERE id IN (SELECT image_id FROM ratings)"
    )
    db.commit()
    db.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(size: int, repeats: int, folder: Path, naive_repeats: int, engine: str) -> None:
    if (folder / "catalog.db").exists():  # --folder with a catalog built before: only the queries
        await query_mix(size, repeats, folder, naive_repeats, engine)
        return
    catalog = await Catalog.open(folder, text_index=engine)
    rows = list(synthetic_rows(size))
    started = time.perf_counter()
    inserted = 0
    for start in range(0, len(rows), 20_000):
        inserted += await catalog.bulk_insert(rows[start : start + 20_000])
    sqlite_s = time.perf_counter() - started
    del rows
    started = time.perf_counter()
    indexed = await catalog.rebuild_index()
    whoosh_s = time.perf_counter() - started
    await catalog.close()
    add_ratings(folder / "catalog.db", size)
    print(f"[{size:>9,} {engine}] ingest: SQLite {inserted / sqlite_s:,.0f} rows/s (with its FTS5 indexes), "
          f"text index {indexed / whoosh_s:,.0f} docs/s "
          f"({sqlite_s + whoosh_s:.0f}s in all)")  # fmt: skip
    await query_mix(size, repeats, folder, naive_repeats, engine)


async def query_mix(size: int, repeats: int, folder: Path, naive_repeats: int, engine: str) -> None:
    catalog = await Catalog.open(folder, text_index=engine)
    ours: dict[str, list[float]] = {}
    totals = {}
    for _ in range(repeats):
        for name, browse in QUERIES.items():
            started = time.perf_counter()
            page = await catalog.search(browse)
            ours.setdefault(name, []).append(time.perf_counter() - started)
            totals[name] = page
    await catalog.close()

    db = sqlite3.connect(folder / "catalog.db")
    db.row_factory = sqlite3.Row
    naive_times: dict[str, list[float]] = {}
    for _ in range(naive_repeats):
        for name, browse in QUERIES.items():
            started = time.perf_counter()
            rows = [record_of(row) for row in db.execute("SELECT * FROM images")]
            _, total = naive(rows, browse)
            naive_times.setdefault(name, []).append(time.perf_counter() - started)
            found = totals[name]
            if (
                total != found.total if found.exact else total <= found.total
            ) and not browse.keyword.startswith("model:"):
                print(f"  note: {name}: naive found {total}, search {count_text(found)}")
            del rows
    db.close()
    every = [t for times in ours.values() for t in times]
    for name in QUERIES:
        p50, p95 = percentile(ours[name], 0.5) * 1000, percentile(ours[name], 0.95) * 1000
        scan = statistics.median(naive_times.get(name, [float("nan")])) * 1000
        print(f"  {name:<14} {count_text(totals[name]):>8} hits  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
              f"naive {scan:8.0f} ms  ({scan / p50:6.1f}×)")  # fmt: skip
    scan_all = (
        statistics.median([statistics.median(v) for v in naive_times.values()] or [float("nan")]) * 1000
    )
    p50_all, p95_all = percentile(every, 0.5) * 1000, percentile(every, 0.95) * 1000
    print(f"  all queries: p50 {p50_all:.1f} ms, p95 {p95_all:.1f} ms; "
          f"naive median {scan_all:.0f} ms; ratio naive/p50 {scan_all / p50_all:.0f}×")  # fmt: skip


async def real_files(count: int, folder: Path) -> None:
    """Ingest of real PNG files with infotext through `add_many` (decode, pixel hash, row, index)."""
    from PIL import Image

    from catalog.records import NewImage
    from engine.infotext_files import save_image_with_infotext

    rows = synthetic_rows(count, seed=5)
    images = []
    files = folder / "files"
    files.mkdir(parents=True)
    for i, row in enumerate(rows):
        path = save_image_with_infotext(
            Image.new("RGB", (512, 512), (i % 256, 90, 30)), files / f"{i}.png", row["infotext"]
        )
        images.append(NewImage(str(path), GUILD, row["author"], row["infotext"]))
    catalog = await Catalog.open(folder / "catalog")
    started = time.perf_counter()
    await catalog.add_many(images)
    elapsed = time.perf_counter() - started
    one = time.perf_counter()
    extra = save_image_with_infotext(Image.new("RGB", (512, 512)), files / "extra.png", images[0].infotext)
    await catalog.add(NewImage(str(extra), GUILD, "ann", images[0].infotext))
    single = time.perf_counter() - one
    await catalog.close()
    print(f"real 512×512 PNGs through add_many: {count / elapsed:,.0f} images/s; one add (searchable on return): "
          f"{single * 1000:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=20, help="runs of the query mix per size")
    parser.add_argument("--naive-repeats", type=int, default=1)
    parser.add_argument(
        "--files", type=int, default=500, help="real PNG files for the add_many figure (0: skip)"
    )
    parser.add_argument("--folder", type=Path, help="keep the catalogs here (and reuse them on the next run)")
    parser.add_argument("--text-index", default="whoosh,sqlite", help="the text index engines to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        if args.files:
            asyncio.run(real_files(args.files, Path(tmp) / "files"))
        for size in (int(s) for s in args.sizes.split(",")):
            for number, engine in enumerate(args.text_index.split(",")):
                where = folder / f"catalog-{size}-{engine}"
                naive_runs = args.naive_repeats if number == 0 else 0  # the scan is the same for every engine
                asyncio.run(measure(size, args.repeats, where, naive_runs, engine))


if __name__ == "__main__":
    main()
