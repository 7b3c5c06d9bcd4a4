"""Values the engine writes into A1111's infotext (no torch): numbers, the `Version` key, `Lora hashes`.

Shared by the engine's runner and the SD 3.5 / Flux path (engine.tasks.flow), so both write them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version


def salon_version() -> str:
    """`salon-X.Y` for the infotext's Version key."""
    try:
        major, minor = version("salon").split(".")[:2]
    except PackageNotFoundError:
        major, minor = "0", "0"
    return f"salon-{major}.{minor}"


def format_number(value: float) -> str:
    """A1111 style: 7.0 → "7", 0.75 → "0.75"."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def hashes_value(pairs: Sequence[tuple[str, str]]) -> str | None:
    """`Lora hashes`/`TI hashes` value: "name: hash, other: hash" (":" and "," removed from names as A1111)."""
    if not pairs:
        return None
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {h}" for name, h in pairs)
