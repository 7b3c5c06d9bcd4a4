"""One stored form for the path of every catalog file, and the files a folder offers to the catalog.

The `path` and `recycled_path` columns hold a file's real location (links resolved) relative to the data
folder when it lies inside it, so the folder can move, and absolute otherwise. Every writer stores that form
(`PathForm.stored`) and every comparison (de-duplication on add, the integrity check, repair, delete and
restore) compares it; readers get absolute paths (`PathForm.absolute`), so the rest of Salon never sees it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LINK_LEAVES = "link leaves the folder"


class PathForm:
    """Converts between a file's path and the form the catalog stores, for one data folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    def stored(self, path: str | os.PathLike[str]) -> str:
        """The stored form: the real path (a relative one from the working folder), relative to the data
        folder (POSIX separators) when inside it, else absolute."""
        real = os.path.realpath(path)
        return relative_inside(real, self.root) or real

    def absolute(self, stored: str) -> str:
        """The absolute path of a stored path."""
        return stored if os.path.isabs(stored) else str(self.root / stored)


def exact_file(path: str) -> bool:
    """Whether `path` (a record's absolute path: real when it was stored) still names a regular file reached
    without any link: a link planted on the path or one of its folders since makes its real path differ."""
    return os.path.isabs(path) and os.path.realpath(path) == os.path.normpath(path) and os.path.isfile(path)


def relative_inside(path: str, folder: Path) -> str | None:
    """`path` (absolute, real) relative to `folder` (real) as POSIX text, or None when it is not inside."""
    prefix = str(folder).rstrip(os.sep) + os.sep
    if not path.startswith(prefix):
        return None
    return Path(path[len(prefix) :]).as_posix()


def inside(path: str, folders: Sequence[Path]) -> bool:
    """Whether the real path `path` lies inside one of these real folders (a separator check, not a prefix)."""
    return any(relative_inside(path, folder) is not None for folder in folders)


@dataclass(frozen=True)
class Found:
    """An image file under a folder: the path as found there and its real path (the one stored)."""

    path: Path
    real: str


def image_files(
    folder: Path, recursive: bool = True, exclude: Sequence[Path] = ()
) -> tuple[list[Found], list[str]]:
    """The image files under `folder` (by suffix), sorted, and the skipped ones as "path: reason".

    Links are followed only while they stay inside `folder` (resolved, then confined with a separator
    check): a file or folder link that leaves it is skipped with the reason LINK_LEAVES, and a folder link
    inside it is not walked twice. Files under `exclude` (the catalog's own folder) are left out silently.
    """
    root = Path(os.path.realpath(folder))
    excluded = [Path(os.path.realpath(path)) for path in exclude]
    found: list[Found] = []
    skipped: list[str] = []
    for path in sorted(_walk(folder, recursive)):
        real = os.path.realpath(path)
        if path.is_symlink():
            if relative_inside(real, root) is None:
                skipped.append(f"{path}: {LINK_LEAVES}")
                continue
            if os.path.isdir(real):
                continue  # a folder link inside the folder: its files are found where they really are
        if path.suffix.lower() not in IMAGE_SUFFIXES or os.path.isdir(real) or inside(real, excluded):
            continue
        found.append(Found(path, real))
    return found, skipped


def _walk(folder: Path, recursive: bool) -> Iterator[Path]:
    """Every entry under `folder` (files, and links of any kind), never descending into a folder link."""
    for directory, subfolders, files in os.walk(folder, followlinks=False):
        here = Path(directory)
        links = [name for name in subfolders if (here / name).is_symlink()]
        yield from (here / name for name in [*files, *links])
        if not recursive:
            return
        subfolders[:] = [name for name in subfolders if name not in links]
