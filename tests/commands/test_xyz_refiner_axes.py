"""A1111's refiner axes of the X/Y/Z plot: `Refiner checkpoint` (None: no refiner; names checked) and
`Refiner switch at`, as cell requests (no torch)."""

from __future__ import annotations

import pytest

from commands.xyz import build_plot, parse_axis
from core.errors import InvalidRequest, ModelNotFound
from engine.requests import GenerationRequest

BASE = GenerationRequest("a castle", seed=3, width=64, height=64, steps=4, model="base")


def _resolve(name: str) -> str:
    if name not in ("base", "refiner-xl"):
        raise ModelNotFound("model", f"{name!r} is not installed; installed: base, refiner-xl")
    return name


def test_refiner_axes_set_each_cells_refiner():
    x = parse_axis("x", "Refiner checkpoint=None,refiner-xl")
    y = parse_axis("y", "Refiner switch at=0.5,0.8")
    plot = build_plot(BASE, x, y, parse_axis("z", None), resolve_model=_resolve)
    found = [(c["params"]["refiner"], c["params"]["refiner_switch_at"]) for c in plot["cells"]]
    assert found == [(None, 0.5), ("refiner-xl", 0.5), (None, 0.8), ("refiner-xl", 0.8)]
    assert plot["grids"][0]["x_labels"] == ["None", "refiner-xl"]
    assert plot["grids"][0]["y_labels"] == ["Refiner switch at: 0.5", "Refiner switch at: 0.8"]


def test_refiner_axes_are_checked():
    with pytest.raises(InvalidRequest, match="Refiner checkpoint: 'nope' is not installed"):
        build_plot(
            BASE,
            parse_axis("x", "Refiner=nope"),
            parse_axis("y", None),
            parse_axis("z", None),
            resolve_model=_resolve,
        )
    with pytest.raises(InvalidRequest, match="needs a refiner"):
        build_plot(
            BASE, parse_axis("x", "Refiner switch at=0.5,0.9"), parse_axis("y", None), parse_axis("z", None)
        )
