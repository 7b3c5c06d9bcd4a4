"""The PostgreSQL tests' server (tests/postgres.py): skipped with the reason when none can be started."""

from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)
