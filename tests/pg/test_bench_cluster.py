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
        "rows of jobs one claim reads, 1,000 queued, 100 people, person by person",
        "rows of jobs one claim reads, 10,000 queued, 100 people, whole queue (before)",
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


def test_separate_hosts_are_emulated_by_pinning_the_server_and_the_bot(postgres_url):
    """bench/cluster_bot.py `Hosts`: inside `pinned()`, the PostgreSQL server's processes (a backend forked
    then too) run on the workers' cores and this process on the bot's; everything is unpinned after."""
    import os

    import psycopg

    from bench.cluster_bot import Hosts, _family

    hosts = Hosts(postgres_url)
    if len(os.sched_getaffinity(0)) < 2:
        assert not hosts.possible and "cores" in hosts.why_not
        return
    assert hosts.possible, hosts.why_not
    with hosts.pinned():
        with psycopg.connect(postgres_url) as db:  # a new backend: forked by the pinned postmaster
            backend = db.execute("SELECT pg_backend_pid()").fetchone()[0]
            assert os.sched_getaffinity(backend) == hosts.workers
        assert all(_affinity(pid) in (hosts.workers, None) for pid in _family(hosts.postmaster))
        assert os.sched_getaffinity(0) == hosts.bot and hosts.bot.isdisjoint(hosts.workers)
    assert os.sched_getaffinity(0) == hosts.all == os.sched_getaffinity(hosts.postmaster)


def _affinity(pid: int) -> set[int] | None:
    """A process's cores, or None once it has ended (a backend may exit between listing and asking)."""
    import os

    try:
        return os.sched_getaffinity(pid)
    except ProcessLookupError:
        return None
