"""What only the community store on PostgreSQL has to show: processes claiming one digest at once (exactly one
wins), migrations applied once under the advisory lock, a newer schema refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e .)")

from community.pg_schema import VERSIONS, CommunitySchemaTooNew  # noqa: E402
from community.pg_store import PgCommunityStore  # noqa: E402

DEADLINE_S = 120.0  # generous: the claimants start Python and open their pools on a loaded machine
ROOT = Path(__file__).resolve().parents[2]

CLAIMANT = textwrap.dedent(
    """
    import asyncio, pathlib, sys, time
    from community.pg_store import PgCommunityStore

    async def main(url, ready, go):
        store = await PgCommunityStore.open(url)
        pathlib.Path(ready).touch()
        deadline = time.monotonic() + 120
        while not pathlib.Path(go).exists():  # all claimants open first, then claim together
            if time.monotonic() > deadline:
                sys.exit("no go signal")
            await asyncio.sleep(0.005)
        won = await store.claim_digest("g", "2024-W10", sys.argv[4])
        print("won" if won else "lost", flush=True)
        await store.close()

    asyncio.run(main(*sys.argv[1:4]))
    """
)


def test_of_processes_claiming_one_digest_at_once_exactly_one_wins(postgres_url, tmp_path):
    asyncio.run(_open_and_close(postgres_url))  # the tables exist before the race (as after any start)
    go = tmp_path / "go"
    claimants = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMANT, postgres_url, str(tmp_path / f"ready{i}"), str(go), f"chan{i}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
            assert all(c.poll() is None for c in claimants), [c.communicate() for c in claimants]
            assert time.monotonic() < deadline, "the claimants did not open the store in time"
            time.sleep(0.05)
        go.touch()
        outputs = [c.communicate(timeout=DEADLINE_S) for c in claimants]
    finally:
        for claimant in claimants:
            if claimant.poll() is None:
                claimant.kill()
    assert [c.returncode for c in claimants] == [0] * 4, outputs
    results = [out.strip() for out, _ in outputs]
    assert sorted(results) == ["lost", "lost", "lost", "won"]
    winner = results.index("won")
    digest = asyncio.run(_digest(postgres_url))
    assert digest["channel"] == f"chan{winner}"  # the row is the winner's


async def _open_and_close(url: str) -> None:
    await (await PgCommunityStore.open(url)).close()


async def _digest(url: str) -> dict:
    store = await PgCommunityStore.open(url)
    try:
        return await store.digest("g", "2024-W10")
    finally:
        await store.close()


async def test_migrations_run_once_when_processes_start_together_and_a_newer_schema_is_refused(postgres_url):
    import psycopg

    stores = await asyncio.gather(*(PgCommunityStore.open(postgres_url) for _ in range(4)))
    for opened in stores:
        await opened.close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        assert [row[0] for row in db.execute(f"SELECT version FROM {VERSIONS}").fetchall()] == [1]
        db.execute(f"INSERT INTO {VERSIONS} VALUES (99, 'from the future', 0)")
    with pytest.raises(CommunitySchemaTooNew, match="schema version 99, newer than this Salon knows"):
        await PgCommunityStore.open(postgres_url)


async def test_the_queue_and_the_community_store_share_one_database(postgres_url):
    from jobs.pg_store import PgJobStore

    jobs, community = await asyncio.gather(PgJobStore.open(postgres_url), PgCommunityStore.open(postgres_url))
    try:
        await community.set("g", "max_steps", "12", "mod")
        assert (await community.effective("g")).max_steps == 12
        assert await jobs.queued() == []
    finally:
        await jobs.close()
        await community.close()
