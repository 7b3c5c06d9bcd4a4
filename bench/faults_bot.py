"""Bot fault figures (issue 18, items 12–14): the real bot (discord.py, queue, catalog, demo model) against the
local fake Discord.

1. A 429 while a job ends: each job's last progress edit gets a 429 that Discord holds for `retry_after`
   (every request to that route before then gets another 429), and the job ends while discord.py waits it
   out. Figures: the smallest gap between a 429 and the bot's next request to that route, and the 429s
   beyond the injected ones.
2. Reactions racing the result: a user reacts 0–20 ms after Discord applied the result edit (before the bot
   has the answer, or just after); ratings recorded / reactions.
3. A stop while reaction handlers run: ratings slowed by 0–1 s each (a busy disk), several users reacting,
   then the bot stops; errors logged during the stop (a closed database under a handler), and stop time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench.faults_common import Figure
from config import load_settings
from engine.demo import DEMO_MODEL_NAME
from jobs.worker import GpuWorker
from tests.bot.conftest import Salon
from tests.bot.fakediscord import FakeDiscord, RecordedRequest

GUILD, CHANNEL = 100, 110
AUTHORS = tuple(range(501, 509))  # who run the jobs
VOTERS = tuple(range(601, 609))  # who react
STEPS = 6
RACE_WINDOW_S = 0.020
SLOW_RATING_S = 1.0


def _settings(folder: Path):
    return load_settings(
        None,
        data_dir=folder,
        default_model=DEMO_MODEL_NAME,
        queue={"preview_every_steps": 2, "poll_interval_s": 0.1},
        discord={"progress_interval_s": 0.2, "dev_guilds": [GUILD], "shutdown_grace_s": 5},
    )


@contextlib.asynccontextmanager
async def _running_salon(folder: Path, engine) -> AsyncIterator[Salon]:
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD, "bench", owner_id=AUTHORS[0])
        fake.add_channel(GUILD, CHANNEL, "general")
        for user in (*AUTHORS, *VOTERS):
            fake.add_user(user, f"user{user}", guild_id=GUILD)
        salon = Salon(fake, _settings(folder), engine)
        await salon.start()
        try:
            yield salon
        finally:
            if salon._stack is not None:
                await salon.stop()


@contextlib.contextmanager
def _held_at_last_step(release: threading.Event):
    """The worker waits at each job's last step (its progress sent) until `release` is set."""
    reporter = GpuWorker._reporter

    def held(self, job_id, report):
        on_step = reporter(self, job_id, report)

        def step(event) -> None:
            on_step(event)
            if event.step == event.total:
                release.wait(60)

        return step

    GpuWorker._reporter = held
    try:
        yield
    finally:
        GpuWorker._reporter = reporter
        release.set()


def _content(request: RecordedRequest) -> str:
    return str(request.json.get("content") or "") if isinstance(request.json, dict) else ""


def _result_edit(request: RecordedRequest) -> bool:
    return (
        request.method == "PATCH" and request.path.endswith("/@original") and "images #" in _content(request)
    )


async def rate_limit_at_job_end(salon: Salon, jobs: int, retry_after_s: float) -> tuple[float, int]:
    """(smallest gap after a 429 to the next request of its route, 429s beyond the injected ones)."""
    fake = salon.fake
    release = threading.Event()
    injected: list[RecordedRequest] = []
    with _held_at_last_step(release):
        for n in range(jobs):
            release.clear()
            before = len(fake.rate_limited)
            fake.rate_limit_next(
                "/messages/@original",
                retry_after_s,
                method="PATCH",
                when=lambda request: f"{STEPS}/{STEPS}" in _content(request),
                hold=True,
            )
            interaction = await salon.imagine(user=AUTHORS[n % len(AUTHORS)], steps=STEPS, seed=n)
            await fake.wait_for(lambda: len(fake.rate_limited) > before, 120, "the injected 429")  # noqa: B023
            injected.append(fake.rate_limited[before])
            release.set()  # the job ends while its progress edit waits out the 429
            await salon.result(interaction, timeout=120)
    gaps = [following.at - limited.at for limited in injected if (following := fake.after(limited))]
    return min(gaps), len(fake.rate_limited) - len(injected)


