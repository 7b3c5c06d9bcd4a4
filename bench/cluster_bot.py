"""Bot figures of bench/cluster.py: acknowledgement of 200 concurrent `/imagine` interactions against the fake
Discord (as bench/bot.py measures them: from the interaction's creation to the bot's deferral), the bot
running with `--no-worker` semantics (`SalonBot(services, run_worker=False)`) on the PostgreSQL queue.

Busy: stand-in worker processes (bench/cluster_queue.py) claim from the same queue, which holds other people's
queued jobs, while the interactions arrive. Baseline: the same with an idle queue (no job, no worker).

On one machine the workers also take the bot's CPU, which on a real installation they do not (they run on
the GPU hosts); so the busy figure is measured twice: with the workers at the bot's priority, and with the
worker processes at the lowest CPU priority (`nice` 19: they still claim and complete jobs, and the database
still serves them at its normal priority, but the bot's process runs first when both are ready). Both are
printed, each labelled. And a third way, closest to separate hosts: CPU affinity (`Hosts`), the bot's
process pinned to one core and PostgreSQL plus the workers to the other, idle and busy measured the same
way one after the other.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from bench.cluster_queue import Workers, create_schema, fill_postgres, percentile

GUILD, CHANNEL = 100, 110
OPTIONS = {"prompt": "a red circle on a blue background", "width": 64, "height": 64, "steps": 20}
ACK_DEADLINE_S = 300.0  # generous: 200 interactions on a loaded 2-core machine


async def acknowledgements(url: str, folder: Path, interactions: int) -> list[float]:
    """Seconds from each interaction's creation to its acknowledgement."""
    from app.bot import open_bot_services
    from bot.app import SalonBot
    from config import load_settings
    from engine.demo import DEMO_MODEL_NAME
    from tests.bot.fakediscord import FakeDiscord, running_client

    settings = load_settings(
        None, data_dir=folder, default_model=DEMO_MODEL_NAME, discord={"dev_guilds": [GUILD]},
        database={"url": url}, queue={"max_queued": 1_000_000},
    )  # fmt: skip
    async with FakeDiscord(ack_deadline=None) as fake:
        fake.add_guild(GUILD)
        fake.add_channel(GUILD, CHANNEL)
        for user in range(interactions):
            fake.add_user(500 + user, f"user{user}", guild_id=GUILD)
        async with open_bot_services(settings) as services:
            async with running_client(fake, SalonBot(services, run_worker=False), timeout=120):
                sent = await asyncio.gather(
                    *(
                        fake.slash(500 + user, CHANNEL, "imagine", {**OPTIONS, "seed": user})
                        for user in range(interactions)
                    )
                )
                await fake.wait_for(lambda: all(i.acked_at is not None for i in sent), ACK_DEADLINE_S)
    return [i.acked_at - i.created_at for i in sent]


NICE = 19  # the worker processes' niceness in the "workers niced" measurement
SHARED, NICED, PINNED = "shared", "niced", "pinned"  # how the workers' hosts are emulated (module docstring)
WAYS = (SHARED, NICED, PINNED)


def measure(url: str, interactions: int, workers: int, queued: int, sleep_ms: int, say=print,
            ways=WAYS) -> dict[tuple[str, bool], list[float]]:  # fmt: skip
    """Acknowledgement times in seconds, by (way, busy): for each way of emulating the hosts, with an idle
    queue (no job, no worker) and with `workers` stand-in workers busy on `queued` jobs, one after the other.
    `PINNED` is left out (with a line said) where fewer than 2 cores or no PostgreSQL server process of
    this machine are at hand."""
    found: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="salon-cluster-bot-") as tmp:
        folder = Path(tmp)
        asyncio.run(create_schema(url, folder / "schema"))
        for way in ways:
            hosts = Hosts(url) if way == PINNED else None
            if hosts is not None and not hosts.possible:
                say(f"bot: not pinned: {hosts.why_not}")
                continue
            for busy in (False, True):
                fill_postgres(url, queued if busy else 0, owners=100)  # idle: no job
                pool = Workers(url, folder / f"workers-{way}", workers, sleep_ms) if busy else None
                say(f"bot: {interactions} interactions, {describe(way, busy, workers, queued)} …")
                try:
                    if pool is not None:
                        pool.start()
                        for process in pool.processes:
                            if way == NICED:
                                os.setpriority(os.PRIO_PROCESS, process.pid, NICE)
                            if hosts is not None:
                                hosts.pin_worker(process.pid)
                        time.sleep(1.0)  # the workers are claiming
                    with hosts.pinned() if hosts is not None else nullcontext():
                        acks = asyncio.run(acknowledgements(url, folder / f"{way}-{busy}", interactions))
                    found[(way, busy)] = acks
                finally:
                    if pool is not None:
                        pool.stop()
    return found


def describe(way: str, busy: bool, workers: int, queued: int) -> str:
    """What one measurement emulates, as the table says it."""
    load = f"{workers} stand-in workers busy on {queued:,} jobs" if busy else "idle queue (no job, no worker)"
    if way == NICED:
        return f"{load}, the workers' processes at nice {NICE}" if busy else f"{load}, baseline of the niced"
    if way == PINNED:
        return f"{load}; bot + fake Discord pinned to one core, PostgreSQL and the workers to the other(s)"
    return f"{load}, all on the same cores"


class Hosts:
    """Separate hosts emulated on one machine by CPU affinity (os.sched_setaffinity): the bot's process (the
    bot and the fake Discord, every thread of it) on the first core; the PostgreSQL server (its postmaster and
    every backend, the bot's connections' included: the database is where the workers are) and the worker
    processes on the other cores. Other processes of the machine are not pinned: they still share every
    core (the table's load average says how busy it was)."""

    def __init__(self, url: str) -> None:
        cores = sorted(os.sched_getaffinity(0))
        self.all = set(cores)
        self.bot, self.workers = {cores[0]}, set(cores[1:])
        self.postmaster = _postmaster(url)
        self.why_not = ""
        if len(cores) < 2:
            self.why_not = "fewer than 2 cores"
        elif self.postmaster is None:
            self.why_not = "the PostgreSQL server's processes are not on this machine or not readable"
        self.possible = not self.why_not

    def pin_worker(self, pid: int) -> None:
        os.sched_setaffinity(pid, self.workers)

    @contextmanager
    def pinned(self):
        """PostgreSQL on the workers' cores and this process on the bot's, while inside."""
        server = _family(self.postmaster)
        for pid in server:
            _set(pid, self.workers)
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
        for tid in threads:
            _set(tid, self.bot)
        try:
            yield
        finally:
            for tid in [int(tid) for tid in os.listdir("/proc/self/task")]:
                _set(tid, self.all)
            for pid in _family(self.postmaster):
                _set(pid, self.all)


def _postmaster(url: str) -> int | None:
    """The pid of the PostgreSQL server of `url` when it runs on this machine (its data folder readable)."""
    import psycopg

    try:
        with psycopg.connect(url) as db:
            folder = db.execute("SHOW data_directory").fetchone()[0]
        pid = int((Path(folder) / "postmaster.pid").read_text().split()[0])
    except (psycopg.Error, OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _family(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, checkpointer …), each with its threads."""
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(entry))
    return pids


def _set(pid: int, cores: set[int]) -> None:
    try:
        os.sched_setaffinity(pid, cores)
    except (ProcessLookupError, PermissionError):
        pass  # ended meanwhile


def summary(acks: list[float]) -> str:
    return f"p50 {percentile(acks, 0.5) * 1000:,.0f} ms, p99 {percentile(acks, 0.99) * 1000:,.0f} ms"
