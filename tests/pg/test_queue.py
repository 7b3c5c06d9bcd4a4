"""The job queue on PostgreSQL: the SQLite queue's tests re-run with `[database] url` set (the same
`JobQueue`, the store picked by the composition root)."""

from __future__ import annotations

import psycopg
import pytest

from config import load_settings
from jobs.queue import JobQueue
from jobs.records import JobStatus
from tests.jobs.test_queue import (  # noqa: F401  (the same tests, on the `make_queue` fixture below)
    req,
    test_a_job_runs_to_done_with_events_and_an_a1111_png,
    test_cancel_a_queued_job_and_a_running_one,
    test_cancel_from_another_process_stops_the_running_job,
    test_img2img_input_is_stored_when_accepted,
    test_per_person_limit_is_a_clear_error,
    test_random_seeds_are_fixed_when_accepted,
    test_same_idempotency_key_is_one_job,
    test_shutdown_puts_the_running_job_back_without_counting_the_attempt,
    test_submit_is_the_one_check_with_the_limits_that_apply,
    test_ten_one_and_one_jobs_are_served_in_turns,
    test_waiting_jobs_run_as_one_batch_with_the_same_pixels_as_alone,
)
from tests.queues import open_queue


@pytest.fixture
async def make_queue(tmp_path, engine, postgres_url):
    """As tests/jobs/conftest.py's, over one PostgreSQL database."""
    opened = []

    async def make(**queue_settings) -> JobQueue:
        options = {"preview_every_steps": 2, **queue_settings}
        settings = load_settings(
            None, data_dir=tmp_path / "data", queue=options, database={"url": postgres_url}
        )
        queue = await open_queue(settings, engine_factory=lambda: engine)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()


async def test_the_queue_runs_on_postgresql(make_queue):
    from jobs.pg_store import PgJobStore

    assert isinstance((await make_queue()).store, PgJobStore)


async def test_a_job_whose_cancel_was_asked_is_not_rerun_after_its_lease_expired(make_queue, postgres_url):
    queue = await make_queue()
    job = await queue.submit(req(), "ann")
    await queue.store.claim([job.id])  # running when its worker died…
    await queue.store.request_cancel(job.id)  # …and its owner had asked to cancel it
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE jobs SET lease_until = 0")
    await queue.run_until_empty()
    assert (await queue.store.get(job.id)).status is JobStatus.CANCELLED
