"""The catalog's text indexes under concurrency, damage and upkeep (issue 18, items 15, 20 and 4): ratings
never wait for the index, writers of several processes queue with a bounded wait, every scheduled upkeep job
works with both text indexes, and a damaged derived index is rebuilt from SQLite at open."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from catalog import text_index
from catalog.catalog import Catalog
from catalog.records import BrowseQuery, NewImage, SortOrder
from config import load_settings
from engine.infotext import format_infotext
from engine.infotext_files import save_image_with_infotext

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 120  # generous overall deadline for what other processes do


def infotext(prompt: str, seed: int) -> str:
    return format_infotext(prompt, "", {"Steps": 20, "Sampler": "Euler", "Seed": seed, "Model": "m1"})


def write_image(folder: Path, name: str, prompt: str, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (16, 16), (seed % 256, seed * 7 % 256, 3))
    return save_image_with_infotext(image, folder / name, infotext(prompt, seed))


def new_images(folder: Path, count: int, guild: str = "g1", word: str = "lighthouse") -> list[NewImage]:
    """`count` images with files in `folder`, prompts "a {word} number{i}"."""
    found = []
    for i in range(count):
        prompt = f"a {word} number{i}"
        found.append(
            NewImage(str(write_image(folder, f"{i:05d}.png", prompt, i)), guild, "ann", infotext(prompt, i))
        )
    return found


def python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


HOLD_LOCKS = """
import sys, time, fcntl, os
from whoosh import index
from catalog.text_index import lock_path
from pathlib import Path
folder = Path(sys.argv[1])
fd = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)          # Salon's writer lock
writer = index.open_dir(str(folder)).writer()  # and Whoosh's own
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_index_locks(folder: Path, seconds: float) -> subprocess.Popen:
    """Another process holding both writer locks of the Whoosh index in `folder` (waits until it does)."""
    holder = python(HOLD_LOCKS, str(folder), str(seconds))
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


async def test_a_rating_does_not_wait_for_the_text_index(tmp_path):
    """Item 15: with another process holding the Whoosh writer lock, ratings return at once, and sorting by
    rank (SQLite) sees them; nothing reads a rank from the index."""
    catalog = await Catalog.open(tmp_path / "catalog")
    try:
        added = await catalog.add_many(new_images(tmp_path / "files", 3))
        holder = hold_index_locks(tmp_path / "catalog" / "index", DEADLINE_S)
        try:
            for score, record in zip((2, 5, 4), added, strict=True):
                started = time.perf_counter()
                rated = await catalog.rate("g1", record.id, "bob", score)
                assert time.perf_counter() - started < 2.0  # (was 30 s, then a LockError)
                assert rated.rank_mean == score and rated.rank_count == 1
            by_rank = await catalog.search(BrowseQuery("g1", keyword="lighthouse", sort=SortOrder.RANK))
            assert [image.id for image in by_rank.images] == [added[1].id, added[2].id, added[0].id]
        finally:
            holder.kill()
            holder.wait()
        assert (await catalog.check()).clean  # a rating leaves nothing for the index to catch up on
    finally:
        await catalog.close()


async def test_an_add_waits_in_line_for_a_bounded_time_and_is_indexed_later(tmp_path, monkeypatch):
    """Item 15: an add whose writer lock another process keeps past the bound returns without an error; the
    next add indexes what it left."""
    catalog = await Catalog.open(tmp_path / "catalog")
    try:
        first = await catalog.add_many(new_images(tmp_path / "a", 1))
        monkeypatch.setattr(text_index, "WRITE_LOCK_S", 0.3)
        holder = hold_index_locks(tmp_path / "catalog" / "index", DEADLINE_S)
        try:
            started = time.perf_counter()
            [late] = await catalog.add_many(new_images(tmp_path / "b", 1, word="windmill"))
            assert time.perf_counter() - started < 10
        finally:
            holder.kill()
            holder.wait()
        assert (await catalog.check()).rows_not_indexed == (late.id,)
        await catalog.add_many(new_images(tmp_path / "c", 1, word="harbour"))
        found = await catalog.search(BrowseQuery("g1", keyword="windmill or lighthouse or harbour"))
        assert late.id in {image.id for image in found.images} and first[0].id in {i.id for i in found.images}
        assert (await catalog.check()).clean
    finally:
        await catalog.close()


