"""What the cogs work with: the settings, the job queue (and through it the catalog, the model registry
and the sampler table) and the community store, built once and handed to the bot. Cogs depend on this, not
on the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from catalog.catalog import Catalog
from community.store import CommunityStore
from config import Settings
from engine.models.registry import ModelRegistry
from engine.tasks.samplers import SamplerTable
from extensions import ExtensionInfo
from jobs.queue import JobQueue


class ScheduleLock(Protocol):
    """Who runs the schedule when several bot processes share a database (jobs/pg_locks.py, handed by app/)."""

    async def acquire(self) -> bool:
        """True while this process holds the lock (taken when free; a lost connection loses it)."""
        ...


@dataclass
class Services:
    """What the cogs work with, built once by the composition root and handed to the bot."""

    settings: Settings
    queue: JobQueue
    community: CommunityStore
    extensions: list[ExtensionInfo] = field(default_factory=list)  # discovered once (app/), at start
    schedule_lock: ScheduleLock | None = None  # None: this process runs the schedule (no database URL)

    @property
    def catalog(self) -> Catalog:
        return self.queue.catalog

    @property
    def registry(self) -> ModelRegistry:
        return self.queue.registry

    @property
    def samplers(self) -> SamplerTable:
        """The built-in samplers and the extensions' (what requests are checked against)."""
        return self.queue.samplers
