"""Animations in the catalog: each finished animation is one item, its frames its children.

The item is an ordinary `images` row whose file is the animation's first frame (so its thumbnail, rating,
favourites, galleries, browsing and the recycle bin work as for any image) with a row in `animations` beside it:
the video (MP4, else WebM or GIF), the Deforum settings file, the frame count and rate. Every later frame is a
row of its own whose parent is the item, relation "animation frame", so `Catalog.family` (and `salon browse
--family`, 🌳 in `/browse`, the web gallery's family strip) lists the frames. Paths are stored as images' paths
are (relative to the data folder: catalog/paths.py). Both catalogs use these functions: SQLite with `?`
parameters, PostgreSQL (catalog/pg_catalog.py) with its own `%s` (`placeholder`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from catalog.paths import PathForm
from catalog.records import ImageRecord, NewImage, Relation

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")  # the item's video: the first of these among the results
VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".gif": "image/gif"}
MIGRATION = (
    "animations",
    """
    CREATE TABLE animations (
        image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
        video TEXT NOT NULL,
        settings_file TEXT,
        frames INTEGER NOT NULL,
        fps REAL NOT NULL
    )
    """,
)
PG_MIGRATION = (
    "animations",
    """
    CREATE TABLE animations (
        image_id BIGINT PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
        video TEXT COLLATE "C" NOT NULL,
        settings_file TEXT COLLATE "C",
        frames INTEGER NOT NULL,
        fps DOUBLE PRECISION NOT NULL
    )
    """,
)
COLUMNS = ("image_id", "video", "settings_file", "frames", "fps")


@dataclass(frozen=True)
class NewAnimation:
    """A finished animation to add: its frames in order (the first becomes the item), its video and settings."""

    frames: tuple[NewImage, ...]
    video: str
    settings_file: str | None
    fps: float


@dataclass(frozen=True)
class Animation:
    """An animation item's media (absolute paths)."""

    image_id: int
    video: Path
    settings_file: Path | None
    frames: int
    fps: float

    @property
    def video_type(self) -> str:
        return VIDEO_TYPES.get(self.video.suffix.lower(), "application/octet-stream")


def video_of(results: Sequence[str]) -> str | None:
    """The animation's video among a job's result files: MP4 first, then WebM, then GIF."""
    for suffix in VIDEO_SUFFIXES:
        for path in results:
            if path.lower().endswith(suffix):
                return path
    return None


AddMany = Callable[[Sequence[NewImage]], Awaitable[list[ImageRecord]]]
Execute = Callable[[str, tuple], Awaitable[object]]
Fetch = Callable[[str, tuple], Awaitable[list]]


async def add(animation: NewAnimation, add_many: AddMany, execute: Execute, paths: PathForm) -> ImageRecord:
    """Add the item (the first frame), its media row, then the other frames as its children; the item's record.
    Adding the same animation again changes nothing (paths are unique in a guild)."""
    first, *rest = animation.frames
    [item] = await add_many([first])
    await execute(
        "INSERT INTO animations (image_id, video, settings_file, frames, fps) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (image_id) DO NOTHING",
        (
            item.id,
            paths.stored(animation.video),
            paths.stored(animation.settings_file) if animation.settings_file else None,
            len(animation.frames),
            float(animation.fps),
        ),
    )
    if rest:
        await add_many([replace(f, parent_id=item.id, relation=Relation.ANIMATION_FRAME) for f in rest])
    return item


async def find(image_id: int, fetch: Fetch, paths: PathForm) -> Animation | None:
    """The animation whose item is this image (the caller has checked the image is in its guild), or None."""
    rows = await fetch(
        "SELECT image_id, video, settings_file, frames, fps FROM animations WHERE image_id = ?", (image_id,)
    )
    if not rows:
        return None
    row = rows[0]
    settings_file = row["settings_file"]
    return Animation(
        row["image_id"],
        Path(paths.absolute(row["video"])),
        Path(paths.absolute(settings_file)) if settings_file else None,
        row["frames"],
        row["fps"],
    )


def placeholder(sql: str) -> str:
    """The statement with PostgreSQL's parameters (`%s`) for SQLite's (`?`)."""
    return sql.replace("?", "%s")
