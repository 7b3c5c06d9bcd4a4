"""What the cogs work with: the settings, the job queue (and through it the catalog, the model registry
and the sampler table) and the community store, built once and handed to the bot. Cogs depend on this, not
on the client."""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog.catalog import Catalog
from community.store import CommunityStore
from config import Settings
from engine.models.registry import ModelRegistry
from engine.tasks.samplers import SamplerTable
from extensions import ExtensionInfo
from jobs.queue import JobQueue


@dataclass
class Services:
    """What the cogs work with, built once by the composition root and handed to the bot."""

    settings: Settings
    queue: JobQueue
    community: CommunityStore
    extensions: list[ExtensionInfo] = field(default_factory=list)  # discovered once (app/), at start

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
