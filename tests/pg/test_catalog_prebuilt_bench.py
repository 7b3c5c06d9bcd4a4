"""bench/catalog_prebuilt.py on a small PostgreSQL catalog of bench/catalog.py's synthetic rows: the query mix
runs with the exact-search changes off and on, and both give the same pages."""

from __future__ import annotations

from bench.catalog import QUERIES, synthetic_rows
from bench.catalog_prebuilt import run_mix
from catalog import pg_search
from tests.pg.catalogs import open_pg_catalog


async def test_the_mix_runs_before_and_after_with_the_same_pages(tmp_path, postgres_url, capsys):
    catalog = await open_pg_catalog(postgres_url, tmp_path / "catalog")
    try:
        assert await catalog.bulk_insert(synthetic_rows(2000)) == 2000
        await run_mix(catalog, 1, {"before": False, "after": True})
    finally:
        await catalog.close()
    printed = capsys.readouterr().out
    assert "the same pages in every mode: True" in printed
    assert all(f"  {name:<14} before" in printed for name in QUERIES)
    assert pg_search.COUNT_APART and pg_search.BY_RUNS  # switched back on
