"""Writing files whole: readers (the gallery server, the model registry, a process started after a crash) see
the old file or the new one, never half of one.

Every writer in Salon goes through `atomic_write` (bytes or text) or `atomic_write_with` (a writer that takes a
path: PIL's `save`, safetensors' `save_file`, `torch.save`): a temp file with a unique name beside the target
(`.<name>.<random>.tmp`: hidden, so no folder scan takes it for a model or an image), written, flushed to
disk, given its mode, renamed over the target, and the folder flushed so the rename survives a power cut. On
any error the temp file is removed and the target is untouched. `replace_folder` does the same for a folder
(a diffusers model, the text index), which one rename cannot replace: built beside it, then swapped in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

FILE_MODE = (
    0o644  # what a file written by hand gets with the usual umask: others (the web server) may read it
)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = FILE_MODE) -> Path:
    """Replace `path` with `data` (text is written as UTF-8) in one step; returns the path."""
    content = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write_with(path, lambda temp: temp.write_bytes(content), mode)


def atomic_write_with(
    path: str | os.PathLike[str], write: Callable[[Path], object], mode: int = FILE_MODE
) -> Path:
    """Replace `path` with what `write(temp_path)` writes to the temp path it is given; returns the path.

    The folder is made if missing. `write` may reopen the temp path for writing (most writers do); it must
    not write anywhere else. Whatever `write` raises is raised, with nothing left behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(descriptor)
    temp = Path(name)
    try:
        write(temp)
        with open(temp, "r+b") as file:  # write access: some systems refuse to flush a read-only handle
            os.fsync(file.fileno())
        os.chmod(temp, mode)  # mkstemp makes 0600
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_folder(target.parent)
    return target


def replace_folder(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Replace the folder `path` with what `write(folder)` writes into a new folder beside it (hidden, named
    `.<name>.partial`): the old folder is moved aside (`.<name>.old`), the new one renamed in, the old one
    removed. Leftovers of an earlier run that died are cleared first; on an error the new folder is removed
    and `path` is untouched. Callers that may race hold a lock around it."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    old = target.with_name(f".{target.name}.old")
    for leftover in (partial, old):
        shutil.rmtree(leftover, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        partial.mkdir()
        write(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        os.replace(target, old)
    os.replace(partial, target)
    sync_folder(target.parent)
    shutil.rmtree(old, ignore_errors=True)
    return target


def sync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename in it) to disk; a file system that cannot is left as it is."""
    with contextlib.suppress(OSError):  # e.g. EINVAL where directories cannot be opened or flushed
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
