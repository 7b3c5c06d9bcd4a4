"""Writing results to an output folder with A1111 file names (`00000-<seed>.png`) and infotext."""

from __future__ import annotations

import re
from pathlib import Path

from engine.infotext_files import save_image_with_infotext
from engine.requests import GenerationResult

_NUMBERED = re.compile(r"^(\d{5})-")


def next_number(folder: Path) -> int:
    """The next free A1111 image number in `folder` (one more than the highest `NNNNN-…` file)."""
    numbers = [int(m.group(1)) for p in folder.glob("*") if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=-1) + 1


def save_result(result: GenerationResult, folder: Path) -> list[Path]:
    """Save every image of `result` as PNG with its infotext; returns the paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    number = next_number(folder)
    paths = []
    for offset, generated in enumerate(result.images):
        path = folder / f"{number + offset:05d}-{generated.seed}.png"
        paths.append(save_image_with_infotext(generated.image, path, generated.infotext))
    return paths
