"""`hub serve`: the embedded broker (unless an external one is given), ingest, and the API in one process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from device.protocol.endpoints import BrokerUrl
from hub.api import create_app
from hub.api.auth import load_tokens
from hub.broker import BrokerSupervisor, MosquittoProcess
from hub.ingest import IngestConfig, IngestWorker, tune_gc_for_ingest

log = logging.getLogger(__name__)

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


class HubService:
    def __init__(self, config: ServeConfig) -> None:
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
                ),
            )
            for i in range(config.workers)
        ]
        self.tokens = load_tokens(config.data_dir)
        self.app = create_app(self.db_path, self.tokens, broker_ready=self.broker_ready)
        self._threads: list[threading.Thread] = []

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

    def stop_background(self) -> None:
        for w in self.workers:
            w.stop()
        for t in self._threads:
            t.join(timeout=10)
        if self.supervisor is not None:
            self.supervisor.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.config.http_host}:{self.config.http_port}"

    def serve_forever(self, before_stop: Callable[[], None] | None = None) -> None:
        """Run until SIGINT/SIGTERM (uvicorn handles them), then stop everything in order."""
        self.start_background()
        server = uvicorn.Server(
            uvicorn.Config(self.app, host=self.config.http_host, port=self.config.http_port, log_level="warning")
        )
        try:
            server.run()
        finally:
            if before_stop is not None:
                before_stop()
            self.stop_background()