WRITER = """
import asyncio, json, sys, time
from pathlib import Path
from catalog.catalog import Catalog
from catalog.records import NewImage

async def main(catalog_dir, files, worker, ratings):
    catalog = await Catalog.open(Path(catalog_dir))
    adds, rates, errors = [], [], []
    try:
        mine = sorted(Path(files).glob("*.png"))
        ids = []
        for number, path in enumerate(mine):
            started = time.perf_counter()
            try:
                [record] = await catalog.add_many([NewImage(str(path), "g1", f"w{worker}", f"a kite w{worker}")])
                ids.append(record.id)
            except Exception as exc:
                errors.append(repr(exc))
            adds.append(time.perf_counter() - started)
        for number in range(ratings):
            started = time.perf_counter()
            try:
                await catalog.rate("g1", ids[number % len(ids)], f"user{worker}-{number}", 1 + number % 5)
            except Exception as exc:
                errors.append(repr(exc))
            rates.append(time.perf_counter() - started)
    finally:
        await catalog.close()
    print(json.dumps({"ids": ids, "adds": adds, "rates": rates, "errors": errors}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def run_writers(catalog_dir: Path, files: Path, workers: int, images: int, ratings: int) -> list[dict]:
    """`workers` processes each adding `images` images of their own, then rating them `ratings` times."""
    for worker in range(workers):
        for i in range(images):
            write_image(files / str(worker), f"{worker}-{i}.png", f"kite {worker} {i}", worker * 1000 + i)
    started = [
        python(WRITER, str(catalog_dir), str(files / str(w)), str(w), str(ratings)) for w in range(workers)
    ]
    results = []
    for process in started:
        out, _ = process.communicate(timeout=DEADLINE_S)
        assert process.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.parametrize("text", ["whoosh", "sqlite"])
async def test_four_processes_add_and_rate_at_once_without_errors(tmp_path, text):
    """Item 15: four processes adding and rating on one catalog: no error, every image searchable, every
    rating counted."""
    folder = tmp_path / "catalog"
    await (await Catalog.open(folder, text)).close()  # created once, before the race
    results = await asyncio.to_thread(run_writers, folder, tmp_path / "files", 4, 5, 20)
    assert [r["errors"] for r in results] == [[]] * 4
    catalog = await Catalog.open(folder, text)
    try:
        page = await catalog.search(BrowseQuery("g1", keyword="kite", page_size=100))
        assert sorted(i.id for i in page.images) == sorted(i for r in results for i in r["ids"])
        assert sum(i.rank_count for i in page.images) == 4 * 20
        assert (await catalog.check()).clean
    finally:
        await catalog.close()


# ----- every scheduled upkeep job, with both text indexes (item 20) ------------------------------------------
@pytest.mark.parametrize("text", ["whoosh", "sqlite"])
async def test_every_scheduled_upkeep_job_works_with_both_text_indexes(tmp_path, text):
    """Item 20: each `upkeep:*` job the bot schedules (purge, optimize, check, and any added later) runs and
    does its work, with the Whoosh index and with SQLite's (optimize raised AttributeError there)."""
    from bot.schedule import Scheduler

    settings = load_settings(None, data_dir=tmp_path / "data", catalog={"text_index": text})
    catalog = await Catalog.open(settings.catalog_dir, text)
    try:
        outputs = settings.outputs_path
        old, kept, damaged = await catalog.add_many(new_images(outputs, 3))
        await catalog.delete("g1", [old.id, kept.id])
        async with (
            catalog.store.transaction() as db
        ):  # one deleted 40 days ago, one today; one row not indexed
            await db.execute(
                "UPDATE images SET deleted_at = ? WHERE id = ?", (time.time() - 40 * 86400, old.id)
            )
            await db.execute("UPDATE images SET indexed = 0 WHERE id = ?", (damaged.id,))
        await catalog.store.in_index_thread(catalog.store.text.remove, [damaged.id])
        orphan = write_image(outputs, "orphan.png", "an orphan moon", 77)
        services = SimpleNamespace(
            settings=settings,
            catalog=catalog,
            community=SimpleNamespace(schedules=_no_schedules),
            schedule_lock=None,  # SQLite: this process runs the schedule
            # SQLite: no files shared between hosts
            queue=SimpleNamespace(results=SimpleNamespace(blobs=None)),
        )
        scheduler = Scheduler(SimpleNamespace(services=services, extensions_found=[]))
        await scheduler.start()
        try:
            jobs = {job.id: job for job in scheduler.scheduler.get_jobs() if job.id.startswith("upkeep:")}
            assert {"upkeep:purge", "upkeep:optimize", "upkeep:check"} <= set(jobs)
            for job in jobs.values():
                await job.func(*job.args)
        finally:
            scheduler.stop()
        assert await catalog.get("g1", old.id) is None and await catalog.get("g1", kept.id) is not None
        assert damaged.id in await catalog.matching_ids(BrowseQuery("g1", keyword="number2"))
        assert len(await catalog.matching_ids(BrowseQuery("local", keyword="moon"))) == 1, orphan
        assert (await catalog.check([outputs])).clean
    finally:
        await catalog.close()


