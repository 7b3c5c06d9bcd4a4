"""Copying finished results to a folder of the user's choice with A1111 file names (`00000-<seed>.png`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

_NUMBERED = re.compile(r"^(\d{5})-")
_JOB_FILE = re.compile(r"^\d+-\d+-(\d+)\.png$")  # <job>-<index>-<seed>.png, as jobs.results names them


def next_number(folder: Path) -> int:
    """The next free A1111 image number in `folder` (one more than the highest `NNNNN-…` file)."""
    numbers = [int(m.group(1)) for p in folder.glob("*") if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=-1) + 1


def copy_results(paths: list[Path], folder: Path) -> list[Path]:
    """Copy result PNGs (infotext included) into `folder` as NNNNN-<seed>.png; returns the new paths."""
    folder.mkdir(parents=True, exist_ok=True)
    number = next_number(folder)
    copies = []
    for offset, path in enumerate(paths):
        match = _JOB_FILE.match(path.name)
        seed = match.group(1) if match else path.stem
        target = folder / f"{number + offset:05d}-{seed}.png"
        shutil.copyfile(path, target)
        copies.append(target)
    return copies
