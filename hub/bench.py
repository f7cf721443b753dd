"""`hub bench ingest`: how close the real kiosk -> hub path comes to what paho and Mosquitto allow.

One run, one freshly started embedded Mosquitto (loopback, free port, temp dir), four phases:

(a) the limit: plain paho publishers send the stored bodies of pre-filled kiosk outboxes,
    one envelope per message, to the broker while a bare paho subscriber (persistent
    session, auto-ack, the same MQTT 5 Receive Maximum as ingest) is offline; then the
    subscriber comes back and only counts. Its rate is what paho and Mosquitto allow a
    consumer of this traffic on this machine.
(b) the full path, measured the same way: the real Forwarders publish the same kind of
    pre-filled outboxes (one envelope per MQTT message) while the real IngestWorker's
    session is offline; then ingest comes back, validates, commits, acks and sends
    receipts, which the kiosks process (deleting from their outboxes) during the
    measurement. Throughput is read from the hub database's ``committed_at``, and every
    enqueued id is looked up to count losses.
    Why a broker-held backlog in both: on the real system the kiosks are other machines.
    Publishing live from simulated kiosks on the hub's two cores measured the kiosks as
    much as the hub; here both consumers face the same queued traffic, and what differs
    is only what each does per message.
(c) latency at half the rate (b) reached (``--load-fraction``): kiosks enqueue live, one
    reading per enqueue, through forwarders with the production defaults (batches of up to
    500, window 4); latency is ``committed_at - device_time`` (same machine clock, so no
    offset to correct; device_time has millisecond precision).
(d) drain: a backlog stored while the hub was down, then forwarders with normal batching
    and ingest start together; readings/s from that start until the last commit.

Every kiosk and the ingest worker run in their own process: on the real system they are
different machines, and in one process the GIL would make each side slow the other down.
For the same reason the kiosks' outboxes live on tmpfs (/dev/shm, unless --kiosk-dir says
otherwise): each real kiosk fsyncs to its own disk, and here their ~thousands of fsyncs a
second would queue the hub's commits behind them on one shared disk.
The parent only orchestrates and reads the hub database (rarely) while a phase runs. Each
phase also reports the CPU seconds of each side: on a two-core machine the simulated kiosks
compete with the hub for the same cores, which the real deployment does not.
Children are spawned (not forked) so no SQLite connection or paho socket crosses a fork,
ignore Ctrl-C (the parent stops them in order) and exit if the parent dies.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import math
import multiprocessing
import os
import queue
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any, TypeAlias

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.forwarder import Forwarder, ForwarderConfig
from device.outbox import Outbox
from device.protocol import Topics
from device.protocol.endpoints import BrokerUrl
from device.simulate import single_reading
from hub.broker import MosquittoProcess, find_mosquitto
from hub.db import Location, SqliteLocation, connect
from hub.db import parse as parse_location
from hub.ingest import IngestConfig, IngestWorker, tune_gc_for_ingest
from hub.ingest_pool import default_workers

log = logging.getLogger(__name__)

KIND = "observations"
INGEST_CLIENT_ID = "bench-ingest"  # one id for every phase: one shared-subscription member, as in production
PREFILL_CHUNK = 5000  # envelopes per enqueue_many transaction while filling an outbox
POLL_S = 0.25  # how often the parent counts committed rows (the measurement itself uses committed_at)
STALL_S = 30.0  # no new commits for this long: give up and report the rest as lost
TARGET_RATIO = 0.8
TARGET_DRAIN = 20_000.0
TARGET_P99_MS = 100.0

Results: TypeAlias = "Queue[tuple[str, str, Any]]"  # typeshed-only generic


class BenchError(RuntimeError):
    """A phase could not run (a child failed or never got ready); the message says which."""


# -- what the parent sends to children ---------------------------------------------------


@dataclass(frozen=True)
class Signals:
    """Shared by the parent and one group of children: start together, stop together, report."""

    go: Event
    stop: Event
    results: Results


@dataclass(frozen=True)
class KioskJob:
    """One simulated kiosk: its outbox, what to pre-fill, how to send, and optional live load."""

    kiosk: str
    outbox: Path
    broker: str
    prefill: int = 0
    bare: bool = False  # publish stored bodies with plain paho instead of the Forwarder
    batch_max_items: int = 500
    window_messages: int = 4  # the Forwarder default
    receipt_timeout_s: float = 10.0
    report_published: bool = False  # say when the broker has every pre-filled message (phase b)
    rate: float = 0.0  # live enqueues per second after go (0: none)
    seconds: float = 0.0
    profile: Path | None = None


@dataclass(frozen=True)
class SubscriberJob:
    broker: str
    expect: int
    receive_maximum: int


@dataclass(frozen=True)
class IngestJob:
    db: Location
    broker: str
    client_id: str
    profile: Path | None = None


# -- children ------------------------------------------------------------------------------


def _child_main(target: Callable[[str, Signals, Any], None], name: str, sig: Signals, job: Any) -> None:
    """Entry of every child: ignore Ctrl-C (the parent stops us in order), die with the parent, report errors."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s")
    _die_with_parent()
    try:
        target(name, sig, job)
    except BaseException:
        sig.results.put(("error", name, traceback.format_exc()))
        raise


def _die_with_parent() -> None:
    """A parent killed with SIGKILL cannot reap us: leave rather than keep publishing into the void."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _wait_go(sig: Signals) -> bool:
    """Wait for the common start; False if told to stop first."""
    while not sig.go.wait(0.1):
        if sig.stop.is_set():
            return False
    return not sig.stop.is_set()


def _cpu_since(start: float) -> float:
    """CPU seconds of this whole process (all threads) since `start`: where the machine's two cores went."""
    return time.process_time() - start


def _run_profiled(fn: Callable[[], None], profile: Path | None) -> None:
    """Run the loop under cProfile when asked: paho callbacks run on this thread, so they are included."""
    if profile is None:
        fn()
        return
    prof = cProfile.Profile()
    try:
        prof.runcall(fn)
    finally:
        prof.dump_stats(profile)


def _kiosk_child(name: str, sig: Signals, job: KioskJob) -> None:
    outbox = Outbox(job.outbox, job.kiosk)
    try:
        ids = _prefill(outbox, job.prefill, seed=zlib.crc32(job.kiosk.encode()))
        if job.bare:
            _bare_publish(name, sig, job, outbox, ids)
        else:
            _forward(name, sig, job, outbox, ids)
    finally:
        outbox.close()


