"""The catalog's second text backend: SQLite's own FTS5 words table (catalog/words.py) behind the interface of
the Whoosh index (catalog/text_index.py), chosen with `Catalog.open(folder, text_index="sqlite")`.

SQLite's triggers keep the table as rows change, so its writes only repair; searches read it in SQL
(catalog/search.py joins it into the query), the integrity check through this class."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from catalog import words
from catalog.records import ImageRecord
from core.sqlite import BUSY_TIMEOUT_MS


class SqliteWords:
    """The text-index interface over the FTS5 words table, which SQLite's triggers keep: writes are no-ops."""

    def __init__(self, database: Path) -> None:
        self.database = database

    def _write(self, sql: str, ids: Sequence[int]) -> None:
        db = sqlite3.connect(self.database, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            with db:
                db.execute(sql, (json.dumps(list(ids)),))
        finally:
            db.close()

    def put(self, records: Sequence[ImageRecord]) -> int:
        """Write these images' entries again (the triggers already did on insert; this repairs)."""
        ids = [record.id for record in records]
        self.remove(ids)
        self._write(words.POPULATE + " WHERE id IN (SELECT value FROM json_each(?))", ids)
        return len(ids)

    def remove(self, ids: Sequence[int]) -> None:
        self._write("DELETE FROM images_words WHERE rowid IN (SELECT value FROM json_each(?))", ids)

    def ids(self) -> set[int]:
        return {rowid for name, _, rowid in self.postings() if name == "scope"}

    def postings(self) -> set[tuple[str, str, int]]:
        """Every (column, text, image id) of the words table."""
        db = sqlite3.connect(self.database)
        try:
            rows = db.execute(
                "SELECT rowid, scope, fields, prompt, negative_prompt, params FROM images_words"
            )
            names = ("scope", "fields", "prompt", "negative_prompt", "params")
            return {(name, value, row[0]) for row in rows for name, value in zip(names, row[1:], strict=True)}
        finally:
            db.close()

    def optimize(self) -> None:
        """FTS5's merge of its b-trees into one (the scheduled counterpart of Whoosh's optimize)."""
        connection = sqlite3.connect(self.database, timeout=30)
        try:
            with connection:
                connection.execute("INSERT INTO images_words(images_words) VALUES ('optimize')")
        finally:
            connection.close()

    def close(self) -> None:
        return None
