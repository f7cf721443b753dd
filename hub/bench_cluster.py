"""`hub bench cluster`: two `hub serve` instances on one PostgreSQL database, one of them lost mid-drain.

What a site running two instances wants to know when one machine dies under load: is any reading lost or
stored twice, how long do commits stop, and how fast does the survivor alone drain what the kiosks hold?
One run:

1. its own Mosquitto (loopback, free port, temp folder), as `hub bench ingest` starts one;
2. kiosk processes pre-fill their outboxes with `--drain-readings` single-reading envelopes, a backlog
   stored while the hub was away (`hub bench ingest`'s drain phase, its kiosk children reused); meanwhile
   two real `hub serve` processes, instances a and b, start on the database, each with its ingest workers
   on the broker's shared subscription and each in a session of its own, so that its whole process group
   can be killed as a lost machine kills it (`tests/test_cluster_failover.py` does the same);
3. once both answer /readyz, the kiosks' real Forwarders drain with production settings (up to
   `--batch` readings per MQTT message, a window of 4, a 10 s receipt timeout). When `--kill-after` of the
   readings are committed, instance a's process group gets SIGKILL: the server and its ingest workers go
   without a goodbye, and a transaction it had open dies with its database session. a stays dead; the
   question is what the survivor does alone;
4. every enqueued id is looked up in the hub (lost), and (kiosk, seq) pairs stored more than once are
   counted (doubled: the primary key makes a second row with one message id impossible, so a duplicate
   could only show as a second id for one reading). Rates and gaps come from the messages' committed_at.

The database URL reaches the servers in $HUB_DATABASE, never in argv, which `ps` shows to every user.
Everything (both instances, their workers, the broker, the kiosks and usually PostgreSQL) shares this
machine's cores, which a real cluster does not; the report says so in its first line. How many
redeliveries ingest absorbed is not reported: the counters live in the servers' worker processes and
die with them. The kiosks' side is: how often a receipt deadline passed and how many readings went out
again. Those explain the rate after the kill: Mosquitto keeps a dead member's persistent session and goes
on routing it its turn of the shared subscription, so the dead instance's share reaches the survivor only
as the kiosks' resends once their receipts are overdue (README, "Cluster benchmark").
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import logging
import math
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hub.bench import (
    POLL_S,
    BenchError,
    Fleet,
    HubDb,
    KioskJob,
    _default_kiosk_dir,
    _json_safe,
    _kiosk_child,
    _split,
    sigterm_as_exit,
)
from hub.broker import MosquittoProcess, find_mosquitto, free_port
from hub.db import Location, LocationError, PostgresLocation
from hub.db import parse as parse_location
from hub.db.location import DATABASE_ENV
from hub.ingest_pool import default_workers

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
INSTANCES = ("a", "b")  # a is killed, b survives
KILL_POLL_S = 0.02  # before the kill: finely, so it lands near --kill-after even on a short drain
STALL_S = 120.0  # no new commit for this long: give up and report the rest as lost (receipt timeouts double)
STOP_S = 60.0  # how long `hub serve` may take to stop after SIGTERM before its group is killed
READY_S = 120.0  # how long both instances may take to answer /readyz (two cold starts on two shared cores)


class ClusterDb(HubDb):
    """hub.bench's read-only queries by kiosk-id prefix, and one more: readings stored twice under new ids."""

    def doubled(self, prefix: str) -> int:
        """Rows beyond the first for any (kiosk, seq): the same reading stored twice, whatever its ids."""
        (n,) = self.conn.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM messages "
            "WHERE kiosk >= ? AND kiosk < ? GROUP BY kiosk, seq HAVING count(*) > 1) AS twice",
            self._range(prefix),
        ).fetchone()
        return int(n)


class Instance:
    """One `hub serve` process in a session of its own: its process group is the machine it runs on."""

    def __init__(self, name: str, work: Path, database: PostgresLocation, broker: str, workers: int) -> None:
        self.name = name
        self.data = work / f"hub-{name}"
        self.log = work / f"hub-{name}.log"
        self.database = database
        self.broker = broker
        self.workers = workers
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "hub.cli", "serve", "--data", str(self.data), "--port", str(self.port),
            "--broker", self.broker, "--instance", self.name, "--workers", str(self.workers),
        ]  # fmt: skip
        env = {**os.environ, DATABASE_ENV: self.database.url, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group (killed whole, workers included); Ctrl-C reaches only us
            )  # fmt: skip

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def ready(self) -> bool:
        """/readyz answers 200 (database reachable, ingest connected); an instance that exited fails the run."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(f"hub serve --instance {self.name} exited with code {self.proc.returncode}; its log "
                             f"ends:\n{self.log_tail()}")  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:  # not listening yet
            return False
        finally:
            conn.close()

    def lose_machine(self) -> None:
        """SIGKILL the whole process group: no process of this instance says goodbye or lives on."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM, so hub serve stops its workers in order; a group still there after STOP_S is killed."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            log.warning("hub serve --instance %s did not stop in %.0f s; killing its group", self.name, STOP_S)
            self.lose_machine()


