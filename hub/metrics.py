"""What operators watch: the hub's metrics in Prometheus' text format (`GET /api/v1/metrics`, app.py).

Ingest commits from worker processes beside the web app (and, later, from several hub instances
sharing one database), so nothing here is counted in this process: what the database knows is read
from it at each scrape, in one read transaction (one snapshot: the figures agree with each other).

- Commits: the messages committed since the previous scrape (`committed_at` past the latest one
  seen), added to counters by kind and to a histogram of their commit latency (received -> committed,
  both stored). The counters start at this process' start, as Prometheus counters do; `rate()` and
  `histogram_quantile()` over a window give the ingest rate and latency of the last minutes. This
  relies on commits taking their `committed_at` under the one write lock (hub.store), so a later
  commit never carries an earlier time; a wall clock stepped back loses the commits of that step.
- Everything else is a count of what the database holds now: dead letters by reason, kiosks by the
  fleet page's own state, the backlogs kiosks reported, open alerts, open cases, waiting and live
  consults. Alerts and cases are counted through their queue indexes, clinic by clinic, consults through
  their partial ones; kiosks and dead letters are read whole (small tables). messages.committed_at has no
  index yet, so the commit query reads the messages table at each scrape (README "Metrics").
- Receipts are not counted: ingest publishes them after each commit (QoS 0) and records nothing of them.

Labels carry no health data, no patient and no kiosk: only kinds, states, severities, reason
categories (never a reason's text, which may quote what arrived), job names and this instance's name.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from device.protocol.envelope import RESERVED_KINDS, Kind
from hub import __version__
from hub.db import Connection, DatabaseError, connect, engine_of
from hub.db.lease import CLUSTER_JOBS, held_here
from hub.web.routes.fleet import backlog_growing, kiosk_state
from hub.workspace import Workspace

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = tuple(k for k in get_args(Kind) if k not in RESERVED_KINDS)  # what ingest stores
KIOSK_STATES = ("online", "late", "offline", "unknown")  # hub.web.routes.fleet.kiosk_state's answers
ALERT_STATES = ("open", "acknowledged")  # resolved ones are history, not work
SEVERITIES = ("low", "medium", "high")
CASE_STATES = ("new", "in_review", "answered")  # closed ones are history
CONSULT_STATES = ("waiting", "live")
RECENT_S = 60.0  # "committed in the last minute"
# Commit latency is mostly the batch window and one fsync: tens of milliseconds; seconds mean trouble.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Dead letters by what went wrong, never by their text (it may quote the refused content): each reason
# ingest writes (hub/uplink.py, hub/store.py) starts with one of these. Anything else is "other".
REASON_PREFIXES: tuple[tuple[str, str], ...] = (
    ("invalid_envelope", "invalid envelope: "),
    ("kiosk_mismatch", "envelope kiosk "),
    ("kind_mismatch", "envelope kind "),
    ("bad_topic", "topic "),
    ("too_large", "payload of "),
    ("id_conflict", "message id "),
    ("unstorable", "could not be stored: "),
)
REASONS = (*(category for category, _ in REASON_PREFIXES), "other")

# What runs in this process, by the thread that runs it (hub/service.py, hub/ingest_pool.py, hub/broker.py):
# a job is held while its thread is alive. The web app and its consult relay are held by any process serving it.
APP_JOBS = ("web", "consult-relay")
THREAD_JOBS: dict[str, tuple[str, ...]] = {
    # HubService._attribute runs the cluster jobs (attribution, triage sweep, retention) this instance holds a lease
    # on (hub/db/lease.py: added below), and the embedded broker's certificate check twice a day.
    "attribution": (),
    # The ingest worker processes' supervisor; its first worker also sends the downlink (case answers, configs).
    "ingest-pool": ("ingest", "downlink"),
    "broker-supervisor": ("broker",),
}


def reason_category(reason: str) -> str:
    """The bounded label for a dead letter's reason."""
    for category, prefix in REASON_PREFIXES:
        if reason.startswith(prefix):
            return category
    return "other"


