"""Counting catalogued images for the PostgreSQL fault tests, wherever the catalog is: on PostgreSQL (with
`[database] url` set, catalog/pg_catalog.py) and in any data folder's own `catalog.db`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import psycopg


def catalog_paths(url: str, data_dirs: Iterable[Path], job_id: int | None = None) -> list[str]:
    """The paths of the catalogued images (of one job, or all), one entry per catalog row."""
    where, args = ("WHERE job_id = %s", (job_id,)) if job_id is not None else ("", ())
    paths: list[str] = []
    with psycopg.connect(url) as db:
        if db.execute("SELECT to_regclass('images')").fetchone()[0] is not None:
            paths += [path for (path,) in db.execute(f"SELECT path FROM images {where}", args)]
    for folder in data_dirs:
        database = folder / "catalog" / "catalog.db"
        if database.exists():
            with sqlite3.connect(database, timeout=10) as connection:
                rows = connection.execute(f"SELECT path FROM images {where.replace('%s', '?')}", args)
                paths += [path for (path,) in rows]
    return sorted(paths)