@dataclass(frozen=True)
class ClusterConfig:
    database: PostgresLocation
    kiosks: int
    drain_readings: int
    kill_after: float
    batch: int
    receipt_timeout_s: float
    workers: int
    timeout_s: float
    kiosk_dir: Path | None


@dataclass
class ClusterResult:
    """What the run measured; times in seconds, rates in readings per second."""

    enqueued: int = 0
    committed: int = 0
    killed: bool = False
    killed_at_committed: int = 0  # the last count read before the SIGKILL
    killed_at_s: float = 0.0  # from the forwarders' start
    committed_before_kill: int = 0  # committed_at before the kill
    committed_after_kill: int = 0
    first_commit_after_start_s: float = math.nan
    readings_per_s_before_kill: float = math.nan  # from the forwarders' start to the kill
    readings_per_s_after_kill: float = math.nan  # from the kill to the last commit: b alone, its recovery included
    kill_to_first_commit_s: float = math.nan
    longest_gap_s: float = math.nan  # between consecutive distinct committed_at values
    longest_gap_from_kill_s: float = math.nan  # where that gap began, relative to the kill (negative: before)
    drain_seconds: float = math.nan  # from the forwarders' start to the last commit
    drain_readings_per_s: float = math.nan
    lost: int = 0
    doubled: int = 0
    unexpected: int = 0
    mqtt_messages: int = 0
    receipt_deadlines_passed: int = 0  # the Forwarders' `resends`: each sent everything unreceipted again
    readings_sent_again: int = 0


def _gaps(batches: list[tuple[float, int]], started: float, kill: float | None, result: ClusterResult) -> ClusterResult:
    """Rates before and after the kill, and the pauses in commits, from (committed_at, readings) pairs."""
    times = sorted(t for t, _ in batches)
    if not times:
        return result
    last = times[-1]
    result.first_commit_after_start_s = times[0] - started
    result.drain_seconds = last - started
    result.drain_readings_per_s = result.committed / result.drain_seconds if result.drain_seconds > 0 else math.nan
    if len(times) > 1:
        begin, end = max(itertools.pairwise(times), key=lambda pair: pair[1] - pair[0])
        result.longest_gap_s = end - begin
        if kill is not None:
            result.longest_gap_from_kill_s = begin - kill
    if kill is None:
        return result
    result.committed_before_kill = sum(n for t, n in batches if t < kill)
    result.committed_after_kill = sum(n for t, n in batches if t >= kill)
    if kill > started:
        result.readings_per_s_before_kill = result.committed_before_kill / (kill - started)
    if last > kill:
        result.readings_per_s_after_kill = result.committed_after_kill / (last - kill)
    result.kill_to_first_commit_s = min((t for t in times if t >= kill), default=math.nan) - kill
    return result


