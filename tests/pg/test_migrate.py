"""`salon db migrate-to URL`: an installation filled through the real SQLite stores, copied into PostgreSQL, reads
the same through the PostgreSQL stores; a second run, a bad URL, a running worker are refused in one line; the
SQLite files are never changed."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os

import psycopg
import pytest
from PIL import Image

from catalog.catalog import Catalog
from catalog.records import NewImage
from cli.database import MigrationRefused, Store, _migrate
from cli.main import main
from community.pg_store import PgCommunityStore
from community.store import CommunityStore
from config import load_settings
from jobs.pg_store import PgJobStore
from jobs.records import JobKind, JobStatus
from jobs.store import JobStore
from tests.postgres import _free_port

LIMITS = {"max_pending_per_user": 100, "max_queued": 100}
SECRET = b"k" * 32


@pytest.fixture
def installation(tmp_path):
    """A data folder used for a while: jobs in every state, community settings, catalog rows with ratings."""
    settings = load_settings(None, data_dir=tmp_path / "data")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{settings.data_dir}"\n')
    asyncio.run(_fill(settings))
    return settings, config


async def _fill(settings) -> None:
    jobs = await JobStore.open(settings.queue_db)
    ids = []
    for n, owner in enumerate(["ann", "bob", "ann", "cy", "bob", "dee"]):
        job, _ = await jobs.submit(
            JobKind.IMAGINE, owner, {"params": {"prompt": f"cat {n}", "seed": n}}, guild="100", channel="7",
            idempotency_key=f"k{n}", batch_key=f"b{n % 2}", model="demo", meta={"reply": str(n)}, **LIMITS,
        )  # fmt: skip
        ids.append(job.id)
    await jobs.claim(ids[:4])
    await jobs.transition(
        ids[0], JobStatus.DONE, [JobStatus.RUNNING], results=("outputs/a.png", "outputs/b.png")
    )
    await jobs.transition(ids[1], JobStatus.FAILED, [JobStatus.RUNNING], error="out of memory")
    await jobs.request_cancel(ids[2])
    await jobs.transition(ids[2], JobStatus.CANCELLED, [JobStatus.RUNNING])
    await jobs.mark_delivered(ids[0])  # ids[3] stays running (its worker died), ids[4:] stay queued
    async with jobs.transaction() as db:  # the newest job was purged: its id is never given again
        await db.execute("DELETE FROM jobs WHERE id = ?", (ids[5],))
    await jobs.close()

    community = await CommunityStore.open(settings.community_db)
    await community.set("100", "max_steps", "30", "mod")
    await community.set("100", "banned_words", "spider, snake", "mod", channel="7")
    await community.set("100", "gallery_min_rank", "4.5", "mod")
    await community.set_schedule("100", "digest", "0 9 * * *", "mod", {"period": "daily"})
    await community.ran("100", "digest", 1_700_000_000.5)
    await community.claim_digest("100", "2024-W01", "8")
    await community.record_digest("100", "2024-W01", "999")
    await community.web_link("100", "mod", SECRET)
    session = await community.new_browse("100", "7", "ann", {"keyword": "cat"})
    await community.move_browse(session.id, 2, 5, "555")
    await community.close()

    catalog = await Catalog.open(settings.catalog_dir)
    outputs = settings.data_dir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    for n in range(4):
        path = outputs / f"{n}.png"
        Image.new("RGB", (16, 16), (n * 40, 90, 160)).save(path)
        info = f"a cat {n}\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: {n}, Size: 16x16"
        record = await catalog.add(NewImage(str(path), "100", "501", info, created=1_700_000_000 + n))
        await catalog.rate("100", record.id, "502", 5 - n % 2)
    await catalog.favourite("100", 1, "502")
    await catalog.galleries.create("100", "Cats", "501")
    await catalog.galleries.add("100", "Cats", [1, 3], "501")
    await catalog.delete("100", [4])  # in the recycle bin
    await catalog.close()


def _digests(settings) -> dict[str, str]:
    """The SQLite files' bytes, to show they are never changed."""
    files = [settings.queue_db, settings.community_db, settings.catalog_dir / "catalog.db"]
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


