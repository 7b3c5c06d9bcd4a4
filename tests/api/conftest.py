"""The API served in-process on 127.0.0.1 (a free port) over a fresh data folder, running on the session's
engine (the demo model; the tiny model of tests/conftest.py is installed too). Synchronous clients
(`webuiapi`, `requests`) are called in a thread, so the server keeps running in the test's event loop."""

from __future__ import annotations

import pytest

from app.api import open_api
from config import load_settings
from engine.demo import DEMO_MODEL_NAME


@pytest.fixture
def api_settings(tmp_path, data_dir):
    def make(**overrides):
        options = {
            "data_dir": tmp_path / "data",
            "models_dir": data_dir / "models",
            "embeddings_dir": data_dir / "embeddings",
            "default_model": DEMO_MODEL_NAME,
            "queue": {"preview_every_steps": 1},
            **overrides,
        }
        return load_settings(None, **options)

    return make


@pytest.fixture
async def serve(api_settings, engine):
    """`await serve(auth=None, **settings)`: the API running with its worker; closed after the test."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:

        async def start(auth: str | None = None, run_worker: bool = True, **overrides):
            settings = api_settings(**overrides)
            opened = open_api(settings, "127.0.0.1", 0, auth, run_worker=run_worker, engine=lambda: engine)
            return await stack.enter_async_context(opened)

        yield start


@pytest.fixture
async def api(serve):
    return await serve()


async def next_event(events, kind: str):
    """The next event of `kind`; an end of the job before it is a failure (not a wait forever)."""
    while (event := await events.get()).kind != kind:
        assert event.kind not in ("done", "failed", "cancelled"), (
            f"job {event.job_id} {event.kind}: {event.error}"
        )
    return event
