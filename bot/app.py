"""The Discord bot process: one client, its command tree and persistent buttons, the worker, and shutdown.

`run_bot(services)` is what `salon run` calls, with the services the composition root built (app/bot.py): it
logs in, registers the slash commands only when they changed, runs the GPU worker in the same process, and
on SIGINT/SIGTERM stops at the next step with queued jobs kept for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal

import discord
from discord.ext import commands

from bot.handlers import EventHandlers
from bot.interact import SalonTree
from bot.ratelimits import RateLimits
from bot.services import Services
from core.errors import SalonError
from core.files import atomic_write
from jobs.running import WorkerBusy

log = logging.getLogger(__name__)


def intents() -> discord.Intents:
    """Only what Salon reads: guilds (channels, roles) and reactions. No message content, no member list."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_reactions = True
    return wanted


class SalonBot(commands.AutoShardedBot):
    """The client. Cogs get their dependencies from `self.services`; nothing here touches torch.

    Sharded (`[discord] shards`): one gateway connection per shard, as many as Discord recommends by default
    (one for a small bot), each carrying the events of its guilds; `latency` is the shards' average and
    there is no single `ws`. `shard_ids` runs some shards here and the others in other bot processes.
    """

    def __init__(self, services: Services, run_worker: bool = True) -> None:
        self.rate_limits = RateLimits()  # every answer from Discord passes through it (the aiohttp trace)
        discord_settings = services.settings.discord
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            tree_cls=SalonTree,  # refuses an InvalidRequest to the asker (bot/interact.py)
            http_trace=self.rate_limits.trace(),
            shard_count=discord_settings.shard_count,  # None: ask Discord (GET /gateway/bot)
            shard_ids=discord_settings.shard_ids,  # None: every shard in this process
        )
        from bot.delivery import Deliveries
        from bot.gallery import GalleryPoster
        from bot.results import result_view

        self.services = services
        self.deliveries = Deliveries(self, result_view)
        self.gallery = GalleryPoster(self)
        from bot.schedule import Scheduler

        self.schedule = Scheduler(self)
        self.run_worker = run_worker
        self.stop_worker = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._resumed = False
        self._web = None  # the web gallery's aiohttp runner, when [web] enabled
        self.handlers = EventHandlers()  # the event handlers running now; a stop lets them end first
        self.extensions_found: list = []  # installed extensions (extensions/__init__.py), loaded at setup

    async def setup_hook(self) -> None:
        from bot.admin import AdminCog
        from bot.animate import AnimateCog
        from bot.browse import BrowseCog
        from bot.browser import browse_items
        from bot.gallery import GalleryCog
        from bot.generate import GenerateCog, generate_items
        from bot.merge import MergeCog
        from bot.reactions import ReactionsCog
        from bot.results import result_items
        from bot.train import TrainCog
        from bot.upscale import UpscaleCog
        from bot.xyz import XyzCog

        cogs = (
            GenerateCog(self),
            BrowseCog(self),
            AdminCog(self),
            ReactionsCog(self),
            TrainCog(self),
            AnimateCog(self),
            GalleryCog(self),
            XyzCog(self),
            UpscaleCog(self),
            MergeCog(self),
        )
        for cog in cogs:
            await self.add_cog(cog)
        self.extensions_found = self.services.extensions  # discovered once, by the composition root (app/)
        for ext in self.extensions_found:
            for command in ext.api.commands if ext.api else ():
                self.tree.add_command(command)
        self.add_dynamic_items(*result_items(), *browse_items(), *generate_items())
        if self.services.settings.discord.sync_commands:
            await self.sync_commands()
        await self.schedule.start()
        web_settings = self.services.settings.web
        if web_settings.enabled:
            from web.server import serve

            services = self.services
            self._web = await serve(services.settings, services.catalog, services.community, web_settings.host,
                                    web_settings.port, results=services.queue.results)  # fmt: skip
        if not self.run_worker:
            log.info("--no-worker: this bot only submits jobs; `salon worker` processes run them")
        else:
            try:
                self.services.queue.claim_worker()
            except WorkerBusy as exc:
                # `salon worker` (or another process) runs the jobs: the bot submits and follows them
                # from the database, showing places and results (live steps come only from a local worker).
                log.warning("%s; this bot only submits jobs", exc)
                return
            self._worker = asyncio.create_task(self.services.queue.run(stop=self.stop_worker))
            self._worker.add_done_callback(_report_worker_end)

    def _schedule_event(self, coro, event_name: str, *args, **kwargs) -> asyncio.Task:
        """discord.py runs each event handler as a task of its own: keep them, so that a stop waits for a
        rating being saved instead of closing the catalog under it."""
        return self.handlers.track(
            super()._schedule_event(self.handlers.admit(coro), event_name, *args, **kwargs)
        )

    def carries_guild(self, guild_id: int) -> bool:
        """Whether this process runs the shard of the guild (Discord's `(guild_id >> 22) % shards`): with
        `shard_ids`, other bot processes run the other shards and follow their guilds' jobs."""
        if self.shard_ids is None or self.shard_count is None:
            return True
        return (guild_id >> 22) % self.shard_count in self.shard_ids

    async def launch_shard(self, gateway, shard_id: int, *, initial: bool = False) -> None:
        """With `[discord] gateway_url` set, connect there even when Discord's /gateway/bot named another URL
        (asked for the shard count, `shards = "auto"`)."""
        configured = self.services.settings.discord.gateway_url
        if configured:
            import yarl

            gateway = yarl.URL(configured)
        await super().launch_shard(gateway, shard_id, initial=initial)

    async def on_shard_ready(self, shard_id: int) -> None:
        log.info("shard %d of %s ready", shard_id, self.shard_count)

    async def on_ready(self) -> None:
        shards = f"shards {list(self.shards)} of {self.shard_count}" if self.shard_count != 1 else "1 shard"
        log.info("logged in as %s in %d guilds (%s)", self.user, len(self.guilds), shards)
        if not self._resumed:
            self._resumed = True
            await self.deliveries.resume()
            reactions = self.get_cog("ReactionsCog")
            if reactions is not None:
                await reactions.reconcile(self.services.settings.discord.reconcile_messages)  # type: ignore[attr-defined]

    async def sync_commands(self) -> list[str]:
        """Register the commands where they changed since the last registration (Discord limits creations
        per day, so never on every start). Returns the scopes registered."""
        settings = self.services.settings
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        record = settings.data_dir / "discord-commands.json"
        synced = json.loads(record.read_text()) if record.is_file() else {}
        scopes = [str(guild) for guild in settings.discord.dev_guilds] or ["global"]
        registered = []
        for scope in scopes:
            if synced.get(scope) == digest:
                continue
            if scope == "global":
                await self.tree.sync()
            else:
                guild = discord.Object(int(scope))
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
            synced[scope] = digest
            registered.append(scope)
        atomic_write(record, json.dumps(synced))
        if registered:
            log.info("slash commands registered in: %s", ", ".join(registered))
        return registered

    async def close(self) -> None:
        """Stop taking events and let the running handlers end, stop the worker at its next step (running
        jobs go back to the queue), both within the grace, then disconnect. The stores close after this."""
        grace = self.services.settings.discord.shutdown_grace_s
        await asyncio.gather(self.handlers.drain(grace), self._stop_worker(grace))
        self.schedule.stop()
        await self.deliveries.close()
        if self._web is not None:
            await self._web.cleanup()
        await super().close()

    async def _stop_worker(self, grace: float) -> None:
        if self._worker is not None and not self._worker.done():
            await self.services.queue.shutdown()
            self.stop_worker.set()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._worker), grace)


