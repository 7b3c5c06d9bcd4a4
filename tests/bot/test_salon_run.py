"""`salon run` as a process against the fake Discord: token errors, serving a command, and SIGTERM mid-job
(exit within 10 s; the job runs exactly once after the next start and its result is posted)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from engine.demo import DEMO_MODEL_NAME
from jobs.records import JobStatus
from tests.bot.conftest import ANN, CHANNEL, FAST, GUILD
from tests.bot.fakediscord import FakeDiscord

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def fake():
    async with FakeDiscord() as running:
        running.add_guild(GUILD)
        running.add_channel(GUILD, CHANNEL)
        running.add_user(ANN, "ann", guild_id=GUILD)
        yield running


async def _start(
    fake: FakeDiscord, data: Path, token: str = FakeDiscord.TOKEN, *arguments: str
) -> asyncio.subprocess.Process:
    """`salon run` (or the subcommand and options in ARGUMENTS) in a child process; its log goes to
    data/../run-N.log (a pipe nobody reads would fill)."""
    env = {
        **os.environ,
        "DISCORD_TOKEN": token,
        "SALON_DATA_DIR": str(data),
        "SALON_DEFAULT_MODEL": DEMO_MODEL_NAME,
        "SALON_DISCORD__API_BASE": fake.base_url,
        "SALON_DISCORD__GATEWAY_URL": fake.gateway_url,
        "SALON_DISCORD__DEV_GUILDS": f"[{GUILD}]",
        "SALON_DISCORD__PROGRESS_INTERVAL_S": "0.2",
        "SALON_QUEUE__POLL_INTERVAL_S": "0.1",
    }
    data.parent.mkdir(parents=True, exist_ok=True)
    log = data.parent / f"run-{len(list(data.parent.glob('run-*.log')))}.log"
    with log.open("wb") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            *(arguments or ("run",)),
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=output,
        )


def _log(data: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(data.parent.glob("run-*.log")))


async def test_a_refused_token_exits_with_a_clear_message(fake, tmp_path):
    process = await _start(fake, tmp_path / "data", token="not-the-token")
    await asyncio.wait_for(process.wait(), 120)
    assert process.returncode == 2
    assert "Discord refused the token" in _log(tmp_path / "data")


async def test_sigterm_mid_job_keeps_it_and_the_next_start_delivers_it_once(fake, tmp_path):
    data = tmp_path / "data"
    process = await _start(fake, data)
    try:
        await fake.wait_for(lambda: fake.connected and GUILD in fake.commands, 120, "the bot connected")
        long_job = await fake.slash(ANN, CHANNEL, "imagine", {**FAST, "steps": 150, "seed": 77})
        await fake.wait_for(lambda: "/150" in (long_job.original.content if long_job.original else ""), 60)
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        assert time.monotonic() - stopped_at < 10 and process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert not fake.connected
    from jobs.store import JobStore

    store = await JobStore.open(data / "queue.db")
    try:
        [job] = await store.recent()
        assert job.status is JobStatus.QUEUED and job.attempts == 0  # a graceful stop does not count
    finally:
        await store.close()
    process = await _start(fake, data)
    try:
        await fake.wait_for(
            lambda: any("images #" in m.content for m in fake.channel_messages(CHANNEL)),
            180,
            "the result posted",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    posted = [m for m in fake.channel_messages(CHANNEL) if "images #" in m.content]
    assert len(posted) == 1 and f"<@{ANN}>" in posted[0].content and "seed 77" in posted[0].content
    store = await JobStore.open(data / "queue.db")
    try:
        [job] = await store.recent()
        assert job.status is JobStatus.DONE and job.attempts == 1 and job.delivered_at is not None
    finally:
        await store.close()


async def test_run_no_worker_serves_the_bot_only_and_a_salon_worker_runs_its_jobs(fake, tmp_path):
    """`salon run --no-worker`: the bot queues and follows jobs; it never runs one. A `salon worker` started
    later in the same data folder runs the job, and the bot posts its result."""
    data = tmp_path / "data"
    bot = await _start(fake, data, FakeDiscord.TOKEN, "run", "--no-worker")
    worker = None
    try:
        await fake.wait_for(lambda: fake.connected and GUILD in fake.commands, 120, "the bot connected")
        await fake.slash(ANN, CHANNEL, "imagine", {**FAST, "seed": 5})
        await fake.wait_for(
            lambda: "this bot only submits jobs" in _log(data), 60, "the --no-worker log line"
        )
        from jobs.store import JobStore

        store = await JobStore.open(data / "queue.db")
        try:
            deadline = time.monotonic() + 60
            while not await store.recent() and time.monotonic() < deadline:  # the bot writes the job
                await asyncio.sleep(0.1)
            [job] = await store.recent()
            assert job.status is JobStatus.QUEUED  # nobody runs it yet
        finally:
            await store.close()
        worker = await _start(fake, data, FakeDiscord.TOKEN, "worker")
        await fake.wait_for(
            lambda: any("images #" in m.content for m in fake.channel_messages(CHANNEL)),
            180,
            "the result posted",
        )
    finally:
        for process in (bot, worker):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 30)
    posted = [m for m in fake.channel_messages(CHANNEL) if "images #" in m.content]
    assert len(posted) == 1 and "seed 5" in posted[0].content