def _prefill(outbox: Outbox, count: int, seed: int) -> list[str]:
    """Store `count` single-reading envelopes, as a kiosk cut off from the hub would have."""
    rng = random.Random(seed)
    ids: list[str] = []
    for start in range(0, count, PREFILL_CHUNK):
        now = datetime.now(UTC)
        items = [(KIND, single_reading(rng, now)) for _ in range(min(PREFILL_CHUNK, count - start))]
        ids.extend(env.id for env in outbox.enqueue_many(items))
    return ids


def _stored_bodies(outbox: Outbox) -> list[bytes]:
    """The exact bytes the Forwarder would send, read before the clock starts."""
    bodies: list[bytes] = []
    after = 0
    while items := outbox.pending(after, limit=5000, max_bytes=1 << 30):
        bodies.extend(item.body for item in items)
        after = items[-1].seq
    return bodies


def _plain_client(client_id: str) -> tuple[mqtt.Client, threading.Event]:
    """A paho 2.x MQTT 5 client as the paho docs show it; the event is set on CONNACK."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    connected = threading.Event()
    client.on_connect = lambda _c, _u, _f, rc, _p: None if rc.is_failure else connected.set()
    return client, connected


def _start_plain(
    client: mqtt.Client,
    connected: threading.Event,
    broker: str,
    receive_maximum: int | None = None,
    *,
    clean_start: bool = True,
) -> None:
    """Connect and run paho's own network thread (`loop_start`); the session outlives a disconnect."""
    url = BrokerUrl.parse(broker)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    client.connect(url.host, url.port, clean_start=clean_start, properties=props)
    client.loop_start()
    if not connected.wait(10):
        raise BenchError(f"could not connect to {broker}")


def _bare_publish(name: str, sig: Signals, job: KioskJob, outbox: Outbox, ids: list[str]) -> None:
    """Phase (a) publisher: the stored bodies, QoS 1, on the Forwarder's topic, as fast as paho goes."""
    bodies = _stored_bodies(outbox)
    topic = Topics.uplink(job.kiosk, KIND)
    acked = threading.Event()
    count = 0

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        nonlocal count
        count += 1
        if count >= len(bodies):
            acked.set()

    client, connected = _plain_client(f"bench-pub-{job.kiosk}")
    client.on_publish = on_publish
    _start_plain(client, connected, job.broker)
    try:
        sig.results.put(("ready", name, ids))
        if not _wait_go(sig):
            return
        cpu0 = time.process_time()
        for body in bodies:
            client.publish(topic, body, qos=1)
        while bodies and not acked.wait(0.2) and not sig.stop.is_set():
            pass
        sig.results.put(("done", name, {"published": len(bodies), "acked": count, "cpu_s": _cpu_since(cpu0)}))
        sig.stop.wait()
    finally:
        client.disconnect()
        client.loop_stop()


def _forward(name: str, sig: Signals, job: KioskJob, outbox: Outbox, ids: list[str]) -> None:
    """Phases (b)-(d): the real Forwarder on its own outbox connection, as KioskAgent wires it."""
    config = ForwarderConfig(
        kiosk_id=job.kiosk,
        broker=BrokerUrl.parse(job.broker),
        batch_max_items=job.batch_max_items,
        window_messages=job.window_messages,
        receipt_timeout_s=job.receipt_timeout_s,
    )
    forwarder = Forwarder(Outbox(job.outbox, job.kiosk), config)
    outbox.on_enqueue = forwarder.wake
    receipts: dict[str, float] = {}  # (c): when the hub's receipt for each id reached this kiosk
    if job.rate > 0:
        forwarder.on_receipt = lambda accepted: receipts.update(dict.fromkeys(accepted, time.time()))
    sig.results.put(("ready", name, ids))
    try:
        if not _wait_go(sig):
            return
        cpu0 = time.process_time()
        enqueuer = threading.Thread(target=_enqueue_live_reporting, args=(name, sig, job, outbox), daemon=True)
        if job.rate > 0:
            enqueuer.start()

        def stop_after_enqueuer() -> None:
            sig.stop.wait()
            if enqueuer.is_alive():
                enqueuer.join()  # it wakes the forwarder: its pipe must outlive the last enqueue
            forwarder.stop()

        def report_published() -> None:
            while forwarder.stats.broker_acks < job.prefill and not sig.stop.wait(0.05):
                pass
            sig.results.put(("published", name, {"cpu_s": _cpu_since(cpu0)}))

        threading.Thread(target=stop_after_enqueuer, name="stopper", daemon=True).start()
        if job.report_published:
            threading.Thread(target=report_published, name="published", daemon=True).start()
        _run_profiled(forwarder.run, job.profile)
        cpu_s = _cpu_since(cpu0)
        sig.results.put(("done", name, {**asdict(forwarder.stats), "cpu_s": cpu_s, "receipts": receipts}))
    finally:
        forwarder.outbox.close()


def _enqueue_live_reporting(name: str, sig: Signals, job: KioskJob, outbox: Outbox) -> None:
    """A failed enqueue (e.g. OutboxFull) must fail the phase, not leave the parent waiting for a report."""
    try:
        _enqueue_live(name, sig, job, outbox)
    except BaseException:
        sig.results.put(("error", name, traceback.format_exc()))
        raise


def _enqueue_live(name: str, sig: Signals, job: KioskJob, outbox: Outbox) -> None:
    """Phase (c): one enqueue per reading at a steady rate; a late enqueue is not skipped, only not slept for."""
    rng = random.Random(zlib.crc32(job.kiosk.encode()) + 1)
    interval = 1.0 / job.rate
    start = time.monotonic()
    due = start + rng.random() * interval  # kiosks out of step, as real ones are
    end = start + job.seconds
    ids: list[str] = []
    while due < end and not sig.stop.is_set():
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ids.append(outbox.enqueue(KIND, single_reading(rng, datetime.now(UTC))).id)
        due += interval
    elapsed = time.monotonic() - start
    sig.results.put(("enqueued", name, {"ids": ids, "rate": len(ids) / elapsed if elapsed > 0 else 0.0}))


