"""The hub on a full disk (issue 25): it stops acknowledging, says why, starts, and comes back by itself.

Caused for real where the machine allows it: a small tmpfs mounted by the test holds the hub's data
and is filled to the last byte, then space returns by deleting the filler (tests/diskfull.py). Where
mounting is not permitted those tests are skipped, saying so; the `test_store_seam_*` tests run
everywhere and drive the same code paths through a fault-injection seam (`PRAGMA max_page_count`,
which makes SQLite raise its own "database or disk is full").

The hub is running when its disk fills, so its database files are open (the tests hold a connection,
as the running hub's processes do). Each full-disk test first truncates the WAL, as a checkpoint
would: with room left in an old WAL, SQLite could keep committing into it for a while.

Nothing here asserts a time budget (the machine is busy): the tests count events (failed attempts,
log lines, receipts, backoff draws) and print the figures the issue asks for (from space returning
to the first commit; from a hub restart to the first commit; from a broker restart to ingest ready).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import re
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from device.agent import KioskAgent
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.protocol.retry import Backoff
from device.simulate import single_reading
from hub.app import create_app
from hub.broker import MosquittoProcess, free_port
from hub.db import immediate
from hub.ingest import IngestConfig, IngestWorker
from hub.service import HubService, ServeConfig
from hub.store import HubStore
from hub.workspace import Workspace
from tests.diskfull import fill, small_tmpfs
from tests.harness import HubProcess, assert_delivered_exactly_once, hub_count, kiosk_agent, running, wait_until

pytestmark = pytest.mark.slow
FAST = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0, "connect_timeout_s": 3.0}
FULL = "database or disk is full"
NO_LIMIT = 1073741823  # SQLite's max_page_count when nobody limits it


# -- real parts ------------------------------------------------------------------------


def truncate_wal(conn: sqlite3.Connection) -> None:
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0, "the WAL could not be truncated: a reader held it"


@contextlib.contextmanager
def serving(service: HubService) -> Iterator[TestClient]:
    """The service's background parts, and a client of its web app (closed after, with its database connections)."""
    service.start_background()
    try:
        with TestClient(service.app) as client:
            yield client
    finally:
        service.stop_background()


def release_database(*apps: FastAPI) -> None:
    """Let the test's disk unmount cleanly. A web app keeps a database connection for each thread that used it
    (this one's too: create_app ran here) as long as it lives, which is the process's life: those are closed.
    A closed connection's file stays open while statements it cached are not finalized: those are collected."""
    for app in apps:
        ws: Workspace = app.state.workspace
        ws.conn().close()
    gc.collect()


def enqueue(agent: KioskAgent, count: int, rng: random.Random) -> list[bytes]:
    return [encode(agent.outbox.enqueue("observations", single_reading(rng, datetime.now(UTC)))) for _ in range(count)]


def drained(agent: KioskAgent) -> bool:
    return agent.outbox.backlog().items == 0


def lines(records: list[logging.LogRecord], logger: str, text: str) -> list[str]:
    return [r.getMessage() for r in records if r.name == logger and text in r.getMessage()]


@dataclass
class CountingBackoff(Backoff):
    """A Backoff that remembers the attempt number of every delay it was asked for."""

    drawn: list[int] = field(default_factory=list, init=False)

    def next_delay(self) -> float:
        self.drawn.append(self._attempt)
        return super().next_delay()


class PageLimitedWorker(IngestWorker):
    """The fault-injection seam: while `full` is set, the database may not grow by one page (PRAGMA
    max_page_count, set in the worker's own thread), so a commit fails with SQLite's own SQLITE_FULL."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.full = threading.Event()

    def _flush(self) -> None:
        conn = self.store.conn
        if self.full.is_set():
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {int(pages)}")
        else:
            conn.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
        super()._flush()


def report(what: str, seconds: float, capfd: pytest.CaptureFixture[str] | None = None) -> None:
    """A figure the issue asks for, printed for the run's log (`-s`), never asserted as a budget."""
    with capfd.disabled() if capfd is not None else contextlib.nullcontext():
        print(f"\n[issue 25] {what}: {seconds:.2f} s")


