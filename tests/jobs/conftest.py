"""Queues for the job tests: a fresh data folder each, running on the session's engine (demo model)."""

from __future__ import annotations

import pytest

from config import load_settings
from jobs.queue import JobQueue
from tests.queues import open_queue


@pytest.fixture
async def make_queue(tmp_path, engine):
    """`await make_queue(**queue_settings)`: a queue over `tmp_path/data` (previews every 2 steps by default);
    several calls share the data folder, like processes on one machine. All are closed after the test."""
    opened = []

    async def make(**queue_settings) -> JobQueue:
        options = {"preview_every_steps": 2, **queue_settings}
        settings = load_settings(None, data_dir=tmp_path / "data", queue=options)
        queue = await open_queue(settings, engine_factory=lambda: engine)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()
