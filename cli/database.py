"""`salon db migrate-to URL`: move an existing SQLite installation into PostgreSQL.

Copies the data folder's three stores into the empty database at URL: the queue (queue.db: every job with its
id; jobs/pg_copy.py), the community store (community.db: settings, schedules, digests, web links, browse
sessions; community/pg_copy.py) and the catalog (catalog.db: images, ratings, favourites, recycle bin,
galleries; catalog/pg_copy.py). The SQLite files are only read (core/sqlite_snapshot.py), never changed, so
the installation keeps working as it was until `[database] url` is set.

Refused, before anything is copied: a URL that is not `postgresql://…`, a server that cannot be reached, a
running Salon worker on this data folder, a target that already holds Salon data (the tables are named), a
store that this Salon cannot copy yet. Each store's copy is one transaction; afterwards the rows are counted
table by table on both sides and printed, and any difference is an error (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import importlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cli.output import console, print_error
from config import Settings
from core.errors import SalonError

EXIT_REFUSED = 1
CONNECT_TIMEOUT_S = 10
URL_PATTERN = re.compile(r"^postgres(ql)?://\S*$")  # as config's [database] url


class MigrationRefused(SalonError):
    """Why nothing (or, after a failed store, not everything) was copied: one line for the terminal."""


@dataclass(frozen=True)
class Store:
    """One SQLite store and how it goes to PostgreSQL: its file, and the module with its copy function and its
    `TABLES` (SQLite name → PostgreSQL name, the tables whose rows are counted on both sides)."""

    label: str
    path: Path
    module: str
    function: str


@dataclass(frozen=True)
class Copier:
    copy: Callable
    tables: dict[str, str]


def db(args: argparse.Namespace, settings: Settings) -> int:
    """`salon db …` (today one subcommand, `migrate-to`)."""
    try:
        return migrate_to(args.url, settings)
    except SalonError as exc:
        print_error(exc)
        return EXIT_REFUSED


def migrate_to(url: str, settings: Settings) -> int:
    if not URL_PATTERN.match(url):
        raise MigrationRefused(f"URL: {url!r} is not a PostgreSQL URL (postgresql://user@host:port/database)")
    stores = _stores(settings)
    if not any(store.path.exists() for store in stores):
        raise MigrationRefused(
            f"no SQLite installation in {settings.data_dir} (no queue.db, catalog.db, community.db)"
        )
    with _no_worker_running(settings.data_dir):
        counts = asyncio.run(_migrate(url, stores))
    _print_counts(counts)
    differing = [f"{table} ({source} → {target})" for table, source, target in counts if source != target]
    if differing:
        raise MigrationRefused(
            f"the counts differ after the copy: {', '.join(differing)}; do not use this database "
            "(drop it, create it empty and run `salon db migrate-to` again)"
        )
    console.print(
        f"copied {settings.data_dir} into {_shown(url)}; to use it, put this in salon.toml "
        "(or set SALON_DATABASE__URL):"
    )
    console.print(f'[database]\nurl = "{url}"')
    return 0


def _stores(settings: Settings) -> list[Store]:
    return [
        Store("queue", settings.queue_db, "jobs.pg_copy", "copy_jobs"),
        Store("community", settings.community_db, "community.pg_copy", "copy_community"),
        Store("catalog", settings.catalog_dir / "catalog.db", "catalog.pg_copy", "copy_catalog"),
    ]


def _copier(store: Store) -> Copier:
    """The store's copy function, or MigrationRefused naming what is missing (before anything is copied)."""
    try:
        module = importlib.import_module(store.module)
    except ModuleNotFoundError as exc:
        if exc.name != store.module:
            raise
        module = None
    copy, tables = getattr(module, store.function, None), getattr(module, "TABLES", None)
    if copy is None or not tables:
        missing = f"{store.module}.{store.function}" if copy is None else f"{store.module}.TABLES"
        raise MigrationRefused(
            f"this Salon cannot copy the {store.label} into PostgreSQL yet ({missing} is missing); nothing was "
            "copied"
        )
    return Copier(copy, tables)


@contextmanager
def _no_worker_running(data_dir: Path) -> Iterator[None]:
    """Refuse while a Salon worker runs on this data folder (it would change the queue during the copy); hold
    its lock meanwhile, so none starts. The lock file is only opened, never written."""
    path = data_dir / "worker.lock"
    if not path.exists():
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MigrationRefused(
                f"a Salon worker is running on {data_dir}: stop Salon (the bot, `salon worker`, `salon api`) "
                "first, then migrate"
            ) from None
        yield
    finally:
        os.close(fd)


