"""The bot sharded (`[discord] shards`): one gateway connection per shard, each identified with `[id, count]`,
each carrying its guilds' events by Discord's rule `(guild_id >> 22) % count`, and commands answered in the
guilds of every shard; `shard_ids` runs only some shards in this process."""

from __future__ import annotations

import contextlib
import json

import pytest
from aiohttp import web

from bot.app import SalonBot
from config import load_settings
from engine.demo import DEMO_MODEL_NAME
from engine.requests import GenerationRequest
from tests.bot.conftest import ANN, Salon
from tests.bot.fakediscord import FakeDiscord

# Snowflakes whose timestamp bits put them on shard 0 and shard 1 of 2 (and both on shard 0 of 1).
EVEN_GUILD, ODD_GUILD = 10 << 22, 11 << 22
EVEN_CHANNEL, ODD_CHANNEL = EVEN_GUILD + 1, ODD_GUILD + 1


async def _no_identify_wait(self, shard_id, *, initial=False) -> None:
    """discord.py waits 5 s between two shards' IDENTIFYs (Discord's rate); the fake has no such limit."""


class _GatewayElsewhere(FakeDiscord):
    """A Discord whose /gateway/bot names a gateway nobody listens on (reached only through a proxy)."""

    async def _h_gateway_info(self, request: web.Request) -> web.Response:
        answer = await super()._h_gateway_info(request)
        body = {**json.loads(answer.body), "url": "ws://127.0.0.1:9/unreachable"}
        return web.Response(body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


@contextlib.asynccontextmanager
async def _sharded_salon(tmp_path, engine, monkeypatch, recommended: int, fake_class=FakeDiscord, **discord):
    monkeypatch.setattr(SalonBot, "before_identify_hook", _no_identify_wait)
    settings = load_settings(
        None,
        data_dir=tmp_path / "data",
        models_dir=engine.settings.models_path,
        embeddings_dir=engine.settings.embeddings_path,
        default_model=DEMO_MODEL_NAME,
        queue={"poll_interval_s": 0.1},
        discord={"dev_guilds": [EVEN_GUILD, ODD_GUILD], "shutdown_grace_s": 5, **discord},
    )
    async with fake_class() as fake:
        fake.recommended_shards = recommended
        if fake_class is _GatewayElsewhere:
            settings.discord.gateway_url = fake.gateway_url
        for guild, channel, name in ((EVEN_GUILD, EVEN_CHANNEL, "even"), (ODD_GUILD, ODD_CHANNEL, "odd")):
            fake.add_guild(guild, f"{name} server", owner_id=ANN)
            fake.add_channel(guild, channel, "general")
        fake.add_user(ANN, "ann", guild_id=EVEN_GUILD)
        fake.add_member(ODD_GUILD, ANN)
        salon = Salon(fake, settings, engine)
        await salon.start()
        try:
            yield salon
        finally:
            await salon.stop()
        assert not fake.unknown_routes
        assert [(r.method, r.path) for r in fake.error_responses if r.status in (400, 413)] == []


def _identified(fake: FakeDiscord) -> list[list[int]]:
    return sorted(m["d"].get("shard") for m in fake.gateway_received if m.get("op") == 2)


async def _answered_in_both_guilds(salon: Salon) -> None:
    for channel in (EVEN_CHANNEL, ODD_CHANNEL):
        interaction = await salon.imagine(channel=channel, seed=7)
        result = await salon.result(interaction)
        assert result.channel_id == channel and result.attachments


@pytest.mark.parametrize(("setting", "recommended"), [(2, 1), ("auto", 2)])
async def test_two_shards_each_identify_and_answer_the_commands_of_their_guilds(
    tmp_path, engine, monkeypatch, setting, recommended
):
    async with _sharded_salon(tmp_path, engine, monkeypatch, recommended, shards=setting) as salon:
        bot = salon.bot
        assert bot is not None
        assert _identified(salon.fake) == [[0, 2], [1, 2]]
        assert salon.fake.shards_connected == [(0, 2), (1, 2)]
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert {g.id: g.shard_id for g in bot.guilds} == {EVEN_GUILD: 0, ODD_GUILD: 1}
        assert [shard for shard, _ in bot.latencies] == [0, 1]
        await _answered_in_both_guilds(salon)


async def test_auto_with_discord_recommending_one_shard_identifies_once(tmp_path, engine, monkeypatch):
    async with _sharded_salon(tmp_path, engine, monkeypatch, 1) as salon:
        assert _identified(salon.fake) == [[0, 1]]
        assert salon.bot is not None and len(salon.bot.guilds) == 2
        await _answered_in_both_guilds(salon)


async def test_shard_ids_run_only_those_shards_here(tmp_path, engine, monkeypatch):
    async with _sharded_salon(tmp_path, engine, monkeypatch, 1, shards=2, shard_ids=[1]) as salon:
        bot = salon.bot
        assert bot is not None
        assert _identified(salon.fake) == [[1, 2]]
        assert [g.id for g in bot.guilds] == [ODD_GUILD]
        result = await salon.result(await salon.imagine(channel=ODD_CHANNEL, seed=7))
        assert result.channel_id == ODD_CHANNEL
        with pytest.raises(AssertionError, match="no client is connected"):
            await salon.imagine(channel=EVEN_CHANNEL)  # shard 0's guild: another process's shard


async def test_auto_shards_connect_to_the_configured_gateway_url(tmp_path, engine, monkeypatch):
    """`gateway_url` wins over the URL /gateway/bot names when asked for the shard count."""
    async with _sharded_salon(tmp_path, engine, monkeypatch, 2, fake_class=_GatewayElsewhere) as salon:
        assert _identified(salon.fake) == [[0, 2], [1, 2]]


async def test_after_a_restart_only_the_jobs_of_this_processs_shards_are_followed(
    tmp_path, engine, monkeypatch
):
    """Jobs of a guild on another process's shard are that process's to post: resuming here would post
    them twice."""
    async with _sharded_salon(tmp_path, engine, monkeypatch, 1, shards=2, shard_ids=[1]) as salon:
        queue = salon.services.queue
        # Not batchable together (sizes differ), one person's: the even guild's job runs first, and the odd
        # one's many steps leave time for a post of the even one, had it been followed here.
        even = await queue.submit(
            GenerationRequest("a red circle", seed=3, width=64, height=64, steps=2),
            str(ANN),
            guild=str(EVEN_GUILD),
            channel=str(EVEN_CHANNEL),
        )
        odd = await queue.submit(
            GenerationRequest("a red circle", seed=3, width=64, height=72, steps=30),
            str(ANN),
            guild=str(ODD_GUILD),
            channel=str(ODD_CHANNEL),
        )
        await salon.restart()  # nobody followed them: the restart's resume picks up its own shards' job

        def posted(channel: int, job_id: int) -> bool:
            return any(
                f"job {job_id} " in m.text() and m.attachments for m in salon.fake.channel_messages(channel)
            )

        await salon.fake.wait_for(lambda: posted(ODD_CHANNEL, odd.id), 60, "the odd guild's job posted")
        store = salon.services.queue.store  # the restarted bot's
        odd_done, even_done = await store.get(odd.id), await store.get(even.id)
        assert odd_done is not None and even_done is not None and even_done.status.terminal
        assert even_done.finished_at is not None and odd_done.started_at is not None
        assert even_done.finished_at <= odd_done.started_at
        assert not posted(EVEN_CHANNEL, even.id) and even_done.delivered_at is None