def _bare_subscriber(name: str, sig: Signals, job: SubscriberJob) -> None:
    """Phase (a) subscriber: standard paho usage (loop_start, auto-ack); on_message only counts.

    It subscribes with a persistent session and leaves, so the broker queues the
    publishers' messages for it; on `go` it comes back and drains them.
    """
    client_id = "bench-bare-subscriber"
    _create_session(job.broker, client_id, [(Topics.UPLINK_FILTER, 1)])
    sig.results.put(("ready", name, None))
    if not _wait_go(sig):
        return

    done = threading.Event()
    received = 0
    first = last = 0.0

    def on_message(_c: mqtt.Client, _u: Any, _m: mqtt.MQTTMessage) -> None:
        nonlocal received, first, last
        last = time.perf_counter()
        if received == 0:
            first = last
        received += 1
        if received >= job.expect:
            done.set()

    cpu0 = time.process_time()
    client, connected = _plain_client(client_id)
    client.on_message = on_message
    _start_plain(client, connected, job.broker, job.receive_maximum, clean_start=False)
    try:
        while not done.wait(0.2) and not sig.stop.is_set():
            pass
        sig.results.put(("done", name, {"received": received, "seconds": last - first, "cpu_s": _cpu_since(cpu0)}))
    finally:
        client.disconnect()
        client.loop_stop()


def _create_session(broker: str, client_id: str, topics: list[tuple[str, int]]) -> None:
    """Subscribe as `client_id` with a persistent session and leave: the broker queues for it from now on."""
    subscribed = threading.Event()
    client, connected = _plain_client(client_id)
    client.on_subscribe = lambda _c, _u, _mid, _rc, _p: subscribed.set()
    _start_plain(client, connected, broker)
    try:
        client.subscribe(topics)
        if not subscribed.wait(10):
            raise BenchError(f"no SUBACK for {client_id}")
    finally:
        client.disconnect()
        client.loop_stop()


def _ingest_child(name: str, sig: Signals, job: IngestJob) -> None:
    """The real IngestWorker with its production configuration, in its own process."""
    worker = IngestWorker(job.db, IngestConfig(broker=BrokerUrl.parse(job.broker), client_id=job.client_id))
    tune_gc_for_ingest()  # as `hub serve` and `hub ingest` do
    sig.results.put(("ready", name, None))
    if not _wait_go(sig):
        worker.store.close()
        return
    cpu0 = time.process_time()

    def report_connected() -> None:
        if worker.connected.wait(15):
            sig.results.put(("connected", name, None))

    def stop_on_signal() -> None:
        sig.stop.wait()
        worker.stop()

    threading.Thread(target=report_connected, daemon=True).start()
    threading.Thread(target=stop_on_signal, daemon=True).start()
    _run_profiled(worker.run, job.profile)
    sig.results.put(("done", name, {**asdict(worker.stats), "cpu_s": _cpu_since(cpu0)}))


# -- the parent's side ---------------------------------------------------------------------


class Fleet:
    """A group of child processes that start on one signal and are always reaped, even on errors."""

    def __init__(self, ctx: SpawnContext) -> None:
        self.ctx = ctx
        self.signals = Signals(ctx.Event(), ctx.Event(), ctx.Queue())
        self.procs: dict[str, SpawnProcess] = {}
        self._stash: dict[tuple[str, str], Any] = {}

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def spawn(self, target: Callable[[str, Signals, Any], None], name: str, job: Any) -> None:
        """Start a child with Ctrl-C already ignored: an inherited SIG_IGN survives exec and Python keeps it,
        so a child still importing cannot die with a traceback; the parent stops it in order instead."""
        proc = self.ctx.Process(target=_child_main, args=(target, name, self.signals, job), name=name, daemon=True)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            proc.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        self.procs[name] = proc

    def go(self) -> float:
        """Start every child's measured work; returns the wall-clock start (children stamp with time.time too)."""
        start = time.time()
        self.signals.go.set()
        return start

    def expect(self, kind: str, names: list[str], timeout: float) -> dict[str, Any]:
        """Wait for one `kind` report from each named child; a child's error or death fails the phase."""
        deadline = time.monotonic() + timeout
        got: dict[str, Any] = {}
        while missing := [n for n in names if n not in got]:
            for n in missing:
                if (kind, n) in self._stash:
                    got[n] = self._stash.pop((kind, n))
            if len(got) == len(names):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"no {kind!r} from {', '.join(sorted(set(names) - set(got)))} within {timeout:.0f} s")
            self._receive(min(remaining, 0.5))
        return got

    def check(self) -> None:
        """Raise if a child reported an error or died; keep any other reports for expect()."""
        self._receive(0)

    def _receive(self, timeout: float) -> None:
        try:
            kind, name, payload = self.signals.results.get(timeout=timeout) if timeout else self._get_nowait()
        except queue.Empty:
            self._check_alive()
            return
        if kind == "error":
            raise BenchError(f"{name} failed:\n{payload}")
        self._stash[(kind, name)] = payload

    def _get_nowait(self) -> tuple[str, str, Any]:
        return self.signals.results.get_nowait()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.exitcode not in (None, 0):
                raise BenchError(f"{name} exited with code {proc.exitcode}")

    def stop(self) -> None:
        self.signals.stop.set()

    def close(self) -> None:
        """Ask, then wait, then terminate, then kill; read the queue meanwhile so no child blocks on it."""
        self.stop()
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            while proc.is_alive() and time.monotonic() < deadline:
                self._drain_queue()
                proc.join(0.1)
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
                proc.join(3)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.signals.results.close()
        self.signals.results.cancel_join_thread()

    def _drain_queue(self) -> None:
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while True:
                self.signals.results.get_nowait()


