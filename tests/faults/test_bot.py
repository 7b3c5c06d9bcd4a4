"""The Discord bot under faults (issue 18, items 12–14): a rate limit met while a job ends, a stop while
handlers run, a reaction made as the result appears. Real discord.py against the local fake Discord."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time

import pytest

from jobs.worker import GpuWorker
from tests.bot.conftest import BOB, CHANNEL
from tests.bot.conftest import salon as running_bot  # noqa: F401  (the fixture, by this name)
from tests.bot.fakediscord import RecordedRequest

RETRY_AFTER_S = 2.0


@pytest.fixture
def salon(running_bot):  # noqa: F811  (pytest passes the fixture imported above)
    """The bot of tests/bot (real discord.py, queue, catalog and demo model) and its fake Discord."""
    return running_bot


def _content(request: RecordedRequest) -> str:
    return str((request.json or {}).get("content") or "") if isinstance(request.json, dict) else ""


def _result_edit(request: RecordedRequest) -> bool:
    """A PATCH of the interaction's reply that shows the images."""
    return (
        request.method == "PATCH" and request.path.endswith("/@original") and "images #" in _content(request)
    )


async def _eventually(check, timeout_s: float = 15.0) -> bool:
    """Poll an async check until it holds (True) or the deadline passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


def _ratings(salon, image_id: int) -> dict[str, int]:
    """The ratings stored for an image, read from the catalog's file (the bot may be stopped)."""
    with sqlite3.connect(salon.settings.catalog_dir / "catalog.db") as db:
        return dict(db.execute("SELECT user, score FROM ratings WHERE image_id = ?", (image_id,)).fetchall())


def _ignored_exceptions(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if "Ignoring exception" in record.getMessage()]


@pytest.fixture
def held_at_last_step(monkeypatch):
    """The worker stops at a job's last step (its progress event sent) until the test sets the event."""
    release = threading.Event()
    reporter = GpuWorker._reporter

    def held(self, job_id, report):
        on_step = reporter(self, job_id, report)

        def step(event) -> None:
            on_step(event)
            if event.step == event.total:
                release.wait(60)

        return step

    monkeypatch.setattr(GpuWorker, "_reporter", held)
    yield release
    release.set()


async def test_the_result_edit_waits_out_a_rate_limit_met_by_a_progress_edit(salon, held_at_last_step):
    """Issue 18 item 12: a job ending while its progress edit sleeps in a 429 posts the result after the limit."""
    fake = salon.fake
    fake.rate_limit_next(
        "/messages/@original",
        RETRY_AFTER_S,
        method="PATCH",
        when=lambda request: "6/6" in _content(request),  # the last step's progress edit
        hold=True,
    )
    interaction = await salon.imagine(steps=6, seed=21)
    await fake.wait_for(lambda: bool(fake.rate_limited), 60, "the progress edit's 429")
    held_at_last_step.set()  # the job ends while that edit waits out its 429
    result = await salon.result(interaction)
    [limited] = fake.rate_limited  # no request earned a second 429
    following = fake.after(limited)
    assert following is not None and following.at - limited.at >= RETRY_AFTER_S, fake.summary()
    assert sum(_result_edit(r) for r in fake.requests) == 1 and result is interaction.original
    job_id = int(result.content.split("job ")[1].split(" ")[0])
    store = salon.services.queue.store
    assert await _eventually(lambda: _delivered(store, job_id))


async def _delivered(store, job_id: int) -> bool:
    return (await store.get(job_id)).delivered_at is not None


async def test_a_reaction_made_as_the_result_edit_arrives_is_recorded(salon):
    """Issue 18 item 14: a rating made before the bot has the answer to its result edit is not ignored."""
    fake = salon.fake
    interaction = await salon.imagine(seed=22)

    async def react_before_the_answer(request: RecordedRequest) -> None:
        await fake.react(BOB, interaction.original_id, "5️⃣")
        await asyncio.sleep(0.3)  # the reaction reaches the bot well before the edit's answer

    fake.before_answer(
        lambda request: _result_edit(request) and request.status == 200, react_before_the_answer
    )
    message = await salon.result(interaction)
    [image] = await salon.images_of(message)
    catalog = salon.services.catalog
    assert await _eventually(lambda: _rated(catalog, image.id, {str(BOB): 5})), _ratings(salon, image.id)


async def _rated(catalog, image_id: int, expected: dict[str, int]) -> bool:
    return await catalog.ratings(image_id) == expected


async def _rated_message(salon):
    message = await salon.result(await salon.imagine(seed=23))
    [image] = await salon.images_of(message)
    return message, image


def _slow_rate(monkeypatch, catalog, release: asyncio.Event | None) -> tuple[asyncio.Event, asyncio.Event]:
    """Ratings wait for `release` (forever when None) before they are saved; returns the events 'a rating
    started' and 'it ended' (saved, failed or cancelled)."""
    started, ended = asyncio.Event(), asyncio.Event()
    rate = catalog.rate

    async def slow(*args, **kwargs):
        started.set()
        try:
            await (release.wait() if release is not None else asyncio.Event().wait())
            return await rate(*args, **kwargs)
        finally:
            ended.set()

    monkeypatch.setattr(catalog, "rate", slow)
    return started, ended


async def test_a_stop_lets_a_reaction_being_saved_finish_before_the_stores_close(
    salon,
    monkeypatch,
    caplog,
):
    """Issue 18 item 13: a stop waits for a running reaction handler instead of closing the catalog under it."""
    caplog.set_level(logging.WARNING)
    message, image = await _rated_message(salon)
    release = asyncio.Event()
    started, _ = _slow_rate(monkeypatch, salon.services.catalog, release)
    await salon.fake.react(BOB, message.id, "4️⃣")
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(salon.stop())
    await asyncio.wait({stopping}, timeout=1.0)  # a stop that does not wait has closed the stores by now
    release.set()
    await asyncio.wait_for(stopping, 30)
    assert _ignored_exceptions(caplog) == []
    assert _ratings(salon, image.id) == {str(BOB): 4}


async def test_a_stuck_reaction_handler_holds_the_stop_no_longer_than_the_grace(
    salon,
    monkeypatch,
    caplog,
):
    """Issue 18 item 13: a handler that does not end is cancelled after the grace; nothing half-saved."""
    caplog.set_level(logging.WARNING)
    message, image = await _rated_message(salon)
    started, ended = _slow_rate(monkeypatch, salon.services.catalog, None)
    await salon.fake.react(BOB, message.id, "3️⃣")
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    await asyncio.wait_for(salon.stop(), 60)
    grace = salon.settings.discord.shutdown_grace_s
    assert time.monotonic() - began < grace + 10
    assert ended.is_set()  # cancelled, not left running against closed stores
    assert _ignored_exceptions(caplog) == []
    assert _ratings(salon, image.id) == {}


async def test_a_stop_during_the_start_reconciliation_lets_it_end(salon, caplog):
    """Issue 18 item 13: stopping while on_ready reads reactions back does not cut its requests off."""
    caplog.set_level(logging.WARNING)
    message, _ = await _rated_message(salon)
    await salon.stop()
    fetching = asyncio.Event()

    async def slow_answer(request: RecordedRequest) -> None:
        fetching.set()
        await asyncio.sleep(1.0)

    path = f"/channels/{CHANNEL}/messages/{message.id}"
    salon.fake.before_answer(lambda request: request.method == "GET" and request.path == path, slow_answer)
    await salon.start()
    await asyncio.wait_for(fetching.wait(), 20)
    await asyncio.wait_for(salon.stop(), 30)
    assert _ignored_exceptions(caplog) == []
