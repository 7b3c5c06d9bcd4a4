"""Hostile files: per crafted file, the time and RSS growth of `salon import` of a folder holding it (with a
clean PNG beside it) and of `salon pnginfo` on it, each in its own process, against a clean small PNG measured
in the same run. Target (issue 18, item 8): < 1 s and < 64 MB RSS growth per hostile file, and the clean file
beside it imported.

RSS is the child's peak resident set (VmHWM, written by the child as it exits), so a file that makes the
process decode a bomb shows however briefly it held the memory.
Run: `python bench/faults.py --only files [--quick]`.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from bench.faults_common import Figure
from tests.faults.hostile_files import HOSTILE, Measured, clean_png, measured_salon

ROOT = Path(__file__).resolve().parents[1]
MAX_SECONDS = 1.0
MAX_GROWTH_MB = 64.0
RUNS = {True: 1, False: 3}  # runs per file and command (the best is kept: the machine is shared)


def _salon(args: list[str], data_dir: Path) -> Measured:
    return measured_salon(args, data_dir, ROOT)


def _best(runs: list[Measured]) -> Measured:
    last = runs[-1]
    return Measured(last.returncode, min(r.seconds for r in runs), min(r.peak_mb for r in runs), last.stderr)


def _import(folder: Path, work: Path, count: int) -> tuple[Measured, int]:
    """`salon import folder` into a fresh data folder; the run and how many rows it made."""
    runs, rows = [], 0
    for attempt in range(count):
        data = work / f"data-{folder.name}-{attempt}"
        runs.append(_salon(["import", str(folder), "--author", "bench"], data))
        with sqlite3.connect(data / "catalog" / "catalog.db") as db:
            rows = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    return _best(runs), rows


def _pnginfo(path: Path, work: Path, count: int) -> Measured:
    return _best([_salon(["pnginfo", str(path)], work / "data-pnginfo") for _ in range(count)])


def figures(quick: bool) -> list[Figure]:
    count = RUNS[quick]
    rows: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="salon-faults-files-") as temp:
        work = Path(temp)
        baseline_folder = work / "clean"
        baseline_folder.mkdir()
        clean = clean_png(baseline_folder / "clean.png")
        base_import, base_rows = _import(baseline_folder, work, count)
        base_info = _pnginfo(clean, work, count)
        rows.append(
            Figure(
                "hostile files: clean baseline",
                f"import {base_import.seconds:.2f} s {base_import.peak_mb:.0f} MB, "
                f"pnginfo {base_info.seconds:.2f} s {base_info.peak_mb:.0f} MB",  # the reference
                "1 row, exit 0",
                base_rows == 1 and base_import.returncode == 0 and base_info.returncode == 0,
            )
        )
        for name, make in HOSTILE.items():
            folder = work / f"hostile-{len(rows)}"
            folder.mkdir()
            clean_png(folder / "clean.png")
            hostile = make(folder)
            imported, count_rows = _import(folder, work, count)
            info = _pnginfo(hostile, work, count)
            extra = max(imported.seconds - base_import.seconds, info.seconds - base_info.seconds)
            growth = max(imported.peak_mb - base_import.peak_mb, info.peak_mb - base_info.peak_mb)
            survived = imported.returncode == 0 and count_rows >= 1 and info.returncode in (0, 1, 2)
            rows.append(
                Figure(
                    f"hostile {name}",
                    f"{extra:+.2f} s {growth:+.0f} MB; import {imported.seconds:.2f} s rc {imported.returncode} "
                    f"{count_rows} rows; pnginfo rc {info.returncode}",
                    f"< +{MAX_SECONDS:.0f} s, < +{MAX_GROWTH_MB:.0f} MB, rest imported",
                    extra < MAX_SECONDS and growth < MAX_GROWTH_MB and survived,
                )
            )
            hostile.unlink()
    return rows
