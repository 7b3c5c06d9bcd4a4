"""Two hosts on one PostgreSQL database, stood for by two data folders: a `salon worker` process with data
folder A runs a job submitted by a reader with data folder B (this test's process, as the bot's host).

The reader sees the worker's steps and JPEG previews arrive by LISTEN/NOTIFY (jobs/pg_notify.py) as the
same progress events a local worker publishes, and once A's folder is out of its reach gets the result PNGs
from the blob store into its own data folder, byte-identical with their infotext (jobs/results.py). Waits
end on rows, events and exits (tests/jobs/processes.py), never on fixed budgets.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import psycopg

from app.worker import open_queue
from config import load_settings
from engine.infotext_files import read_infotext
from engine.requests import GenerationRequest
from jobs.pg_notify import CHANNEL, preview_key
from jobs.records import EventKind
from tests.jobs.processes import start_worker, wait_for, wait_for_exit
from tests.pg.test_workers import activity


def configure(folder: Path, url: str) -> Path:
    folder.mkdir(parents=True)
    config = folder / "salon.toml"
    config.write_text(
        f'data_dir = "{folder / "data"}"\n'
        "[queue]\nmax_batch_images = 1\npoll_interval_s = 0.1\npreview_every_steps = 2\n"
        "[speed]\nwarmup = false\n"
        f'[database]\nurl = "{url}"\n'
    )
    return config


def listeners(url: str) -> list[int]:
    """The backends that LISTEN on the progress channel (their last statement)."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE query = %s AND pid <> pg_backend_pid()",
            (f"LISTEN {CHANNEL}",),
        )
        return [pid for (pid,) in rows]


def status(url: str, job_id: int) -> str:
    with psycopg.connect(url) as db:
        return db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


def blob_keys(url: str) -> list[str]:
    with psycopg.connect(url) as db:
        return [key for (key,) in db.execute("SELECT key FROM blobs ORDER BY key")]


def test_steps_previews_and_result_files_of_a_worker_on_another_host(tmp_path, postgres_url):
    worker_config = configure(tmp_path / "A", postgres_url)
    reader_settings = load_settings(configure(tmp_path / "B", postgres_url))
    log = tmp_path / "worker.log"
    watch = activity(postgres_url, log)

    async def scenario():
        async with open_queue(reader_settings) as queue:  # the bot's host: it runs no worker
            request = GenerationRequest("a red circle", seed=7, width=64, height=64, steps=12)
            job = await queue.submit(request, "ann")
            events = queue.subscribe(job.id)
            await asyncio.to_thread(wait_for, lambda: listeners(postgres_url), "the listener", watch)
            worker = start_worker(worker_config, log, "--name", "hostA")
            assert await asyncio.to_thread(wait_for_exit, worker, "the worker's exit", watch, log) == 0
            assert status(postgres_url, job.id) == "done", log.read_text()[-3000:]
            received = []
            while not events.empty():
                received.append(events.get_nowait())
            record = await queue.store.get(job.id)
            made = {path: Path(path).read_bytes() for path in record.results}
            texts = {path: read_infotext(path) for path in record.results}
            shutil.move(tmp_path / "A", tmp_path / "A-elsewhere")  # host A's disk, out of the reader's reach
            fetched = await queue.results.local_job(record)
            return received, made, texts, fetched

    received, made, texts, fetched = asyncio.run(scenario())

    steps = [event for event in received if event.kind == EventKind.PROGRESS]
    assert steps and steps[-1].step == steps[-1].total == 12, received
    assert [e.step for e in steps] == sorted(e.step for e in steps)
    previews = [event.preview_png for event in steps if event.preview_png]
    assert previews and all(preview.startswith(b"\xff\xd8") for preview in previews)  # small JPEGs

    assert len(made) == 1 and len(fetched.results) == 1
    for original, local in zip(made, fetched.results, strict=True):
        local_path = Path(local)
        assert local_path.is_relative_to(os.path.realpath(tmp_path / "B" / "data"))
        assert local_path.relative_to(os.path.realpath(tmp_path / "B" / "data")) == Path(
            original
        ).relative_to(tmp_path / "A" / "data")  # the same relative path under the reader's data folder
        assert local_path.read_bytes() == made[original]
        assert read_infotext(local_path) == texts[original] and "Seed: 7" in texts[original]
    keys = blob_keys(postgres_url)
    assert keys == [str(Path(original).relative_to(tmp_path / "A" / "data")) for original in made]
    assert preview_key(fetched.id) not in keys  # the preview went when the job ended


def test_the_listener_connects_again_when_its_connection_drops(tmp_path, postgres_url):
    settings = load_settings(configure(tmp_path / "B", postgres_url))

    async def scenario():
        async with open_queue(settings):
            [first] = await asyncio.to_thread(wait_for, lambda: listeners(postgres_url), "LISTEN", tuple)
            with psycopg.connect(postgres_url) as db:
                db.execute("SELECT pg_terminate_backend(%s)", (first,))

            def again():
                found = listeners(postgres_url)
                return found if found and first not in found else None

            [second] = await asyncio.to_thread(wait_for, again, "LISTEN again", tuple)
            assert second != first

    asyncio.run(scenario())