async def _migrate(url: str, stores: list[Store]) -> list[tuple[str, int, int]]:
    """Reach the server, find every store's copier, create the schema, check the target is empty, copy each
    store in its transaction, count both sides: (PostgreSQL table, rows in SQLite, rows in PostgreSQL)."""
    import psycopg
    from psycopg.rows import dict_row

    from community.pg_store import PgCommunityStore
    from core.sqlite_snapshot import Snapshot
    from jobs.pg_copy import KNOWN_VERSION
    from jobs.pg_store import PgJobStore

    try:
        connection = await psycopg.AsyncConnection.connect(
            url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True, row_factory=dict_row
        )
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise MigrationRefused(f"cannot reach the database at {_shown(url)}: {reason}") from None
    async with connection:
        copiers = {store.label: _copier(store) for store in stores}
        for opener in (PgJobStore.open, PgCommunityStore.open):  # their migrations make the tables
            await (await opener(url)).close()
        await _refuse_unless_empty(connection, url, copiers)
        with ExitStack() as files:
            snapshots = {store.label: files.enter_context(Snapshot(store.path)) for store in stores}
            if snapshots["queue"].version() > KNOWN_VERSION:
                raise MigrationRefused(
                    f"{stores[0].path} was made by a newer Salon: upgrade Salon here first"
                )
            copied: dict[str, object] = {}
            for store in stores:
                copied[store.label] = await _copy(
                    connection, store, copiers[store.label].copy, snapshots[store.label], url, list(copied)
                )
            counts = []
            for store in stores:
                tables = copiers[store.label].tables
                for source, target in tables.items():
                    cursor = await connection.execute(f"SELECT COUNT(*) AS n FROM {target}")
                    counts.append(
                        (target, snapshots[store.label].count(source), (await cursor.fetchone())["n"])
                    )
                counts += _more_counts(copied[store.label], tables)
    return counts


async def _copy(connection, store: Store, copier: Callable, snapshot, url: str, done: list[str]) -> object:
    """One store's copy in one transaction (a failure leaves none of its rows); what its copier returns."""
    try:
        async with connection.transaction():
            return await copier(snapshot, connection)
    except Exception as exc:
        kept = (
            f"{_shown(url)} now holds the {' and the '.join(done)}: drop it, create it empty and run "
            "`salon db migrate-to` again"
            if done
            else "nothing was kept"
        )
        reason = str(exc) if isinstance(exc, SalonError) else f"{type(exc).__name__}: {exc}"
        raise MigrationRefused(f"copying the {store.label} failed ({reason}); {kept}") from exc


def _more_counts(result: object, tables: dict[str, str]) -> list[tuple[str, int, int]]:
    """Counts a copier reports beyond its tables' rows, as {name: (source, target)} (the catalog's
    `recycle_bin`: its deleted images)."""
    if not isinstance(result, dict):
        return []
    return [
        (name, *pair)
        for name, pair in result.items()
        if name not in tables and isinstance(pair, tuple) and len(pair) == 2
    ]


async def _refuse_unless_empty(connection, url: str, copiers: dict[str, Copier]) -> None:
    tables = ["workers", *(target for copier in copiers.values() for target in copier.tables.values())]
    holding = []
    for table in tables:
        cursor = await connection.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (table,))
        if not (await cursor.fetchone())["present"]:
            continue  # a store whose copier makes its tables itself
        cursor = await connection.execute(f"SELECT COUNT(*) AS n FROM {table}")
        if (n := (await cursor.fetchone())["n"]) > 0:
            holding.append(f"{table} ({n} rows)")
    if holding:
        raise MigrationRefused(
            f"{_shown(url)} already holds Salon data: {', '.join(holding)}; migrate into an empty database"
        )


def _print_counts(counts: list[tuple[str, int, int]]) -> None:
    width = max(len(table) for table, _, _ in counts)
    console.print(f"{'table':<{width}}  {'SQLite':>8}  {'PostgreSQL':>10}")
    for table, source, target in counts:
        mark = "" if source == target else "  ← differs"
        console.print(f"{table:<{width}}  {source:>8}  {target:>10}{mark}")


def _shown(url: str) -> str:
    from community.pg_store import without_password

    return without_password(url)