class Cluster:
    """Owns the broker, both instances and the kiosks; everything it starts it also stops."""

    def __init__(self, config: ClusterConfig, work: Path, kiosk_work: Path) -> None:
        self.config = config
        self.work = work
        self.kiosk_work = kiosk_work
        self.broker = MosquittoProcess(work / "broker")
        # One prefix per run: the kiosks' rows are told apart from anything already in the database.
        self.prefix = f"bench-cluster-{secrets.token_hex(3)}-"
        self.instances: list[Instance] = []

    def run(self) -> ClusterResult:
        self.broker.start()
        try:
            self.instances = [
                Instance(n, self.work, self.config.database, self.broker.url, self.config.workers) for n in INSTANCES
            ]
            with Fleet(multiprocessing.get_context("spawn")) as kiosks:
                return self._drain(kiosks)
        finally:  # the kiosks are stopped by now (the Fleet's exit), then the hubs, then their broker
            for instance in self.instances:
                instance.stop()
            self.broker.stop()

    def _jobs(self) -> list[KioskJob]:
        return [
            KioskJob(
                kiosk=f"{self.prefix}{i:02d}",
                outbox=self.kiosk_work / f"kiosk-{i:02d}.db",
                broker=self.broker.url,
                prefill=n,
                batch_max_items=self.config.batch,
                receipt_timeout_s=self.config.receipt_timeout_s,
            )
            for i, n in enumerate(_split(self.config.drain_readings, self.config.kiosks))
        ]

    def _start(self, kiosks: Fleet, jobs: list[KioskJob]) -> list[str]:
        """Kiosks pre-fill while both instances start (neither is measured yet); the ids once all are ready."""
        for job in jobs:
            kiosks.spawn(_kiosk_child, job.kiosk, job)
        for instance in self.instances:
            instance.start()
        deadline = time.monotonic() + READY_S
        waiting = list(self.instances)
        while waiting := [i for i in waiting if not i.ready()]:
            kiosks.check()
            if time.monotonic() > deadline:
                names = ", ".join(i.name for i in waiting)
                raise BenchError(f"instance(s) {names} not ready within {READY_S:.0f} s; the log of "
                                 f"{waiting[0].name} ends:\n{waiting[0].log_tail()}")  # fmt: skip
            time.sleep(0.2)
        ready = kiosks.expect("ready", [j.kiosk for j in jobs], self.config.timeout_s)
        return [mid for ids in ready.values() for mid in ids]

    def _wait(self, db: ClusterDb, kiosks: Fleet, until: int, deadline: float, interval: float) -> int:
        """Poll the committed count until `until`; return early on a stall or the deadline (the audit tells)."""
        last_count, last_change = -1, time.monotonic()
        while (count := db.committed(self.prefix)) < until:
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            if now > deadline or now - last_change > STALL_S:
                log.warning("only %d of %d readings committed; giving up waiting", count, until)
                return count
            kiosks.check()
            time.sleep(interval)
        return count

    def _drain(self, kiosks: Fleet) -> ClusterResult:
        jobs = self._jobs()
        enqueued = self._start(kiosks, jobs)
        total = len(enqueued)
        threshold = max(1, math.ceil(total * self.config.kill_after))
        db = ClusterDb(self.config.database)
        try:
            log.info("both instances ready; draining %d readings, a dies at %d committed", total, threshold)
            started = kiosks.go()
            deadline = time.monotonic() + self.config.timeout_s
            result = ClusterResult(enqueued=total)
            at_kill = self._wait(db, kiosks, threshold, deadline, KILL_POLL_S)
            kill: float | None = None
            if at_kill >= threshold:
                kill = time.time()
                self.instances[0].lose_machine()
                result.killed, result.killed_at_committed, result.killed_at_s = True, at_kill, kill - started
                log.info("instance a killed at %d committed; b drains the rest alone", at_kill)
                self._wait(db, kiosks, total, deadline, POLL_S)
            kiosks.stop()
            stats = kiosks.expect("done", [j.kiosk for j in jobs], 30)
            stored = db.ids(self.prefix)
            result.doubled = db.doubled(self.prefix)
            batches = db.readings_by_commit(self.prefix)
        finally:
            db.close()
        stored_set, enqueued_set = set(stored), set(enqueued)
        result.committed = len(stored_set)
        result.lost = len(enqueued_set - stored_set)
        result.unexpected = len(stored_set - enqueued_set)
        result.mqtt_messages = sum(int(s["messages_sent"]) for s in stats.values())
        result.receipt_deadlines_passed = sum(int(s["resends"]) for s in stats.values())
        result.readings_sent_again = max(0, sum(int(s["items_sent"]) for s in stats.values()) - total)
        return _gaps(batches, started, kill, result)


