"""Following a job on Discord: the reply's progress edits, then the result, wherever the reply can still go.

An interaction's reply can be edited for 15 minutes only; after that (or once Discord refuses the token) the
job carries on in a new channel message. Edits of one message are at least `progress_interval_s` apart; an
edit in flight is never cut short (it may be waiting out a 429), and no edit goes out while Discord still
rate-limits its route (bot/ratelimits.py).
Jobs whose Discord reply was lost (the bot restarted) are followed from their channel at start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import discord

from bot import plots, render
from bot.client import Salon
from bot.links import ResultLinks
from bot.merged import merged_content
from bot.upscaled import upscaled_content, upscaled_files
from catalog.records import ImageRecord
from jobs.records import JobEvent, JobKind, JobRecord, JobStatus

log = logging.getLogger(__name__)

EXPIRED_TOKEN_CODES = {50027, 10015}  # Invalid Webhook Token, Unknown Webhook
LATE_DELIVERY_S = 24 * 3600  # outcomes not shown before a stop are posted at the next start within this
CHANNEL_EDIT_S = 0.4  # Discord allows about 5 message edits per 2 s in one channel

ResultView = Callable[[JobRecord, int], discord.ui.View]  # the buttons under a job's images, by image count


class Reply:
    """Where a job's progress and result are shown: the interaction's reply, then a channel message."""

    def __init__(
        self,
        bot: Salon,
        channel_id: int,
        user_id: int,
        interaction: discord.Interaction | None = None,
    ) -> None:
        self.bot = bot
        self.channel_id = channel_id
        self.user_id = user_id
        self.interaction = interaction
        self.message: discord.Message | None = None  # the channel message used once the token is gone
        self._token_deadline = 0.0
        if interaction is not None:
            age = time.time() - interaction.created_at.timestamp()
            settings = bot.services.settings.discord
            self._token_deadline = (
                time.monotonic() + settings.interaction_token_s - settings.token_margin_s - max(0.0, age)
            )

    @property
    def upload_limit(self) -> int:
        if self.interaction is not None and getattr(self.interaction, "filesize_limit", None):
            return min(
                self.interaction.filesize_limit, self.bot.services.settings.discord.attachment_limit_bytes
            )
        return self.bot.services.settings.discord.attachment_limit_bytes

    async def show(
        self,
        content: str,
        files: Sequence[render.Upload] = (),
        view: discord.ui.View | None = None,
    ) -> discord.Message | None:
        """Put this content (and files, and buttons) on the reply; returns the message shown.

        Waits first while Discord rate-limits the route (a 429 met by an earlier edit of this reply)."""
        if self.interaction is not None and time.monotonic() < self._token_deadline:
            interaction = self.interaction
            await self.bot.rate_limits.wait(
                "PATCH", f"/webhooks/{interaction.application_id}/{interaction.token}/messages/@original"
            )
            try:
                return await interaction.edit_original_response(
                    content=content, attachments=[upload.file() for upload in files], view=view
                )
            except discord.HTTPException as exc:
                if exc.status not in (401, 404) and exc.code not in EXPIRED_TOKEN_CODES:
                    raise
                log.info(
                    "interaction token for channel %s refused (%s); posting a new message",
                    self.channel_id,
                    exc,
                )
        self.interaction = None
        return await self._show_in_channel(content, files, view)

    async def _show_in_channel(
        self, content: str, files: Sequence[render.Upload], view: discord.ui.View | None
    ) -> discord.Message | None:
        if self.message is not None:
            message = self.message
            await self.bot.rate_limits.wait("PATCH", f"/channels/{message.channel.id}/messages/{message.id}")
            return await message.edit(
                content=content, attachments=[upload.file() for upload in files], view=view
            )
        channel = self.bot.get_channel(self.channel_id) or await self.bot.fetch_channel(self.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            log.error("channel %s cannot take messages; a result was not posted", self.channel_id)
            return None
        kwargs = {"view": view} if view is not None else {}
        await self.bot.rate_limits.wait("POST", f"/channels/{channel.id}/messages")
        self.message = await channel.send(
            content=content,
            files=[upload.file() for upload in files],
            allowed_mentions=discord.AllowedMentions(users=[discord.Object(self.user_id)]),
            **kwargs,
        )
        return self.message


class JobFollower:
    """Shows one job's place, progress and outcome on its reply."""

    def __init__(
        self, bot: Salon, job: JobRecord, reply: Reply, view: ResultView, spoiler: bool = False
    ) -> None:
        self.bot = bot
        self.view = view
        self.job = job
        self.reply = reply
        self.spoiler = spoiler
        self._latest: JobEvent | None = None
        self._preview: bytes | None = None  # the newest preview (not every progress event carries one)
        self._changed = asyncio.Event()
        self._last_edit = 0.0
        self._edit: asyncio.Task | None = None  # the progress edit on its way to Discord
        self.finishing = False  # showing the outcome: a stop waits for this rather than cut it short

    async def run(self) -> None:
        queue = self.bot.services.queue
        editor = asyncio.create_task(self._edit_progress())
        try:
            record = await queue.wait(self.job.id, self._on_event)
        except BaseException:
            if self._edit is not None:
                self._edit.cancel()  # the bot stops: nothing more goes to Discord
            raise
        finally:
            editor.cancel()  # it stops waiting for news; an edit it sent is not cut short (see below)
            await asyncio.gather(editor, return_exceptions=True)
        if self._edit is not None:
            # An edit in flight may be sleeping in discord.py's 429 retry: cancelling it would free the route
            # for the result edit before the rate limit is over. It ends (sent, or given up) first.
            await asyncio.gather(self._edit, return_exceptions=True)
        self.finishing = True  # from here a stop lets the outcome be posted and marked delivered
        await self._pause()
        await self.finish(record)

    @property
    def interval(self) -> float:
        """Seconds between two edits: the setting, or longer while many jobs share the channel."""
        sharing = self.bot.deliveries.active_in(self.reply.channel_id)
        return max(self.bot.services.settings.discord.progress_interval_s, CHANNEL_EDIT_S * sharing)

    def _on_event(self, event: JobEvent) -> None:
        if event.kind in ("queued", "started", "progress"):
            self._latest = event
            self._preview = event.preview_png or self._preview
            self._changed.set()

    async def _pause(self) -> None:
        wait = self._last_edit + self.interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _edit_progress(self) -> None:
        while True:
            await self._changed.wait()
            await self._pause()
            self._changed.clear()
            self._edit = asyncio.create_task(self._show_progress(self._latest, self._preview))
            await asyncio.shield(self._edit)  # cancelling the editor leaves the edit to end by itself

    async def _show_progress(self, event: JobEvent | None, preview: bytes | None) -> None:
        try:
            await self.reply.show(
                render.progress_content(self.job, str(self.reply.user_id), event),
                render.preview_file(preview),
            )
        except discord.HTTPException as exc:
            log.warning("job %d: a progress edit failed: %s", self.job.id, exc)
        finally:
            self._last_edit = time.monotonic()

    async def finish(self, record: JobRecord) -> None:
        """Show the outcome: images with their buttons, or why there are none; then mark it delivered."""
        services = self.bot.services
        user = str(self.reply.user_id)
        if record.status is JobStatus.DONE:  # its files, fetched here when a worker on another host made them
            record = await services.queue.results.local_job(record)
        if record.status is JobStatus.DONE and record.kind is JobKind.ANIMATE:
            files, note = await asyncio.to_thread(render.animation_files, record, self.reply.upload_limit)
            await self.reply.show(render.animation_content(record, user, note), files, view=None)
        elif record.status is JobStatus.DONE and record.kind is JobKind.XYZ:
            files, note = await asyncio.to_thread(plots.plot_files, record, self.reply.upload_limit)
            await self.reply.show(plots.plot_content(record, user, note), files, view=None)
        elif record.status is JobStatus.DONE and record.kind is JobKind.UPSCALE:  # the Extras tab's upscale
            files, note = await asyncio.to_thread(upscaled_files, record, self.reply.upload_limit)
            await self.reply.show(upscaled_content(record, user, note), files, view=None)
        elif record.status is JobStatus.DONE and record.kind is JobKind.MERGE:  # the checkpoint merger
            await self.reply.show(await merged_content(services.registry, record, user), view=None)
        elif record.status is JobStatus.DONE and record.kind.long:
            await self.reply.show(render.trained_content(record, user), view=None)
        elif record.status is JobStatus.DONE:
            images = await services.queue.results.local_images(await services.catalog.of_job(record.id))
            await self._show_images(record, images, user)
        else:
            kept = render.kept_content(record, services.settings)
            await self.reply.show(render.failure_content(record, user, kept), view=None)
        await services.queue.store.mark_delivered(record.id)
        log.info("job %d: %s shown in channel %s", record.id, record.status.value, self.reply.channel_id)

    async def _show_images(self, record: JobRecord, images: Sequence[ImageRecord], user: str) -> None:
        files = render.result_files(
            images, self.reply.upload_limit, self.spoiler or any(i.nsfw for i in images)
        )
        # Users react as soon as they see the images, before the edit's answer is back: until the images
        # are linked to their message, reactions in this channel wait for it (ResultLinks).
        async with self.bot.deliveries.links.linking(self.reply.channel_id):
            message = await self.reply.show(
                render.result_content(record, images, user), files, self.view(record, len(images))
            )
            if message is not None and images:
                await self.bot.services.catalog.set_message(
                    [image.id for image in images], str(message.channel.id), str(message.id)
                )


