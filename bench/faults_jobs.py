"""Queue and worker fault figures (issue 18, items 2, 3, 4, 10): real `salon` processes on a temporary data folder.

1. SIGKILL × N of `salon worker` (default settings: max_attempts 2, batches of up to 8) at random moments while
   four people keep submitting jobs: uniformly within twice the time a worker takes from its start to its
   first finished job (measured again every 10 kills, as the machine's load changes: kills that always come
   before a worker can load its model and finish a job would leave no job able to succeed). After every kill
   `PRAGMA integrity_check` on queue.db and catalog.db and `salon catalog check` (a kill may leave a file
   waiting for its row, or a row for its index entry, until the job runs again; never a row without its
   file). A last worker then empties the queue. Figures: accepted
   jobs lost, duplicated (catalog rows per job file, result files), failed (none of these jobs crashes
   anything, so every failure is one that would have succeeded alone), and the checks.
2. A corrupted queue.db or catalog.db (random bytes, cut in half, a zeroed page): `salon queue`, `salon
   imagine` and `salon browse` must exit 1 with the one-line message, no traceback, within 5 s.
3. SIGTERM during a model load (slowed to minutes by tests/faults/hooked_worker.py: nothing can interrupt it),
   during denoising and while idle: seconds until the worker exited (target < 10 s).
4. A full disk (a small tmpfs, root only): the worker logs it, `salon queue` says why jobs wait, and the job
   completes, whole, once space returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.faults_common import Figure
from config import load_settings
from engine.requests import GenerationRequest
from jobs.blame import PointFile
from tests.queues import open_queue

OWNERS = ("ann", "bob", "cy", "dee")
PROMPTS = ("a red circle", "a blue square on white", "a green star", "two yellow triangles")
PENDING_PER_OWNER = 3  # each person keeps this many jobs waiting or running
KILL_SPAN_FACTOR = 2.0  # kills land uniformly within this many times a worker's start-to-first-job time…
RECALIBRATE_EVERY = 10  # …measured again (on an unkilled worker) every this many kills
CORRUPTIONS = ("random bytes", "cut in half", "a zeroed page")
PAGE = 4096
ENV = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "COLUMNS": "300"}


def figures(quick: bool) -> list[Figure]:
    parts = (
        ("SIGKILL worker", lambda: _sigkills(15 if quick else 200)),
        ("corrupted DB", lambda: [_corrupted_databases()]),
        ("SIGTERM exit", _sigterms),
        ("disk full", lambda: [_full_disk()]),
    )
    found: list[Figure] = []
    for name, part in parts:
        started = time.monotonic()
        try:
            found.extend(part())
        except Exception as exc:  # one broken part must not hide the others' figures
            found.append(Figure(name, f"not measured: {type(exc).__name__}: {exc}"[:52], "-", False))
        print(f"  (jobs/{name}: {time.monotonic() - started:.0f} s)", flush=True)
    return found


# ----- helpers --------------------------------------------------------------------------------------------------
def _folder(root: Path, extra: str = "") -> tuple[Path, object]:
    config = root / "salon.toml"
    config.write_text(f'data_dir = "{root / "data"}"\n{extra}')
    return config, load_settings(config)


def _salon(config: Path, *args: str, module: str = "cli.main", env: dict | None = None, **kwargs):
    command = [sys.executable, "-m", module, "--config", str(config), *args]
    return subprocess.Popen(command, env={**ENV, **(env or {})}, **kwargs)


def _worker(config: Path, log: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    module = "tests.faults.hooked_worker" if env else "cli.main"
    with open(log, "ab") as out:
        return _salon(config, "worker", *args, module=module, env=env, stdout=out, stderr=subprocess.STDOUT)


def _submit(settings, wanted: list[tuple[str, GenerationRequest]]) -> list[int]:
    async def run() -> list[int]:
        queue = await open_queue(settings)
        try:
            return [(await queue.submit(request, owner)).id for owner, request in wanted]
        finally:
            await queue.close()

    return asyncio.run(run())


def _rows(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as connection:
        return connection.execute(sql, args).fetchall()


def _intact(db: Path) -> bool:
    return _rows(db, "PRAGMA integrity_check") == [("ok",)]


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _until(condition, timeout_s: float, step_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return False


# ----- 1. SIGKILL × N ---------------------------------------------------------------------------------------------
def _top_up(settings, rng: random.Random, accepted: list[int]) -> None:
    """Each person back to PENDING_PER_OWNER jobs waiting or running (6 or 8 steps: two batch keys)."""

    async def run() -> None:
        queue = await open_queue(settings)
        try:
            pending = Counter(job.owner for job in await queue.store.pending(guilds_only=False))
            for owner in OWNERS:
                for _ in range(PENDING_PER_OWNER - pending[owner]):
                    steps = rng.choice((6, 8))
                    request = GenerationRequest(
                        rng.choice(PROMPTS), seed=rng.randrange(1 << 30), width=64, height=64, steps=steps
                    )
                    accepted.append((await queue.submit(request, owner)).id)
        finally:
            await queue.close()

    asyncio.run(run())


def _first_job_s(config: Path, settings, log: Path) -> float:
    """Seconds a worker takes from its start to its first finished job (then it is stopped gracefully)."""
    done = "SELECT COUNT(*) FROM jobs WHERE status = 'done'"
    before = _rows(settings.queue_db, done)[0][0]
    started = time.monotonic()
    worker = _worker(config, log)
    _until(lambda: _rows(settings.queue_db, done)[0][0] > before, 600)
    seconds = time.monotonic() - started
    worker.send_signal(signal.SIGTERM)
    worker.wait()
    return seconds


def _catalog_check(config: Path) -> dict[str, int]:
    done = _salon(config, "catalog", "check", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = done.communicate(timeout=300)
    counts = {key.strip(): int(value) for key, value in re.findall(r"([a-z ]+): (\d+)", out)}
    return {**counts, "exit": done.returncode}


def _sigkills(kills: int) -> list[Figure]:
    rng = random.Random(18)
    with tempfile.TemporaryDirectory(prefix="salon-faults-jobs-") as tmp:
        config, settings = _folder(Path(tmp))
        log = Path(tmp) / "worker.log"
        accepted: list[int] = []
        _top_up(settings, rng, accepted)
        broken_checks, bad_rows, spans = 0, 0, []
        for kill in range(kills):
            _top_up(settings, rng, accepted)
            if kill % RECALIBRATE_EVERY == 0:  # the machine's load changes: so does a worker's pace
                spans.append(KILL_SPAN_FACTOR * _first_job_s(config, settings, log))
                _top_up(settings, rng, accepted)
            worker = _worker(config, log)
            time.sleep(rng.uniform(0, spans[-1]))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            intact = _intact(settings.queue_db) and _intact(settings.catalog_dir / "catalog.db")
            check = _catalog_check(config)
            # Never a row without its file, nor an index entry without a row; anything else waits for a re-run.
            bad_rows += check.get("rows without files", 0) + check.get("index entries without rows", 0)
            broken_checks += not intact or "rows without files" not in check
        finished = _worker(config, log, "--exit-when-idle")
        finished.wait(timeout=3600)
        final = _catalog_check(config)
        return [_judge_sigkills(kills, settings, accepted, broken_checks, bad_rows, final, max(spans))]


def _judge_sigkills(kills, settings, accepted, broken_checks, bad_rows, final, span) -> Figure:
    jobs = {
        job_id: (status, results)
        for job_id, status, results in _rows(settings.queue_db, "SELECT id, status, results FROM jobs")
    }
    lost = [i for i in accepted if i not in jobs or jobs[i][0] not in ("done", "failed", "cancelled")]
    failed = [i for i in accepted if i in jobs and jobs[i][0] == "failed"]
    for job_id, error, deaths in _rows(
        settings.queue_db, "SELECT id, error, deaths FROM jobs WHERE status = 'failed'"
    ):
        print(f"  job {job_id} failed: {error} (deaths: {deaths})", flush=True)
    results = [p for status, r in jobs.values() if status == "done" for p in json.loads(r)]
    lost += [p for p in results if not Path(p).is_file()]
    per_file = _rows(settings.catalog_dir / "catalog.db", "SELECT COUNT(*) FROM images GROUP BY path")
    duplicated = sum(count - 1 for (count,) in per_file)
    files = list(settings.outputs_path.rglob("*.png"))
    duplicated += max(0, len(files) - len(results))  # a second copy of an image under another name
    checks_ok = broken_checks == 0 and bad_rows == 0 and final.get("exit") == 0
    measured = (
        f"{len(lost)} lost, {duplicated} dup, {len(failed)} failed of {len(accepted)}; "
        f"checks {'ok' if checks_ok else f'{broken_checks + bad_rows} bad'}"
    )
    return Figure(
        f"SIGKILL x{kills} worker (<{span:.0f} s)",
        measured,
        "0 / 0 / 0, checks ok",
        not lost and not failed and duplicated == 0 and checks_ok,
    )


# ----- 2. corrupted databases -------------------------------------------------------------------------------------
def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "random bytes":
        data = bytearray(random.Random(4).randbytes(len(data)))
    elif how == "cut in half":
        data = data[: len(data) // 2]
    else:
        middle = len(data) // PAGE // 2
        data[middle * PAGE : (middle + 1) * PAGE] = bytes(PAGE)
    path.write_bytes(bytes(data))


def _corrupted_databases() -> Figure:
    commands = {
        "queue": ["queue"],
        "imagine": ["imagine", "a red circle", "--steps", "2"],
        "browse": ["browse"],
    }
    opens = {"queue.db": ("queue", "imagine"), "catalog.db": ("queue", "imagine", "browse")}
    times, wrong = [], []
    for name, users in opens.items():
        for how in CORRUPTIONS:
            with tempfile.TemporaryDirectory(prefix="salon-faults-db-") as tmp:
                config, settings = _folder(Path(tmp))
                _submit(
                    settings,
                    [("ann", GenerationRequest("a cat", seed=s, width=64, height=64)) for s in range(5)],
                )
                path = settings.queue_db if name == "queue.db" else settings.catalog_dir / "catalog.db"
                _corrupt(path, how)
                for command in users:
                    started = time.monotonic()
                    process = _salon(
                        config, *commands[command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    )
                    try:
                        out, err = process.communicate(timeout=60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        out, err = process.communicate()
                    times.append(time.monotonic() - started)
                    said = f"error {path} is not a valid SQLite database (" in err
                    if process.returncode != 1 or not said or "Traceback" in out + err:
                        wrong.append(f"{command}/{name}/{how}")
    return Figure(
        f"corrupted DB x{len(times)} (queue/imagine/browse)",
        f"exit 1 + message {len(times) - len(wrong)}/{len(times)}, slowest {max(times):.1f} s",
        "all, < 5 s",
        not wrong and max(times) < 5.0,
    )


# ----- 3. SIGTERM ---------------------------------------------------------------------------------------------------
def _sigterms() -> list[Figure]:
    moments = ("model load", "denoising", "idle")
    seconds = {moment: _sigterm_at(moment) for moment in moments}
    return [
        Figure(
            "SIGTERM exit (load/denoise/idle)",
            " / ".join(f"{seconds[m]:.1f} s" for m in moments),
            "< 10 s each, job requeued",
            all(value < 10.0 for value in seconds.values()),
        )
    ]


def _sigterm_at(moment: str) -> float:
    """Seconds from SIGTERM to the worker's exit (inf if the job did not go back in line uncounted)."""
    with tempfile.TemporaryDirectory(prefix="salon-faults-term-") as tmp:
        config, settings = _folder(Path(tmp), "[queue]\npoll_interval_s = 0.1\n")
        steps = 150 if moment == "denoising" else 3
        request = GenerationRequest("a cat", seed=1, width=64, height=64, steps=steps)
        [job_id] = _submit(settings, [("ann", request)])
        if moment == "idle":
            _rows(settings.queue_db, "UPDATE jobs SET status = 'cancelled'")
        hooks = {"SALON_TEST_SLOW_LOAD_S": "600"} if moment == "model load" else None
        worker = _worker(config, Path(tmp) / "worker.log", env=hooks)
        point = PointFile(settings.data_dir / "worker.point")

        def ready() -> bool:
            if moment == "model load":
                phase = _rows(settings.queue_db, "SELECT phase FROM jobs WHERE id = ?", (job_id,))[0][0]
                return phase.startswith("loading")
            if moment == "denoising":
                where = point.last()
                return where is not None and where.phase == "txt2img" and where.step >= 2
            return _read(settings.data_dir / "worker.lock") == str(worker.pid)

        _until(ready, 600)
        if moment == "idle":
            time.sleep(1.0)  # past its start: polling the queue
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=120)
        except subprocess.TimeoutExpired:
            worker.kill()
        seconds = time.monotonic() - started
        status = _rows(settings.queue_db, "SELECT status, attempts FROM jobs WHERE id = ?", (job_id,))[0]
        if moment != "idle" and status != ("queued", 0):
            return float("inf")
        return seconds


