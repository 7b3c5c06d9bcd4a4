"""Where finished images go: one narrow interface, so the catalog can take the place of plain files.

`FileSink` writes each image with its infotext to `<outputs>/<kind>-images/<date the job was accepted>/
<job id>-<index>-<seed>.png`. The name depends only on the job, so a job re-run after a crash overwrites its
own files instead of adding copies.

`ResultFiles` is how result files cross hosts. With a blob store (PostgreSQL, `[database] url`) the worker
also puts each result file it wrote under the outputs folder in the store (`publish`), keyed by its path
relative to the data folder; any process that needs a result file (bot delivery, the one-shot CLI, the API,
the web gallery) asks `local(path)`, which returns a local path: the file itself when this host has it, else
the copy fetched from the store into this host's data folder at the same relative path (its cache). Without
a blob store (SQLite) nothing is published and `local` returns the path as it is. Each fetched copy is listed
in `<data>/cache/fetched-results.txt`; `prune_cache` (the bot's upkeep) removes those no longer in the store
or unused for `[database] blob_keep_days`, never a file this host's worker made.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.files import atomic_write
from engine.infotext_files import save_image_with_infotext
from engine.requests import GenerationResult
from jobs.blobs import BlobStore, BlobTooLarge, checked_key, key_suffixes
from jobs.records import JobKind, JobRecord

if TYPE_CHECKING:
    from catalog.records import ImageRecord

log = logging.getLogger(__name__)

FETCHED_LIST = "fetched-results.txt"  # under <data>/cache/: the result files this host fetched (ResultFiles)

FOLDERS = {
    JobKind.IMAGINE: "txt2img-images",
    JobKind.IMG2IMG: "img2img-images",
    JobKind.INPAINT: "img2img-images",
}


class ResultSink(Protocol):
    def store(self, job: JobRecord, result: GenerationResult) -> list[str]:
        """Keep the job's images; return references (paths) to record on the job."""
        ...


class FileSink:
    """Results as PNG files with A1111 infotext under the outputs folder, after the configured extensions'
    post-processing steps (each `function(image, seed) -> image`, named in the infotext)."""

    def __init__(self, outputs: Path, postprocess: list[tuple[str, Callable]] | None = None) -> None:
        self.outputs = outputs
        self.postprocess = postprocess or []

    def folder(self, job: JobRecord) -> Path:
        day = dt.datetime.fromtimestamp(job.created_at).date().isoformat()
        return self.outputs / FOLDERS.get(job.kind, f"{job.kind.value}-images") / day

    def store(self, job: JobRecord, result: GenerationResult) -> list[str]:
        folder = self.folder(job)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for image in result.images:
            path = folder / f"{job.id:05d}-{image.index}-{image.seed}.png"
            picture, infotext = image.image, image.infotext
            if self.postprocess:
                for _, function in self.postprocess:
                    picture = function(picture, image.seed)
                infotext = with_param(
                    infotext, "Postprocess", ", ".join(name for name, _ in self.postprocess)
                )
            paths.append(str(save_image_with_infotext(picture, path, infotext)))
        return paths


def with_param(infotext: str, key: str, value: str) -> str:
    """The infotext with one more parameter (before Version, as A1111 orders extra keys)."""
    from engine.infotext import format_infotext, parse_infotext

    info = parse_infotext(infotext)
    version = info.params.pop("Version", None)
    params = {**info.params, key: value, **({"Version": version} if version else {})}
    return format_infotext(info.prompt, info.negative_prompt, params)


