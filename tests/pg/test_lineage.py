"""Families (tests/catalog/test_lineage.py) on the PostgreSQL catalog: the same members and relations."""

from __future__ import annotations

import pytest

from tests.catalog.test_lineage import (  # noqa: F401  (the tests and their fixture, run here on PostgreSQL)
    test_deleted_members_are_walked_through_and_other_guilds_are_not_seen,
    test_every_member_finds_the_same_family_with_its_relations,
    tree,
)
from tests.pg.catalogs import open_pg_catalog


@pytest.fixture
async def catalog(tmp_path, postgres_url):
    opened = await open_pg_catalog(postgres_url, tmp_path / "catalog")
    yield opened
    await opened.close()