async def reactions_racing_the_result(salon: Salon, reactions: int) -> int:
    """How many of `reactions` ratings, each made 0–20 ms after Discord applied a result edit, are recorded."""
    fake = salon.fake
    rng = random.Random(14)
    pending: list[asyncio.Task] = []

    async def react_later(message_id: int, voter: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await fake.react(voter, message_id, "5️⃣")

    recorded = 0
    for wave in range(0, reactions, len(AUTHORS)):
        interactions = []
        for n in range(wave, min(reactions, wave + len(AUTHORS))):
            interaction = await salon.imagine(user=AUTHORS[n % len(AUTHORS)], seed=1000 + n)
            token, voter, delay = interaction.token, VOTERS[n % len(VOTERS)], rng.uniform(0, RACE_WINDOW_S)

            def schedule(request, interaction=interaction, voter=voter, delay=delay) -> None:
                pending.append(asyncio.create_task(react_later(interaction.original_id, voter, delay)))

            fake.before_answer(
                lambda request, token=token: (
                    token in request.path and _result_edit(request) and request.status == 200
                ),
                schedule,
            )
            interactions.append((interaction, voter))
        for interaction, voter in interactions:
            message = await salon.result(interaction, timeout=120)
            [image] = await salon.images_of(message)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if str(voter) in await salon.services.catalog.ratings(image.id):
                    recorded += 1
                    break
                await asyncio.sleep(0.05)
    await asyncio.gather(*pending)
    return recorded


class _Errors(logging.Handler):
    """Log records at ERROR or above, with their exception text."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += " " + logging.Formatter().formatException(record.exc_info).splitlines()[-1]
        self.lines.append(text)


async def stop_while_rating(salon: Salon, rounds: int) -> tuple[int, int, float]:
    """(errors logged around the stops, reactions made, longest stop in seconds)."""
    fake, rng = salon.fake, random.Random(13)
    message = await salon.result(await salon.imagine(user=AUTHORS[0], seed=7), timeout=120)
    errors = _Errors()
    made, longest = 0, 0.0
    scores = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣")
    logging.getLogger().addHandler(errors)
    try:
        for _ in range(rounds):
            started = _slow_ratings(salon.services.catalog, rng)
            for voter in VOTERS:
                for emoji in scores:
                    await fake.unreact(voter, message.id, emoji)
                await fake.react(voter, message.id, rng.choice(scores))
                made += 1
            await asyncio.wait_for(started.wait(), 30)
            await asyncio.sleep(rng.uniform(0, SLOW_RATING_S / 2))
            began = time.monotonic()
            await salon.stop()
            longest = max(longest, time.monotonic() - began)
            await salon.start()
    finally:
        logging.getLogger().removeHandler(errors)
    return len(errors.lines), made, longest


def _slow_ratings(catalog, rng: random.Random) -> asyncio.Event:
    """Each rating of this catalog waits 0–1 s first; returns 'a rating started'."""
    started = asyncio.Event()
    rate = catalog.rate

    async def slow(*args, **kwargs):
        started.set()
        await asyncio.sleep(rng.uniform(0, SLOW_RATING_S))
        return await rate(*args, **kwargs)

    catalog.rate = slow
    return started


async def _figures(quick: bool) -> list[Figure]:
    from engine.runner import Engine

    jobs, retry_after_s = (3, 1.0) if quick else (20, 2.0)
    reactions = 8 if quick else 40
    rounds = 2 if quick else 10
    quiet = logging.NullHandler()  # discord.py's warnings (the injected 429s) are not the figures
    logging.getLogger().addHandler(quiet)
    try:
        with tempfile.TemporaryDirectory() as folder:
            engine = Engine(_settings(Path(folder)))
            async with _running_salon(Path(folder) / "limits", engine) as salon:
                gap, extra = await rate_limit_at_job_end(salon, jobs, retry_after_s)
            async with _running_salon(Path(folder) / "race", engine) as salon:
                recorded = await reactions_racing_the_result(salon, reactions)
            async with _running_salon(Path(folder) / "stop", engine) as salon:
                errors, made, longest = await stop_while_rating(salon, rounds)
    finally:
        logging.getLogger().removeHandler(quiet)
    return [
        Figure(
            f"429 as a job ends ×{jobs}",
            f"smallest gap after a 429 {gap:.2f} s (retry_after {retry_after_s:g} s), {extra} extra 429s",
            "≥ retry_after, 0 extra",
            gap >= retry_after_s and extra == 0,
        ),
        Figure(
            f"reaction 0–20 ms after result ×{reactions}",
            f"{recorded}/{reactions} ratings recorded",
            f"{reactions}/{reactions}",
            recorded == reactions,
        ),
        Figure(
            f"stop while rating ×{rounds}",
            f"{errors} errors logged over {made} reactions; longest stop {longest:.1f} s",
            "0 errors",
            errors == 0,
        ),
    ]


def figures(quick: bool) -> list[Figure]:
    return asyncio.run(_figures(quick))