def default_instance() -> str:
    """This instance's name: host and process (a configured name comes with several instances)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def held_jobs(thread_names: Iterable[str]) -> list[str]:
    """The jobs this process runs, from its live threads' names."""
    names = set(thread_names)
    jobs = list(APP_JOBS)
    for thread, thread_jobs in THREAD_JOBS.items():
        if thread in names:
            jobs.extend(thread_jobs)
    if "attribution" in names:
        jobs.extend(job for job in CLUSTER_JOBS if job in held_here())
    if "attribution" in names and "broker-supervisor" in names:
        jobs.append("broker-certificate")  # the check runs beside attribution, for the embedded broker only
    return jobs


@dataclass
class _Commits:
    """Messages committed since this collector started: counts by kind and their latency histogram."""

    latest: float | None = None  # committed_at of the newest commit seen; later ones are new
    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    count: int = 0
    latency_sum: float = 0.0


@dataclass
class _Snapshot:
    recent: int = 0
    dead: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    kiosks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KIOSK_STATES, 0))
    growing: int = 0
    backlog_sum: int = 0
    backlog_max: int = 0
    alerts: dict[tuple[str, str], int] = field(
        default_factory=lambda: {(s, v): 0 for s in ALERT_STATES for v in SEVERITIES}
    )
    cases: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CASE_STATES, 0))
    consults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CONSULT_STATES, 0))


def _latest_commit(conn: Connection) -> float:
    (latest,) = conn.execute("SELECT max(committed_at) FROM messages").fetchone()
    return 0.0 if latest is None else float(latest)  # an empty hub: every message to come is new


