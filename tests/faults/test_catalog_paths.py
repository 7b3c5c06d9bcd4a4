"""Catalog paths: one stored form, so repair never duplicates a file; the merge of the duplicates an earlier
version made; links that leave an imported folder; the web gallery serving only the recorded file."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from catalog import path_migration
from catalog.catalog import Catalog
from catalog.paths import LINK_LEAVES
from catalog.records import BrowseQuery, NewImage
from catalog.schema import MIGRATIONS, record_of
from catalog.text_index import WhooshIndex
from cli.main import main
from community.store import CommunityStore
from config import load_settings
from core.sqlite import Database
from engine.demo import DEMO_MODEL_NAME
from engine.infotext_files import save_image_with_infotext
from web.server import serve

INFOTEXT = "a red circle on a blue background\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: {seed}"


def picture(path: Path, seed: int = 1) -> Path:
    """A small PNG with an infotext, as Salon writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (32, 32), (seed * 40 % 256, 30, 200))
    return save_image_with_infotext(image, path, INFOTEXT.format(seed=seed))


def salon(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def test_repair_after_imagine_leaves_one_row_per_image_and_the_folder_can_move(tmp_path, monkeypatch, capsys):
    """Issue 18 item 1: `catalog check --repair` after `imagine` in the default layout adds no second row."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "salon-data"\ndefault_model = "{DEMO_MODEL_NAME}"\n')
    args = ["imagine", "a red circle on a blue background", "--steps", "1", "--seed", "3", "--size", "64x64"]
    assert salon(config, *args) == 0
    capsys.readouterr()
    assert salon(config, "catalog", "check") == 0
    assert "files without rows: 0" in capsys.readouterr().out
    for _ in range(2):  # repair twice: neither adds anything
        assert salon(config, "catalog", "check", "--repair") == 0
        assert "rows without files: 0, files without rows: 0" in capsys.readouterr().out
    assert salon(config, "browse", "--guild", "local") == 0
    assert "(1 images)" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "salon-data" / "catalog" / "catalog.db") as db:
        [(path,)] = db.execute("SELECT path FROM images").fetchall()
    assert path.startswith("outputs/") and not os.path.isabs(path)  # relative to the data folder
    (tmp_path / "salon-data").rename(tmp_path / "moved")
    config.write_text(f'data_dir = "moved"\ndefault_model = "{DEMO_MODEL_NAME}"\n')
    assert salon(config, "catalog", "check") == 0
    assert salon(config, "browse", "--guild", "local", "--show", "1") == 0
    assert str(tmp_path / "moved" / "outputs") in capsys.readouterr().out


OLD_MIGRATIONS = MIGRATIONS[: MIGRATIONS.index(path_migration.MIGRATION)]


async def write_old_catalog(data: Path, text_index: str) -> dict[str, Path]:
    """A catalog as the version before canonical paths left it: a job's row (path relative to the worker's
    working folder), the integrity repair's second row for the same file (absolute), a third through a link
    to the data folder, a child of a duplicate, the same file in another guild; ratings, a favourite, a
    gallery entry and post on the duplicates; every row in the text index."""
    outputs = data / "outputs" / "txt2img-images"
    first, second = picture(outputs / "00001-1.png", 1), picture(outputs / "00002-2.png", 2)
    link = data.parent / "link-to-data"
    link.symlink_to(data, target_is_directory=True)
    rows = [  # id, guild, path, author, created, channel, message, job_id, parent_id
        (1, "g", "salon-data/outputs/txt2img-images/00001-1.png", "ann", 100.0, "c1", "m1", 7, None),
        (2, "g", str(first), "local", 200.0, None, None, None, None),
        (3, "g", "salon-data/outputs/txt2img-images/00002-2.png", "ann", 300.0, None, None, 8, 2),
        (4, "other", str(first), "zed", 400.0, None, None, None, None),
        (
            5,
            "g",
            str(link / "outputs" / "txt2img-images" / "00001-1.png"),
            "local",
            500.0,
            None,
            None,
            None,
            None,
        ),
    ]
    database = await Database.open(data / "catalog" / "catalog.db", OLD_MIGRATIONS)
    db = database.connection
    for image_id, guild, path, author, created, channel, message, job_id, parent in rows:
        await db.execute(
            "INSERT INTO images (id, guild, path, filename, author, created, channel, message, job_id, "
            "parent_id, relation, sha256, width, height, prompt, params, infotext, indexed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'x', 32, 32, 'a red circle', 'Steps: 20', ?, 1)",
            (image_id, guild, path, Path(path).name, author, created, channel, message, job_id, parent,
             "variation" if parent else None, INFOTEXT.format(seed=1)),
        )  # fmt: skip
    await db.executemany(
        "INSERT INTO ratings VALUES (?, ?, ?, ?)",
        [(1, "bob", 2, 10.0), (2, "bob", 5, 20.0), (2, "cy", 4, 5.0), (5, "dee", 3, 1.0)],
    )
    await db.execute("UPDATE images SET rank_mean = 2, rank_count = 1 WHERE id = 1")
    await db.execute("INSERT INTO favourites VALUES (2, 'cy', 1.0)")
    await db.execute("INSERT INTO galleries VALUES (1, 'g', 'best', 'ann', 1.0)")
    await db.execute("INSERT INTO gallery_images VALUES (1, 2, 0)")
    await db.execute("INSERT INTO gallery_posts VALUES ('g', 5, 'gallery', 'post1', 1.0)")
    async with db.execute("SELECT * FROM images ORDER BY id") as cursor:
        records = [record_of(row) for row in await cursor.fetchall()]
    await database.close()
    if text_index == "whoosh":
        index = WhooshIndex(data / "catalog" / "index")
        index.put(records)
        index.close()
    return {"first": first, "second": second}


@pytest.mark.parametrize("text_index", ["whoosh", "sqlite"])
async def test_opening_an_old_catalog_merges_its_duplicate_rows_into_the_oldest(
    tmp_path, monkeypatch, text_index
):
    """Issue 18 item 1: the migration canonicalizes stored paths and merges duplicates (ratings, favourites,
    gallery entries, message, lineage move to the oldest row; the index follows)."""
    data = tmp_path / "salon-data"
    files = await write_old_catalog(data, text_index)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the old relative paths are found without the old cwd
    catalog = await Catalog.open(data / "catalog", text_index)
    try:
        with sqlite3.connect(data / "catalog" / "catalog.db") as db:
            rows = db.execute("SELECT id, guild, path, message, job_id, parent_id FROM images ORDER BY id")
            assert rows.fetchall() == [
                (1, "g", "outputs/txt2img-images/00001-1.png", "m1", 7, None),
                (3, "g", "outputs/txt2img-images/00002-2.png", None, 8, 1),
                (4, "other", "outputs/txt2img-images/00001-1.png", None, None, None),
            ]
            assert dict(db.execute("SELECT user, score FROM ratings WHERE image_id = 1")) == {
                "bob": 5,  # rated both: the newer score
                "cy": 4,
                "dee": 3,
            }
            assert db.execute("SELECT image_id FROM favourites").fetchall() == [(1,)]
            assert db.execute("SELECT image_id FROM gallery_images").fetchall() == [(1,)]
            assert db.execute("SELECT image_id FROM gallery_posts").fetchall() == [(1,)]
            assert db.execute("SELECT COUNT(*) FROM pending_steps").fetchone() == (0,)
        kept = await catalog.get("g", 1)
        assert (kept.rank_mean, kept.rank_count) == (4.0, 3) and kept.path == str(files["first"])
        page = await catalog.search(BrowseQuery("g", keyword="circle"))
        assert sorted(image.id for image in page.images) == [1, 3]
        report = await catalog.check([data / "outputs"])
        assert report.clean, report
        assert await catalog.store.in_index_thread(catalog.store.text.ids) == {1, 3, 4}
    finally:
        await catalog.close()
    # Idempotent: run again (the mark put back by hand), nothing changes.
    with sqlite3.connect(data / "catalog" / "catalog.db") as db:
        before = db.execute("SELECT * FROM images ORDER BY id").fetchall()
        db.execute("INSERT INTO pending_steps VALUES (?)", (path_migration.STEP,))
    catalog = await Catalog.open(data / "catalog", text_index)
    try:
        assert (await catalog.check([data / "outputs"], repair=True)).clean
    finally:
        await catalog.close()
    with sqlite3.connect(data / "catalog" / "catalog.db") as db:
        assert db.execute("SELECT * FROM images ORDER BY id").fetchall() == before


async def test_delete_and_restore_find_the_file_by_its_stored_path(tmp_path):
    """Issue 18 item 1: delete, restore and purge read the stored (relative) paths as absolute ones."""
    data = tmp_path / "data"
    catalog = await Catalog.open(data / "catalog")
    try:
        path = picture(data / "outputs" / "a.png")
        record = await catalog.add_many([NewImage(str(path), "g", "ann", INFOTEXT.format(seed=1))])
        image_id = record[0].id
        assert await catalog.delete("g", [image_id]) == 1 and not path.exists()
        with sqlite3.connect(data / "catalog" / "catalog.db") as db:
            (recycled,) = db.execute("SELECT recycled_path FROM images").fetchone()
        assert recycled == f"catalog/recycle/{image_id}-a.png"
        assert await catalog.restore("g", [image_id]) == 1 and path.is_file()
        assert (await catalog.check([data / "outputs"])).clean
    finally:
        await catalog.close()


# ----- links (item 11) ------------------------------------------------------------------------------------------
@pytest.fixture
async def catalog(tmp_path):
    opened = await Catalog.open(tmp_path / "data" / "catalog")
    yield opened
    await opened.close()


async def test_import_refuses_a_file_link_that_leaves_the_folder(catalog, tmp_path):
    """Issue 18 item 11: a link to a file outside the imported folder is skipped with its reason."""
    folder = tmp_path / "import"
    own = picture(folder / "own.png")
    secret = picture(tmp_path / "private" / "secret.png", 2)
    (folder / "evil.png").symlink_to(secret)
    records, skipped = await catalog.import_folder(folder, "g", "ann")
    assert [record.path for record in records] == [str(own)]
    assert skipped == [f"{folder / 'evil.png'}: {LINK_LEAVES}"]
    with sqlite3.connect(tmp_path / "data" / "catalog" / "catalog.db") as db:
        stored = [row[0] for row in db.execute("SELECT path FROM images")]
    assert not any("secret" in path or "evil" in path for path in stored)


async def test_import_refuses_a_folder_link_that_leaves_the_folder(catalog, tmp_path):
    """Issue 18 item 11: a link to a folder outside is not walked; it is skipped with its reason."""
    folder = tmp_path / "import"
    own = picture(folder / "own.png")
    picture(tmp_path / "private" / "secret.png", 2)
    (folder / "elsewhere").symlink_to(tmp_path / "private", target_is_directory=True)
    records, skipped = await catalog.import_folder(folder, "g", "ann")
    assert [record.path for record in records] == [str(own)]
    assert skipped == [f"{folder / 'elsewhere'}: {LINK_LEAVES}"]


async def test_links_inside_the_folder_are_imported_once_by_their_real_path(catalog, tmp_path):
    """Issue 18 item 11: links that stay inside the folder are allowed; the real file is stored, once."""
    folder = tmp_path / "import"
    real = picture(folder / "sub" / "real.png")
    (folder / "alias.png").symlink_to(real)
    (folder / "sub-link").symlink_to(folder / "sub", target_is_directory=True)
    records, skipped = await catalog.import_folder(folder, "g", "ann")
    assert skipped == []
    assert {record.id for record in records} == {records[0].id}
    assert records[0].path == str(real)


async def test_the_web_gallery_does_not_follow_a_link_planted_after_import(tmp_path):
    """Issue 18 item 11: a file replaced by a link after import is neither served nor thumbnailed."""
    settings = load_settings(None, data_dir=tmp_path / "data")
    catalog = await Catalog.open(settings.catalog_dir)
    community = await CommunityStore.open(settings.community_db)
    folder = tmp_path / "import"
    kept, swapped = picture(folder / "kept.png"), picture(folder / "swapped.png", 2)
    secret = picture(tmp_path / "private" / "secret.png", 3)
    records, _ = await catalog.import_folder(folder, "local", "ann")
    by_name = {Path(record.path).name: record.id for record in records}
    swapped.unlink()
    swapped.symlink_to(secret)  # planted after the import
    runner = await serve(settings, catalog, community, "127.0.0.1", 0, "local")
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/file/{by_name['kept.png']}") as response:
                assert response.status == 200 and await response.read() == kept.read_bytes()
            for page in (f"file/{by_name['swapped.png']}", f"thumb/{by_name['swapped.png']}.jpg"):
                async with session.get(f"{base}/{page}") as response:
                    assert response.status == 404, page
    finally:
        await runner.cleanup()
        await community.close()
        await catalog.close()
