"""What every part of `bench/faults.py` returns, and small measuring helpers shared by the parts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One fault class: what was measured against what it must be."""

    fault: str  # e.g. "SIGKILL x200 worker"
    measured: str  # e.g. "0 lost, 0 duplicated, 0 innocent failed"
    target: str  # e.g. "0 / 0 / 0"
    met: bool

    def line(self) -> str:
        mark = "ok  " if self.met else "MISS"
        return f"{mark} {self.fault:<34} {self.measured:<52} target {self.target}"


def p99(values: list[float]) -> float:
    """The 99th percentile (the largest value below 100 samples)."""
    if len(values) < 100:
        return max(values)
    return statistics.quantiles(values, n=100, method="inclusive")[98]
