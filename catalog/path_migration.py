"""The one-time step that gives every stored path its canonical form and merges the duplicates it reveals.

Before it, rows made by jobs stored the path as the job wrote it (`salon-data/outputs/…`, relative to the
worker's working folder) while the integrity check compared resolved paths, so each repair added the file
again as a second row. Canonical paths need the data folder, which SQL does not know: the numbered migration
(`MIGRATION`, in catalog.py's MIGRATIONS) only records the step as pending, and `run_pending` does it in
Python when the catalog opens, in one transaction that also clears the mark.

Rows of one guild naming the same file become one: the oldest id is kept (with its own deleted or live
state), and the others' ratings (the newer score of a user who rated both), favourites, gallery entries and
posts, chat message, job and children move to it; its rank is computed again. The removed ids are returned
so the text index (outside SQLite) drops them. The step is idempotent: on canonical paths it changes nothing.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from catalog.paths import PathForm, relative_inside
from core.sqlite import Database

STEP = "canonical paths"
MIGRATION = (
    "canonical image paths, duplicate rows merged (done in Python at open: catalog/path_migration.py)",
    f"CREATE TABLE pending_steps (name TEXT PRIMARY KEY); INSERT INTO pending_steps VALUES ('{STEP}')",
)
_MOVE_CHILDREN = (
    "INSERT INTO ratings (image_id, user, score, rated_at) SELECT ?, user, score, rated_at FROM ratings "
    "WHERE image_id = ? ON CONFLICT (image_id, user) DO UPDATE SET score = excluded.score, "
    "rated_at = excluded.rated_at WHERE excluded.rated_at > ratings.rated_at",
    "INSERT OR IGNORE INTO favourites (image_id, user, added_at) SELECT ?, user, added_at FROM favourites "
    "WHERE image_id = ?",
    "INSERT OR IGNORE INTO gallery_images (gallery_id, image_id, position) SELECT gallery_id, ?, position "
    "FROM gallery_images WHERE image_id = ?",
    "INSERT OR IGNORE INTO gallery_posts (guild, image_id, channel, message, posted_at) "
    "SELECT guild, ?, channel, message, posted_at FROM gallery_posts WHERE image_id = ?",
)
_TAKE_OVER = (  # what the kept row lacks, from the duplicate: its chat message, job and lineage
    "UPDATE images SET channel = COALESCE(channel, ?), message = COALESCE(message, ?), "
    "job_id = COALESCE(job_id, ?), parent_id = COALESCE(parent_id, ?), relation = COALESCE(relation, ?), "
    "nsfw = MAX(nsfw, ?) WHERE id = ?"
)


@dataclass
class Merged:
    """What the step changed that the text index must follow."""

    removed: list[int] = field(default_factory=list)  # rows merged into another: drop from the index
    kept: list[int] = field(default_factory=list)  # rows that took others over: index again (rank changed)


async def run_pending(database: Database, form: PathForm, cwd: Path | None = None) -> Merged:
    """Do the step if the migration marked it pending; returns what it merged (nothing when not pending)."""
    merged = Merged()
    async with database.transaction() as db:
        async with db.execute("SELECT 1 FROM pending_steps WHERE name = ?", (STEP,)) as cursor:
            if await cursor.fetchone() is None:
                return merged
        async with db.execute("SELECT id, guild, path, recycled_path FROM images ORDER BY id") as cursor:
            rows = [tuple(row) for row in await cursor.fetchall()]
        base = Path(os.path.realpath(cwd or Path.cwd()))
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        new_paths: dict[int, tuple[str, str | None]] = {}
        for image_id, guild, path, recycled in rows:
            canonical = canonical_path(path, form, base)
            groups[(guild, canonical)].append(image_id)
            new_paths[image_id] = (canonical, recycled and canonical_path(recycled, form, base))
        for ids in groups.values():
            kept, duplicates = ids[0], ids[1:]
            for duplicate in duplicates:
                for statement in _MOVE_CHILDREN:
                    await db.execute(statement, (kept, duplicate))
                await db.execute(
                    "UPDATE images SET parent_id = ? WHERE parent_id = ? AND id != ?", (kept, duplicate, kept)
                )
                async with db.execute(
                    "SELECT channel, message, job_id, parent_id, relation, nsfw FROM images WHERE id = ?",
                    (duplicate,),
                ) as cursor:
                    await db.execute(_TAKE_OVER, (*tuple(await cursor.fetchone()), kept))
                await db.execute("DELETE FROM images WHERE id = ?", (duplicate,))
                merged.removed.append(duplicate)
            if duplicates:
                await db.execute(
                    "UPDATE images SET (rank_mean, rank_count) = "
                    "(SELECT AVG(score), COUNT(*) FROM ratings WHERE image_id = ?), indexed = 0 WHERE id = ?",
                    (kept, kept),
                )
                merged.kept.append(kept)
        removed = set(merged.removed)
        changed = [
            (image_id, *new_paths[image_id])
            for image_id, _guild, path, recycled in rows
            if image_id not in removed and (path, recycled) != new_paths[image_id]
        ]
        # Two passes: a row's new path may be another row's old one until that one has moved too.
        await db.executemany(
            "UPDATE images SET path = '#moving/' || id WHERE id = ?", [(row[0],) for row in changed]
        )
        await db.executemany(
            "UPDATE images SET path = ?, recycled_path = COALESCE(?, recycled_path) WHERE id = ?",
            [(path, recycled, image_id) for image_id, path, recycled in changed],
        )
        await db.execute("DELETE FROM pending_steps WHERE name = ?", (STEP,))
    return merged


def canonical_path(stored: str, form: PathForm, cwd: Path) -> str:
    """The canonical form of a path an earlier version stored: absolute ones as they are (resolved), and a
    relative one from the folder where it names an existing file (the data folder, as Salon stores them now;
    an ancestor of it, as jobs stored `salon-data/outputs/…`; the working folder), else from the first
    ancestor under which it lands in the data folder."""
    if os.path.isabs(stored):
        return form.stored(stored)
    candidates = [form.root, *form.root.parents, cwd]
    for base in candidates:
        if os.path.lexists(base / stored):
            return form.stored(base / stored)
    for base in form.root.parents:
        if relative_inside(os.path.normpath(base / stored), form.root) is not None:
            return form.stored(base / stored)
    return form.stored(cwd / stored)
