"""The web gallery role (`salon web`): the catalog and the community store, handed to web/server.py.

The bot can serve the same gallery beside itself (`[web] enabled`), with the services it already has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from aiohttp.web import AppRunner

from app.stores import open_blob_store, open_catalog, open_community
from config import Settings
from jobs.results import ResultFiles
from web.server import serve


@asynccontextmanager
async def serve_web(
    settings: Settings, host: str, port: int, local_guild: str | None = None
) -> AsyncIterator[AppRunner]:
    """The gallery listening on host:port until the block ends; then it stops, and the stores close."""
    async with AsyncExitStack() as stack:
        catalog = await stack.enter_async_context(open_catalog(settings))
        community = await stack.enter_async_context(open_community(settings))
        blobs = await stack.enter_async_context(open_blob_store(settings))  # result files of other hosts
        results = ResultFiles(settings.data_dir, settings.outputs_path, blobs)
        runner = await serve(settings, catalog, community, host, port, local_guild, results)
        stack.push_async_callback(runner.cleanup)
        yield runner
