"""Opening the catalog on PostgreSQL in tests: skipped, with the reason, where the server lacks pg_trgm."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.pg_catalog import PgCatalog
from catalog.pg_schema import TrigramsMissing


async def open_pg_catalog(url: str, folder: Path) -> PgCatalog:
    try:
        return await PgCatalog.open(url, folder)
    except TrigramsMissing as missing:
        pytest.skip(f"the catalog on PostgreSQL needs pg_trgm: {missing}")
