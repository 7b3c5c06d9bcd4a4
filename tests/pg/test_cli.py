"""`salon workers` and `salon queue` on a shared PostgreSQL queue: who runs what."""

from __future__ import annotations

import asyncio

from cli.main import main
from jobs.pg_store import PgJobStore
from jobs.records import JobKind
from tests.pg.test_store import LIMITS


def test_workers_and_the_queue_say_which_worker_runs_each_job(tmp_path, postgres_url, capsys):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[database]\nurl = "{postgres_url}"\n')

    async def a_worker_runs_a_job() -> PgJobStore:
        store = await PgJobStore.open(postgres_url, worker_name="box1")
        job, _ = await store.submit(JobKind.IMAGINE, "ann", {"params": {"prompt": "a cat"}}, **LIMITS)
        await store.claim([job.id])
        await store._beat(lambda: ("cuda:0", ["sd15"]))
        await store._pool.close()  # gone without saying so: its row stays, its heartbeat ages
        return store

    asyncio.run(a_worker_runs_a_job())
    assert main(["--config", str(config), "workers"]) == 0
    listed = capsys.readouterr().out
    assert "box1" in listed and "cuda:0" in listed and "sd15" in listed and "ago" in listed
    assert main(["--config", str(config), "queue"]) == 0
    queue = capsys.readouterr().out
    assert "worker" in queue and "box1" in queue and "running" in queue


def test_without_a_database_url_workers_says_how_to_share_a_queue(tmp_path, capsys):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert main(["--config", str(config), "workers"]) == 0
    assert "set [database] url" in capsys.readouterr().out