@dataclass
class ClusterReport:
    config: ClusterConfig
    result: ClusterResult
    runtime_s: float

    def targets(self) -> dict[str, bool]:
        r = self.result
        return {"no_loss_no_dup": r.killed and r.lost == 0 and r.doubled == 0 and r.unexpected == 0}

    def as_json(self) -> dict[str, Any]:
        c = self.config
        summary = {
            "store": "postgresql",
            "database": c.database.describe(),
            "cpu_cores": os.cpu_count(),
            "shared_machine": "both instances, their ingest workers, the broker and the kiosks",
            "instances": list(INSTANCES),
            "killed_instance": INSTANCES[0],
            "workers_per_instance": c.workers,
            "kiosks": c.kiosks,
            "drain_readings": c.drain_readings,
            "batch": c.batch,
            "receipt_timeout_s": c.receipt_timeout_s,
            "kill_after": c.kill_after,
            **asdict(self.result),
            "targets": self.targets(),
            "runtime_s": self.runtime_s,
        }
        return {k: _json_safe(v) for k, v in summary.items()}

    def lines(self) -> list[str]:
        c, r = self.config, self.result
        kill = (
            f"kill: instance a's process group (SIGKILL: server and {c.workers} ingest worker(s)) at "
            f"{r.killed_at_committed:,} committed ({r.killed_at_committed / max(r.enqueued, 1):.1%}), "
            f"{r.killed_at_s:.2f} s into the drain; b drains the rest alone, a stays dead"
            if r.killed
            else "kill: never happened (the drain stalled before --kill-after was reached)"
        )
        return [
            f"hub bench cluster: store PostgreSQL {c.database.describe()}; {os.cpu_count()} cores shared by both "
            f"hub serve instances (a, b; {c.workers} ingest worker(s) each), the broker (embedded mosquitto, "
            f"loopback) and {c.kiosks} kiosk processes, all on this machine",
            f"drain: {r.enqueued:,} readings pre-filled in {c.kiosks} kiosk outboxes, real forwarders (up to "
            f"{c.batch} readings per MQTT message, window 4, receipt timeout {c.receipt_timeout_s:g} s)",
            kill,
            f"before the kill  {r.readings_per_s_before_kill:8,.0f} readings/s   {r.committed_before_kill:,} readings "
            f"from the forwarders' start to the kill (first commit after {r.first_commit_after_start_s:.2f} s)",
            f"after the kill   {r.readings_per_s_after_kill:8,.0f} readings/s   {r.committed_after_kill:,} readings "
            "from the kill to the last commit (b alone)",
            f"gap: kill -> first commit after it {r.kill_to_first_commit_s:.3f} s; longest between commits "
            f"{r.longest_gap_s:.3f} s (began {r.longest_gap_from_kill_s:+.2f} s from the kill)",
            f"total: {r.committed:,} readings in {r.drain_seconds:.2f} s from the forwarders' start = "
            f"{r.drain_readings_per_s:,.0f} readings/s",
            f"audit: lost {r.lost}, doubled {r.doubled} (of {r.enqueued:,} enqueued, {r.committed:,} in the hub)"
            + (f", unexpected rows {r.unexpected}" if r.unexpected else ""),
            f"kiosks: {r.mqtt_messages:,} MQTT messages; receipt deadlines passed {r.receipt_deadlines_passed} "
            f"(each resends everything unreceipted), {r.readings_sent_again:,} readings sent again",
            "targets: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in self.targets().items()),
            f"runtime {self.runtime_s:.1f} s",
        ]


# -- command line ----------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        required=True,
        metavar="URL",
        help="an empty postgresql:// database both instances share (the bench's rows are added to it); "
        "it reaches them in $HUB_DATABASE, not argv",
    )
    p.add_argument("--kiosks", type=int, default=4, help="simulated kiosks, one process and outbox each")
    p.add_argument("--drain-readings", type=int, default=100_000, help="backlog split across the kiosks")
    p.add_argument(
        "--kill-after", type=float, default=0.3, help="fraction of the drain committed when instance a is killed"
    )
    p.add_argument(
        "--batch", type=int, default=500, help="most readings per MQTT message (the forwarder's batch_max_items)"
    )
    p.add_argument(
        "--receipt-timeout",
        type=float,
        default=10.0,
        help="seconds a kiosk waits for a receipt before it sends everything unreceipted again (the forwarder's "
        "default; it doubles while none comes)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="ingest worker processes per instance (default: as hub serve)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="most seconds the drain may take")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _config(args: argparse.Namespace) -> ClusterConfig:
    try:
        where: Location = parse_location(args.database)
    except LocationError as exc:
        raise SystemExit(f"--database: {exc}") from None
    if not isinstance(where, PostgresLocation):
        raise SystemExit("--database: two instances share one server: give a postgresql:// URL")
    if args.kiosks < 1 or args.drain_readings < args.kiosks:
        raise SystemExit("--kiosks must be at least 1, --drain-readings at least one per kiosk")
    if not 0 < args.kill_after < 1:
        raise SystemExit("--kill-after must be between 0 and 1")
    if not 1 <= args.batch <= 5000 or args.workers < 1 or args.receipt_timeout <= 0:
        raise SystemExit("--batch must be 1 to 5000, --workers at least 1, --receipt-timeout above 0")
    return ClusterConfig(
        database=where,
        kiosks=args.kiosks,
        drain_readings=args.drain_readings,
        kill_after=args.kill_after,
        batch=args.batch,
        receipt_timeout_s=args.receipt_timeout,
        workers=args.workers,
        timeout_s=args.timeout,
        kiosk_dir=_default_kiosk_dir(),
    )


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        find_mosquitto()
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        with (
            sigterm_as_exit(),
            tempfile.TemporaryDirectory(prefix="hub-bench-cluster-") as tmp,
            tempfile.TemporaryDirectory(prefix="hub-bench-cluster-kiosks-", dir=config.kiosk_dir) as kiosk_tmp,
        ):
            result = Cluster(config, Path(tmp), Path(kiosk_tmp)).run()
    except KeyboardInterrupt:
        print("interrupted; instances, broker and kiosks stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    report = ClusterReport(config, result, time.monotonic() - started)
    print(json.dumps(report.as_json()) if args.json else "\n".join(report.lines()))
    return 0
