"""Scheduled work in the bot process (APScheduler's AsyncIOScheduler): each guild's daily or weekly digest
of its best images, and the catalog's upkeep (recycle-bin purge, then the shared blob store's retention:
jobs/blob_retention.py; index optimize, integrity check with repair).

The schedules live in community.db (`/gallery digest` writes them; `[schedule]` gives the upkeep's), so a
restart keeps them: at start every one is added again, and one that should have fired while the bot was down
runs once now (missed runs coalesced). A digest is posted at most once per guild and period: its row is
claimed before posting and gets the message id after; a crash in between is recognised at the next try by the
digest's own first line in the gallery channel, and the message is recorded instead of posted again.

With a database URL several bot processes may share one database: only the one holding the schedule lock
(a PostgreSQL advisory lock, jobs/pg_locks.py, handed in by app/bot.py) runs the schedule; the others try
again every LOCK_RETRY_S and take over when its connection ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging

import discord
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot import render
from bot.client import Salon
from bot.images import image_bytes
from bot.services import ScheduleLock
from core.errors import InvalidRequest
from jobs.blob_retention import drop_old_blobs

log = logging.getLogger(__name__)

UTC = dt.UTC
PERIODS = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7)}
LOCK_RETRY_S = 30.0  # without the schedule lock, try again this often (its holder checks it as often)
HISTORY_SEARCHED = 50  # gallery-channel messages read back to find a digest posted just before a crash


def cron_trigger(cron: str) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(cron, timezone=UTC)
    except ValueError as exc:
        raise InvalidRequest(
            "cron", f"{cron!r} is not a crontab line (minute hour day month weekday): {exc}"
        ) from None


def digest_cron(period: str, hour: int, weekday: str = "sun") -> str:
    if period not in PERIODS:
        raise InvalidRequest("period", f"{period!r} is not one of: {', '.join(PERIODS)}, off")
    if not 0 <= hour <= 23:
        raise InvalidRequest("hour", f"{hour} is not an hour from 0 to 23 (UTC)")
    return f"0 {hour} * * *" if period == "daily" else f"0 {hour} * * {weekday}"


def last_fire(trigger: CronTrigger, now: dt.datetime, span: dt.timedelta) -> dt.datetime | None:
    """The trigger's latest fire time at or before `now`, looking back at most `span` (None: none there)."""
    found, moment = None, now - span
    while (following := trigger.get_next_fire_time(found, moment)) is not None and following <= now:
        found, moment = following, following + dt.timedelta(seconds=1)
    return found


def period_label(period: str, fired: dt.datetime) -> str:
    """The period a digest covers, named by when it fired: `2026-11-28` (daily) or `2026-W48` (weekly)."""
    if period == "daily":
        return fired.strftime("%Y-%m-%d")
    year, week, _ = fired.isocalendar()
    return f"{year}-W{week:02d}"


def digest_title(period: str, label: str) -> str:
    return f"🏆 Top of the {'day' if period == 'daily' else 'week'} ({label})"


