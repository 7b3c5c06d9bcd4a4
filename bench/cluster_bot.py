"""Bot figures of bench/cluster.py: acknowledgement of 200 concurrent `/imagine` interactions against the fake
Discord (as bench/bot.py measures them: from the interaction's creation to the bot's deferral), the bot
running with `--no-worker` semantics (`SalonBot(services, run_worker=False)`) on the PostgreSQL queue.

Busy: stand-in worker processes (bench/cluster_queue.py) claim from the same queue, which holds other people's
queued jobs, while the interactions arrive. Baseline: the same with an idle queue (no job, no worker).

On one machine the workers also take the bot's CPU, which on a real installation they do not (they run on
the GPU hosts); so the busy figure is measured twice: with the workers at the bot's priority, and with the
worker processes at the lowest CPU priority (`nice` 19: they still claim and complete jobs, and the database
still serves them at its normal priority, but the bot's process runs first when both are ready). Both are
printed, each labelled.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
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


def measure(url: str, interactions: int, workers: int, queued: int, sleep_ms: int, say=print):
    """(idle acks, busy acks, busy acks with the workers niced) in seconds."""
    with tempfile.TemporaryDirectory(prefix="salon-cluster-bot-") as tmp:
        folder = Path(tmp)
        asyncio.run(create_schema(url, folder / "schema"))
        fill_postgres(url, 0, owners=1)  # an idle queue: no job
        say(f"bot: {interactions} interactions, idle queue …")
        idle = asyncio.run(acknowledgements(url, folder / "idle", interactions))
        busy = {}
        for niced in (False, True):
            fill_postgres(url, queued, owners=100)
            pool = Workers(url, folder / f"workers-{niced}", workers, sleep_ms)
            how = f" at nice {NICE}" if niced else ""
            say(
                f"bot: {interactions} interactions, {workers} stand-in workers{how} busy on {queued:,} jobs …"
            )
            pool.start()
            try:
                if niced:
                    for process in pool.processes:
                        os.setpriority(os.PRIO_PROCESS, process.pid, NICE)
                time.sleep(1.0)  # the workers are claiming
                busy[niced] = asyncio.run(acknowledgements(url, folder / f"busy-{niced}", interactions))
            finally:
                pool.stop()
    return idle, busy[False], busy[True]


def summary(acks: list[float]) -> str:
    return f"p50 {percentile(acks, 0.5) * 1000:,.0f} ms, p99 {percentile(acks, 0.99) * 1000:,.0f} ms"
