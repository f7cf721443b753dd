"""Real parts for tests: a Mosquitto per test on a free port, ingest and kiosks as threads or processes."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from device.agent import AgentConfig, KioskAgent
from device.outbox import Outbox
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.simulate import single_reading
from hub.broker import free_port
from hub.db import DatabaseError, Location, PostgresLocation, SqliteLocation, connect
from hub.db import parse as parse_location
from hub.ingest import IngestConfig, IngestWorker
from hub.store import HubStore

REPO = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll a condition the test cares about; fail with `what` if it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def ingest_thread(db: Path | Location, broker: BrokerUrl, **overrides: object) -> Iterator[IngestWorker]:
    with running(IngestWorker(db, IngestConfig(broker=broker, **overrides))) as worker:  # type: ignore[arg-type]
        yield worker


@contextmanager
def running(worker: IngestWorker) -> Iterator[IngestWorker]:
    """A worker built by the caller, run on a thread until the block ends."""
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        assert worker.connected.wait(10), "ingest did not connect"
        yield worker
    finally:
        worker.stop()
        t.join(10)


@contextmanager
def kiosk_agent(data: Path, kiosk_id: str, broker: BrokerUrl, **overrides: object) -> Iterator[KioskAgent]:
    config = AgentConfig(kiosk_id=kiosk_id, broker=broker, data_dir=data, **overrides)  # type: ignore[arg-type]
    agent = KioskAgent(config)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def hub_rows(db: Path | Location, kiosk: str) -> list[tuple[int, str]]:
    store = HubStore(db)
    try:
        return list(store.raw_messages(kiosk))
    finally:
        store.close()


def cli(module: str, *args: str, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start `kiosk`/`hub` as a real process (so it can be SIGKILLed)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def sigkill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def hub_count(db: Path | Location, kiosk: str) -> int:
    """Rows stored for a kiosk, read without taking the writer's lock."""
    rows = hub_query(db, "SELECT count(*) FROM messages WHERE kiosk = ?", kiosk)
    return int(str(rows[0][0])) if rows else 0


def hub_query(db: Path | Location, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Read the hub's store as an auditor would, beside the running hub (nothing yet: no rows)."""
    where = parse_location(db)
    if isinstance(where, SqliteLocation) and not where.path.exists():
        return []
    conn = connect(where, read_only=True)
    try:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    except DatabaseError:  # the schema is not there yet
        return []
    finally:
        conn.close()


def hub_store_args(data: Path, db: Location) -> list[str]:
    """What a `hub` command is given to reach this store: its data folder (the PKI, the broker's files) and the
    database, a SQLite file anywhere or a PostgreSQL URL."""
    return ["--data", str(data), "--database", db.url if isinstance(db, PostgresLocation) else str(db.path)]


class Producer(threading.Thread):
    """Takes readings at the kiosk, as a patient session would, and remembers exactly what it stored."""

    def __init__(self, outbox: Outbox, count: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.outbox, self.count, self.interval = outbox, count, interval
        self.sent: list[bytes] = []

    def run(self) -> None:
        rng = random.Random(7)
        for _ in range(self.count):
            env = self.outbox.enqueue("observations", single_reading(rng, datetime.now(UTC)))
            self.sent.append(encode(env))
            time.sleep(self.interval)


def assert_delivered_exactly_once(db: Path | Location, kiosk: str, sent: list[bytes], *, gapless: bool = True) -> None:
    """What the provider's database must hold after any fault: every reading once, in kiosk order, unaltered."""
    rows = [(s, raw) for s, raw in hub_rows(db, kiosk) if json.loads(raw)["kind"] == "observations"]
    seqs = [s for s, _ in rows]
    assert len(seqs) == len(set(seqs)), "a reading was stored twice"
    stored = {raw.encode() for _, raw in rows}
    missing = [b for b in sent if b not in stored]
    assert missing == [], f"{len(missing)} of {len(sent)} readings never reached the hub"
    by_seq = dict(rows)
    for body in sent:
        seq = json.loads(body)["seq"]
        assert by_seq[seq].encode() == body, f"reading {seq} was altered on the way"
    if gapless:
        all_seqs = sorted(s for s, _ in hub_rows(db, kiosk))
        assert all_seqs == list(range(all_seqs[0], all_seqs[0] + len(all_seqs))), "per-kiosk sequence has gaps"


def api_token(db: Path | Location, *scopes: str, clinic: str | None = None, name: str = "test") -> str:
    """A real API token in the hub database (an operator's when no clinic is given)."""
    from hub.accounts import tokens

    store = HubStore(db)
    try:
        wanted = list(scopes) or list(tokens.SCOPES)
        if clinic is not None:
            wanted = [s for s in wanted if s != "dead-letters:read"]
        elif not scopes:
            wanted = [s for s in wanted if s != "fhir:read"]  # a clinic's scope only
        return tokens.create(store.conn, name, clinic, wanted, time.time())
    finally:
        store.close()


@dataclass
class HubProcess:
    """`hub serve` as a real process on free ports (or the broker ports it is given), logging to `log`."""

    data: Path
    log: Path
    broker_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # more options: --database, --broker, --instance

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve", "--data", str(self.data), "--port", str(self.port),
                 "--broker-port", str(self.broker_port), "--mqtt-port", str(self.mqtt_port), "--workers", "1",
                 *self.args],
                cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: `lose_machine` takes its ingest workers too
            )  # fmt: skip

    def lose_machine(self) -> None:
        """SIGKILL the hub and every process it started (ingest workers, an embedded broker), as losing its machine
        would: none of them says goodbye, and none lives on as an orphan still consuming from the broker."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def readyz(self) -> tuple[int, dict[str, object]] | None:
        """/readyz's status and body; None while nothing answers. A hub that exited is an error, with its log."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"hub serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return None

    def ready(self) -> bool:
        answer = self.readyz()
        return answer is not None and answer[0] == 200

    def wait_ready(self) -> dict[str, object]:
        wait_until(self.ready, 90, "hub serve to be ready", interval=0.2)
        answer = self.readyz()
        assert answer is not None
        return answer[1]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(90)
