"""A provisioned fleet against the hub's locked-down Mosquitto, and a hand-driven MQTT 5 client to probe it.

Real broker (the hub's generated configuration and its kiosk_guard plugin), real TLS, real ACLs; the
kiosks' bundles are made by the hub's own provisioning. Shared by the fleet-security and hostile-kiosk tests.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from device.identity import KioskIdentity, import_bundle
from device.protocol.endpoints import BrokerUrl
from device.protocol.provisioning import ProvisioningBundle
from hub.broker import KioskListener, MosquittoProcess, free_port
from hub.db import Location, SqliteLocation, immediate
from hub.fleet.broker_auth import INGEST_USER
from hub.fleet.identities import FleetPaths, add_kiosk, ensure_server_cert, ingest_password, write_broker_files
from hub.ingest import IngestWorker
from hub.store import HubStore
from tests.harness import hub_store_args, ingest_thread


@dataclass
class Fleet:
    hub: Path
    paths: FleetPaths
    broker: MosquittoProcess
    kiosk_url: BrokerUrl  # the TLS listener
    hub_url: BrokerUrl  # the hub's own loopback listener
    identities: dict[str, KioskIdentity]
    bundles: dict[str, ProvisioningBundle]
    db: Location

    @property
    def args(self) -> list[str]:
        """What a `hub` command is given to reach this fleet's hub (its folder, its store)."""
        return hub_store_args(self.hub, self.db)

    def ingest(self, worker: int = 1) -> AbstractContextManager[IngestWorker]:
        return ingest_thread(
            self.db,
            self.hub_url,
            username=INGEST_USER,
            password=ingest_password(self.paths),
            client_id=f"{INGEST_USER}:{worker}",
        )


def provision(
    db: Location, paths: FleetPaths, kiosk: str, url: str, dest: Path
) -> tuple[ProvisioningBundle, KioskIdentity]:
    store = HubStore(db)
    try:
        with immediate(store.conn) as conn:
            bundle = add_kiosk(conn, paths, kiosk, broker_url=url, hub_url=None, clinic_id=None, now=time.time())
            write_broker_files(conn, paths, now=time.time())
    finally:
        store.close()
    return bundle, import_bundle(bundle.model_dump_json().encode(), dest)


@contextmanager
def running_fleet(tmp_path: Path, db: Location | None = None) -> Iterator[Fleet]:
    """Kiosks `kiosk-a` and `kiosk-b` provisioned by the hub, and its broker with the kiosk listener (TLS); the hub's
    store in its folder unless given."""
    hub = tmp_path / "hub"
    paths = FleetPaths(hub)
    db = db or SqliteLocation(hub / "hub.db")
    HubStore(db).close()
    ensure_server_cert(paths, ["127.0.0.1", "localhost"], now=time.time())
    tls_port = free_port()
    url = f"mqtts://127.0.0.1:{tls_port}"
    bundles, identities = {}, {}
    for kiosk in ("kiosk-a", "kiosk-b"):
        bundles[kiosk], identities[kiosk] = provision(db, paths, kiosk, url, tmp_path / kiosk)
    broker = MosquittoProcess(hub / "broker", kiosks=KioskListener(paths.auth, port=tls_port))
    broker.start()
    try:
        yield Fleet(hub, paths, broker, BrokerUrl.parse(url), BrokerUrl.parse(broker.url), identities, bundles, db)
    finally:
        broker.stop()


class Probe:
    """A hand-driven MQTT 5 client that records what the broker answered."""

    def __init__(self, client_id: str) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.answered = threading.Event()
        self.suback: list[ReasonCode] = []
        self.puback: list[ReasonCode] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: (self.suback.extend(codes), self.answered.set())
        self.client.on_publish = lambda _c, _u, _m, rc, _p: (self.puback.append(rc), self.answered.set())

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, _rc: ReasonCode, _p: object) -> None:
        self.disconnected.set()
        self.answered.set()  # refused at TLS or dropped: an answer too

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connack = rc
        if not rc.is_failure:
            self.connected.set()
        self.answered.set()

    def tls(
        self, identity: KioskIdentity | None, *, ca: Path, cert: Path | None = None, key: Path | None = None
    ) -> Probe:
        cert = cert or (identity.cert_file if identity else None)
        key = key or (identity.key_file if identity else None)
        self.client.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None)
        return self

    def login(self, user: str | None, password: str | None) -> Probe:
        if user is not None:
            self.client.username_pw_set(user, password)
        return self

    def connect(self, url: BrokerUrl) -> Probe:
        self.client.connect(url.host, url.port, keepalive=10)
        self.client.loop_start()
        self.answered.wait(10)
        return self

    def ask(self, action: object) -> None:
        self.answered.clear()
        action()
        assert self.answered.wait(10), "the broker did not answer"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def kiosk_probe(fleet: Fleet, kiosk: str) -> Probe:
    ident = fleet.identities[kiosk]
    return (
        Probe(f"{kiosk}:probe")
        .tls(ident, ca=ident.ca_file)
        .login(kiosk, ident.mqtt_password())
        .connect(fleet.kiosk_url)
    )


def hub_probe(fleet: Fleet) -> Probe:
    return Probe(f"{INGEST_USER}:probe").login(INGEST_USER, ingest_password(fleet.paths)).connect(fleet.hub_url)


def agent_overrides(identity: KioskIdentity) -> dict[str, object]:
    return {
        "ca_file": str(identity.ca_file),
        "cert_file": str(identity.cert_file),
        "key_file": str(identity.key_file),
        "username": identity.kiosk_id,
        "password": identity.mqtt_password(),
        "heartbeat_s": 3600.0,
    }


def refused(probe_factory: Callable[[], Probe]) -> None:
    """Refused outright: TLS fails, the broker closes the connection, or CONNACK says no; never silence."""
    try:
        probe = probe_factory()
    except (ssl.SSLError, OSError):
        return
    try:
        assert not probe.connected.is_set(), "the broker let it in"
        refused = probe.disconnected.is_set() or (probe.connack is not None and probe.connack.is_failure)
        assert refused, "no answer from the broker: a refusal must be explicit"
    finally:
        probe.close()


def kiosk_probe_with(fleet: Fleet, ident: KioskIdentity, cert: Path, key: Path) -> Probe:
    return (
        Probe(f"{ident.kiosk_id}:probe-{time.monotonic_ns()}")
        .tls(None, ca=ident.ca_file, cert=cert, key=key)
        .login(ident.kiosk_id, ident.mqtt_password())
        .connect(fleet.kiosk_url)
    )