@contextlib.contextmanager
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """systemd's notify socket, played by the test: every message the hub sends systemd (STATUS=...), in order."""
    name = f"telehealth-issue25-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)  # an abstract socket: no path, nothing to clean up
    sock.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                messages.append(sock.recv(65536).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        yield messages
    finally:
        done.set()
        receiver.join(5)
        sock.close()


def statuses(messages: list[str]) -> list[str]:
    return [line.removeprefix("STATUS=") for m in messages for line in m.splitlines() if line.startswith("STATUS=")]


# -- immediate(): the error that happened, not the rollback's -------------------------------


def test_store_seam_immediate_reraises_the_full_database_error_not_the_rollbacks(tmp_path: Path) -> None:
    """SQLite rolls a transaction back by itself on SQLITE_FULL; the ROLLBACK after it used to raise
    "cannot rollback - no transaction is active" in place of "database or disk is full"."""
    store = HubStore(tmp_path / "hub.db")
    try:
        conn = store.conn
        conn.execute("CREATE TABLE filler (data BLOB)")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {int(pages)}")
        with pytest.raises(sqlite3.OperationalError) as caught, immediate(conn):
            conn.execute("INSERT INTO filler VALUES (randomblob(100000))")
        assert str(caught.value) == FULL
        assert caught.value.sqlite_errorname == "SQLITE_FULL"
        assert not conn.in_transaction
        # The same through the store's own transaction (ingest's commits take it).
        with pytest.raises(sqlite3.OperationalError, match=FULL), store._transaction() as tx:
            tx.execute("INSERT INTO filler VALUES (randomblob(100000))")
        # A failure while the transaction is still open is rolled back as before, and is what is raised.
        conn.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
        with pytest.raises(ValueError, match="the caller's own"), immediate(conn):
            conn.execute("INSERT INTO filler VALUES (x'00')")
            raise ValueError("the caller's own")
        assert not conn.in_transaction
        assert conn.execute("SELECT count(*) FROM filler").fetchone() == (0,)
    finally:
        store.close()


# -- ingest on a full disk ---------------------------------------------------------------


def test_ingest_on_a_full_disk_acks_nothing_says_why_once_and_resumes_by_itself(
    tmp_path: Path, broker_url: BrokerUrl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.ingest")
    rng = random.Random(25)
    with small_tmpfs(tmp_path / "disk", 4 << 20) as disk:
        db = disk / "hub.db"
        HubStore(db).close()
        held = sqlite3.connect(db)  # the running hub's files stay open while its disk fills
        worker = IngestWorker(db, IngestConfig(broker=broker_url, client_id="ingest:1"))
        app = create_app(db, broker_ready=worker.connected.is_set, store_problem=worker.problem.get)
        try:
            with (
                TestClient(app) as client,
                running(worker),
                kiosk_agent(tmp_path / "k", "k1", broker_url, **FAST) as agent,
            ):
                sent = enqueue(agent, 20, rng)
                wait_until(lambda: drained(agent), 30, "the first readings to be receipted")
                assert client.get("/readyz").json()["checks"]["store"] == "ok"
                truncate_wal(held)
                filler = fill(disk)
                stored = hub_count(db, "k1")
                receipted, commits = agent.forwarder.stats.items_receipted, worker.stats.commits

                sent += enqueue(agent, 200, rng)
                wait_until(lambda: worker.stats.commit_failures >= 6, 90, "six failed commits on the full disk")
                # Nothing committed, so nothing acked (acks follow commits) and nothing receipted to the kiosk.
                assert worker.stats.commits == commits
                assert agent.forwarder.stats.items_receipted == receipted
                assert agent.outbox.backlog().items >= 200
                assert hub_count(db, "k1") == stored
                ready = client.get("/readyz")
                assert ready.status_code == 503, ready.text
                store_check = ready.json()["checks"]["store"]
                assert store_check.startswith(f"cannot commit: {FULL} since "), store_check
                # One line when commits started failing, however many retries followed; no traceback.
                failures = worker.stats.commit_failures
                assert lines(caplog.records, "hub.ingest", "cannot commit") == [
                    f"cannot commit: {FULL}; nothing is acknowledged or receipted until a commit succeeds; retrying"
                ], f"after {failures} failed commits"
                assert not [r for r in caplog.records if r.name == "hub.ingest" and r.exc_info]

                filler.unlink()  # space returns
                freed = time.monotonic()
                wait_until(lambda: worker.stats.commits > commits, 60, "a commit once space returned")
                report("ingest: from space returning to the first commit", time.monotonic() - freed)
                wait_until(lambda: drained(agent), 60, "the outbox to drain once space returned")
                ready = client.get("/readyz")
                assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok", ready.text
            resumed = lines(caplog.records, "hub.ingest", "commits resumed")
            assert len(resumed) == 1 and f"the last cause: {FULL}" in resumed[0], resumed
            assert len(lines(caplog.records, "hub.ingest", "cannot commit")) == 1
            assert worker.commits.outages == 1
            assert_delivered_exactly_once(db, "k1", sent)
        finally:
            held.close()
            release_database(app)


def test_store_seam_commit_failures_do_not_slow_the_next_reconnect(
    tmp_path: Path, mosquitto: MosquittoProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Commit retries have their own backoff: after failing commits, a broker restart is met at once.

    They used to wait on the reconnect backoff and advance it, so a disk-full of 40 s left the next
    broker restart waiting up to its 30 s cap (26 s in the issue's soak)."""
    caplog.set_level(logging.INFO, logger="hub.ingest")
    rng = random.Random(4)
    url = BrokerUrl.parse(mosquitto.url)
    db = tmp_path / "hub.db"
    reconnect = CountingBackoff(initial_s=0.5, maximum_s=30.0)
    commit_retry = CountingBackoff(initial_s=0.2, maximum_s=5.0)
    worker = PageLimitedWorker(
        db, IngestConfig(broker=url, client_id="ingest:1", reconnect=reconnect, commit_retry=commit_retry)
    )
    with running(worker), kiosk_agent(tmp_path / "k", "k1", url, **FAST) as agent:
        sent = enqueue(agent, 10, rng)
        wait_until(lambda: drained(agent), 30, "the first readings to be receipted")
        worker.full.set()
        sent += enqueue(agent, 300, rng)
        wait_until(lambda: worker.stats.commit_failures >= 5, 90, "five failed commits")
        worker.full.clear()
        wait_until(lambda: not worker.commits.failing, 60, "commits to resume")
        wait_until(lambda: drained(agent), 60, "the outbox to drain")
        failures = worker.stats.commit_failures
        assert reconnect.drawn == [], "commit failures drew on the reconnect backoff"
        assert len(commit_retry.drawn) == failures and commit_retry.drawn[0] == 0
        assert len(lines(caplog.records, "hub.ingest", "cannot commit")) == 1, f"{failures} failed commits"

        mosquitto.kill()
        wait_until(lambda: not worker.connected.is_set(), 30, "ingest to see the broker go")
        mosquitto.start()
        restarted = time.monotonic()
        wait_until(worker.connected.is_set, 60, "ingest to reconnect")
        report("ingest: from the broker's restart to ingest subscribed again", time.monotonic() - restarted)
        # The reconnect backoff started from its first step: the commit failures before did not inflate it.
        assert reconnect.drawn and reconnect.drawn == list(range(len(reconnect.drawn))), reconnect.drawn
        sent += enqueue(agent, 10, rng)
        wait_until(lambda: drained(agent), 60, "the outbox to drain after the broker's restart")
    assert_delivered_exactly_once(db, "k1", sent)


# -- the service: readiness, its status line, the background passes, a restart -------------


def test_the_service_on_a_full_disk_says_why_in_readyz_and_its_status_and_recovers_by_itself(
    tmp_path: Path,
    broker_url: BrokerUrl,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`hub serve`'s parts (ingest worker processes, attribution, the web app) against a broker of the test's."""
    caplog.set_level(logging.INFO, logger="hub.service")
    rng = random.Random(7)
    with small_tmpfs(tmp_path / "disk", 8 << 20) as disk, notify_socket(monkeypatch) as notes:
        data = disk / "hub"
        db = data / "hub.db"
        config = ServeConfig(data_dir=data, broker=broker_url, http_port=free_port(), workers=1)
        HubStore(db).close()
        held = sqlite3.connect(db)  # the running hub's files stay open while its disk fills
        apps: list[FastAPI] = []
        try:
            with kiosk_agent(tmp_path / "k", "k1", broker_url, **FAST) as agent:
                # Readings committed before the disk fills, not yet attributed (no hub serve ran yet). The
                # worker takes the service's own worker's MQTT session, so no message waits in another's.
                with running(IngestWorker(db, IngestConfig(broker=broker_url, client_id="hub-ingest:1"))):
                    sent = enqueue(agent, 20, rng)
                    wait_until(lambda: drained(agent), 30, "the first readings to be receipted")
                truncate_wal(held)
                filler = fill(disk)

                service = HubService(config)
                apps.append(service.app)
                service.announced.set()  # what serve_forever does once systemd has its READY=1
                with serving(service) as client:
                    assert service.ingest.wait_ready(60), "ingest did not connect"
                    # Attribution has readings to decide and cannot write: readiness says so.
                    wait_until(lambda: service._attribution.failures >= 4, 60, "four failed attribution passes")
                    ready = client.get("/readyz")
                    assert ready.status_code == 503
                    assert ready.json()["checks"]["store"].startswith(f"cannot attribute readings: {FULL} since ")

                    # Readings arrive: the worker process cannot commit, and readiness names that first.
                    sent += enqueue(agent, 100, rng)

                    def ingest_attempts() -> int:
                        found = re.search(
                            r"^cannot commit: .* \((\d+) failed attempts\)$", service.store_problem() or ""
                        )
                        return int(found.group(1)) if found else 0

                    wait_until(lambda: ingest_attempts() >= 5, 90, "five failed commits in the worker process")
                    ready = client.get("/readyz")
                    assert ready.status_code == 503
                    checks = ready.json()["checks"]
                    assert checks["store"].startswith(f"cannot commit: {FULL} since "), checks
                    assert checks["database"] == "ok" and checks["broker"] == "ok", checks
                    assert service.status_line().startswith(f"store: cannot commit: {FULL} since ")
                    wait_until(
                        lambda: any(s.startswith(f"store: cannot commit: {FULL} since ") for s in statuses(notes)),
                        30, "systemd's status line to say why",
                    )  # fmt: skip
                    stored = hub_count(db, "k1")

                    filler.unlink()  # space returns
                    freed = time.monotonic()
                    wait_until(lambda: hub_count(db, "k1") > stored, 60, "a commit once space returned")
                    report("hub serve: from space returning to the first commit", time.monotonic() - freed, capfd)
                    wait_until(lambda: client.get("/readyz").status_code == 200, 60, "readiness to come back")
                    assert service.status_line() == "ready"
                    wait_until(lambda: statuses(notes)[-1:] == ["ready"], 30, "systemd's status line to say ready")
                    wait_until(lambda: drained(agent), 60, "the outbox to drain once space returned")
                # Each failing pass logged one line when it started and one when it recovered.
                worker_log = capfd.readouterr().err
                assert len(re.findall(r"hub\.ingest: cannot commit: ", worker_log)) == 1, worker_log
                assert len(re.findall(r"hub\.ingest: commits resumed after ", worker_log)) == 1, worker_log
                assert len(lines(caplog.records, "hub.service", "cannot attribute readings")) == 1
                assert len(lines(caplog.records, "hub.service", "attribution resumed")) == 1
                assert not [r for r in caplog.records if r.name == "hub.service" and r.exc_info]

                # A restart: commits resume as soon as the new worker is subscribed.
                stored = hub_count(db, "k1")
                sent += enqueue(agent, 10, rng)
                started = time.monotonic()
                service = HubService(config)
                apps.append(service.app)
                service.start_background()
                try:
                    wait_until(lambda: hub_count(db, "k1") > stored, 60, "a commit after the hub's restart")
                    report("hub serve: from the hub's start to the first commit", time.monotonic() - started, capfd)
                    wait_until(lambda: drained(agent), 60, "the outbox to drain after the restart")
                finally:
                    service.stop_background()
            assert_delivered_exactly_once(db, "k1", sent)
        finally:
            held.close()
            release_database(*apps)


# -- `hub serve` starts on a full disk ------------------------------------------------------

# What the broker and the database change while they run; everything else is written at a start only if it changed.
RUNTIME_FILES = {"hub.db-wal", "hub.db-shm", "broker/mosquitto.db", "broker/mosquitto.pid", "broker/mosquitto.log"}


def _mtimes(data: Path) -> dict[str, int]:
    return {
        str(p.relative_to(data)): p.stat().st_mtime_ns
        for p in data.rglob("*")
        if p.is_file() and str(p.relative_to(data)) not in RUNTIME_FILES
    }


def test_hub_serve_starts_on_a_full_disk_and_a_start_with_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    """It rewrote the broker's files (new salt, new CRL signature, the config) at every start and died of ENOSPC."""
    with small_tmpfs(tmp_path / "disk", 16 << 20) as disk:
        hub = HubProcess(disk / "hub", tmp_path / "serve.log")
        try:
            hub.start()  # the first start creates the CA, the broker's certificate, files and configuration
            hub.wait_ready()
            hub.stop()
            first = _mtimes(hub.data)
            assert {"hub.db", "broker/mosquitto.conf", "broker/auth/passwd", "broker/auth/crl.pem"} <= set(first)

            hub.start()
            hub.wait_ready()
            assert _mtimes(hub.data) == first, "a start with nothing changed wrote files"
            filler = fill(disk)  # the disk fills while the hub runs
            hub.stop(signal.SIGKILL)  # and it dies (the watchdog, the OOM killer): its WAL and index stay
            before = _mtimes(hub.data)
            hub.start()
            answer = hub.wait_ready()
            assert answer["checks"] == {"database": "ok", "store": "ok", "broker": "ok"}, answer
            assert _mtimes(hub.data) == before, "a start on a full disk with nothing changed wrote files"

            hub.stop()  # a clean restart on the full disk too
            hub.start()
            hub.wait_ready()
            assert _mtimes(hub.data) == before
            filler.unlink()
        finally:
            hub.stop()
            # A SIGKILLed hub leaves its Mosquitto behind (the next start stops it); one a failure left is stopped here,
            # found the way the hub finds it (its pid file, and its command line naming this configuration).
            MosquittoProcess(hub.data / "broker")._stop_orphan()


def test_a_hub_stopped_before_its_disk_filled_waits_for_space_says_why_once_and_then_starts(
    tmp_path: Path,
    broker_url: BrokerUrl,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a clean stop SQLite has removed hub.db-shm and must write it (32 KiB) to open the database: on a disk
    without that room `hub serve` used to exit with a traceback (and be restarted, and exit, every RestartSec=)."""
    caplog.set_level(logging.INFO, logger="hub.service")
    with small_tmpfs(tmp_path / "disk", 4 << 20) as disk, notify_socket(monkeypatch) as notes:
        data = disk / "hub"
        config = ServeConfig(data_dir=data, broker=broker_url, http_port=free_port(), workers=1)
        HubStore(data / "hub.db").close()  # a clean stop: SQLite removes hub.db-wal and hub.db-shm
        assert not (data / "hub.db-shm").exists()
        filler = fill(disk)
        made: list[HubService] = []
        failed: list[BaseException] = []

        def construct() -> None:
            try:
                made.append(HubService(config))
            except BaseException as exc:
                failed.append(exc)

        def attempts() -> int:
            found = [re.search(r"^store: cannot open the database: .* \((\d+) failed attempts\)$", s)
                     for s in statuses(notes)]  # fmt: skip
            return max((int(f.group(1)) for f in found if f), default=0)

        starting = threading.Thread(target=construct, daemon=True)
        starting.start()
        try:
            wait_until(lambda: bool(failed) or attempts() >= 3, 60, "three attempts to open the database")
            assert not failed, failed
            assert not made
            assert len(lines(caplog.records, "hub.service", "cannot open the database")) == 1
            assert any("EXTEND_TIMEOUT_USEC=" in m for m in notes)  # systemd gives it the time it waits
        finally:
            filler.unlink(missing_ok=True)  # space returns
        freed = time.monotonic()
        starting.join(60)
        assert made and not failed, failed
        with serving(made[0]) as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, 60, "hub serve to be ready")
            report("hub serve stopped before the disk filled: from space returning to ready", time.monotonic() - freed)
        assert len(lines(caplog.records, "hub.service", "the database opened")) == 1
        release_database(made[0].app)
