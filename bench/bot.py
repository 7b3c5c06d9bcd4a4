"""Bot figures on the demo model against the local fake Discord, in one run: `python bench/bot.py [--jobs 12]`.

1. Acknowledgement: time from a user's `/imagine` to the bot's deferral, while the GPU thread is busy with
   other people's jobs (Discord's limit is 3 s).
2. Overhead: N one-image jobs from N people through Discord (slash command → queue → worker → PNG posted)
   against the same N requests submitted straight to a queue, both on the same engine; their ratio.
3. Pacing: the shortest gap between two edits of one progress message (the setting is 1.5 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # `bench/queue.py` would hide the stdlib queue

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from app.bot import open_bot_services  # noqa: E402
from bot.app import SalonBot  # noqa: E402
from config import load_settings  # noqa: E402
from engine.demo import DEMO_MODEL_NAME  # noqa: E402
from engine.requests import GenerationRequest  # noqa: E402
from tests.bot.fakediscord import FakeDiscord, running_client  # noqa: E402
from tests.queues import open_queue  # noqa: E402

GUILD, CHANNEL = 100, 110
OPTIONS = {"prompt": "a red circle on a blue background", "width": 64, "height": 64, "steps": 20}


def _settings(folder: str):
    return load_settings(
        None, data_dir=folder, default_model=DEMO_MODEL_NAME, discord={"dev_guilds": [GUILD]}
    )


async def through_discord(engine, people: int) -> tuple[float, list[float], float]:
    with tempfile.TemporaryDirectory() as folder:
        async with FakeDiscord() as fake:
            fake.add_guild(GUILD)
            fake.add_channel(GUILD, CHANNEL)
            for user in range(people):
                fake.add_user(500 + user, f"user{user}", guild_id=GUILD)
            async with open_bot_services(_settings(folder), engine=lambda: engine) as services:
                async with running_client(fake, SalonBot(services), timeout=60):
                    started = time.perf_counter()
                    interactions = [
                        await fake.slash(500 + user, CHANNEL, "imagine", {**OPTIONS, "seed": user})
                        for user in range(people)
                    ]
                    await fake.wait_for(
                        lambda: all(
                            i.original and i.original.attachments and "images #" in i.original.content
                            for i in interactions
                        ),
                        600,
                    )
                    elapsed = time.perf_counter() - started
                    acks = [i.acked_at - i.created_at for i in interactions]
                    gaps = [
                        b.at - a.at
                        for i in interactions
                        for a, b in zip(i.original.edits[1:], i.original.edits[2:], strict=False)
                    ]
    return elapsed, acks, min(gaps, default=float("nan"))


async def straight(engine, people: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        queue = await open_queue(_settings(folder), engine_factory=lambda: engine)
        stop = asyncio.Event()
        runner = asyncio.create_task(queue.run(stop=stop))
        started = time.perf_counter()
        jobs = [
            await queue.submit(
                GenerationRequest(OPTIONS["prompt"], seed=user, width=64, height=64, steps=20),
                str(500 + user),
            )
            for user in range(people)
        ]
        for job in jobs:
            await queue.wait(job.id)
        elapsed = time.perf_counter() - started
        stop.set()
        await runner
        await queue.close()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12, help="people, one image each")
    args = parser.parse_args()
    from engine.runner import Engine

    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(_settings(folder))
        await straight(engine, 2)  # warm up: load the model once
        baseline = await straight(engine, args.jobs)
        elapsed, acks, gap = await through_discord(engine, args.jobs)
    acks.sort()
    p95 = acks[min(len(acks) - 1, round(0.95 * (len(acks) - 1)))]
    print(
        f"acknowledgement while the GPU is busy: median {statistics.median(acks) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms (Discord allows 3000 ms)"
    )
    print(f"{args.jobs} jobs straight to the queue: {baseline:.2f} s (baseline)")
    print(
        f"{args.jobs} jobs through Discord with progress edits: {elapsed:.2f} s, "
        f"ratio {elapsed / baseline:.2f} against the baseline"
    )
    print(f"shortest gap between two progress edits of one message: {gap:.2f} s (setting 1.5 s)")


if __name__ == "__main__":
    asyncio.run(main())
