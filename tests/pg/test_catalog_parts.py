"""The rest of the catalog on PostgreSQL: the galleries' and the hostile-pattern tests of the SQLite catalog
run against it, the copy from SQLite, its schema versions, and the composition root choosing it."""

from __future__ import annotations

import json

import pytest

import tests.catalog.test_galleries as galleries_tests
import tests.faults.test_catalog_search as hostile_tests
from app.stores import open_catalog
from catalog.catalog import Catalog
from catalog.pg_catalog import PgCatalog
from catalog.pg_copy import TargetNotEmpty, copy_catalog
from catalog.pg_schema import MIGRATIONS, CatalogSchemaTooNew
from catalog.records import BrowseQuery
from config import Settings
from tests.catalog.test_galleries import (  # noqa: F401  (run here on PostgreSQL)
    test_a_gallery_post_is_claimed_once,
    test_collections_are_curated_by_their_creator_and_moderators,
    test_top_images_of_a_period_stay_in_their_guild,
)
from tests.faults.test_catalog_search import (  # noqa: F401  (run here on PostgreSQL)
    evil_catalog,
    row,
    test_a_regex_that_outruns_its_budget_is_stopped,
    test_case_insensitive_regexes_still_work,
    test_catastrophic_regexes_answer_in_linear_time,
    test_unsupported_regex_syntax_is_refused_saying_what,
)
from tests.pg.catalogs import open_pg_catalog


class _OnPostgres:
    """Stands for `Catalog` in the borrowed tests: `open(folder)` opens the catalog on PostgreSQL."""

    url = ""

    @classmethod
    async def open(cls, folder, text_index: str = "whoosh") -> PgCatalog:
        return await open_pg_catalog(cls.url, folder)


@pytest.fixture(autouse=True)
def on_postgres(request, monkeypatch):
    """The borrowed tests' `Catalog.open` opens a fresh PostgreSQL database instead."""
    if request.node.function.__module__ in (galleries_tests.__name__, hostile_tests.__name__):
        monkeypatch.setattr(_OnPostgres, "url", request.getfixturevalue("postgres_url"))
        monkeypatch.setattr(galleries_tests, "Catalog", _OnPostgres)
        monkeypatch.setattr(hostile_tests, "Catalog", _OnPostgres)


async def _sqlite_with_rows(folder, count: int) -> Catalog:
    sqlite = await Catalog.open(folder, text_index="sqlite")
    await sqlite.bulk_insert(hostile_tests.row(i, f"a red cat {i}", "g1") for i in range(count))
    return sqlite


async def test_the_copy_keeps_ids_and_new_images_come_after(tmp_path, postgres_url):
    sqlite = await _sqlite_with_rows(tmp_path / "catalog", 30)
    await sqlite.purge("g1", [])  # (nothing)
    await sqlite.delete("g1", [3, 4])
    await sqlite.purge("g1", [3])  # id 3 is gone for good: the ids have a hole
    postgres = await open_pg_catalog(postgres_url, tmp_path / "catalog")
    try:
        counts = await copy_catalog(sqlite, postgres)
        assert counts["images"] == (29, 29) and counts["recycle_bin"] == (1, 1)
        assert [(await postgres.get("g1", i)) for i in (1, 2, 5, 30)] == [
            await sqlite.get("g1", i) for i in (1, 2, 5, 30)
        ]
        assert await postgres.get("g1", 3) is None and (await postgres.get("g1", 4)).deleted
        added = await postgres.bulk_insert([hostile_tests.row(99, "a new one", "g1")])
        assert added == 1
        assert await postgres.matching_ids(BrowseQuery("g1", keyword="new")) == [31]
        with pytest.raises(TargetNotEmpty, match="already holds 30 images"):
            await copy_catalog(sqlite, postgres)
    finally:
        await postgres.close()
        await sqlite.close()


async def test_bulk_insert_skips_rows_already_there(tmp_path, postgres_url):
    postgres = await open_pg_catalog(postgres_url, tmp_path / "catalog")
    try:
        rows = [hostile_tests.row(i, f"cat {i}", "g1") for i in range(5)]
        assert await postgres.bulk_insert(rows) == 5
        assert await postgres.bulk_insert(rows + [hostile_tests.row(7, "dog", "g1")]) == 1
        assert len(await postgres.matching_ids(BrowseQuery("g1"))) == 6
    finally:
        await postgres.close()


async def test_a_newer_catalog_schema_is_refused(tmp_path, postgres_url):
    postgres = await open_pg_catalog(postgres_url, tmp_path / "catalog")
    try:
        await postgres.fetch(
            "INSERT INTO catalog_migrations VALUES (%s, 'from the future', 0)", (len(MIGRATIONS) + 1,)
        )
    finally:
        await postgres.close()
    with pytest.raises(CatalogSchemaTooNew, match="newer than this Salon knows"):
        await open_pg_catalog(postgres_url, tmp_path / "catalog")


async def test_the_composition_root_opens_the_catalog_on_postgresql(tmp_path, postgres_url):
    settings = Settings(data_dir=tmp_path / "data", database={"url": postgres_url})
    async with open_catalog(settings) as catalog:
        assert isinstance(catalog, PgCatalog) and catalog.folder == settings.catalog_dir
        await catalog.bulk_insert([hostile_tests.row(1, "a red cat", "g1")])
    async with open_catalog(Settings(data_dir=tmp_path / "data")) as catalog:
        assert isinstance(catalog, Catalog)  # without the URL: catalog.db, as before
        assert await catalog.matching_ids(BrowseQuery("g1")) == []
    async with open_catalog(settings) as catalog:
        assert await catalog.matching_ids(BrowseQuery("g1", keyword="cat")) == [1]
        assert json.loads((await catalog.fetch("SELECT networks FROM images"))[0]["networks"]) == []


async def test_optimizing_merges_both_gin_indexes_pending_entries(tmp_path, postgres_url):
    """New rows wait in each GIN index's pending list, which every lookup reads in full: the scheduled
    optimization merges the trigram index's too, not only the words'."""
    postgres = await open_pg_catalog(postgres_url, tmp_path / "catalog")
    try:
        await postgres.bulk_insert([hostile_tests.row(i, f"a red cat {i}", "g1") for i in range(20)])
        await postgres.optimize_index()
        for index in ("images_words", "images_text_trigrams"):
            rows = await postgres.fetch("SELECT gin_clean_pending_list(%s::regclass) AS merged", (index,))
            assert rows[0]["merged"] == 0, index  # (nothing left to merge)
    finally:
        await postgres.close()
