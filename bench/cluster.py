"""Scale-out figures (issue 21), printed side by side in one run:
`python bench/cluster.py [--quick] [--only queue|catalog|bot] [--database-url URL] [--catalog-rows N]
[--before] [--queued N] [--bot-hosts all|shared|niced|pinned|none]`.

1. Queue (bench/cluster_queue.py): claims per second and p99 claim latency with 10,000 queued jobs and 1, 8,
   32 worker processes on PostgreSQL, against the SQLite queue with 1 worker; the fairness of a light user's
   job behind a heavy user's 1,000; jobs claimed twice (must be 0). The workers run a stand-in engine that
   sleeps a fixed time per image: none of these figures is image throughput. `--before`: each claim figure
   also as before (the whole queue ranked at each claim, jobs/fair_heads.py `WHOLE_QUEUE`), side by side.
   Then the rows of `jobs` one claim reads, and one followed job's place in line (jobs/fair_places.py), each
   before and after (EXPLAIN ANALYZE, bench/cluster_reads.py) with N and 10 N queued.
2. Catalog (bench/cluster_catalog.py): bench/catalog.py's query mix at N rows on SQLite FTS5, Whoosh and the
   PostgreSQL catalog, p50/p95 of the whole mix.
3. Bot (bench/cluster_bot.py): acknowledgement p99 of 200 concurrent interactions, the bot on the PostgreSQL
   queue with `--no-worker`, while stand-in workers are busy; baseline: an idle queue, measured the same way.
   The workers' other hosts are emulated three ways (`--bot-hosts`): not at all (the same cores), the workers
   at nice 19, and CPU affinity (the bot and the fake Discord on one core, PostgreSQL and the workers on the
   other: bench/cluster_bot.py `Hosts`); each row says which.

Without `--database-url`, a throwaway PostgreSQL server is started (tests/postgres.py: initdb as an
unprivileged user, 127.0.0.1) and removed at the end. No asserts: the figures are printed in one table.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and its queue.py would hide the standard
# library's `queue`: look for modules from the repository root instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from contextlib import contextmanager  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FULL = {"jobs": 10_000, "workers": [1, 8, 32], "heavy": 1_000, "window_s": 20.0, "interactions": 200,
        "bot_workers": 8, "repeats": 10}  # fmt: skip
QUICK = {"jobs": 1_000, "workers": [1, 4], "heavy": 100, "window_s": 3.0, "interactions": 40,
         "bot_workers": 2, "repeats": 2, "catalog_rows": 2_000}  # fmt: skip
SECTIONS = ("queue", "catalog", "bot")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def database(url: str | None):
    """`url` as given, else a fresh database on a throwaway server started here (stopped on leaving)."""
    if url:
        yield url
        return
    from tests.postgres import PostgresServer, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries (initdb, pg_ctl): install postgresql, or give --database-url")
    root = Path(tempfile.mkdtemp(prefix="salon-cluster-pg-"))
    server = PostgresServer(bindir, root)
    try:
        _say("starting a throwaway PostgreSQL server …")
        server.start()
        yield server.create_database()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), shared with other work: figures are noisy"


def server_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as db:
        return db.execute("SHOW server_version").fetchone()[0]


def table(rows: list[tuple[str, str, str, str]]) -> str:
    """Plain text columns: section, what, figure, note."""
    header = ("section", "what", "figure", "baseline / note")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = []
    for number, row in enumerate([header, *rows]):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
        if number == 0:
            lines.append("-" * (sum(widths) + 6 + len(header[3])))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    size = QUICK if args.quick else FULL
    sleep_ms = args.sleep_ms
    rows: list[tuple[str, str, str, str]] = []
    with database(args.database_url) as url:
        rows.append(("machine", "CPU", machine(), ""))
        rows.append(
            ("machine", "PostgreSQL", server_version(url), "fsync off" if not args.database_url else "")
        )
        rows.append(("machine", "date", datetime.datetime.now().isoformat(timespec="seconds"), ""))
        if "queue" in args.only:
            from bench import cluster_reads
            from bench.cluster_queue import measure

            jobs = args.queued or size["jobs"]
            figures = measure(
                url, size["workers"], jobs, size["heavy"], sleep_ms, size["window_s"], _say, args.before
            )
            rows += [("queue", what, figure, note) for what, figure, note in figures.rows]
            reads = cluster_reads.measure(url, [jobs, 10 * jobs], say=_say)
            rows += [("queue", what, figure, note) for what, figure, note in cluster_reads.rows(reads)]
        if "catalog" in args.only:
            from bench.cluster_catalog import measure as measure_catalog

            count = args.catalog_rows or size.get("catalog_rows", 100_000)
            asked = tuple(args.catalog_backends.split(","))
            for backend in measure_catalog(url, count, size["repeats"], _say, asked):
                ingest = f"ingest {count / backend.ingest_s:,.0f} rows/s; " if backend.ingest_s else ""
                rows.append(("catalog", f"{count:,} rows, whole mix, {backend.name}", backend.figure(),
                             f"{ingest}{backend.note if backend.times else ''}".strip("; ")))  # fmt: skip
        if "bot" in args.only:
            from bench import cluster_bot
            from bench.cluster_queue import label

            n = size["interactions"]
            ways = {"all": cluster_bot.WAYS, "none": (cluster_bot.SHARED,)}.get(
                args.bot_hosts, (args.bot_hosts,)
            )
            found = cluster_bot.measure(url, n, size["bot_workers"], size["jobs"], sleep_ms, _say, ways)
            for (way, busy), acks in found.items():
                how = cluster_bot.describe(way, busy, size["bot_workers"], size["jobs"])
                what = f"ack of {n} concurrent interactions, {how}"
                note = f"{label(sleep_ms)}; goal p99 < 1000 ms" if busy else ""
                rows.append(("bot", what, cluster_bot.summary(acks), note))
            rows.append(
                (
                    "bot",
                    "load average (1, 5, 15 min) at the end",
                    ", ".join(f"{x:.1f}" for x in os.getloadavg()),
                    "",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small version of everything (~2 minutes)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="this part only (may repeat)")
    parser.add_argument("--database-url", help="an existing PostgreSQL database (its jobs table is emptied)")
    parser.add_argument("--catalog-rows", type=int, help="rows in the catalog part (default 100,000)")
    parser.add_argument(
        "--before",
        action="store_true",
        help="also measure each claim figure as before (the whole queue ranked at each claim), side by side",
    )
    parser.add_argument(
        "--bot-hosts",
        choices=("all", "shared", "niced", "pinned", "none"),
        default="all",
        help="how the bot part emulates workers on other hosts: shared cores, workers niced, processes "
        "pinned to separate cores; all (default) or none (shared only)",
    )
    parser.add_argument("--queued", type=int, help="jobs queued in the claim figures (default 10,000)")
    parser.add_argument("--sleep-ms", type=int, default=50, help="the stand-in engine's time per image")
    parser.add_argument(
        "--catalog-backends",
        default="sqlite,whoosh,postgresql",
        help="the catalog part's backends, comma-separated (default all: sqlite,whoosh,postgresql)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.catalog_backends.split(",")) - {"sqlite", "whoosh", "postgresql"}
    if unknown or not args.catalog_backends:
        parser.error("--catalog-backends: give some of sqlite,whoosh,postgresql, comma-separated")
    args.only = args.only or list(SECTIONS)
    if args.catalog_rows is not None and args.catalog_rows < 1:
        parser.error("--catalog-rows: give a positive number of rows")
    if args.queued is not None and args.queued < 1:
        parser.error("--queued: give a positive number of jobs")
    if args.sleep_ms < 0:
        parser.error("--sleep-ms: give 0 or more milliseconds")
    rows = run(args)
    print(table(rows))


if __name__ == "__main__":
    main()
