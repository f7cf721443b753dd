"""`hub serve`: the embedded broker (unless an external one is given), ingest workers, and the API.

The API, attribution and the broker's supervision run in this process; ingest runs in
worker processes beside it (hub.ingest_pool), one per core, that die with it.

A full disk: a start with nothing changed writes nothing (the broker's files, its configuration,
the database's migrations are compared first), so the hub starts and says why it cannot store;
while commits fail, `/readyz` answers 503 with the cause and systemd's status line says it too,
each background pass logs one line when it starts failing and one when it works again, and all
of it comes back by itself when space returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from device.protocol import sd_notify
from device.protocol.endpoints import BrokerUrl
from hub import attribution, retention
from hub.app import create_app
from hub.broker import BrokerSupervisor, KioskListener, MosquittoProcess
from hub.consults.ice import IceConfig
from hub.consults.settings import ConsultSettings
from hub.db import DatabaseError, Location, OperationalError, PostgresLocation, SqliteLocation, immediate, is_broken
from hub.db.lease import InstanceNameTaken, Leases, dead_instances, forget_instance, register_instance
from hub.fleet.broker_auth import INGEST_USER
from hub.fleet.identities import FleetPaths, ensure_server_cert, ingest_password, write_broker_files
from hub.ingest import IngestConfig, Outage
from hub.ingest_pool import IngestPool, default_workers
from hub.ingest_sessions import end_session
from hub.retention import Retention
from hub.store import HubStore
from hub.triage import alerts as triage
from hub.workspace import WebSettings

log = logging.getLogger(__name__)

ATTRIBUTION_INTERVAL_S = 0.5
# How often the instance holding the job looks for dead instances whose broker sessions still take messages.
SESSIONS_CHECK_S = 2.0
# Rows per attribution transaction: ~20 ms of write lock, so page views (audit rows) never wait long behind it.
ATTRIBUTION_BATCH = 500
TRIAGE_SWEEP_S = 60.0
# Retention purges (hub/retention.py): a minute after start, then every six hours.
RETENTION_FIRST_S = 60.0
# The embedded broker's certificate is checked twice a day and renewed RENEW_DAYS before it ends.
RENEWAL_CHECK_S = 12 * 3600.0
RETENTION_SWEEP_S = 6 * 3600.0
# A database the disk is too full to open is tried again this often at start (see HubService._open_store),
# and each try asks systemd for this much more start time.
OPEN_RETRY_S = 1.0
OPEN_EXTEND_S = 10.0
DEFAULT_BROKER_PORT = 18830  # not 1883: a system Mosquitto often already holds that


@dataclass
class ServeConfig:
    data_dir: Path
    database: Location | None = None  # None: the SQLite file hub.db in data_dir
    # This instance's name among several on one PostgreSQL (metrics, ingest's broker client ids); None: one hub.
    instance: str | None = None
    broker: BrokerUrl | None = None
    # More external brokers beside `broker` (Mosquitto does not cluster): ingest subscribes on every one, and
    # kiosks given the same list fail over between them; a resend through another broker is a duplicate.
    more_brokers: tuple[BrokerUrl, ...] = ()
    broker_port: int = DEFAULT_BROKER_PORT
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    workers: int = field(default_factory=default_workers)
    broker_ca: Path | None = None
    broker_user: str | None = None  # ingest on an external broker
    broker_password: str | None = None
    # The embedded broker's listener for kiosks: TLS, client certificates, per-kiosk passwords.
    mqtt_port: int = 8883
    mqtt_bind: str = "127.0.0.1"
    mqtt_names: tuple[str, ...] = ()  # names in its certificate; default: the bind address, localhost, this host
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ice: IceConfig = field(default_factory=IceConfig)  # live consults' STUN/TURN servers
    retention: Retention = field(default_factory=Retention)  # applied every RETENTION_SWEEP_S

    def check(self) -> None:
        """Health data and session cookies cross a network only over TLS; loopback may stay plain HTTP."""
        self.ice.check()
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        loopback = self.http_host in ("127.0.0.1", "::1", "localhost")
        if not loopback and self.tls_cert is None:
            raise ValueError(
                f"refusing to serve on {self.http_host} without TLS: give --tls-cert and --tls-key "
                "(or put a TLS proxy in front and bind to 127.0.0.1)"
            )


def _default_names(bind: str) -> list[str]:
    """The listener's own address first (unless it is a wildcard), then loopback, then this host's names."""
    names = [] if bind in ("0.0.0.0", "::") else [bind]  # noqa: S104 - compared, not bound
    for name in ("127.0.0.1", "localhost", socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    return names


class HubService:
    def __init__(self, config: ServeConfig) -> None:
        config.check()
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.database: Location = config.database or SqliteLocation(config.data_dir / "hub.db")
        self._open_store()
        self.supervisor: BrokerSupervisor | None = None
        username, password = config.broker_user, config.broker_password
        # The names kiosks use for the embedded broker (its certificate's names; the first goes in bundles).
        self.mqtt_names = list(config.mqtt_names) or _default_names(config.mqtt_bind)
        if config.broker is None:
            fleet = FleetPaths(config.data_dir)
            self._prepare_broker_files(fleet)
            kiosks = KioskListener(fleet.auth, port=config.mqtt_port, bind=config.mqtt_bind)
            self.supervisor = BrokerSupervisor(
                MosquittoProcess(config.data_dir / "broker", config.broker_port, kiosks=kiosks)
            )
            self.broker_url = BrokerUrl.parse(self.supervisor.broker.url)
            username, password = INGEST_USER, ingest_password(fleet)
        else:
            self.broker_url = config.broker
        self.ingest = IngestPool(
            self.database,
            brokers=(self.broker_url, *config.more_brokers),
            base=IngestConfig(
                broker=self.broker_url,
                # Each instance's workers need client ids of their own (a broker drops a session whose id another
                # connection takes); one hub keeps the ids it always had, and with them its persistent sessions.
                client_id="hub-ingest" if config.instance is None else f"hub-ingest:{config.instance}",
                ca_file=str(config.broker_ca) if config.broker_ca else None,
                username=username,
                password=password,
                fleet_data=config.data_dir,
            ),
            count=config.workers,
        )
        settings = WebSettings(consults=ConsultSettings(ice=config.ice))
        # The background passes' failures: each logged once when it starts and once when it ends.
        self._attribution = Outage(
            "cannot attribute readings", "attribution resumed",
            consequence="new readings wait in no patient's record until it works; retrying", logger=log,
        )  # fmt: skip
        self._triage = Outage("cannot run the triage sweep", "triage sweep resumed", logger=log)
        self._retention = Outage("cannot purge what retention says", "retention purges resumed", logger=log)
        self._status = ""
        # Set once systemd has been told READY=1; status lines (STATUS=...) follow it, never precede it.
        self.announced = threading.Event()
        self.app = create_app(
            self.database,
            broker_ready=self.broker_ready,
            store_problem=self.store_problem,
            settings=settings,
            instance=config.instance,
        )
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def _open_store(self) -> None:
        """Open (create, migrate) the database first, and wait while the disk is too full for SQLite to open it.

        With nothing to migrate opening writes nothing, but for one thing: after a clean stop SQLite has
        removed its shared-memory index (hub.db-shm, 32 KiB) and must write it again to open the database.
        On a disk without that room the hub waits here, says why once in the log and in systemd's status
        (extending the start timeout while it waits), and goes on as soon as it can. Exiting instead had
        systemd restart it every RestartSec= with a traceback each time. Errors space would not cure (a
        corrupt file, no permission) are raised at once.
        """
        outage = Outage(
            "cannot open the database", "the database opened",
            consequence="waiting for the database (disk space, or its server) before starting", logger=log,
        )  # fmt: skip
        while True:
            try:
                HubStore(self.database).close()
            except OperationalError as exc:
                name = getattr(exc, "sqlite_errorname", "") or ""
                # A PostgreSQL server not up yet, or unreachable, is waited for the same way: a hub started before
                # its database (a host booting, a failover in progress) comes up when the server does.
                server = isinstance(self.database, PostgresLocation)
                if not server and name != "SQLITE_FULL" and not name.startswith("SQLITE_IOERR"):
                    raise
                outage.failed(exc)
                extend_us = int(OPEN_EXTEND_S * 1_000_000)
                sd_notify.notify(f"STATUS=store: {outage.problem}\nEXTEND_TIMEOUT_USEC={extend_us}")
                time.sleep(OPEN_RETRY_S)
            else:
                outage.succeeded()
                return

    def _prepare_broker_files(self, fleet: FleetPaths) -> None:
        """The embedded broker's CA-signed certificate and its password, ACL and revocation files, from the database."""
        store = HubStore(self.database)
        try:
            now = time.time()
            ensure_server_cert(fleet, self.mqtt_names, now=now)
            write_broker_files(store.conn, fleet, now=now)
        finally:
            store.close()

    @property
    def kiosk_broker_url(self) -> str:
        """What `hub kiosks add --broker-url` should say for this hub's embedded broker."""
        return f"mqtts://{self.mqtt_names[0]}:{self.config.mqtt_port}"

    def broker_ready(self) -> bool:
        return self.ingest.ready()

    def store_problem(self) -> str | None:
        """Why the hub cannot store now: a worker's failing commits first, then attribution's; None if it can."""
        return self.ingest.store_problem() or self._attribution.problem

    def status_line(self) -> str:
        """What systemd shows as the unit's Status: "ready", or what is wrong."""
        problems = []
        if (problem := self.store_problem()) is not None:
            problems.append(f"store: {problem}")
        if not self.broker_ready():
            problems.append("broker: not connected")
        return "; ".join(problems) or "ready"

    def _report_status(self) -> None:
        """Tell systemd the status line when it changes (after READY=1: see serve_forever)."""
        if not self.announced.is_set():
            return
        line = self.status_line()
        if line != self._status:
            self._status = line
            sd_notify.notify(f"STATUS={line}")

    def start_background(self) -> None:
        if self.supervisor is not None:
            self.supervisor.start()
            log.info("embedded mosquitto on %s (data in %s)", self.broker_url, self.supervisor.broker.data_dir)
        self.ingest.start()
        t = threading.Thread(target=self._attribute, name="attribution", daemon=True)
        t.start()
        self._threads.append(t)

    def _attribute(self) -> None:
        """Decide new readings' patients beside ingest (hub.attribution), twice a second; and the rarer passes.

        A pass that fails (the disk is full, the database fails) is tried again at its next turn; it is
        logged once when it starts failing and once when it works again, never once per attempt.
        """
        store: HubStore | None = None
        leases: Leases | None = None
        next_sweep = 0.0
        next_retention = time.monotonic() + RETENTION_FIRST_S
        next_renewal = time.monotonic() + RENEWAL_CHECK_S
        next_sessions = 0.0
        try:
            while not self._stopping.is_set():
                decided = 0
                held: set[str] = set()
                try:
                    if store is None:
                        store = HubStore(self.database)
                        leases = Leases(store.conn)
                        self._register(store)
                    assert leases is not None
                    # Several instances on one PostgreSQL: each job runs on the one instance that holds it.
                    held = leases.take()
                    if "attribution" in held:
                        decided = attribution.run_once(store.conn, time.time(), limit=ATTRIBUTION_BATCH)
                except DatabaseError as exc:
                    self._attribution.failed(exc)
                    store, leases = self._drop_if_broken(store, leases)
                else:
                    self._attribution.succeeded()
                if store is not None and "triage-sweep" in held and time.monotonic() >= next_sweep:
                    try:
                        self._triage_sweep(store)
                    except DatabaseError as exc:
                        self._triage.failed(exc)  # tried again at the next turn, not in a minute
                        store, leases = self._drop_if_broken(store, leases)
                    else:
                        self._triage.succeeded()
                        next_sweep = time.monotonic() + TRIAGE_SWEEP_S
                if store is not None and "retention" in held and time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + RETENTION_SWEEP_S
                    try:
                        self._retention_sweep(store)
                    except DatabaseError as exc:
                        self._retention.failed(exc)
                        next_retention = time.monotonic() + RETENTION_FIRST_S  # a purge frees room: soon again
                        store, leases = self._drop_if_broken(store, leases)
                    else:
                        self._retention.succeeded()
                if store is not None and "broker-sessions" in held and time.monotonic() >= next_sessions:
                    next_sessions = time.monotonic() + SESSIONS_CHECK_S
                    try:
                        self._end_dead_sessions(store)
                    except DatabaseError as exc:
                        log.warning("could not look for dead instances: %s", type(exc).__name__)
                        store, leases = self._drop_if_broken(store, leases)
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + RENEWAL_CHECK_S
                    self.renew_broker_cert(time.time())
                self._report_status()
                if decided == 0:
                    self._stopping.wait(ATTRIBUTION_INTERVAL_S)
        finally:
            if leases is not None:
                with contextlib.suppress(*DatabaseError):
                    leases.release_all()
            if store is not None:
                store.close()

    def _register(self, store: HubStore) -> None:
        """A named instance on PostgreSQL says it runs (for as long as this connection lives) and which broker
        sessions are its own, so that another can end them if it dies (hub/ingest_sessions.py)."""
        if self.config.instance is not None and isinstance(self.database, PostgresLocation):
            try:
                register_instance(store.conn, self.config.instance, self.ingest.sessions(), time.time())
            except InstanceNameTaken as exc:
                log.error("%s; this instance's broker sessions will not be ended for it if it dies", exc)

    def _end_dead_sessions(self, store: HubStore) -> None:
        """End the broker sessions of instances that died, so the brokers stop giving them the kiosks' messages."""
        if self.config.instance is None or not isinstance(self.database, PostgresLocation):
            return
        for name, sessions in dead_instances(store.conn, self.config.instance):
            ended = 0
            for broker, client_id in sessions:
                login = self.ingest.login(broker)
                if login is not None and end_session(login, client_id):
                    ended += 1
            log.warning("hub instance %s is gone: ended %d of its %d broker session(s)", name, ended, len(sessions))
            if ended == len(sessions):
                forget_instance(store.conn, name)

    @staticmethod
    def _drop_if_broken(store: HubStore | None, leases: Leases | None) -> tuple[HubStore | None, Leases | None]:
        """A PostgreSQL session that ended (server restart, failover, network) is opened again at the next turn;
        the jobs it held were released with it, and are asked for again."""
        if store is None or not (is_broken(store.conn) or (leases is not None and is_broken(leases.conn))):
            return store, leases
        if leases is not None:
            leases.lost()
        with contextlib.suppress(*DatabaseError):
            store.close()
        return None, None

    def renew_broker_cert(self, now: float) -> bool:
        """Issue the embedded broker's certificate again if it nears its end, and restart the broker to serve it."""
        if self.supervisor is None:
            return False  # an external broker's certificate is its operator's
        try:
            renewed = ensure_server_cert(FleetPaths(self.config.data_dir), self.mqtt_names, now=now)
            if renewed:
                log.warning("the broker's TLS certificate was renewed; restarting the broker (kiosks reconnect)")
                self.supervisor.restart()
        except (OSError, RuntimeError, ValueError):
            log.exception("could not renew the broker's certificate; trying again later")
            return False
        return renewed

    def _retention_sweep(self, store: HubStore) -> None:
        purged = retention.apply(store.conn, self.config.retention, time.time())
        if any(purged.values()):
            log.info("retention: purged %s", ", ".join(f"{n} {what}" for what, n in purged.items() if n))

    @staticmethod
    def _triage_sweep(store: HubStore) -> None:
        """What no reading triggers: patients gone quiet, and alerts nobody acknowledged in time."""
        now = time.time()
        with immediate(store.conn) as conn:
            triage.check_silence(conn, now)
            escalated = triage.escalate(conn, now)
        if escalated:
            log.warning("%d alert(s) escalated: unacknowledged past the clinic's time", len(escalated))

    def stop_background(self) -> None:
        self._stopping.set()
        self.ingest.stop()
        for t in self._threads:
            t.join(timeout=10)
        if self.supervisor is not None:
            self.supervisor.stop()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{self.config.http_host}:{self.config.http_port}"

    def serve_forever(self, before_stop: Callable[[], None] | None = None) -> None:
        """Run until SIGINT/SIGTERM (uvicorn handles them), then stop everything in order."""
        self.start_background()
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=self.config.http_host,
                port=self.config.http_port,
                log_level="warning",  # no access log: URLs name patients
                ssl_certfile=self.config.tls_cert,
                ssl_keyfile=self.config.tls_key,
            )
        )

        async def main() -> None:
            # Pinged from uvicorn's loop: a stuck web server, a dead broker supervisor or a dead ingest
            # supervisor stops the pings and systemd restarts the hub (a broker that is down does not).
            loop = asyncio.get_running_loop()

            def started() -> bool:
                if server.started and not self.announced.is_set():
                    # serve_notifications sends READY=1 the moment this says True, before it next yields to the
                    # loop; the status lines wait for that, so systemd (and a reader of the socket) sees READY first.
                    loop.call_soon(self.announced.set)
                return bool(server.started)

            notifications = asyncio.create_task(sd_notify.serve_notifications(started, self.healthy))
            try:
                await server.serve()
            finally:
                notifications.cancel()
                sd_notify.notify("STOPPING=1")

        # uvicorn stops gracefully on SIGTERM, then restores the previous handler and raises the signal again:
        # with the default handler that killed the process before the cleanup below (orphaning the demo's
        # kiosk, leaving the broker running). A handler that does nothing lets the cleanup run, then exit 0.
        signal.signal(signal.SIGTERM, lambda *_: None)
        try:
            asyncio.run(main())
        finally:
            if before_stop is not None:
                before_stop()
            self.stop_background()

    def healthy(self) -> bool:
        return self.ingest.supervising() and (self.supervisor is None or self.supervisor.supervising())