class HubCollector(Collector):
    """Reads the hub database at each scrape; see the module's docstring."""

    def __init__(self, ws: Workspace, *, instance: str | None = None) -> None:
        self.ws = ws
        self.instance = instance or default_instance()
        self._lock = threading.Lock()  # one scrape at a time: each moves the commit counters on
        self._commits = _Commits()
        try:  # counted from now on; a database that cannot be read yet is asked again at the first scrape
            conn = connect(ws.location, read_only=True)
            try:
                self._commits.latest = _latest_commit(conn)
            finally:
                conn.close()
        except DatabaseError:
            log.debug("metrics: the database could not be read at start; counting from the first scrape")

    def collect(self) -> list[Metric]:
        """Every family at once, under the lock (a scrape moves the commit counters on), then handed out."""
        started = time.perf_counter()
        with self._lock:
            try:
                snapshot: _Snapshot | None = self._read()
            except DatabaseError as exc:
                log.warning("metrics: could not read the database: %s", type(exc).__name__)
                snapshot = None
            families = list(self._identity())
            if snapshot is not None:
                families += [*self._commit_metrics(self._commits, snapshot), *self._state_metrics(snapshot)]
        readable = GaugeMetricFamily(
            "telehealth_hub_database_read_ok",
            "1 when this scrape read the database, 0 when it could not (/readyz says why)",
        )
        readable.add_metric([], 0 if snapshot is None else 1)
        duration = GaugeMetricFamily(
            "telehealth_hub_metrics_collect_seconds", "How long this scrape took to read the database"
        )
        duration.add_metric([], time.perf_counter() - started)
        return [*families, readable, duration]

    # -- reading -------------------------------------------------------------------------------

    def _read(self) -> _Snapshot:
        conn = self.ws.conn()
        now = self.ws.now()
        conn.execute("BEGIN")  # deferred: a read snapshot from the first SELECT on, no lock a writer waits for
        try:
            snap = _Snapshot(recent=self._read_commits(conn, now))
            for reason, count in conn.execute(
                "SELECT reason, coalesce(sum(count), 0) FROM dead_letters GROUP BY reason"
            ):
                snap.dead[reason_category(str(reason))] += int(count)
            self._read_kiosks(conn, now, snap)
            self._read_work(conn, snap)
        finally:
            if conn.in_transaction:  # SQLite may have ended it already, after an error
                conn.execute("ROLLBACK")  # nothing was written
        return snap

    def _read_commits(self, conn: Connection, now: float) -> int:
        """Add the messages committed after the newest one counted before; return how many came in the last
        minute. One query: a range of committed_at, one index range once that column has an index."""
        commits = self._commits
        if commits.latest is None:
            commits.latest = _latest_commit(conn)
        since, recent = commits.latest, now - RECENT_S
        # Portable SQL: a condition counted as CASE ... THEN 1 (SQLite would sum the boolean itself), positional
        # parameters in the order they appear.
        new = "committed_at > ?"
        params: list[float] = []
        bucket_sums = []
        for bound in LATENCY_BUCKETS:
            bucket_sums.append(f"sum(CASE WHEN {new} AND committed_at - received_at <= ? THEN 1 ELSE 0 END)")
            params += [since, bound]
        latency = f"CASE WHEN {new} THEN greatest(committed_at - received_at, 0) END"
        rows = conn.execute(
            f"SELECT kind, sum(CASE WHEN {new} THEN 1 ELSE 0 END), max(committed_at), coalesce(sum({latency}), 0), "
            f"sum(CASE WHEN committed_at > ? THEN 1 ELSE 0 END), {', '.join(bucket_sums)} "
            "FROM messages WHERE committed_at > least(?, ?) GROUP BY kind",
            [since, since, recent, *params, since, recent],
        ).fetchall()
        last_minute = 0
        for kind, count, latest, latency_sum, in_last_minute, *buckets in rows:
            last_minute += int(in_last_minute)
            if not count:
                continue
            label = kind if kind in commits.by_kind else "other"
            commits.by_kind[label] = commits.by_kind.get(label, 0) + int(count)
            commits.count += int(count)
            commits.latency_sum += float(latency_sum)
            for i, n in enumerate(buckets):
                commits.buckets[i] += int(n)
            commits.latest = max(commits.latest, float(latest))
        return last_minute

    def _read_kiosks(self, conn: Connection, now: float, snap: _Snapshot) -> None:
        """Kiosks by the fleet page's own rules (state, growing backlog), and the backlogs they reported."""
        late_after_s = self.ws.settings.late_after_s
        rows = conn.execute(
            "SELECT online, last_seen, outbox_backlog, backlog_base, backlog_base_at, last_status_at FROM kiosks"
        )
        for online, last_seen, backlog, base, base_at, reported_at in rows:
            snap.kiosks[kiosk_state(online, last_seen, now, late_after_s)] += 1
            snap.growing += backlog_growing(backlog, base, base_at, reported_at)
            if backlog is not None:
                snap.backlog_sum += int(backlog)
                snap.backlog_max = max(snap.backlog_max, int(backlog))

    @staticmethod
    def _read_work(conn: Connection, snap: _Snapshot) -> None:
        """Open alerts, open cases, waiting and live consults: clinic by clinic through the queue indexes (CROSS
        JOIN keeps clinics the outer loop; SQLite otherwise walked the whole index)."""
        # SQLite reads CROSS JOIN as "keep this loop order"; PostgreSQL has no ON for it and plans a JOIN itself.
        join = "CROSS JOIN" if engine_of(conn) == "sqlite" else "JOIN"
        alert_states = ", ".join("?" * len(ALERT_STATES))
        for state, severity, count in conn.execute(
            "SELECT a.state, a.severity, count(*) FROM clinics c "
            f"{join} alerts a ON a.clinic_id = c.id AND a.state IN ({alert_states}) GROUP BY a.state, a.severity",
            ALERT_STATES,
        ):
            if (state, severity) in snap.alerts:
                snap.alerts[(state, severity)] += int(count)
        case_states = ", ".join("?" * len(CASE_STATES))
        for query in (  # a case from a kiosk no clinic holds yet has no clinic
            "SELECT s.state, count(*) FROM clinics c "
            f"{join} cases s ON s.clinic_id = c.id AND s.state IN ({case_states}) GROUP BY s.state",
            f"SELECT state, count(*) FROM cases WHERE clinic_id IS NULL AND state IN ({case_states}) GROUP BY state",
        ):
            for state, count in conn.execute(query, CASE_STATES):
                snap.cases[state] += int(count)
        for state, count in conn.execute("SELECT state, count(*) FROM consults WHERE state != 'ended' GROUP BY state"):
            if state in snap.consults:
                snap.consults[state] += int(count)

    # -- the families --------------------------------------------------------------------------

    def _identity(self) -> Iterator[Metric]:
        info = InfoMetricFamily("telehealth_hub_instance", "This hub instance: its name and software version")
        info.add_metric([], {"hub_instance": self.instance, "version": __version__})
        yield info
        holder = GaugeMetricFamily(
            "telehealth_hub_job_holder",
            "1 for each job this instance runs (hub_job), by instance (hub_instance)",
            labels=["hub_job", "hub_instance"],
        )
        for job in held_jobs(t.name for t in threading.enumerate() if t.is_alive()):
            holder.add_metric([job, self.instance], 1)
        yield holder

    @staticmethod
    def _commit_metrics(commits: _Commits, snap: _Snapshot) -> Iterator[Metric]:
        committed = CounterMetricFamily(
            "telehealth_hub_messages_committed",
            "Messages committed by ingest (every worker process) since this instance started, by kind",
            labels=["kind"],
        )
        for kind, count in sorted(commits.by_kind.items()):
            committed.add_metric([kind], count)
        yield committed
        buckets = [(_le(bound), float(n)) for bound, n in zip(LATENCY_BUCKETS, commits.buckets, strict=True)]
        latency = HistogramMetricFamily(
            "telehealth_hub_commit_latency_seconds",
            "From the hub receiving a message to committing it (the messages telehealth_hub_messages_committed counts)",
            buckets=[*buckets, ("+Inf", float(commits.count))],
            sum_value=commits.latency_sum,
        )
        yield latency
        recent = GaugeMetricFamily(
            "telehealth_hub_messages_committed_last_minute",
            "Messages committed in the last 60 seconds (the ingest rate)",
        )
        recent.add_metric([], snap.recent)
        yield recent
        if commits.latest:
            last = GaugeMetricFamily(
                "telehealth_hub_last_commit_timestamp_seconds",
                "When the newest stored message was committed (Unix time)",
            )
            last.add_metric([], commits.latest)
            yield last

    @staticmethod
    def _state_metrics(snap: _Snapshot) -> Iterator[Metric]:
        yield _by(
            "telehealth_hub_dead_letters",
            "Refused messages kept (repeats included; retention drops them after dead_letters_days), by reason",
            "reason",
            snap.dead.items(),
        )
        yield _by(
            "telehealth_hub_kiosks", "Kiosks by state, as the fleet page shows them", "state", snap.kiosks.items()
        )
        for name, help_text, value in (
            ("telehealth_hub_kiosks_backlog_growing", "Kiosks whose reported backlog is growing (the fleet page's "
             "'growing')", snap.growing),
            ("telehealth_hub_kiosk_outbox_backlog_items", "Items waiting in kiosks' outboxes, summed over the last "
             "status each kiosk reported", snap.backlog_sum),
            ("telehealth_hub_kiosk_outbox_backlog_largest_items", "The largest outbox backlog a kiosk reported in "
             "its last status", snap.backlog_max),
        ):  # fmt: skip
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge
        alerts = GaugeMetricFamily(
            "telehealth_hub_alerts", "Alerts not resolved yet, by state and severity", labels=["state", "severity"]
        )
        for (state, severity), count in snap.alerts.items():
            alerts.add_metric([state, severity], count)
        yield alerts
        yield _by("telehealth_hub_cases", "Cases not closed yet, by state", "state", snap.cases.items())
        yield _by("telehealth_hub_consults", "Live consults waiting for a provider or under way", "state",
                  snap.consults.items())  # fmt: skip


def _by(name: str, help_text: str, label: str, values: Iterable[tuple[str, int]]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, help_text, labels=[label])
    for value, count in values:
        gauge.add_metric([value], count)
    return gauge


def _le(bound: float) -> str:
    return repr(float(bound))


def build_registry(ws: Workspace, *, instance: str | None = None) -> tuple[CollectorRegistry, HubCollector]:
    """The registry `/api/v1/metrics` serves: the hub's collector and the client library's process metrics.

    One registry per app (not the library's global one): tests build many apps in one process.
    """
    registry = CollectorRegistry(auto_describe=False)
    collector = HubCollector(ws, instance=instance)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry, collector
