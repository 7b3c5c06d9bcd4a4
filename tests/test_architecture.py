"""The walls between the rooms (docs/ARCHITECTURE.md): import contracts, no torch at import, short files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = (
    "core", "config", "engine", "catalog", "community", "extensions", "jobs", "commands", "web", "bot", "api",
    "app", "cli",
)  # fmt: skip
HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate")

# Packages whose modules may load torch when imported, with the reason (none: keep it so).
TORCH_AT_IMPORT: dict[str, str] = {}

MAX_LINES = 600
# Files over MAX_LINES: (the most lines they may have, why); none may grow. Empty: split a file instead.
LONG_FILES: dict[str, tuple[int, str]] = {}


def _lint_imports() -> str:
    found = shutil.which(
        "lint-imports", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    assert found, "lint-imports is missing: pip install -e '.[dev]' (import-linter)"
    return found


def test_the_import_contracts_hold():
    """pyproject.toml's [tool.importlinter] contracts: rooms import only the rooms below them, torch only in
    engine/, discord only in bot/, no cycle inside a room, no cog imports another."""
    run = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "BROKEN" not in run.stdout and " kept, 0 broken." in run.stdout


def _modules(package: str) -> list[str]:
    """The package's modules, from its files (importing nothing here)."""
    names = []
    for file in sorted((ROOT / package).rglob("*.py")):
        parts = file.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("package", [p for p in RUNTIME_PACKAGES if p != "engine"])
def test_importing_a_room_outside_the_engine_loads_no_torch(package):
    """Every module of the package, imported in a fresh interpreter, leaves torch and the model libraries
    unloaded: the queue, the bot and the CLI start in a fraction of a second and pay for torch only when the
    GPU thread first needs it."""
    if package in TORCH_AT_IMPORT:
        pytest.xfail(TORCH_AT_IMPORT[package])
    modules = _modules(package)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"importing {package} loads {run.stdout.strip()}"


def test_no_file_in_the_runtime_packages_is_longer_than_600_lines():
    long = {}
    for package in RUNTIME_PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            lines = len(file.read_text(encoding="utf-8").splitlines())
            name = file.relative_to(ROOT).as_posix()
            if lines > LONG_FILES.get(name, (MAX_LINES,))[0]:
                long[name] = lines
    assert not long, f"split these files (at most {MAX_LINES} lines; listed exceptions may not grow): {long}"
    for name in LONG_FILES:  # an exception no longer needed is removed from the list
        assert len((ROOT / name).read_text(encoding="utf-8").splitlines()) > MAX_LINES, name