async def _same_reads(settings, url: str) -> None:
    """What the SQLite stores answer, the PostgreSQL stores answer too."""
    jobs, pg_jobs = await JobStore.open(settings.queue_db), await PgJobStore.open(url)
    try:
        old = await jobs.recent(100)
        assert [job.id for job in old] == [5, 4, 3, 2, 1]
        assert await pg_jobs.recent(100) == old  # ids, statuses, requests, results, attempts, owners, meta
        assert await pg_jobs.queued() == await jobs.queued()
        assert await pg_jobs.undelivered() == await jobs.undelivered()
        new, _ = await pg_jobs.submit(JobKind.IMAGINE, "eve", {}, **LIMITS)
        assert new.id == 7  # past the highest id SQLite ever gave (6, purged)
        assert await pg_jobs.recover(3) == ([4], [])  # the job left running in queue.db goes back in line
    finally:
        await jobs.close()
        await pg_jobs.close()
    community, pg_community = (
        await CommunityStore.open(settings.community_db),
        await PgCommunityStore.open(url),
    )
    try:
        for channel in (None, "7"):
            assert await pg_community.values("100", channel) == await community.values("100", channel)
            assert await pg_community.effective("100", channel) == await community.effective("100", channel)
        assert await pg_community.schedules() == await community.schedules()
        assert await pg_community.digest("100", "2024-W01") == await community.digest("100", "2024-W01")
        token = await community.web_link("100", "mod", SECRET)
        assert await pg_community.guild_of_token(token, SECRET) == "100"  # links handed out keep working
        assert await pg_community.browse(1) == await community.browse(1)
        assert (await pg_community.new_browse("100", "7", "bob", {})).id == 2
    finally:
        await community.close()
        await pg_community.close()


async def test_the_queue_and_the_community_store_are_copied_and_read_the_same(installation, postgres_url):
    settings, _ = installation
    before = _digests(settings)
    stores = [
        Store("queue", settings.queue_db, "jobs.pg_copy", "copy_jobs"),
        Store("community", settings.community_db, "community.pg_copy", "copy_community"),
    ]
    counts = await _migrate(postgres_url, stores)
    assert ("jobs", 5, 5) in counts and ("community_settings", 3, 3) in counts
    assert ("browse_sessions", 1, 1) in counts and ("web_links", 1, 1) in counts
    assert all(source == target for _, source, target in counts)
    await _same_reads(settings, postgres_url)
    assert _digests(settings) == before
    with pytest.raises(MigrationRefused, match=r"already holds Salon data: jobs \(6 rows\)"):
        await _migrate(postgres_url, stores)


async def test_a_store_without_its_copier_is_named_and_nothing_is_copied(installation, postgres_url):
    settings, _ = installation
    stores = [
        Store("queue", settings.queue_db, "jobs.pg_copy", "copy_jobs"),
        Store("catalog", settings.catalog_dir / "catalog.db", "catalog.pg_nowhere", "copy_catalog"),
    ]
    with pytest.raises(
        MigrationRefused, match=r"\(catalog.pg_nowhere.copy_catalog is missing\); nothing was"
    ):
        await _migrate(postgres_url, stores)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT to_regclass('jobs')").fetchone() == (None,)  # not even the tables


def test_migrate_to_copies_everything_and_a_second_run_refuses(installation, postgres_url, capsys):
    from app.stores import open_catalog

    settings, config = installation
    before = _digests(settings)
    assert main(["--config", str(config), "db", "migrate-to", postgres_url]) == 0
    out = capsys.readouterr().out
    for table in ("jobs", "images", "ratings", "favourites", "galleries", "gallery_images", "recycle_bin"):
        assert table in out
    assert f'url = "{postgres_url}"' in out
    asyncio.run(_same_reads(settings, postgres_url))

    async def same_catalog() -> None:
        on_pg = settings.model_copy(
            update={"database": settings.database.model_copy(update={"url": postgres_url})}
        )
        old = await Catalog.open(settings.catalog_dir)
        try:
            async with open_catalog(on_pg) as new:
                for image_id in range(1, 5):
                    assert await new.get("100", image_id) == await old.get("100", image_id)
                    assert await new.ratings(image_id) == await old.ratings(image_id)
                    assert await new.is_favourite(image_id, "502") == await old.is_favourite(image_id, "502")
                assert await new.galleries.list("100") == await old.galleries.list("100")
                assert await new.restore("100", [4]) == 1  # the recycle bin came along
        finally:
            await old.close()

    asyncio.run(same_catalog())
    assert _digests(settings) == before
    assert main(["--config", str(config), "db", "migrate-to", postgres_url]) == 1
    error = capsys.readouterr().err
    assert "already holds Salon data" in error and "jobs (6 rows)" in error and "Traceback" not in error


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://salon@db/salon", "URL: 'mysql://salon@db/salon' is not a PostgreSQL URL"),
        ("postgresql://salon:hunter2@127.0.0.1:{port}/salon", "cannot reach the database at"),
    ],
)
def test_a_bad_url_is_one_clear_line_and_exit_1(installation, capsys, url, says):
    """(The closed port is picked when the test runs, not when tests are collected.)"""
    _, config = installation
    url = url.replace("{port}", str(_free_port()))
    assert main(["--config", str(config), "db", "migrate-to", url]) == 1
    captured = capsys.readouterr()
    assert says in captured.err and "hunter2" not in captured.err and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and captured.out == ""


def test_a_running_worker_is_refused(installation, postgres_url, capsys):
    settings, config = installation
    fd = os.open(settings.data_dir / "worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as jobs/running.py's worker holds it
        assert main(["--config", str(config), "db", "migrate-to", postgres_url]) == 1
    finally:
        os.close(fd)
    assert "a Salon worker is running" in capsys.readouterr().err
