"""`hub serve`: the embedded broker (unless an external one is given), ingest, and the API in one process."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from device.protocol.endpoints import BrokerUrl
from hub import attribution
from hub.app import create_app
from hub.broker import BrokerSupervisor, MosquittoProcess
from hub.consults.ice import IceConfig
from hub.consults.settings import ConsultSettings
from hub.ingest import IngestConfig, IngestWorker, tune_gc_for_ingest
from hub.store import HubStore, immediate
from hub.triage import alerts as triage
from hub.workspace import WebSettings

log = logging.getLogger(__name__)

ATTRIBUTION_INTERVAL_S = 0.5
# Rows per attribution transaction: ~20 ms of write lock, so page views (audit rows) never wait long behind it.
ATTRIBUTION_BATCH = 500
TRIAGE_SWEEP_S = 60.0
DEFAULT_BROKER_PORT = 18830  # not 1883: a system Mosquitto often already holds that


@dataclass
class ServeConfig:
    data_dir: Path
    broker: BrokerUrl | None = None
    broker_port: int = DEFAULT_BROKER_PORT
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    workers: int = 1
    broker_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ice: IceConfig = field(default_factory=IceConfig)  # live consults' STUN/TURN servers

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


class HubService:
    def __init__(self, config: ServeConfig) -> None:
        config.check()
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = config.data_dir / "hub.db"
        self.supervisor: BrokerSupervisor | None = None
        if config.broker is None:
            self.supervisor = BrokerSupervisor(MosquittoProcess(config.data_dir / "broker", config.broker_port))
            self.broker_url = BrokerUrl.parse(self.supervisor.broker.url)
        else:
            self.broker_url = config.broker
        self.workers = [
            IngestWorker(
                self.db_path,
                IngestConfig(
                    broker=self.broker_url,
                    client_id=f"hub-ingest-{i + 1}",
                    ca_file=str(config.broker_ca) if config.broker_ca else None,
                    send_downlink=i == 0,  # one sender is enough; kiosks would ignore the copies anyway
                ),
            )
            for i in range(config.workers)
        ]
        settings = WebSettings(consults=ConsultSettings(ice=config.ice))
        self.app = create_app(self.db_path, broker_ready=self.broker_ready, settings=settings)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def broker_ready(self) -> bool:
        return all(w.connected.is_set() for w in self.workers)

    def start_background(self) -> None:
        tune_gc_for_ingest()
        if self.supervisor is not None:
            self.supervisor.start()
            log.info("embedded mosquitto on %s (data in %s)", self.broker_url, self.supervisor.broker.data_dir)
        for w in self.workers:
            t = threading.Thread(target=w.run, name=w.config.client_id, daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._attribute, name="attribution", daemon=True)
        t.start()
        self._threads.append(t)

    def _attribute(self) -> None:
        """Decide new readings' patients beside ingest (hub.attribution), twice a second."""
        store = HubStore(self.db_path)
        next_sweep = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    decided = attribution.run_once(store.db.conn, time.time(), limit=ATTRIBUTION_BATCH)
                    if time.monotonic() >= next_sweep:
                        self._triage_sweep(store)
                        next_sweep = time.monotonic() + TRIAGE_SWEEP_S
                except sqlite3.Error:
                    log.exception("attribution pass failed; retrying")
                    decided = 0
                if decided == 0:
                    self._stopping.wait(ATTRIBUTION_INTERVAL_S)
        finally:
            store.close()

    @staticmethod
    def _triage_sweep(store: HubStore) -> None:
        """What no reading triggers: patients gone quiet, and alerts nobody acknowledged in time."""
        now = time.time()
        with immediate(store.db.conn) as conn:
            triage.check_silence(conn, now)
            escalated = triage.escalate(conn, now)
        if escalated:
            log.warning("%d alert(s) escalated: unacknowledged past the clinic's time", len(escalated))

    def stop_background(self) -> None:
        self._stopping.set()
        for w in self.workers:
            w.stop()
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
        try:
            server.run()
        finally:
            if before_stop is not None:
                before_stop()
            self.stop_background()
