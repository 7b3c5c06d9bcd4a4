"""The community store's tests run on both stores: `community.db` and PostgreSQL (tests/postgres.py; the
PostgreSQL case is skipped with the reason when no server can be started)."""

import pytest

from community.store import CommunityStore
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path):
    """A fresh, empty community store of each kind."""
    if request.param == "sqlite":
        opened = await CommunityStore.open(tmp_path / "community.db")
    else:
        from community.pg_store import PgCommunityStore

        opened = await PgCommunityStore.open(request.getfixturevalue("postgres_url"))
    yield opened
    await opened.close()
