"""Blob stores: whole files kept by key, so that processes on other hosts can read what a worker made.

A `BlobStore` is four calls (`put`, `get`, `has`, `delete`) over keys that are relative POSIX paths
("outputs/txt2img-images/2024-05-01/00012-0-42.png", "previews/12.jpg"), and `listed` (old keys under a
prefix) for retention (jobs/blob_retention.py). Two implementations: `FolderBlobs`, files under a local folder
(a single host, or a shared mount), and `PgBlobStore` (jobs/pg_blobs.py), chunked rows in the PostgreSQL
database of `[database] url`. An object store can be added later behind the same five calls. Every store
refuses a blob over its size cap (`BlobTooLarge`, naming the setting).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Protocol

from core.errors import SalonError
from core.files import atomic_write

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 64 * MIB  # `[database] blob_max_mb`'s default


class BlobTooLarge(SalonError):
    """A blob is over the store's size cap (`[database] blob_max_mb`)."""

    def __init__(self, key: str, size: int, max_bytes: int) -> None:
        super().__init__(
            f"{key} is {size / MIB:.1f} MiB, over the blob store's cap of {max_bytes / MIB:.0f} MiB "
            "([database] blob_max_mb)"
        )
        self.key, self.size, self.max_bytes = key, size, max_bytes


class BlobStore(Protocol):
    """Whole files by key (a relative POSIX path)."""

    max_bytes: int

    async def put(self, key: str, data: bytes) -> None:
        """Keep `data` under `key` (replacing what was there), whole or not at all; BlobTooLarge over the cap."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None when there are none."""
        ...

    async def has(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool:
        """Forget `key`; whether there was something under it."""
        ...

    async def listed(self, prefix: str, before: float) -> list[str]:
        """The keys that start with `prefix` and were last written before `before` (a Unix time), in key
        order: what retention (jobs/blob_retention.py) looks at."""
        ...


def checked_key(key: str) -> str:
    """`key` if it is a plain relative POSIX path (no empty part, no `.` or `..`, not absolute); else ValueError.
    Keys become paths under a folder (a store's, a host's cache), so none may leave it."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a blob key: {key!r}")
    return key


def check_size(key: str, data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise BlobTooLarge(key, len(data), max_bytes)


def key_suffixes(path: str, shortest: int = 2) -> list[str]:
    """The keys a file at `path` may have been stored under, longest first: its trailing parts (at least
    `shortest` of them). A path recorded on another host ends with the key, whatever its data folder was."""
    parts = PurePosixPath(path).parts
    parts = parts[1:] if parts and parts[0] == "/" else parts
    return ["/".join(parts[i:]) for i in range(0, len(parts) - shortest + 1)]


class FolderBlobs:
    """Blobs as files under one local folder (written whole: core.files.atomic_write)."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        return self.root / checked_key(key)

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        check_size(key, data, self.max_bytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)

    async def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def has(self, key: str) -> bool:
        return self._path(key).is_file()

    async def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        return True

    async def listed(self, prefix: str, before: float) -> list[str]:
        keys = []
        for path in self.root.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and path.is_file() and path.stat().st_mtime < before:
                keys.append(key)
        return sorted(keys)
