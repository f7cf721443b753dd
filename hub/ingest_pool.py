"""Ingest workers as processes beside `hub serve`: one shared subscription, one core each.

A worker spends most of its time in Python (paho's packet handling, validation,
building rows), so threads in one process share one core through the GIL; processes
use them all. The broker spreads the kiosks' messages over the workers (MQTT 5 shared
subscription) and SQLite serialises their commits (`hub.store.IngestTurn`).

The pool restarts a worker that dies, and a worker dies with the hub: if `hub serve` is
killed, the kernel sends its workers SIGTERM (PR_SET_PDEATHSIG), so no orphan keeps a
broker session or the database open. Nothing depends on a worker stopping cleanly: what
it had not committed, the broker redelivers or the kiosk resends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path

from device.protocol.endpoints import BrokerUrl
from device.protocol.retry import Backoff
from hub.db import Location
from hub.downlink import Route
from hub.ingest import IngestConfig, IngestWorker, tune_gc_for_ingest
from hub.ingest_sessions import BrokerLogin

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 10.0
CHECK_INTERVAL_S = 0.5


def default_workers() -> int:
    """One per core, at most two: beyond that the database's one write lock is the limit (not measured here)."""
    return max(1, min(2, os.cpu_count() or 1))


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies; if it already has, stop now."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        raise SystemExit(0)


class SharedFlag:
    """An event across processes without semaphores: one shared byte, polled by a waiter.

    multiprocessing's Event is built on named semaphores, which its resource tracker then
    reports as leaked whenever the hub is stopped by a signal; readiness needs none of that.
    """

    def __init__(self, ctx: SpawnContext) -> None:
        self._value = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


class SharedText:
    """A short text across processes, the same way: shared bytes and a sequence number, no lock.

    A worker says here why it cannot commit ("cannot commit: database or disk is full since ..."),
    and the parent's readiness check reads it. The writer (one process, rarely: on a change of
    state) makes the number odd while it writes; a reader retries while it is odd or has moved.
    """

    SIZE = 512

    def __init__(self, ctx: SpawnContext) -> None:
        self._seq = ctx.RawValue("Q", 0)
        self._text = ctx.RawArray("c", self.SIZE)

    def set(self, text: str | None) -> None:
        data = (text or "").encode()[: self.SIZE]
        self._seq.value += 1
        self._text.raw = data.ljust(self.SIZE, b"\0")
        self._seq.value += 1

    def get(self) -> str | None:
        while True:
            before = self._seq.value
            if before % 2 == 0:
                data = bytes(self._text.raw)
                if self._seq.value == before:
                    break
            time.sleep(0.001)
        return data.rstrip(b"\0").decode(errors="replace") or None


@dataclass(frozen=True)
class WorkerState:
    """What a worker tells its parent through shared memory: connected and subscribed; why it cannot commit."""

    connected: SharedFlag
    problem: SharedText


def _worker_main(
    db: Path | Location, config: IngestConfig, state: WorkerState, parent_pid: int, log_level: int
) -> None:
    # A spawned process starts with no logging set up: without this, its info lines were lost.
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s {config.client_id} %(name)s: %(message)s")
    worker = IngestWorker(db, config, connected=state.connected, problem=state.problem)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the pool stops us in order
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())  # how the pool (or the kernel, see above) stops us
    _die_with_parent(parent_pid)
    tune_gc_for_ingest()
    worker.run()


@dataclass
class _Slot:
    config: IngestConfig
    state: WorkerState
    process: SpawnProcess | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, maximum_s=30.0))
    restart_at: float | None = None  # when a dead worker is due to be started again