class HubDb:
    """Read-only questions the benchmark asks the hub database, per phase (kiosk id prefix)."""

    def __init__(self, where: Location) -> None:
        self.conn = connect(where, read_only=True)

    def close(self) -> None:
        self.conn.close()

    @staticmethod
    def _range(prefix: str) -> tuple[str, str]:
        """Kiosk ids starting with `prefix`, as an index-friendly range."""
        return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)

    def committed(self, prefix: str) -> int:
        (n,) = self.conn.execute(
            "SELECT count(*) FROM messages WHERE kiosk >= ? AND kiosk < ?", self._range(prefix)
        ).fetchone()
        return int(n)

    def ids(self, prefix: str) -> list[str]:
        rows = self.conn.execute("SELECT id FROM messages WHERE kiosk >= ? AND kiosk < ?", self._range(prefix))
        return [str(r[0]) for r in rows]

    def messages_by_commit(self, prefix: str) -> list[tuple[float, int]]:
        rows = self.conn.execute(
            "SELECT committed_at, count(*) FROM messages WHERE kiosk >= ? AND kiosk < ? GROUP BY committed_at",
            self._range(prefix),
        )
        return [(float(t), int(n)) for t, n in rows]

    def readings_by_commit(self, prefix: str) -> list[tuple[float, int]]:
        rows = self.conn.execute(
            "SELECT m.committed_at, count(*) FROM observations o JOIN messages m ON m.id = o.message_id "
            "WHERE o.kiosk >= ? AND o.kiosk < ? GROUP BY m.committed_at",
            self._range(prefix),
        )
        return [(float(t), int(n)) for t, n in rows]

    def latencies_ms(self, prefix: str, receipts: dict[str, float]) -> Latencies:
        """From the device clock at enqueue (ms precision, truncated: up to 1 ms too high) to the commit
        (committed_at, taken in the transaction before its last inserts and COMMIT's fsync), and to the
        receipt's arrival back at the kiosk (after the fsync; an upper bound of the commit). The commit
        latency is also split where ingest read the message (received_at): before it, the kiosk's queue
        and the broker; after it, the hub."""
        rows = self.conn.execute(
            "SELECT id, received_at, committed_at, device_time FROM messages WHERE kiosk >= ? AND kiosk < ?",
            self._range(prefix),
        )
        found = Latencies()
        for mid, received_at, committed_at, device_time in rows:
            enqueued = datetime.fromisoformat(str(device_time)).timestamp()
            found.commit.append((float(committed_at) - enqueued) * 1000)
            found.to_hub.append((float(received_at) - enqueued) * 1000)
            found.in_hub.append((float(committed_at) - float(received_at)) * 1000)
            if mid in receipts:
                found.receipt.append((receipts[mid] - enqueued) * 1000)
        for values in (found.commit, found.to_hub, found.in_hub, found.receipt):
            values.sort()
        return found


@dataclass
class Latencies:
    commit: list[float] = field(default_factory=list)
    to_hub: list[float] = field(default_factory=list)
    in_hub: list[float] = field(default_factory=list)
    receipt: list[float] = field(default_factory=list)


@dataclass
class Audit:
    """Did every enqueued reading arrive exactly once? `duplicate_rows` is about the DB only."""

    enqueued: int = 0
    committed: int = 0
    lost: int = 0
    duplicate_rows: int = 0
    unexpected: int = 0
    redeliveries_absorbed: int = 0  # ingest stats.duplicates: copies that reached ingest and were dropped
    forwarder_resends: int = 0
    dead_letters: int = 0


@dataclass
class CpuUse:
    """CPU seconds per side while a phase ran: here all sides share two cores, unlike the real system."""

    wall_s: float = 0.0
    kiosks_s: float = 0.0
    hub_s: float = 0.0  # the ingest worker, or the bare subscriber in (a)
    broker_s: float = 0.0
    items: int = 0  # messages in (a) and (b), readings in (c) and (d)
    hub_us_per_item: float = math.nan
    kiosks_us_per_item: float = math.nan

    def __post_init__(self) -> None:
        if self.items:
            self.hub_us_per_item = self.hub_s / self.items * 1e6
            self.kiosks_us_per_item = self.kiosks_s / self.items * 1e6

    @property
    def cores_busy(self) -> float:
        return (self.kiosks_s + self.hub_s + self.broker_s) / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"cpu over {self.wall_s:.1f} s: kiosks {self.kiosks_s:.1f} s, hub {self.hub_s:.1f} s, "
            f"broker {self.broker_s:.1f} s = {self.cores_busy:.2f} of {os.cpu_count()} cores busy; "
            f"per item: hub {self.hub_us_per_item:.0f} us, kiosk {self.kiosks_us_per_item:.0f} us"
        )


@dataclass
class BareResult:
    sent: int = 0
    received: int = 0
    seconds: float = 0.0
    msgs_per_s: float = 0.0
    cpu: CpuUse = field(default_factory=CpuUse)


@dataclass
class PathResult:
    msgs_per_s: float = 0.0
    readings_per_s: float = 0.0
    seconds: float = 0.0
    mqtt_messages: int = 0
    commits: int = 0
    commit_wall_s: float = 0.0
    audit: Audit = field(default_factory=Audit)
    cpu: CpuUse = field(default_factory=CpuUse)


@dataclass
class LatencyResult:
    target_rate: float = 0.0
    achieved_rate: float = 0.0
    samples: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    # Enqueue to the receipt's arrival at the kiosk: what the kiosk waits for before it deletes.
    receipt_samples: int = 0
    receipt_p50_ms: float = math.nan
    receipt_p99_ms: float = math.nan
    # The commit latency's two parts: enqueue to ingest reading it (kiosk queue, broker), then to the commit.
    to_hub_p99_ms: float = math.nan
    in_hub_p99_ms: float = math.nan
    audit: Audit = field(default_factory=Audit)
    cpu: CpuUse = field(default_factory=CpuUse)


@dataclass
class DrainResult:
    readings: int = 0
    seconds: float = 0.0
    readings_per_s: float = 0.0
    first_commit_after_s: float = 0.0
    mqtt_messages: int = 0
    audit: Audit = field(default_factory=Audit)
    cpu: CpuUse = field(default_factory=CpuUse)


@dataclass(frozen=True)
class BenchConfig:
    messages: int
    kiosks: int
    drain_readings: int
    latency_seconds: float
    load_fraction: float
    timeout_s: float
    profile_dir: Path | None
    kiosk_dir: Path | None  # where the simulated kiosks' outboxes live (None: beside the hub's database)
    workers: int = 1
    rounds: int = 1  # (a) then (b), this many times; the round with the median ratio is reported
    database: str | None = None  # a postgresql:// URL (an empty database); None: a SQLite file in the work folder


@dataclass(frozen=True)
class Started:
    """When a phase's measured work began: wall clock (comparable with committed_at) and the broker's CPU."""

    wall: float
    mono: float
    broker_cpu: float