class ResultFiles:
    """Result files across hosts: `publish` on the worker, `local` wherever a result file is read."""

    def __init__(self, data_dir: Path, outputs: Path, blobs: BlobStore | None = None) -> None:
        self.data_dir = Path(os.path.realpath(data_dir))
        self.outputs = Path(os.path.realpath(outputs))
        self.blobs = blobs

    def key_of(self, path: str | os.PathLike[str]) -> str | None:
        """The key of a file of this host under the outputs folder: its real path relative to the data folder
        (relative to the outputs folder's parent when the outputs lie elsewhere); None outside the outputs."""
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(self.outputs):
            return None
        base = self.data_dir if real.is_relative_to(self.data_dir) else self.outputs.parent
        return real.relative_to(base).as_posix()

    async def publish(self, paths: Iterable[str]) -> int:
        """Put these result files (those under the outputs folder) in the blob store; how many. A file over
        the store's cap is logged and stays on this host only."""
        if self.blobs is None:
            return 0
        published = 0
        for path in paths:
            key = self.key_of(path)
            if key is None:
                continue
            data = await asyncio.to_thread(Path(path).read_bytes)
            try:
                await self.blobs.put(key, data)
            except BlobTooLarge as exc:
                log.warning("result %s stays on this host only: %s", path, exc)
                continue
            published += 1
        return published

    async def local(self, path: str | os.PathLike[str]) -> Path:
        """A local path of this result file: itself when it is here, else this host's copy from the blob store
        (fetched once, at the same path relative to this data folder). The path as given when no store has it
        either (the caller treats it as a missing file)."""
        given = Path(path)
        if self.blobs is None or given.is_file():
            return given
        cached = self._cached(str(given))
        if cached is not None:
            return cached
        key = await self._stored_key(str(given))
        if key is None:
            return given
        target = self.data_dir / key
        data = await self.blobs.get(key)
        if data is None:
            return given
        await asyncio.to_thread(_write_copy, target, data)
        await asyncio.to_thread(self._remember, key)
        log.info("fetched %s from the blob store (%d bytes)", key, len(data))
        return target

    async def local_all(self, paths: Iterable[str]) -> tuple[str, ...]:
        """`local` of each path, as strings (a job's `results`)."""
        return tuple([str(await self.local(path)) for path in paths])

    async def local_job(self, job: JobRecord) -> JobRecord:
        """The job with local paths in its `results` (fetched here when they were made on another host)."""
        if self.blobs is None or not job.results:
            return job
        return dataclasses.replace(job, results=await self.local_all(job.results))

    async def local_images(self, images: Sequence[ImageRecord]) -> list[ImageRecord]:
        """Catalog records with local paths (their files fetched here when they were made on another host)."""
        if self.blobs is None:
            return list(images)
        found = []
        for image in images:
            path = str(await self.local(image.path))
            found.append(image if path == image.path else dataclasses.replace(image, path=path))
        return found

    def _cached(self, path: str) -> Path | None:
        """This host's copy of a file fetched before (a path recorded on another host ends with its key); its
        time is renewed, so that a copy in use is not pruned (`prune_cache`)."""
        for key in key_suffixes(path, shortest=3):
            try:
                target = self.data_dir / checked_key(key)
            except ValueError:
                continue
            if target.is_file():
                try:
                    os.utime(target)
                except OSError:
                    pass
                return target
        return None

    @property
    def fetched_list(self) -> Path:
        """This host's list of the keys it fetched (its cache), one a line: only these files are pruned."""
        return self.data_dir / "cache" / FETCHED_LIST

    def _remember(self, key: str) -> None:
        self.fetched_list.parent.mkdir(parents=True, exist_ok=True)
        with self.fetched_list.open("a", encoding="utf-8") as listing:
            listing.write(key + "\n")  # one short write in append mode: whole, even beside another process

    async def prune_cache(self, keep_days: float, now: float | None = None) -> int:
        """Remove this host's fetched copies (never a file its own worker made) that are no longer in the blob
        store (their image was purged: no host will be given them again), or unused for `keep_days` (fetched
        again when asked for); how many."""
        if self.blobs is None or not self.fetched_list.is_file():
            return 0
        now = time.time() if now is None else now
        keys = dict.fromkeys(self.fetched_list.read_text(encoding="utf-8").split())
        kept, removed = [], 0
        for key in keys:
            try:
                target = self.data_dir / checked_key(key)
                used = target.stat().st_mtime
            except (ValueError, OSError):
                continue  # gone already (or not a key): forgotten
            if used >= now - keep_days * 86400 and await self.blobs.has(key):
                kept.append(key)
                continue
            target.unlink(missing_ok=True)
            removed += 1
        # Keys another process listed meanwhile are kept too (its copy is new).
        listed_now = dict.fromkeys(self.fetched_list.read_text(encoding="utf-8").split())
        kept += [key for key in listed_now if key not in keys]
        atomic_write(self.fetched_list, "".join(key + "\n" for key in kept).encode())
        if removed:
            log.info("removed %d cached result files of other hosts", removed)
        return removed

    async def _stored_key(self, path: str) -> str | None:
        """The key `path` was stored under: its own key when it names this host's data folder, else the
        longest trailing part of it that the store holds (the path was recorded on another host)."""
        assert self.blobs is not None
        own = self.key_of(path) if os.path.isabs(path) else None
        for key in [own] if own else key_suffixes(path):
            try:
                checked_key(key)
            except ValueError:
                continue
            if await self.blobs.has(key):
                return key
        return None


def _write_copy(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data)
