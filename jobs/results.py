"""Where finished images go: one narrow interface, so the catalog can take the place of plain files.

`FileSink` writes each image with its infotext to `<outputs>/<kind>-images/<date the job was accepted>/
<job id>-<index>-<seed>.png`. The name depends only on the job, so a job re-run after a crash overwrites its
own files instead of adding copies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from engine.infotext_files import save_image_with_infotext
from engine.requests import GenerationResult
from jobs.records import JobKind, JobRecord

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