class Deliveries:
    """The jobs this bot process follows, so none is followed twice and lost replies are picked up.

    `result_view` makes the buttons under a finished job's images (bot.results.result_view)."""

    def __init__(self, bot: Salon, result_view: ResultView) -> None:
        self.bot = bot
        self.result_view = result_view
        self._tasks: dict[int, asyncio.Task] = {}
        self._channels: dict[int, int] = {}  # job id → channel of the jobs being followed
        self._followers: dict[int, JobFollower] = {}
        self.links = ResultLinks()

    def follow(self, job: JobRecord, reply: Reply, spoiler: bool = False) -> asyncio.Task:
        follower = JobFollower(self.bot, job, reply, self.result_view, spoiler)
        task = asyncio.create_task(self._run(follower))
        self._tasks[job.id] = task
        self._followers[job.id] = follower
        self._channels[job.id] = reply.channel_id
        return task

    def active_in(self, channel_id: int) -> int:
        """How many jobs this process follows in a channel (they share its edit budget)."""
        return sum(1 for channel in self._channels.values() if channel == channel_id)

    async def _run(self, follower: JobFollower) -> None:
        try:
            await follower.run()
        except Exception:
            log.exception("job %d: could not deliver the result", follower.job.id)
        finally:
            self._tasks.pop(follower.job.id, None)
            self._channels.pop(follower.job.id, None)
            self._followers.pop(follower.job.id, None)

    async def resume(self) -> int:
        """After a start: follow Discord jobs nobody follows, and post outcomes that were never shown."""
        store = self.bot.services.queue.store
        resumed = 0
        since = time.time() - LATE_DELIVERY_S
        for job in [*await store.undelivered(since), *await store.pending()]:
            if job.id in self._tasks or job.channel is None or not job.owner.isdigit():
                continue
            if job.guild and job.guild.isdigit() and not self.bot.carries_guild(int(job.guild)):
                continue  # its guild is on a shard another bot process runs ([discord] shard_ids)
            reply = Reply(self.bot, int(job.channel), int(job.owner))
            follower = JobFollower(self.bot, job, reply, self.result_view, bool(job.meta.get("spoiler")))
            self._followers[job.id] = follower
            if job.status.terminal:
                follower.finishing = True
                self._tasks[job.id] = asyncio.create_task(self._finish_late(follower, job))
            else:
                self._tasks[job.id] = asyncio.create_task(self._run(follower))
                self._channels[job.id] = reply.channel_id
            resumed += 1
        if resumed:
            log.info("following %d Discord jobs left over from before the start", resumed)
        return resumed

    async def _finish_late(self, follower: JobFollower, job: JobRecord) -> None:
        try:
            await follower.finish(job)
        except (discord.Forbidden, discord.NotFound) as exc:
            # The channel is gone or closed to the bot: it will not become deliverable by trying again.
            log.warning("job %d: its channel %s refuses the result (%s)", job.id, job.channel, exc)
            await self.bot.services.queue.store.mark_delivered(job.id)
        except Exception:
            log.exception("job %d: could not post the result after a restart", job.id)
        finally:
            self._tasks.pop(job.id, None)
            self._followers.pop(job.id, None)

    async def close(self, grace_s: float = 5.0) -> None:
        """Let outcomes being posted finish (a result shown but not marked delivered would be posted again
        after the next start), then stop following the rest (they are picked up at the next start)."""
        finishing = [self._tasks[j] for j, f in self._followers.items() if f.finishing and j in self._tasks]
        log.info(
            "stopping: %d results being posted, %d jobs left to the next start",
            len(finishing),
            len(self._tasks) - len(finishing),
        )
        if finishing:
            await asyncio.wait(finishing, timeout=grace_s)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
