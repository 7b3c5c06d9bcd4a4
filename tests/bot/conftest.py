"""The bot against the local fake Discord: a guild with three channels (one age-restricted, one for the gallery)
and four members.

`salon` is a running bot (real discord.py, real queue, catalog and demo model on a temp folder); `restart()`
stops it and starts a new one over the same data folder and the same fake Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from app.bot import open_bot_services
from bot.app import SalonBot
from bot.services import Services
from config import load_settings
from engine.demo import DEMO_MODEL_NAME
from tests.bot.fakediscord import FakeDiscord, FakeMessage, Interaction, running_client

GUILD, CHANNEL, NSFW_CHANNEL, GALLERY_CHANNEL = 100, 110, 111, 112
ANN, BOB, MOD, ADMIN = 501, 502, 503, 504
FAST = {
    "prompt": "a red circle on a blue background",
    "width": 64,
    "height": 64,
    "steps": 6,
    "cfg_scale": 5.0,
}


class Salon:
    """A running bot and the fake Discord it talks to, with the steps tests repeat."""

    def __init__(self, fake: FakeDiscord, settings, engine) -> None:
        self.fake = fake
        self.settings = settings
        self.engine = engine
        self.bot: SalonBot | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def services(self) -> Services:
        assert self.bot is not None
        return self.bot.services

    async def start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        services = await self._stack.enter_async_context(
            open_bot_services(self.settings, engine=lambda: self.engine)
        )
        self.bot = SalonBot(services)
        await self._stack.enter_async_context(running_client(self.fake, self.bot, timeout=20))

    async def stop(self) -> None:
        assert self._stack is not None
        await self._stack.aclose()
        self._stack = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def imagine(self, user: int = ANN, channel: int = CHANNEL, **options) -> Interaction:
        return await self.fake.slash(user, channel, "imagine", {**FAST, **options})

    async def images_of(self, message: FakeMessage, timeout: float = 10.0):
        """The catalog images a result message shows (linked right after the message is sent)."""
        deadline = time.monotonic() + timeout
        while not (found := await self.services.catalog.of_message(str(message.guild_id), str(message.id))):
            assert time.monotonic() < deadline, f"no catalog images for message {message.id}"
            await asyncio.sleep(0.05)
        return found

    async def result(self, interaction: Interaction, timeout: float = 60) -> FakeMessage:
        """The message that ends up showing the job's images (the reply, or a later channel message)."""
        await self.fake.wait_for(lambda: _finished(interaction) is not None, timeout, "a result with images")
        message = _finished(interaction)
        assert message is not None
        return message


def _finished(interaction: Interaction) -> FakeMessage | None:
    candidates = [interaction.original, *interaction.followups]
    fake = interaction.fake
    candidates += [
        m
        for m in fake.channel_messages(interaction.channel_id)
        if f"<@{interaction.user_id}>" in m.content and m.created_at > interaction.created_at
    ]
    for message in candidates:
        if message is not None and not message.deleted and message.attachments and "job" in message.content:
            if any(custom_id and custom_id.endswith(":reroll") for custom_id, _, _ in message.buttons()):
                return message
    return None


@pytest.fixture
async def salon(tmp_path, engine):
    settings = load_settings(
        None,
        data_dir=tmp_path / "data",
        models_dir=engine.settings.models_path,  # the session engine's models: what it can load, we list
        embeddings_dir=engine.settings.embeddings_path,
        default_model=DEMO_MODEL_NAME,
        queue={"preview_every_steps": 2, "poll_interval_s": 0.1},
        discord={"progress_interval_s": 0.2, "dev_guilds": [GUILD], "shutdown_grace_s": 5},
    )
    async with FakeDiscord() as fake:
        fake.add_guild(GUILD, "Salon test server", owner_id=ADMIN)
        fake.add_channel(GUILD, CHANNEL, "general")
        fake.add_channel(GUILD, NSFW_CHANNEL, "after-dark", nsfw=True)
        fake.add_channel(GUILD, GALLERY_CHANNEL, "gallery")
        fake.add_user(ANN, "ann", guild_id=GUILD)
        fake.add_user(BOB, "bob", guild_id=GUILD)
        fake.add_user(MOD, "mod", guild_id=GUILD, moderator=True)
        fake.add_user(ADMIN, "admin", guild_id=GUILD, admin=True)
        harness = Salon(fake, settings, engine)
        await harness.start()
        try:
            yield harness
        finally:
            if harness._stack is not None:
                await harness.stop()
        # Whatever the test did, the bot never hit a route Discord lacks nor sent what Discord refuses
        # (a second acknowledgement, an over-long message or embed, an oversized file).
        assert not fake.unknown_routes
        assert [(r.method, r.path) for r in fake.error_responses if r.status in (400, 413)] == []