@dataclass
class PhaseEnd:
    audit: Audit
    kiosk_stats: dict[str, Any]
    cpu: CpuUse
    ingest: dict[str, Any] = field(default_factory=dict)

    @property
    def commits(self) -> tuple[int, float]:
        """(transactions, wall seconds inside them): how much of the phase ingest spent waiting on the disk."""
        return int(self.ingest.get("commits", 0)), float(self.ingest.get("commit_seconds", 0.0))

    @property
    def mqtt_messages(self) -> int:
        return sum(int(s["messages_sent"]) for s in self.kiosk_stats.values())


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _rate(batches: list[tuple[float, int]]) -> float:
    """Items per second from the first commit to the last (the first batch opens the interval).

    NaN (null in JSON) with fewer than two commits: one batch has no interval to divide by.
    """
    if len(batches) < 2:
        return math.nan
    batches = sorted(batches)
    span = batches[-1][0] - batches[0][0]
    return sum(n for _, n in batches[1:]) / span if span > 0 else math.nan


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[round(q) - 1]


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of another process (Linux /proc); NaN where that is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_of(stats: dict[str, Any]) -> float:
    return sum(float(s.get("cpu_s", 0.0)) for s in stats.values())


class Bench:
    """Owns the broker and the phases; everything it starts it also stops."""

    def __init__(self, config: BenchConfig, work: Path, kiosk_work: Path) -> None:
        self.config = config
        self.work = work
        self.kiosk_work = kiosk_work
        self.ctx = multiprocessing.get_context("spawn")
        self.broker = MosquittoProcess(work / "broker")
        self.db_path: Location = (
            SqliteLocation(work / "hub.db") if config.database is None else parse_location(config.database)
        )

    @property
    def url(self) -> str:
        return self.broker.url

    def _profile(self, what: str) -> Path | None:
        return None if self.config.profile_dir is None else self.config.profile_dir / f"{what}.prof"

    def _broker_cpu(self) -> float:
        return _proc_cpu_s(self.broker.proc.pid) if self.broker.proc is not None else math.nan

    def _kiosks(self, phase: str, counts: list[int], **job: Any) -> list[KioskJob]:
        return [
            KioskJob(
                kiosk=f"bench-{phase}-{i:02d}",
                outbox=self.kiosk_work / phase / f"kiosk-{i:02d}.db",
                broker=self.url,
                prefill=n,
                profile=self._profile(f"kiosk-{phase}-{i:02d}"),
                **job,
            )
            for i, n in enumerate(counts)
        ]

    def _spawn_kiosks(self, fleet: Fleet, jobs: list[KioskJob]) -> list[str]:
        """Start the kiosk processes; returns the ids they pre-filled once all are ready."""
        for job in jobs:
            fleet.spawn(_kiosk_child, job.kiosk, job)
        ready = fleet.expect("ready", [j.kiosk for j in jobs], self.config.timeout_s)
        return [mid for ids in ready.values() for mid in ids]

    def ingest_ids(self, workers: int | None = None) -> list[str]:
        """One client id (persistent session, shared-subscription member) per ingest worker, as in production."""
        return [f"{INGEST_CLIENT_ID}-{i + 1}" for i in range(workers or self.config.workers)]

    def _spawn_ingest(self, fleet: Fleet, phase: str, workers: int | None = None) -> None:
        for cid in self.ingest_ids(workers):
            fleet.spawn(_ingest_child, cid, IngestJob(self.db_path, self.url, cid, self._profile(f"{cid}-{phase}")))
        fleet.expect("ready", self.ingest_ids(workers), self.config.timeout_s)

    def _start_ingest(self, phase: str, fleet: Fleet) -> None:
        """Ingest connected and subscribed before any kiosk sends (phases b and c)."""
        self._spawn_ingest(fleet, phase)
        fleet.go()
        fleet.expect("connected", self.ingest_ids(), 15)

    def _go(self, *fleets: Fleet) -> Started:
        started = Started(time.time(), time.monotonic(), self._broker_cpu())
        for fleet in fleets:
            fleet.go()
        return started

    def _cpu(self, started: Started, kiosk_stats: dict[str, Any], hub_stats: dict[str, Any], items: int) -> CpuUse:
        return CpuUse(
            wall_s=time.monotonic() - started.mono,
            kiosks_s=_cpu_of(kiosk_stats),
            hub_s=_cpu_of(hub_stats),
            broker_s=self._broker_cpu() - started.broker_cpu,
            items=items,
        )

    def _wait_committed(self, db: HubDb, prefix: str, total: int, fleets: list[Fleet]) -> None:
        """Poll until `total` rows of this phase are in; stop early on a stall, timeout or failed child."""
        deadline = time.monotonic() + self.config.timeout_s
        last_count, last_change = -1, time.monotonic()
        while (count := db.committed(prefix)) < total:
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            if now > deadline or now - last_change > STALL_S:
                log.warning("%s: only %d of %d committed; giving up waiting", prefix, count, total)
                return
            for fleet in fleets:
                fleet.check()
            time.sleep(POLL_S)

    def _finish(
        self, hub: Fleet, kiosks: Fleet, items: int, started: Started, kiosk_cpu_before: dict[str, Any] | None = None
    ) -> PhaseEnd:
        """Stop kiosks, then ingest; collect their stats and CPU (the audit is filled in by _audit).

        `kiosk_cpu_before`: each kiosk's CPU seconds spent before `started` (publishing in b), not counted.
        """
        kiosks.stop()
        kstats = kiosks.expect("done", list(kiosks.procs), 30)
        hub.stop()
        istats = hub.expect("done", list(hub.procs), 30)
        before = kiosk_cpu_before or {}
        measured = {
            k: {"cpu_s": float(v["cpu_s"]) - float(before.get(k, {}).get("cpu_s", 0.0))} for k, v in kstats.items()
        }
        cpu = self._cpu(started, measured, istats, items)
        # The workers' counters summed: the phase's ingest as one.
        counters = ("duplicates", "dead_letters", "commits", "commit_seconds")
        ingest = {k: sum(float(w[k]) for w in istats.values()) for k in counters}
        audit = Audit(
            redeliveries_absorbed=int(ingest["duplicates"]),
            forwarder_resends=sum(int(s["resends"]) for s in kstats.values()),
            dead_letters=int(ingest["dead_letters"]),
        )
        return PhaseEnd(audit, kstats, cpu, ingest)

    @staticmethod
    def _audit(end: PhaseEnd, db: HubDb, prefix: str, enqueued: list[str]) -> Audit:
        """Every enqueued id looked up in the hub: lost, extra, and rows beyond one per id."""
        stored = db.ids(prefix)
        stored_set, enqueued_set = set(stored), set(enqueued)
        audit = end.audit
        audit.enqueued = len(enqueued)
        audit.committed = len(stored_set)
        audit.lost = len(enqueued_set - stored_set)
        audit.duplicate_rows = len(stored) - len(stored_set)
        audit.unexpected = len(stored_set - enqueued_set)
        return audit

    # -- phases --------------------------------------------------------------------------

    def bare(self, phase: str = "a") -> BareResult:
        n = self.config.messages
        with Fleet(self.ctx) as subscriber, Fleet(self.ctx) as publishers:
            subscriber.spawn(_bare_subscriber, "subscriber", SubscriberJob(self.url, n, IngestConfig.receive_maximum))
            subscriber.expect("ready", ["subscriber"], self.config.timeout_s)
            jobs = self._kiosks(phase, _split(n, self.config.kiosks), bare=True)
            sent = len(self._spawn_kiosks(publishers, jobs))
            publishers.go()
            publishers.expect("done", [j.kiosk for j in jobs], self.config.timeout_s)  # the broker has them all
            started = self._go(subscriber)
            sub = subscriber.expect("done", ["subscriber"], self.config.timeout_s)
            cpu = self._cpu(started, {}, sub, n)
        seconds = float(sub["subscriber"]["seconds"])
        received = int(sub["subscriber"]["received"])
        # Like (b): the first message opens the interval, so it is not counted in the rate.
        rate = (received - 1) / seconds if seconds > 0 else 0.0
        return BareResult(sent=sent, received=received, seconds=seconds, msgs_per_s=rate, cpu=cpu)

    def full_path(self, phase: str = "b", workers: int | None = None) -> PathResult:
        """(b) with the configured ingest workers; `workers=1` gives the like-for-like figure beside it."""
        prefix = f"bench-{phase}-"
        counts = _split(self.config.messages, self.config.kiosks)
        # Everything goes out before ingest returns: the window holds a kiosk's whole backlog,
        # and receipts may take longer than the production timeout to come.
        jobs = self._kiosks(
            phase,
            counts,
            batch_max_items=1,
            window_messages=max(counts),
            receipt_timeout_s=self.config.timeout_s,
            report_published=True,
        )
        names = [j.kiosk for j in jobs]
        for cid in self.ingest_ids(workers):
            _create_session(
                self.url,
                cid,
                [(Topics.shared(IngestConfig.group, Topics.UPLINK_FILTER), 1), (Topics.PRESENCE_FILTER, 1)],
            )
        with Fleet(self.ctx) as hub, Fleet(self.ctx) as kiosks:
            enqueued = self._spawn_kiosks(kiosks, jobs)
            kiosks.go()
            published = kiosks.expect("published", names, self.config.timeout_s)
            self._spawn_ingest(hub, phase, workers)
            db = HubDb(self.db_path)
            try:
                started = self._go(hub)
                self._wait_committed(db, prefix, len(enqueued), [hub, kiosks])
                end = self._finish(hub, kiosks, len(enqueued), started, kiosk_cpu_before=published)
                audit = self._audit(end, db, prefix, enqueued)
                msgs = db.messages_by_commit(prefix)
                readings = db.readings_by_commit(prefix)
            finally:
                db.close()
        span = max(t for t, _ in msgs) - min(t for t, _ in msgs) if msgs else 0.0
        commits, commit_wall = end.commits
        return PathResult(_rate(msgs), _rate(readings), span, end.mqtt_messages, commits, commit_wall, audit, end.cpu)

    def latency(self, rate: float) -> LatencyResult:
        prefix = "bench-c-"
        per_kiosk = rate / self.config.kiosks
        jobs = self._kiosks("c", [0] * self.config.kiosks, rate=per_kiosk, seconds=self.config.latency_seconds)
        names = [j.kiosk for j in jobs]
        with Fleet(self.ctx) as hub, Fleet(self.ctx) as kiosks:
            self._start_ingest("c", hub)
            self._spawn_kiosks(kiosks, jobs)
            db = HubDb(self.db_path)
            try:
                started = self._go(kiosks)
                live = kiosks.expect("enqueued", names, self.config.latency_seconds + self.config.timeout_s)
                enqueued = [mid for r in live.values() for mid in r["ids"]]
                self._wait_committed(db, prefix, len(enqueued), [hub, kiosks])
                end = self._finish(hub, kiosks, len(enqueued), started)
                audit = self._audit(end, db, prefix, enqueued)
                receipts = {mid: t for stats in end.kiosk_stats.values() for mid, t in stats["receipts"].items()}
                found = db.latencies_ms(prefix, receipts)
            finally:
                db.close()
        latencies = found.commit
        return LatencyResult(
            target_rate=rate,
            achieved_rate=sum(float(r["rate"]) for r in live.values()),
            samples=len(latencies),
            p50_ms=_percentile(latencies, 50),
            p99_ms=_percentile(latencies, 99),
            max_ms=latencies[-1] if latencies else math.nan,
            receipt_samples=len(found.receipt),
            receipt_p50_ms=_percentile(found.receipt, 50),
            receipt_p99_ms=_percentile(found.receipt, 99),
            to_hub_p99_ms=_percentile(found.to_hub, 99),
            in_hub_p99_ms=_percentile(found.in_hub, 99),
            audit=audit,
            cpu=end.cpu,
        )

    def drain(self) -> DrainResult:
        prefix = "bench-d-"
        jobs = self._kiosks("d", _split(self.config.drain_readings, self.config.kiosks))
        with Fleet(self.ctx) as hub, Fleet(self.ctx) as kiosks:
            # The backlog is stored while no ingest runs; then hub and kiosks start on one signal.
            enqueued = self._spawn_kiosks(kiosks, jobs)
            self._spawn_ingest(hub, "d")
            db = HubDb(self.db_path)
            try:
                started = self._go(hub, kiosks)
                self._wait_committed(db, prefix, len(enqueued), [hub, kiosks])
                end = self._finish(hub, kiosks, len(enqueued), started)
                audit = self._audit(end, db, prefix, enqueued)
                readings = db.readings_by_commit(prefix)
            finally:
                db.close()
        last = max((t for t, _ in readings), default=started.wall)
        first = min((t for t, _ in readings), default=started.wall)
        total = sum(n for _, n in readings)
        seconds = last - started.wall
        return DrainResult(
            readings=total,
            seconds=seconds,
            readings_per_s=total / seconds if seconds > 0 else 0.0,
            first_commit_after_s=first - started.wall,
            mqtt_messages=end.mqtt_messages,
            audit=audit,
            cpu=end.cpu,
        )