class IngestPool:
    """Runs and supervises `count` ingest worker processes named `{client_id}:{n}`.

    The broker binds client ids to logins: the user name, or the user name, a colon and a suffix.
    """

    def __init__(self, db: Path | Location, base: IngestConfig, count: int, brokers: Sequence[BrokerUrl] = ()) -> None:
        """`count` workers on each of `brokers` (default: the one in `base`)."""
        if count < 1:
            raise ValueError("at least one ingest worker")
        self.db = db
        self._ctx: SpawnContext = multiprocessing.get_context("spawn")
        self.brokers = tuple(brokers) or (base.broker,)
        self._slots = [
            _Slot(
                # One sender of kept messages per broker (a kiosk is on one of them); kiosks ignore the copies.
                replace(
                    base,
                    broker=broker,
                    route=Route(str(broker), first=b == 0) if len(self.brokers) > 1 else None,
                    client_id=f"{base.client_id}:{n + 1}" + (f"-b{b + 1}" if b else ""),
                    send_downlink=base.send_downlink and n == 0,
                ),
                WorkerState(SharedFlag(self._ctx), SharedText(self._ctx)),
            )
            for b, broker in enumerate(self.brokers)
            for n in range(count)
        ]
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()

    def supervising(self) -> bool:
        """The pool's supervisor still runs (it restarts dead workers, so one dead worker is not a fault)."""
        return self._supervisor is not None and self._supervisor.is_alive()

    def ready(self) -> bool:
        """Every worker of at least one broker connected and subscribed (its SUBACK is in): with one broker of
        several down, kiosks fail over to the others and this instance still ingests what they send."""
        return any(all(s.state.connected.is_set() for s in self._on(b)) for b in self.brokers)

    def unreachable(self) -> list[BrokerUrl]:
        """The brokers some worker of this instance is not connected to (for /readyz to say)."""
        return [b for b in self.brokers if not all(s.state.connected.is_set() for s in self._on(b))]

    def sessions(self) -> list[tuple[str, str]]:
        """(broker, client id) of every worker: the broker sessions this instance owns."""
        return [(str(s.config.broker), s.config.client_id) for s in self._slots]

    def login(self, broker: str) -> BrokerLogin | None:
        """How this instance's ingest logs in to `broker` (all instances use one login), None if it has no such."""
        for s in self._slots:
            if str(s.config.broker) == broker:
                cfg = s.config
                return BrokerLogin(cfg.broker, cfg.username, cfg.password, cfg.ca_file)
        return None

    def _on(self, broker: BrokerUrl) -> list[_Slot]:
        return [s for s in self._slots if s.config.broker == broker]

    def store_problem(self) -> str | None:
        """Why a worker cannot commit ("cannot commit: database or disk is full since ..."), or None."""
        for slot in self._slots:
            problem = slot.state.problem.get()
            if problem is not None:
                return problem
        return None

    def wait_ready(self, timeout: float) -> bool:
        """Every worker on every broker connected (start-up, tests)."""
        return all(s.state.connected.wait(timeout) for s in self._slots)

    def start(self) -> None:
        for slot in self._slots:
            self._spawn(slot)
        self._supervisor = threading.Thread(target=self._supervise, name="ingest-pool", daemon=True)
        self._supervisor.start()

    def _spawn(self, slot: _Slot) -> None:
        slot.state.connected.clear()
        slot.state.problem.set(None)  # a new worker knows nothing yet; it says so at its first failed commit
        slot.process = self._ctx.Process(
            target=_worker_main,
            args=(self.db, slot.config, slot.state, os.getpid(), logging.getLogger().getEffectiveLevel()),
            name=slot.config.client_id,
            daemon=True,
        )
        slot.process.start()

    def _supervise(self) -> None:
        """Restart a worker that died, with backoff so a worker that cannot start does not spin."""
        while not self._stopping.wait(CHECK_INTERVAL_S):
            now = time.monotonic()
            for slot in self._slots:
                proc = slot.process
                if proc is None or self._stopping.is_set():
                    continue
                if proc.is_alive():
                    if slot.state.connected.is_set():
                        slot.backoff.reset()
                    continue
                if slot.restart_at is None:
                    slot.state.connected.clear()
                    slot.restart_at = now + slot.backoff.next_delay()
                    log.error("ingest worker %s exited (code %s); restarting it", slot.config.client_id, proc.exitcode)
                elif now >= slot.restart_at:
                    slot.restart_at = None
                    self._spawn(slot)

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=STOP_TIMEOUT_S)
        for slot in self._slots:
            if slot.process is not None and slot.process.is_alive():
                slot.process.terminate()  # SIGTERM: the worker commits what it holds, then leaves
        for slot in self._slots:
            proc = slot.process
            if proc is None:
                continue
            proc.join(timeout=STOP_TIMEOUT_S)
            if proc.is_alive():
                log.warning("ingest worker %s did not stop in time; killing it", slot.config.client_id)
                proc.kill()
                proc.join(timeout=STOP_TIMEOUT_S)
