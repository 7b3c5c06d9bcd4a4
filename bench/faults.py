"""Fault figures, one line per fault class against its target: `python bench/faults.py [--quick] [--only NAME]`.

Each part lives in its own module (`bench/faults_<part>.py`) with a function `figures(quick) -> list[Figure]`;
this script runs them in order and prints a table. `--quick` runs smaller versions (fewer kills, smaller
catalogs) for a look in a minute or two; the full run is what the targets of issue 18 are stated for.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and its queue.py would hide the standard
# library's `queue`: look for modules from the repository root instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from bench.faults_common import Figure  # noqa: E402

PARTS = ("jobs", "catalog", "files", "bot")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a look, not the stated targets)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    args = parser.parse_args()
    rows: list[Figure] = []
    for part in args.only or PARTS:
        started = time.perf_counter()
        module = importlib.import_module(f"bench.faults_{part}")
        for figure in module.figures(args.quick):
            rows.append(figure)
            print(figure.line(), flush=True)
        print(f"  ({part}: {time.perf_counter() - started:.0f} s)", flush=True)
    missed = [row for row in rows if not row.met]
    print(f"{len(rows) - len(missed)} of {len(rows)} figures meet their targets" + ("" if args.quick else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
