"""Several hosts for real: two `salon worker` processes, each in its own network namespace with its own data
folder, reach one PostgreSQL server over TCP through veth pairs. A host that dies (SIGKILL) or whose link is
cut (`ip link set … down`) mid-job loses nothing: the job finishes on the other worker once its lease has
expired, with exactly one result and one catalog row, and a cut worker coming back late has its completion
refused (the fence), says so and carries on.

Needs root and `ip netns` (skipped with the reason otherwise). The namespaces use private 10.x addresses on
their own veths only; everything is torn down at the end, even on failure. Waits end on rows and log lines
(tests/jobs/processes.py), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from config import load_settings
from engine.requests import GenerationRequest
from tests.jobs.processes import signs_of_life, wait_for, wait_for_exit
from tests.pg.counting import catalog_paths
from tests.postgres import PostgresServer, postgres_bindir
from tests.queues import open_queue

LEASE_S = 3


@dataclass(frozen=True)
class Host:
    """A worker's host: a network namespace joined to the database's (the root namespace) by a veth pair."""

    name: str
    namespace: str
    link: str  # the veth end on the database's side: cutting it cuts the host off
    gateway: str  # the database's address as this host sees it


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _quietly_ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=False, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def hosts() -> Iterator[list[Host]]:
    """Two hosts, "a" and "b" (skipped with the reason without root or `ip netns`)."""
    if os.geteuid() != 0:
        pytest.skip("several hosts need root (network namespaces)")
    if shutil.which("ip") is None:
        pytest.skip("several hosts need `ip netns` (iproute2) to make network namespaces")
    tag, octet = uuid.uuid4().hex[:6], random.randint(64, 250)
    made: list[Host] = []
    try:
        for number, name in enumerate("ab", start=1):
            host = Host(name, f"salon-{tag}-{name}", f"s{tag}{name}o", f"10.{octet}.{number}.1")
            try:
                _ip("netns", "add", host.namespace)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"`ip netns add` is not available here: {exc.stderr.strip()}")
            made.append(host)
            inside = f"s{tag}{name}i"
            _ip("link", "add", host.link, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", host.namespace)
            _ip("addr", "add", f"{host.gateway}/24", "dev", host.link)
            _ip("link", "set", host.link, "up")
            _ip("-n", host.namespace, "addr", "add", f"10.{octet}.{number}.2/24", "dev", inside)
            _ip("-n", host.namespace, "link", "set", inside, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:
            _quietly_ip("netns", "del", host.namespace)  # takes its veth end, and so the pair, with it
            _quietly_ip("link", "del", host.link)


@pytest.fixture(scope="module")
def server(hosts: list[Host]) -> Iterator[PostgresServer]:
    """A PostgreSQL server listening on 127.0.0.1 and on the hosts' gateways (their networks trusted)."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package")
    root = Path(tempfile.mkdtemp(prefix="salon-pg-hosts-"))
    networks = [host.gateway.rsplit(".", 1)[0] + ".0/24" for host in hosts]
    running = PostgresServer(bindir, root, [host.gateway for host in hosts], networks)
    try:
        running.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"no PostgreSQL server could be started on the hosts' addresses: {exc}")
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