class DiscordRefused(SalonError):
    """Discord would not let the bot in: a bad token, or intents the application may not use."""


def _report_worker_end(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the GPU worker stopped", exc_info=task.exception())


def use_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Send REST calls and the gateway connection elsewhere than Discord (a proxy); process-wide."""
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    if api_base:
        Route.BASE = api_base.rstrip("/")
    if gateway_url:
        import yarl

        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


async def run_bot(services: Services, run_worker: bool = True) -> int:
    """`salon run`: the bot, the worker and the scheduler in one process until a signal stops it. The
    composition root (app/bot.py) builds the services and closes them after this returns."""
    settings = services.settings
    assert settings.discord_token is not None
    use_endpoints(settings.discord.api_base, settings.discord.gateway_url)
    if settings.discord.shard_ids is not None and not settings.database.url:
        log.warning(
            "[discord] shard_ids without a [database] url: every bot process runs the schedule (digests, "
            "upkeep); give the processes of all shards one [database] url"
        )
    bot = SalonBot(services, run_worker)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    async with bot:
        try:
            await bot.login(settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            raise DiscordRefused(
                "Discord refused the token (401): check DISCORD_TOKEN, or reset it in the Developer Portal"
            ) from None
        runner = asyncio.create_task(bot.connect(reconnect=True))
        stopper = asyncio.create_task(stopping.wait())
        await asyncio.wait([runner, stopper], return_when=asyncio.FIRST_COMPLETED)
        await bot.close()
        stopper.cancel()
        if runner.done():
            try:
                runner.result()
            except discord.PrivilegedIntentsRequired as exc:
                raise DiscordRefused(f"Discord refused the intents: {exc}") from None
    return 0
