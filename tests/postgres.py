"""A real PostgreSQL for the tests: Debian's binaries, a cluster in a temp folder, a free loopback port.

Like the Mosquitto fixtures, nothing is shared with a server the machine may already run. One
cluster per test process (pytest-xdist worker); each test gets its own database, created from a
template the hub's migrations were applied to once, so a test starts from the same schema a
fresh hub makes, in tens of milliseconds.

PostgreSQL refuses to run as root: under root the cluster belongs to Debian's `postgres` user
(created by the package), and the server is started as that user.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from hub.db import connect, migrate

TEMPLATE = "hub_template"


def binaries() -> Path:
    """Debian installs PostgreSQL's server binaries off PATH, under a folder per major version."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed: `make postgres` installs Debian's package")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """One cluster. `durable=False` (tests) turns fsync off: they kill hubs, never this server's machine."""

    durable: bool = False
    port: int = field(default_factory=_free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hub-pg-")))
    _proc: subprocess.Popen[bytes] | None = None
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_owner(self) -> list[str]:
        if os.getuid() != 0:
            return []
        pwd.getpwnam("postgres")  # KeyError: no postgres user, the package is not installed
        return ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://hub@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        bin_dir = binaries()
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            [*self._as_owner(), str(bin_dir / "initdb"), "-D", str(self.data), "-U", "hub", "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.resume()
        self.create(TEMPLATE)
        conn = connect(self.url(TEMPLATE))
        try:
            migrate(conn)
        finally:
            conn.close()

    def resume(self) -> None:
        """Run the server on its cluster (again, after `halt`: same port, same data)."""
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "300",
            "shared_buffers": "64MB",
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "wal_level": "replica",
            "max_wal_senders": "4",
        }
        args = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server's, closed with it
        self._proc = subprocess.Popen(
            [*self._as_owner(), str(binaries() / "postgres"), "-D", str(self.data), *args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
                time.sleep(0.05)

    def halt(self) -> None:
        """Stop the server at once (fast shutdown: sessions are cut), keeping its data for `resume`."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGINT)  # postgres: SIGINT is "fast" shutdown
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()

    def log_tail(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(), autocommit=True)

    def create(self, name: str, template: str = "template0") -> str:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def fresh_database(self) -> str:
        """A new database with the hub's schema already in it (from the migrated template)."""
        return self.create(f"hub_{os.getpid()}_{next(self._names)}", TEMPLATE)

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Fast shutdown (sessions still open are cut: a test's app may hold some) and the cluster deleted."""
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