async def _no_schedules():
    return []


# ----- a damaged derived index is rebuilt at open (item 4, the text-index half) ------------------------------
def _corrupt_whoosh(folder: Path, how: str) -> None:
    segments = sorted(folder.glob("*.seg"))
    tocs = sorted(folder.glob("_MAIN_*.toc"))
    if how == "random bytes":
        for path in segments:
            path.write_bytes(random.Random(1).randbytes(path.stat().st_size))
    elif how == "truncated segment":
        for path in segments:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "zeroed toc":
        for path in tocs:
            path.write_bytes(bytes(path.stat().st_size))
    elif how == "toc removed":
        for path in tocs:
            path.unlink()
    elif how == "folder removed":
        shutil.rmtree(folder)


def _corrupt_fts(database: Path, how: str) -> None:
    db = sqlite3.connect(database)
    try:
        with db:
            if how == "words blocks":
                db.execute("UPDATE images_words_data SET block = randomblob(length(block)) WHERE id > 10")
            elif how == "words structure":
                db.execute("UPDATE images_words_data SET block = zeroblob(length(block)) WHERE id = 10")
            elif how == "words without data":
                db.execute("DELETE FROM images_words_data")
            elif how == "words index emptied":
                db.execute("DELETE FROM images_words_idx")
            elif how == "trigram blocks":
                db.execute("UPDATE images_text_data SET block = randomblob(length(block)) WHERE id > 10")
            elif how == "words config dropped":
                db.execute("DROP TABLE images_words_config")
    finally:
        db.close()


def salon(data: Path, text: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SALON_DATA_DIR": str(data),
        "SALON_CATALOG__TEXT_INDEX": text,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())", *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S)


async def _filled(data: Path, text: str) -> list:
    catalog = await Catalog.open(data / "catalog", text)
    try:
        records = await catalog.add_many(new_images(data / "outputs", 6, guild="local"))
        records += await catalog.add_many(new_images(data / "more", 4, guild="local", word="windmill"))
        return records
    finally:
        await catalog.close()


WHOOSH_DAMAGE = ["random bytes", "truncated segment", "zeroed toc", "toc removed", "folder removed"]
FTS_DAMAGE = [
    "words blocks", "words structure", "words without data", "trigram blocks",
    "words config dropped",
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "how"), [("whoosh", how) for how in WHOOSH_DAMAGE] + [("sqlite", how) for how in FTS_DAMAGE]
)
async def test_a_damaged_text_index_is_rebuilt_and_browse_answers(tmp_path, text, how):
    """Item 4: after damage to the Whoosh index or the FTS5 tables, `salon browse` exits 0 with the right
    images (exact and word searches), warns naming the folder, and a second run finds nothing to rebuild."""
    data = tmp_path / "data"
    await _filled(data, text)
    if text == "whoosh":
        _corrupt_whoosh(data / "catalog" / "index", how)
    else:
        _corrupt_fts(data / "catalog" / "catalog.db", how)
    started = time.monotonic()
    done = salon(data, text, "browse", "windmill")
    assert time.monotonic() - started < DEADLINE_S
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "(4 images)" in done.stdout
    assert "rebuilding it" in done.stderr and str(data / "catalog") in done.stderr
    exact = salon(data, text, "browse", "windmill", "--case-sensitive")
    assert exact.returncode == 0 and "(4 images)" in exact.stdout and "rebuilding" not in exact.stderr
    regex = salon(data, text, "browse", "light.ouse", "--regex")
    assert regex.returncode == 0 and "(6 images)" in regex.stdout
    rebuilt = salon(data, text, "catalog", "rebuild-index")
    assert rebuilt.returncode == 0 and "10 image(s)" in rebuilt.stdout, rebuilt.stderr


async def test_damage_only_a_search_finds_is_repaired_during_that_search(tmp_path):
    """Item 4: a damaged block the open-time probe did not read fails the search that reads it; the index is
    rebuilt and the search answered."""
    data = tmp_path / "data"
    await _filled(data, "sqlite")
    catalog = await Catalog.open(data / "catalog", "sqlite")
    try:
        with sqlite3.connect(data / "catalog" / "catalog.db") as db:
            db.execute("UPDATE images_words_data SET block = randomblob(length(block)) WHERE id > 10")
        db.close()
        page = await catalog.search(BrowseQuery("local", keyword="windmill"))
        assert page.total == 4
    finally:
        await catalog.close()
