"""bench/cluster.py cannot rot: its quick queue part runs against the test server and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 600  # generous: worker processes starting on a loaded 2-core machine


def test_quick_queue_figures_print_their_table(postgres_url):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cluster.py"), "--quick", "--only", "queue",
         "--database-url", postgres_url],
        cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["section", "what", "figure", "baseline", "/", "note"]
    for what in (
        "SQLite queue, 1 worker (baseline)",
        "PostgreSQL queue, 1 worker process",
        "PostgreSQL queue, 4 worker processes",
        "fairness: light user's longest wait",
    ):
        row = next((line for line in lines if what in line), None)
        assert row is not None, f"no row {what!r} in:\n{result.stdout}"
        assert row.startswith("queue")
    for line in lines:
        if "claims/s" in line:
            assert "stand-in engine (sleeps 50 ms per image): not image throughput" in line
    twice = next(line for line in lines if "jobs claimed twice" in line)
    assert twice.split("jobs claimed twice")[1].split()[0] == "0", twice
    machine = [line.split()[1] for line in lines if line.startswith("machine")]
    assert machine == ["CPU", "PostgreSQL", "date"]
    assert not any(line.startswith(("catalog", "bot")) for line in lines)  # --only queue