# ----- 4. a full disk -------------------------------------------------------------------------------------------------
def _full_disk() -> Figure:
    with tempfile.TemporaryDirectory(prefix="salon-faults-disk-") as tmp:
        disk = Path(tmp) / "disk"
        disk.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], capture_output=True
        )
        if mounted.returncode != 0:
            return Figure(
                "disk full (tmpfs)",
                "not measured: cannot mount a tmpfs here",
                "logged, waits, completes",
                True,
            )
        try:
            return _full_disk_on(disk, Path(tmp))
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def _full_disk_on(disk: Path, tmp: Path) -> Figure:
    config = tmp / "salon.toml"
    config.write_text(f'data_dir = "{disk / "data"}"\n[queue]\npoll_interval_s = 0.1\n')
    settings = load_settings(config)
    [job_id] = _submit(settings, [("ann", GenerationRequest("a cat", seed=1, width=64, height=64, steps=3))])
    filler = disk / "filler"
    with open(filler, "wb") as out:
        while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > 96 * 1024 + 65536:
            out.write(b"\0" * 65536)
            out.flush()
    log = tmp / "worker.log"
    started = time.monotonic()
    worker = _worker(config, log, "--exit-when-idle")
    logged = _until(lambda: "the jobs wait" in log.read_text(), 600)
    logged_s = time.monotonic() - started
    listing = _salon(config, "queue", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    shown = "waiting: disk full in" in listing.communicate(timeout=120)[0]
    freed = time.monotonic()
    filler.unlink()
    try:
        worker.wait(timeout=600)
    except subprocess.TimeoutExpired:
        worker.kill()
    done_s = time.monotonic() - freed
    status = _rows(settings.queue_db, "SELECT status FROM jobs WHERE id = ?", (job_id,))[0][0]
    leftovers = [p for p in settings.outputs_path.rglob("*") if p.is_file() and p.suffix != ".png"]
    ok = logged and shown and status == "done" and not leftovers
    return Figure(
        "disk full (tmpfs, 96 KB left)",
        f"logged {logged_s:.0f} s, queue says why: {'yes' if shown else 'no'}, done {done_s:.0f} s after space",
        "logged, waits, completes",
        ok,
    )
