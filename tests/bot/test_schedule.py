"""Scheduled work: digests posted once per guild and period (also across a crash between posting and recording
it), schedules that survive a restart, missed runs made up once, and the catalog's upkeep."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.schedule import UTC, cron_trigger, digest_cron, digest_title, last_fire, period_label
from core.errors import InvalidRequest
from tests.bot.conftest import ANN, BOB, CHANNEL, GALLERY_CHANNEL, GUILD, MOD


def test_crons_periods_and_missed_runs():
    assert digest_cron("daily", 9) == "0 9 * * *" and digest_cron("weekly", 18, "fri") == "0 18 * * fri"
    with pytest.raises(InvalidRequest, match="hour"):
        digest_cron("daily", 24)
    with pytest.raises(InvalidRequest, match="not a crontab line"):
        cron_trigger("every tuesday")
    trigger = cron_trigger("0 18 * * sun")
    now = dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a Saturday
    assert last_fire(trigger, now, dt.timedelta(days=14)) == dt.datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
    assert last_fire(trigger, now, dt.timedelta(days=3)) is None
    assert period_label("weekly", now) == "2026-W48" and period_label("daily", now) == "2026-11-28"


async def _rated_images(salon, scores: list[int]) -> list[int]:
    ids = []
    for seed, score in enumerate(scores, 1):
        [image] = await salon.images_of(await salon.result(await salon.imagine(seed=seed)))
        await salon.services.catalog.rate(str(GUILD), image.id, str(BOB), score)
        ids.append(image.id)
    return ids


def _digests(salon, title: str):
    return [m for m in salon.fake.channel_messages(GALLERY_CHANNEL) if m.content.startswith(title)]


async def test_a_digest_is_posted_once_even_across_a_crash_between_posting_and_recording(salon):
    community = salon.services.community
    await community.set(str(GUILD), "gallery_channel", str(GALLERY_CHANNEL), str(MOD))
    ids = await _rated_images(salon, [3, 5, 4])
    fired = dt.datetime.now(UTC) + dt.timedelta(minutes=1)
    title = digest_title("weekly", period_label("weekly", fired))
    message = await salon.bot.schedule.post_digest(str(GUILD), "weekly", fired)
    [posted] = _digests(salon, title)
    assert posted.id == message.id
    lines = posted.content.splitlines()
    assert [f"#{i}" in line for line, i in zip(lines[1::2], [ids[1], ids[2], ids[0]], strict=True)] == [
        True
    ] * 3
    assert "★ 5.0 (1)" in lines[1] and len(posted.attachments) == 3
    assert await salon.bot.schedule.post_digest(str(GUILD), "weekly", fired) is None
    assert len(_digests(salon, title)) == 1
    # The next week: the digest is claimed and sent, then the process dies before it records the message.
    later = fired + dt.timedelta(days=7)
    label = period_label("weekly", later)
    later_title = digest_title("weekly", label)
    channel = salon.bot.get_channel(GALLERY_CHANNEL)
    await community.claim_digest(str(GUILD), label, str(GALLERY_CHANNEL))
    sent = await salon.bot.schedule.send_digest(channel, later_title, [])
    await salon.restart()
    assert await salon.bot.schedule.post_digest(str(GUILD), "weekly", later) is None
    assert len(_digests(salon, later_title)) == 1
    assert (await salon.services.community.digest(str(GUILD), label))["message"] == str(sent.id)


async def test_digest_schedules_survive_a_restart_and_missed_runs_are_made_up_once(salon):
    fake = salon.fake
    refused = await fake.slash(ANN, CHANNEL, "gallery", {"period": "weekly"}, subcommand="digest")
    await refused.wait_done()
    assert "only moderators" in refused.original.content
    no_channel = await fake.slash(MOD, CHANNEL, "gallery", {"period": "weekly"}, subcommand="digest")
    await no_channel.wait_done()
    assert "choose the gallery channel first" in no_channel.original.content
    await salon.services.community.set(str(GUILD), "gallery_channel", str(GALLERY_CHANNEL), str(MOD))
    chosen = await fake.slash(MOD, CHANNEL, "gallery", {"period": "daily", "hour": 6}, subcommand="digest")
    await chosen.wait_done()
    assert "every day at 6:00 UTC" in chosen.original.content
    job = salon.bot.schedule.scheduler.get_job(f"digest:{GUILD}")
    assert job is not None and "hour='6'" in str(job.trigger)
    assert salon.bot.schedule.scheduler.get_job(f"digest-late:{GUILD}") is None  # just set: nothing missed
    # The bot was down when the digest should have fired: at the next start it runs once, now.
    await salon.services.community.ran(str(GUILD), "digest", 0)
    await salon.restart()
    job = salon.bot.schedule.scheduler.get_job(f"digest:{GUILD}")
    assert job is not None and "hour='6'" in str(job.trigger)
    await fake.wait_for(lambda: _digests(salon, "🏆 Top of the day"), 20, "the missed digest")
    assert len(_digests(salon, "🏆 Top of the day")) == 1
    await salon.restart()  # recorded: not posted again
    assert len(_digests(salon, "🏆 Top of the day")) == 1
    off = await fake.slash(MOD, CHANNEL, "gallery", {"period": "off"}, subcommand="digest")
    await off.wait_done()
    assert salon.bot.schedule.scheduler.get_job(f"digest:{GUILD}") is None
    await salon.restart()
    assert salon.bot.schedule.scheduler.get_job(f"digest:{GUILD}") is None


async def test_upkeep_purges_old_deletions_optimizes_and_checks(salon):
    import time

    catalog = salon.services.catalog
    [image] = await salon.images_of(await salon.result(await salon.imagine(seed=9)))
    await catalog.delete(str(GUILD), [image.id])
    await salon.bot.schedule.upkeep("purge")
    assert (await catalog.get(str(GUILD), image.id)) is not None  # deleted just now: kept in the bin
    async with catalog.store.transaction() as db:
        await db.execute(
            "UPDATE images SET deleted_at = ? WHERE id = ?", (time.time() - 40 * 86400, image.id)
        )
    await salon.bot.schedule.upkeep("purge")
    assert await catalog.get(str(GUILD), image.id) is None
    await salon.bot.schedule.upkeep("optimize")
    await salon.bot.schedule.upkeep("check")
    jobs = {job.id for job in salon.bot.schedule.scheduler.get_jobs()}
    assert {"upkeep:purge", "upkeep:optimize", "upkeep:check"} <= jobs


class _Lock:
    """A schedule lock that says what the test says (jobs/pg_locks.py's on PostgreSQL)."""

    def __init__(self, held: bool) -> None:
        self.held = held

    async def acquire(self) -> bool:
        return self.held


async def test_only_the_holder_of_the_schedule_lock_runs_the_schedule_and_another_takes_over(settings):
    import asyncio
    from types import SimpleNamespace

    from bot.schedule import Scheduler

    async def schedules():
        return []

    lock = _Lock(held=False)
    services = SimpleNamespace(
        settings=settings, schedule_lock=lock, community=SimpleNamespace(schedules=schedules)
    )
    schedule = Scheduler(SimpleNamespace(services=services, extensions_found=[]))
    schedule.lock_retry_s = 0.01

    async def until(condition) -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await schedule.start()
    try:
        assert not schedule.active and schedule.scheduler.get_jobs() == []  # another process runs it
        lock.held = True  # that process's connection ended: this one takes over
        await until(lambda: schedule.active)
        assert {"upkeep:purge", "upkeep:optimize", "upkeep:check"} <= {
            j.id for j in schedule.scheduler.get_jobs()
        }
        lock.held = False  # this one's connection was lost: it pauses, and resumes once it holds it again
        await until(lambda: not schedule.active)
        lock.held = True
        await until(lambda: schedule.active)
    finally:
        schedule.stop()
