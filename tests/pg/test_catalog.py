"""The catalog's behaviour tests (tests/catalog/test_catalog.py) against the catalog on PostgreSQL
(catalog/pg_catalog.py): adding, every browse filter, ratings, favourites, delete/restore/purge, guild
isolation, rebuilding the words, integrity repair and import."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.catalog.test_catalog import *  # noqa: F403  (the tests, run here on PostgreSQL)
from tests.catalog.test_catalog import filled  # noqa: F401  (a fixture)
from tests.pg.catalogs import open_pg_catalog


@pytest.fixture
async def catalog(tmp_path, postgres_url):
    """The catalog on a fresh PostgreSQL database (files and the recycle bin under tmp_path)."""
    opened = await open_pg_catalog(postgres_url, tmp_path / "catalog")
    yield opened
    await opened.close()


async def test_integrity_check_finds_and_repairs_damage(catalog, filled, tmp_path):  # noqa: F811
    """On PostgreSQL the words are a column of each row: the check compares rows and files only."""
    assert (await catalog.check([tmp_path / "outputs"])).clean
    Path(filled[0].path).unlink()  # a row without its file
    orphan = write_image(tmp_path / "outputs", "99999-77.png", "an orphan moon", "", "m", "Euler", 77)  # noqa: F405
    report = await catalog.check([tmp_path / "outputs"], guild="g1", author="repair")
    assert report.rows_without_files == (filled[0].id, filled[0].id + 5)  # and its copy in guild g2
    assert report.files_without_rows == (str(orphan),)
    assert report.rows_not_indexed == report.index_without_rows == ()
    await catalog.check([tmp_path / "outputs"], guild="g1", author="repair", repair=True)
    assert (await catalog.check([tmp_path / "outputs"])).clean
    assert await found(catalog, keyword="orphan moon") != []  # noqa: F405
    assert await catalog.get("g1", filled[0].id) is None
