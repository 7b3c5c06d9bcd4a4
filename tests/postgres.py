"""A real PostgreSQL server for the tests: `initdb` into a temporary folder, `pg_ctl start` on 127.0.0.1.

The server runs as an unprivileged user (PostgreSQL refuses to run as root): as the current user when it is
not root, else as `nobody` through `runuser`. It listens on a free loopback port, with its unix socket in
its own folder, and is stopped when the test session ends. Tests that need it are SKIPPED, with the reason,
when no server can be started (no PostgreSQL binaries: Debian's `postgresql` package; `.ci/run` installs it).

Fixtures: `postgres_server` (session: the server's base URL, without a database) and `postgres_url` (a fresh,
empty database for each test that asks for it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

START_DEADLINE_S = 60.0  # generous: initdb and the first start are slow on a loaded 2-core machine
SERVER_USER = "nobody"


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: `pg_config --bindir`, Debian's versioned folders, or PATH."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(result.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).resolve().parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One throwaway cluster in `root`, owned and run by an unprivileged user."""

    def __init__(
        self, bindir: Path, root: Path, also_listen: Sequence[str] = (), trust_from: Sequence[str] = ()
    ) -> None:
        """`also_listen`: addresses to listen on besides 127.0.0.1 (a test's own veth addresses);
        `trust_from`: networks (CIDR) whose connections are let in besides the loopback's."""
        self.bindir = bindir
        self.also_listen = tuple(also_listen)
        self.trust_from = tuple(trust_from)
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                raise RuntimeError("running as root and runuser is missing (PostgreSQL refuses root)")
            self.as_user = ["runuser", "-u", SERVER_USER, "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, *command: str, timeout: float = START_DEADLINE_S) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, *command], capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if self.as_user:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, SERVER_USER)
            shutil.chown(self.socket_dir, SERVER_USER)
        initdb = self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr.strip() or initdb.stdout.strip()}")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in self.trust_from)
        listen = ",".join(("127.0.0.1", *self.also_listen))
        options = (
            f"-c listen_addresses={listen} -c port={self.port} -c unix_socket_directories={self.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        started = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", str(int(START_DEADLINE_S)), "start",
        )  # fmt: skip
        if started.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:] if self.root.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()} {log}")
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until pg_isready says the server accepts connections (pg_ctl -w mostly did this already)."""
        deadline = time.monotonic() + START_DEADLINE_S
        isready = str(self.bindir / "pg_isready")
        while True:
            ready = subprocess.run(
                [isready, "-h", "127.0.0.1", "-p", str(self.port), "-t", "5"],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections within {START_DEADLINE_S:.0f} s")
            time.sleep(0.2)

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (skipped with the reason when none can be started)."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e .)")
    root = Path(tempfile.mkdtemp(prefix="salon-pg-"))
    server = PostgresServer(bindir, root)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()
