"""Long jobs' files between slices, across hosts: a slice ends on one worker, the next may start on another.

A long job (jobs/long.py) resumes from the state on its row (in the database, shared) and from files it keeps
on disk between slices: its `workdir` (training's weights and optimizer state) and, for some kinds, folders
of its own under the outputs folder (an animation's frames: `KEPT_FOLDERS`). Those are in one host's data
folder. With a blob store (PostgreSQL, jobs/blobs.py) each paused slice also stores the files it added or
changed as one tar blob, `slices/<job>/<n>.tar` (member names relative to the data folder), before the row
says the slice ended; a worker about to run slice `n + 1` on a host whose files are older (its marker in the
workdir, `.slice-files.json`, says fewer slices) fetches and unpacks the missing slices' blobs in order
first. So a worker killed during slice `k + 1` costs only that slice, wherever the job goes next. The blobs
are deleted when the job ends (done, failed, cancelled).

Without a blob store (SQLite: one worker, one data folder) nothing is stored or fetched. A slice whose files
are over the store's size cap (`[database] blob_max_mb`) is logged and not stored: another host then resumes
that job from the files it has (an animation renders again the frames it lacks; training needs its state).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from jobs.animation import animation_folder
from jobs.blobs import BlobStore, BlobTooLarge
from jobs.records import JobKind, JobRecord

log = logging.getLogger(__name__)

MARK = ".slice-files.json"  # in the workdir: the slices these files reflect, and their sizes and times
# Folders a long kind keeps between slices besides its workdir, by kind.
KEPT_FOLDERS: dict[JobKind, Callable[[Any, JobRecord], list[Path]]] = {
    JobKind.ANIMATE: lambda settings, job: [animation_folder(settings, job) / "frames"],
}


def kept_folders(settings: Any, job: JobRecord, workdir: Path) -> list[Path]:
    """Where a long job keeps files between slices: its workdir and its kind's folders."""
    extra = KEPT_FOLDERS.get(job.kind)
    return [workdir, *(extra(settings, job) if extra else [])]


def blob_key(job_id: int, slice_number: int) -> str:
    return f"slices/{job_id}/{slice_number}.tar"


class SliceFiles:
    """Stores and fetches a long job's slice files through a blob store (nothing without one)."""

    def __init__(self, data_dir: Path, blobs: BlobStore | None) -> None:
        self.data_dir = data_dir
        self.blobs = blobs

    async def save(self, job_id: int, slice_number: int, folders: list[Path], workdir: Path) -> None:
        """Store the files the slice `slice_number` added or changed (before its row says it ended)."""
        if self.blobs is None:
            return
        data, manifest = await asyncio.to_thread(self._pack, folders, _read_mark(workdir)[1])
        try:
            await self.blobs.put(blob_key(job_id, slice_number), data)
        except BlobTooLarge as exc:
            log.warning("job %d: the files of slice %d are not stored (%s)", job_id, slice_number, exc)
            return
        _write_mark(workdir, slice_number, manifest)

    async def restore(self, job_id: int, slices: int, folders: list[Path], workdir: Path) -> int:
        """Fetch and unpack the stored files of the slices this host lacks (up to `slices`, the row's count);
        how many slices' files were fetched."""
        if self.blobs is None or slices <= 0:
            return 0
        have, _ = _read_mark(workdir)
        if have >= slices:
            return 0
        fetched = 0
        for number in range(have + 1, slices + 1):
            data = await self.blobs.get(blob_key(job_id, number))
            if data is None:
                log.warning("job %d: the files of slice %d are not in the store", job_id, number)
                continue
            await asyncio.to_thread(self._unpack, data)
            fetched += 1
        manifest = await asyncio.to_thread(_stats, self.data_dir, folders)
        _write_mark(workdir, slices, manifest)
        log.info("job %d resumes after slice %d with the files of %d slices fetched", job_id, slices, fetched)
        return fetched

    async def forget(self, job_id: int, slices: int) -> None:
        """Delete a finished job's slice blobs (the next slice's too: one may be stored without its row)."""
        if self.blobs is None:
            return
        for number in range(1, slices + 2):
            await self.blobs.delete(blob_key(job_id, number))

    def _pack(self, folders: list[Path], before: dict[str, list[int]]) -> tuple[bytes, dict[str, list[int]]]:
        now = _stats(self.data_dir, folders)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, stat in now.items():
                if before.get(name) != stat:
                    tar.add(self.data_dir / name, arcname=name, recursive=False)
        return buffer.getvalue(), now

    def _unpack(self, data: bytes) -> None:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(self.data_dir, filter="data")  # names stay inside the data folder


def _stats(data_dir: Path, folders: Iterable[Path]) -> dict[str, list[int]]:
    """Every file under `folders` (those inside the data folder): its name relative to it, size and time."""
    found: dict[str, list[int]] = {}
    for folder in folders:
        try:
            folder.resolve().relative_to(data_dir.resolve())
        except ValueError:
            log.warning("%s is outside the data folder: its files stay on this host", folder)
            continue
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file() and path.name != MARK:
                stat = path.stat()
                found[path.resolve().relative_to(data_dir.resolve()).as_posix()] = [
                    stat.st_size,
                    stat.st_mtime_ns,
                ]
    return found


def _read_mark(workdir: Path) -> tuple[int, dict[str, list[int]]]:
    try:
        mark = json.loads((workdir / MARK).read_text())
        return int(mark["slices"]), dict(mark["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, {}


def _write_mark(workdir: Path, slices: int, files: dict[str, list[int]]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARK).write_text(json.dumps({"slices": slices, "files": files}))
