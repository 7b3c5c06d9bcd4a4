"""What the CLI's one-shot commands need, built from the settings for one command and closed after it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.stores import open_catalog
from app.worker import open_queue
from catalog.catalog import Catalog
from config import Settings
from engine.models.registry import ModelRegistry
from jobs.queue import JobQueue

T = TypeVar("T")


def model_registry(settings: Settings) -> ModelRegistry:
    """The installed models (`salon models`, the default size of a command without one)."""
    return ModelRegistry.from_settings(settings)


def with_catalog(settings: Settings, work: Callable[[Catalog], Awaitable[T]]) -> T:
    """Open the catalog, await `work(catalog)`, close it; returns what work returned."""

    async def run() -> T:
        async with open_catalog(settings) as catalog:
            # Files added by import and repair: at most the pixels of an input image or of an output, if more.
            catalog.max_pixels = max(settings.limits.max_input_pixels, settings.limits.max_pixels)
            return await work(catalog)

    return asyncio.run(run())


def with_queue(settings: Settings, work: Callable[[JobQueue], Awaitable[T]]) -> T:
    """Open the queue (without running its worker), await `work(queue)`, close it."""

    async def run() -> T:
        async with open_queue(settings, remote_progress=False) as queue:
            return await work(queue)

    return asyncio.run(run())