class Cluster:
    """One database, a worker per host (each its own data folder), and the bot's side that submits."""

    def __init__(self, tmp_path: Path, server: PostgresServer, hosts: list[Host]) -> None:
        self.url = server.create_database()  # as the bot's host reaches it (loopback)
        asyncio.run(_migrate(self.url))  # the tables exist before the workers start (the test reads them)
        self.tmp = tmp_path
        self.hosts = {host.name: host for host in hosts}
        database = self.url.rsplit("/", 1)[1]
        self.configs = {
            host.name: self._configure(
                host.name, f"postgresql://postgres@{host.gateway}:{server.port}/{database}"
            )
            for host in hosts
        }
        self.bot = self._configure("bot", self.url)
        self.logs = {host.name: tmp_path / f"{host.name}.log" for host in hosts}
        self.workers: dict[str, subprocess.Popen] = {}

    def _configure(self, name: str, url: str) -> Path:
        config = self.tmp / f"{name}.toml"
        config.write_text(
            f'data_dir = "{self.tmp / name}"\n'
            "[queue]\nmax_batch_images = 1\npoll_interval_s = 0.1\n"
            "[speed]\nwarmup = false\n"
            f'[database]\nurl = "{url}"\nlease_s = {LEASE_S}\n'
        )
        return config

    def start(self, name: str) -> subprocess.Popen:
        """`salon worker --name NAME` inside the host's namespace."""
        env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
        command = [
            "ip", "netns", "exec", self.hosts[name].namespace,
            sys.executable, "-m", "cli.main", "--config", str(self.configs[name]), "worker", "--name", name,
        ]  # fmt: skip
        with open(self.logs[name], "ab") as out:
            self.workers[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        return self.workers[name]

    def stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    def submit(self, steps: int) -> int:
        async def run() -> int:
            queue = await open_queue(load_settings(self.bot))
            try:
                request = GenerationRequest(
                    "a red circle on a blue background", width=64, height=64, steps=steps
                )
                return (await queue.submit(request, "ann")).id
            finally:
                await queue.close()

        return asyncio.run(run())

    def rows(self) -> list[dict]:
        with psycopg.connect(self.url, row_factory=dict_row) as db:
            return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()

    def job(self, job_id: int) -> dict:
        return next(row for row in self.rows() if row["id"] == job_id)

    def live(self) -> set[str]:
        with psycopg.connect(self.url) as db:
            rows = db.execute("SELECT name FROM workers WHERE stopped_at IS NULL").fetchall()
        return {name for (name,) in rows}

    def watch(self):
        """Signs of life: the workers' logs, and the rows they change (progress, phases, heartbeats)."""

        def seen():
            with psycopg.connect(self.url) as db:
                jobs = db.execute("SELECT status, phase, progress, worker FROM jobs ORDER BY id").fetchall()
                beats = db.execute("SELECT heartbeat FROM workers ORDER BY claim").fetchall()
            return signs_of_life(*self.logs.values()), jobs, beats

        return seen

    def wait(self, condition, what: str, name: str | None = None):
        worker = self.workers.get(name) if name else None
        return wait_for(condition, what, self.watch(), worker, self.logs.get(name) if name else None)

    def running_on(self, job_id: int) -> str | None:
        """The worker denoising the job, once one is."""
        row = self.job(job_id)
        return row["worker"] if row["status"] == "running" and row["phase"] == "txt2img" else None

    def result_files(self, job_id: int) -> list[Path]:
        """The job's PNG files in every host's data folder (the bot's included)."""
        return sorted(
            path for name in [*self.hosts, "bot"] for path in (self.tmp / name).rglob(f"{job_id:05d}-*.png")
        )

    def catalog_rows(self, job_id: int) -> int:
        """The job's images in the catalog (on PostgreSQL, or in any host's own catalog.db)."""
        return len(catalog_paths(self.url, [self.tmp / name for name in [*self.hosts, "bot"]], job_id))

    def assert_exactly_once(self, job_id: int, survivor: str) -> None:
        row = self.job(job_id)
        assert row["status"] == "done" and row["worker"] == survivor, row
        [result] = row["results"]
        assert Path(result).is_file() and Path(result).is_relative_to(self.tmp / survivor)
        assert self.result_files(job_id) == [Path(result)]  # no second copy on any host
        assert self.catalog_rows(job_id) == 1


async def _migrate(url: str) -> None:
    from jobs.pg_store import PgJobStore

    await (await PgJobStore.open(url)).close()


@pytest.fixture
def cluster(tmp_path, server, hosts) -> Iterator[Cluster]:
    made = Cluster(tmp_path, server, hosts)
    try:
        yield made
    finally:
        made.stop_all()
        for host in hosts:
            _quietly_ip("link", "set", host.link, "up")


def start_both(cluster: Cluster) -> None:
    for name in ("a", "b"):
        cluster.start(name)
    cluster.wait(lambda: cluster.live() == {"a", "b"}, "both workers advertised")


def test_a_host_killed_mid_job_its_job_finishes_on_the_other_after_the_lease(cluster):
    start_both(cluster)
    job_id = cluster.submit(steps=40)
    victim = cluster.wait(lambda: cluster.running_on(job_id), "a worker denoising the job")
    survivor = "b" if victim == "a" else "a"
    cluster.workers[victim].send_signal(signal.SIGKILL)
    cluster.workers[victim].wait()
    cluster.wait(lambda: cluster.job(job_id)["status"] == "done", "the job done by the other", survivor)
    row = cluster.job(job_id)
    assert row["attempts"] == 2 and row["fence"] == 2, row
    cluster.assert_exactly_once(job_id, survivor)


def test_a_host_cut_off_mid_job_comes_back_to_a_refused_completion_and_carries_on(cluster):
    start_both(cluster)
    job_id = cluster.submit(steps=60)
    victim = cluster.wait(lambda: cluster.running_on(job_id), "a worker denoising the job")
    survivor = "b" if victim == "a" else "a"
    _ip("link", "set", cluster.hosts[victim].link, "down")
    cluster.wait(lambda: cluster.job(job_id)["status"] == "done", "the job done by the other", survivor)
    assert cluster.job(job_id)["worker"] == survivor
    assert cluster.workers[victim].poll() is None  # cut off, not dead
    _ip("link", "set", cluster.hosts[victim].link, "up")
    refusal = f"job {job_id}: this worker's lease on it lapsed and another worker took it over"
    cluster.wait(lambda: refusal in cluster.logs[victim].read_text(), "the cut worker's refusal", victim)
    cluster.assert_exactly_once(job_id, survivor)
    row = cluster.job(job_id)
    assert row["fence"] == 2, row
    # It carries on: with the other worker stopped, it runs the next job.
    cluster.workers[survivor].send_signal(signal.SIGTERM)
    assert wait_for_exit(cluster.workers[survivor], "the other worker's exit", cluster.watch()) == 0
    second = cluster.submit(steps=4)
    cluster.wait(
        lambda: cluster.job(second)["status"] == "done", "the next job done by the cut worker", victim
    )
    assert cluster.job(second)["worker"] == victim
    cluster.assert_exactly_once(second, victim)