class Scheduler:
    """The bot's scheduled jobs (started in setup_hook, stopped in close)."""

    def __init__(self, bot: Salon) -> None:
        self.bot = bot
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        self.lock_retry_s = LOCK_RETRY_S
        self.active = False  # this process runs the schedule now
        self._started = False
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        """Run the schedule here; with a schedule lock (`Services.schedule_lock`: a database URL), only while
        this process holds it: another process that holds it runs the schedule, and this one takes over once
        that one's lock is released (tried every `lock_retry_s`)."""
        lock = self.bot.services.schedule_lock
        if lock is None or await lock.acquire():
            await self._run()
        else:
            log.info("another process runs the schedule (digests, upkeep); this one takes over if it stops")
        if lock is not None:
            self._watch = asyncio.create_task(self._watch_lock(lock))

    async def _watch_lock(self, lock: ScheduleLock) -> None:
        while True:
            await asyncio.sleep(self.lock_retry_s)
            try:
                held = await lock.acquire()
                if held and not self.active:
                    log.info("this process runs the schedule now (digests, upkeep)")
                    await self._run()
                elif not held and self.active:  # its connection was lost: another process may take over
                    log.warning("lost the schedule lock; another process runs the schedule (digests, upkeep)")
                    self.scheduler.pause()
                    self.active = False
            except Exception:  # keep watching: the next try may do
                log.exception("the schedule lock")

    async def _run(self) -> None:
        self.active = True
        if self._started:  # it ran here before, then lost the lock
            self.scheduler.resume()
            return
        self._started = True
        self.scheduler.start()
        upkeep = self.bot.services.settings.schedule
        for kind, cron in (
            ("purge", upkeep.purge_cron),
            ("optimize", upkeep.optimize_cron),
            ("check", upkeep.check_cron),
        ):
            self.scheduler.add_job(
                self.upkeep, cron_trigger(cron), args=[kind], id=f"upkeep:{kind}", replace_existing=True,
                misfire_grace_time=3600,
            )  # fmt: skip
        for ext in self.bot.extensions_found:
            for name, cron, function in ext.api.scheduled if ext.api else ():
                self.scheduler.add_job(function, cron_trigger(cron), args=[self.bot.services],
                                       id=f"extension:{ext.name}:{name}", replace_existing=True)  # fmt: skip
        for row in await self.bot.services.community.schedules():
            await self.add_digest(
                row["guild"], row["cron"], row["options"].get("period", "weekly"), row["last_run"]
            )

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self.active = False
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def add_digest(self, guild: str, cron: str, period: str, last_run: float | None = None) -> None:
        """(Re)schedule a guild's digest; if it should have fired since its last run, run it once now."""
        trigger = cron_trigger(cron)
        self.scheduler.add_job(
            self.digest_job, trigger, args=[guild, period], id=f"digest:{guild}", replace_existing=True,
            misfire_grace_time=6 * 3600,
        )  # fmt: skip
        now = dt.datetime.now(UTC)
        missed = last_fire(trigger, now, PERIODS[period] * 2)
        if missed is not None and (last_run is None or last_run < missed.timestamp()):
            self.scheduler.add_job(self.post_digest, args=[guild, period, missed], id=f"digest-late:{guild}",
                                   replace_existing=True)  # fmt: skip

    def remove_digest(self, guild: str) -> None:
        if self.scheduler.get_job(f"digest:{guild}") is not None:
            self.scheduler.remove_job(f"digest:{guild}")

    async def digest_job(self, guild: str, period: str) -> None:
        await self.post_digest(guild, period, dt.datetime.now(UTC))

    async def post_digest(self, guild: str, period: str, fired: dt.datetime) -> discord.Message | None:
        """Post the guild's digest for the period that ended at `fired`, once."""
        services = self.bot.services
        community = await services.community.effective(guild)
        await services.community.ran(guild, "digest", fired.timestamp())
        if not community.gallery_channel:
            log.info("digest for guild %s skipped: no gallery channel", guild)
            return None
        label = period_label(period, fired)
        title = digest_title(period, label)
        done = await services.community.digest(guild, label)
        if done is not None and done["message"]:
            return None  # posted and recorded already
        channel = self.bot.get_channel(int(community.gallery_channel)) or await self.bot.fetch_channel(
            int(community.gallery_channel)
        )
        if done is not None:  # claimed, maybe posted, not recorded: a crash came in between
            found = await self._find_posted(channel, title)
            if found is not None:
                await services.community.record_digest(guild, label, str(found.id))
                return None
        images = await services.catalog.top_images(
            guild,
            (fired - PERIODS[period]).timestamp(),
            fired.timestamp(),
            services.settings.schedule.digest_size,
        )
        await services.community.claim_digest(guild, label, str(channel.id))
        message = await self.send_digest(channel, title, images)
        await services.community.record_digest(guild, label, str(message.id))
        return message

    async def send_digest(self, channel, title: str, images) -> discord.Message:
        lines = [title]
        files = []
        limit = self.bot.services.settings.discord.attachment_limit_bytes
        for place, image in enumerate(images, 1):
            link = (
                f" · [original](https://discord.com/channels/{image.guild}/{image.channel}/{image.message})"
                if image.channel and image.message
                else ""
            )
            prompt = render.clip(image.prompt.replace("\n", " "), 120)
            rank = f"★ {image.rank_mean:.1f} ({image.rank_count})"
            lines.append(f"{place}. #{image.id} by <@{image.author}> · {rank}{link}\n   {prompt}")
            data = await image_bytes(self.bot, image)  # fetched when made on another host
            if data and len(data) <= limit // 10:
                files.append(discord.File(io.BytesIO(data), filename=f"{place}-{image.filename}"))
        if not images:
            lines.append("No rated images in this period.")
        return await channel.send(
            content=render.clip("\n".join(lines), render.MAX_CONTENT),
            files=files,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def _find_posted(self, channel, title: str) -> discord.Message | None:
        me = self.bot.user
        async for message in channel.history(limit=HISTORY_SEARCHED):
            if me is not None and message.author.id == me.id and message.content.startswith(title):
                return message
        return None

    async def upkeep(self, kind: str) -> None:
        services = self.bot.services
        catalog, settings = services.catalog, services.settings
        if kind == "purge":
            removed = await catalog.purge_older_than(settings.schedule.purge_after_days * 86400)
            log.info("upkeep: %d images left the recycle bin for good", removed)
            blobs = services.queue.results.blobs  # files shared between hosts (a database URL)
            if blobs is not None:
                dropped = await drop_old_blobs(
                    blobs, services.queue.store, catalog, settings.database.blob_keep_days
                )
                log.info("upkeep: blob store: dropped %s", dropped)
                pruned = await services.queue.results.prune_cache(settings.database.blob_keep_days)
                log.info("upkeep: %d cached files of other hosts removed here", pruned)
        elif kind == "optimize":
            await catalog.optimize_index()
            log.info("upkeep: text index optimized")
        elif kind == "check":
            report = await catalog.check(
                [settings.outputs_path], repair=True, skip=[settings.outputs_path / "animations"]
            )
            log.info("upkeep: integrity check %s", "clean" if report.clean else f"repaired {report}")