# -- command line and report ---------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=24_000, help="single-reading envelopes for (a) and (b)")
    p.add_argument("--kiosks", type=int, default=4, help="simulated kiosks, one process and outbox each")
    p.add_argument("--drain-readings", type=int, default=100_000, help="backlog for the drain phase (d)")
    p.add_argument("--latency-seconds", type=float, default=8.0, help="length of the live-load phase (c)")
    p.add_argument("--load-fraction", type=float, default=0.5, help="live load in (c) as a fraction of (b)'s msgs/s")
    p.add_argument(
        "--kiosk-dir",
        type=Path,
        default=_default_kiosk_dir(),
        help="folder for the simulated kiosks' outboxes, apart from the hub's disk (default: /dev/shm when there)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="most seconds any phase may wait")
    p.add_argument("--profile", type=Path, default=None, help="write cProfile stats of every child to this folder")
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="ingest worker processes on the shared subscription (default: as hub serve); "
        "with more than one, (b) also runs with one for the like-for-like ratio",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run (a) then (b) this many times and report the round with the median ratio, all ratios listed: "
        "a shared machine's noise moves a single short round by ±20 percent",
    )
    p.add_argument(
        "--database",
        default=None,
        metavar="URL",
        help="run ingest on this PostgreSQL database (postgresql://..., an empty one: the phases' rows are added "
        "to it) instead of a SQLite file in a temp folder",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _default_kiosk_dir() -> Path | None:
    shm = Path("/dev/shm")  # noqa: S108 - a private TemporaryDirectory is made inside it
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def _config(args: argparse.Namespace) -> BenchConfig:
    if args.kiosks < 1 or args.messages < args.kiosks * 2 or args.drain_readings < 1:
        raise SystemExit("--kiosks must be at least 1, --messages at least 2 per kiosk, --drain-readings at least 1")
    if not 0 < args.load_fraction <= 1:
        raise SystemExit("--load-fraction must be in (0, 1]")
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    return BenchConfig(
        messages=args.messages,
        kiosks=args.kiosks,
        drain_readings=args.drain_readings,
        latency_seconds=args.latency_seconds,
        load_fraction=args.load_fraction,
        kiosk_dir=args.kiosk_dir,
        timeout_s=args.timeout,
        profile_dir=args.profile.resolve() if args.profile is not None else None,
        workers=args.workers,
        rounds=args.rounds,
        database=args.database,
    )


@dataclass
class Report:
    config: BenchConfig
    bare: BareResult
    path: PathResult
    latency: LatencyResult
    drain: DrainResult
    runtime_s: float
    path_one: PathResult | None = None  # (b) with one worker, when (b) ran several
    round_ratios: list[float] = field(default_factory=list)  # (b)/(a) of every round, in order

    @property
    def ratio(self) -> float:
        return self.path.msgs_per_s / self.bare.msgs_per_s if self.bare.msgs_per_s else math.nan

    @property
    def ratio_one_worker(self) -> float:
        """Like for like: one ingest process against the one bare subscriber."""
        one = self.path_one or self.path
        return one.msgs_per_s / self.bare.msgs_per_s if self.bare.msgs_per_s else math.nan

    @property
    def audits(self) -> list[Audit]:
        first = [self.path_one.audit] if self.path_one else []
        return [*first, self.path.audit, self.latency.audit, self.drain.audit]

    @property
    def lost(self) -> int:
        return sum(a.lost for a in self.audits)

    @property
    def duplicates(self) -> int:
        return sum(a.duplicate_rows for a in self.audits)

    def targets(self) -> dict[str, bool]:
        return {
            "ingest_at_least_80pct_of_bare_no_loss_no_dup": self.ratio >= TARGET_RATIO
            and self.lost == 0
            and self.duplicates == 0,
            "drain_at_least_20000_readings_per_s": self.drain.readings_per_s >= TARGET_DRAIN,
            "p99_below_100_ms_at_half_load": self.latency.p99_ms < TARGET_P99_MS,
        }

    def _store(self) -> str:
        if self.config.database is None:
            return "SQLite (a file in a temp folder)"
        return f"PostgreSQL {parse_location(self.config.database).describe()}"

    def as_json(self) -> dict[str, Any]:
        summary = {
            "store": "sqlite" if self.config.database is None else "postgresql",
            "bare_msgs_per_s": self.bare.msgs_per_s,
            "bare_readings_per_s": self.bare.msgs_per_s,  # one reading per envelope, one envelope per message
            "ingest_msgs_per_s": self.path.msgs_per_s,
            "ingest_readings_per_s": self.path.readings_per_s,
            "ratio": self.ratio,
            "ingest_workers": self.config.workers,
            "ratio_one_worker": self.ratio_one_worker,
            "round_ratios": self.round_ratios,
            "p50_latency_ms": self.latency.p50_ms,
            "p99_latency_ms": self.latency.p99_ms,
            "p99_receipt_latency_ms": self.latency.receipt_p99_ms,
            "p99_to_hub_latency_ms": self.latency.to_hub_p99_ms,
            "p99_in_hub_latency_ms": self.latency.in_hub_p99_ms,
            "drain_readings_per_s": self.drain.readings_per_s,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "redeliveries_absorbed": sum(a.redeliveries_absorbed for a in self.audits),
            "forwarder_resends": sum(a.forwarder_resends for a in self.audits),
            "bare_lost": self.bare.sent - self.bare.received,
            "messages": self.config.messages,
            "kiosks": self.config.kiosks,
            "drain_readings": self.config.drain_readings,
            "latency_target_rate": self.latency.target_rate,
            "latency_achieved_rate": self.latency.achieved_rate,
            "cpu_cores": os.cpu_count(),
            "bare_subscriber_cpu_us_per_msg": self.bare.cpu.hub_us_per_item,
            "ingest_cpu_us_per_msg": self.path.cpu.hub_us_per_item,
            "drain_ingest_cpu_us_per_reading": self.drain.cpu.hub_us_per_item,
            "bare": asdict(self.bare),
            "full_path": asdict(self.path),
            "full_path_one_worker": asdict(self.path_one) if self.path_one else None,
            "latency": asdict(self.latency),
            "drain": asdict(self.drain),
            "targets": self.targets(),
            "runtime_s": self.runtime_s,
        }
        return {k: _json_safe(v) for k, v in summary.items()}

    def _rounds_line(self) -> list[str]:
        if len(self.round_ratios) < 2:
            return []
        listed = ", ".join(f"{r:.2f}" for r in self.round_ratios)
        return [f"    ratios of the {len(self.round_ratios)} rounds: {listed} (the figures above: the median round)"]

    def lines(self) -> list[str]:
        b, p, c, d = self.bare, self.path, self.latency, self.drain
        one = self.path_one
        b1 = (
            [
                f"(b1) the same, one worker      {one.msgs_per_s:8,.0f} msgs/s   ratio (b1)/(a) "
                f"{self.ratio_one_worker:.2f}; {_audit_line(one.audit)}",
                f"    {one.cpu.line()}",
            ]
            if one
            else []
        )
        return [
            f"hub bench ingest: {self.config.kiosks} kiosks, {self.config.messages:,} single-reading envelopes, "
            f"embedded mosquitto on loopback, {os.cpu_count()} cores; kiosk outboxes in "
            f"{self.config.kiosk_dir or 'the hub data folder'}; store: {self._store()}",
            f"(a) bare paho subscriber       {b.msgs_per_s:8,.0f} msgs/s = readings/s   "
            f"received {b.received:,}/{b.sent:,} in {b.seconds:.2f} s",
            f"    {b.cpu.line()}",
            *b1,
            f"(b) forwarder->ingest->store   {p.msgs_per_s:8,.0f} msgs/s  {p.readings_per_s:8,.0f} readings/s   "
            f"first->last commit {p.seconds:.2f} s, {p.mqtt_messages:,} MQTT messages, "
            f"{self.config.workers} ingest worker(s)",
            f"    ratio (b)/(a) {self.ratio:.2f}; {_audit_line(p.audit)}",
            *self._rounds_line(),
            f"    {p.commits:,} transactions (avg {p.mqtt_messages / max(p.commits, 1):,.0f} messages), "
            f"{p.commit_wall_s:.2f} s inside them",
            f"    {p.cpu.line()}",
            f"(c) latency at {self.config.load_fraction:.0%} of (b)      p50 {c.p50_ms:.1f} ms  p99 {c.p99_ms:.1f} ms  "
            f"max {c.max_ms:.1f} ms   {c.samples:,} readings at {c.achieved_rate:,.0f}/s "
            f"(target {c.target_rate:,.0f}/s) for {self.config.latency_seconds:g} s",
            f"    to the receipt at the kiosk: p50 {c.receipt_p50_ms:.1f} ms  p99 {c.receipt_p99_ms:.1f} ms "
            f"({c.receipt_samples:,} receipts)",
            f"    p99 of its parts: enqueue -> ingest reads it {c.to_hub_p99_ms:.1f} ms (kiosk queue, broker); "
            f"-> commit {c.in_hub_p99_ms:.1f} ms (hub)",
            f"    {_audit_line(c.audit)}",
            f"    {c.cpu.line()}",
            f"(d) drain                      {d.readings_per_s:8,.0f} readings/s   {d.readings:,} readings in "
            f"{d.seconds:.2f} s from start (first commit after {d.first_commit_after_s:.2f} s), "
            f"{d.mqtt_messages:,} MQTT messages",
            f"    {_audit_line(d.audit)}",
            f"    {d.cpu.line()}",
            f"totals: lost {self.lost}, duplicate rows {self.duplicates}",
            "targets: " + ", ".join(f"{k} {'PASS' if v else 'MISS'}" for k, v in self.targets().items()),
            f"runtime {self.runtime_s:.1f} s",
        ]


def _json_safe(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured is null; floats are rounded for reading."""
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _audit_line(a: Audit) -> str:
    return (
        f"lost {a.lost}, duplicate rows {a.duplicate_rows} (of {a.enqueued:,} enqueued, {a.committed:,} in the hub), "
        f"redeliveries absorbed by ingest {a.redeliveries_absorbed}, forwarder resends {a.forwarder_resends}"
        + (f", unexpected rows {a.unexpected}" if a.unexpected else "")
        + (f", dead letters {a.dead_letters}" if a.dead_letters else "")
    )


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop servers, brokers and children (both benches use it)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_phases(config: BenchConfig, work: Path, kiosk_work: Path) -> Report:
    started = time.monotonic()
    bench = Bench(config, work, kiosk_work)
    bench.broker.start()
    try:
        log.info("(a) bare subscriber, %d messages", config.messages)
        bare = bench.bare()
        path_one = None
        if config.workers > 1:
            log.info("(a) %.0f msgs/s; (b1) forwarder -> one ingest worker", bare.msgs_per_s)
            # First: each worker id keeps a shared-subscription session, and the broker would
            # queue a share of (b1) for a second worker that is not running.
            path_one = bench.full_path("b1", workers=1)
        log.info("(b) forwarder -> %d ingest worker(s)", config.workers)
        rounds = [(bare, bench.full_path())]
        for n in range(2, config.rounds + 1):  # each round's kiosks and rows under names of its own
            log.info("round %d of %d: (a) then (b)", n, config.rounds)
            rounds.append((bench.bare(f"a{n}"), bench.full_path(f"b{n}r")))
        ratios = [p.msgs_per_s / a.msgs_per_s if a.msgs_per_s else math.nan for a, p in rounds]
        # The median round; of an even number, the lower of the middle two (never the flattering one).
        bare, path = rounds[sorted(range(len(rounds)), key=lambda i: ratios[i])[(len(rounds) - 1) // 2]]
        live_rate = path.msgs_per_s * config.load_fraction if math.isfinite(path.msgs_per_s) else 100.0
        log.info("(b) %.0f msgs/s; (c) latency at %.0f readings/s", path.msgs_per_s, live_rate)
        latency = bench.latency(live_rate)
        log.info("(c) p99 %.1f ms; (d) drain of %d readings", latency.p99_ms, config.drain_readings)
        drain = bench.drain()
    finally:
        bench.broker.stop()
    return Report(config, bare, path, latency, drain, time.monotonic() - started, path_one, ratios)


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        find_mosquitto()
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        with (
            sigterm_as_exit(),
            tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp,
            tempfile.TemporaryDirectory(prefix="hub-bench-kiosks-", dir=config.kiosk_dir) as kiosk_tmp,
        ):
            report = _run_phases(config, Path(tmp), Path(kiosk_tmp))
    except KeyboardInterrupt:
        print("interrupted; broker and children stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print("\n".join(report.lines()))
    return 0
