"""Provisioned kiosks against the hub's locked-down Mosquitto (real broker, real TLS, real ACLs).

A kiosk speaks only for itself: it cannot publish as another kiosk or read another's downlink;
a revoked kiosk is disconnected at once and refused after; a certificate from another CA, no
certificate, plaintext, no password and a wrong password are all refused.
"""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from device.identity import KioskIdentity, import_bundle
from device.outbox import Outbox
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.protocol.provisioning import ProvisioningBundle
from device.protocol.topics import Topics
from device.simulate import single_reading
from hub.broker import KioskListener, MosquittoProcess, free_port
from hub.cli import main as hub_main
from hub.fleet.broker_auth import INGEST_USER
from hub.fleet.identities import FleetPaths, add_kiosk, ensure_server_cert, ingest_password, write_broker_files
from hub.fleet.pki import HubCA
from hub.store import HubStore, immediate
from tests.harness import assert_delivered_exactly_once, hub_rows, ingest_thread, kiosk_agent, wait_until


@dataclass
class Fleet:
    hub: Path
    paths: FleetPaths
    broker: MosquittoProcess
    kiosk_url: BrokerUrl  # the TLS listener
    hub_url: BrokerUrl  # the hub's own loopback listener
    identities: dict[str, KioskIdentity]
    bundles: dict[str, ProvisioningBundle]

    @property
    def db(self) -> Path:
        return self.hub / "hub.db"

    def ingest(self) -> object:
        return ingest_thread(
            self.db, self.hub_url, username=INGEST_USER, password=ingest_password(self.paths), client_id="ingest-1"
        )


def _provision(
    fleet_hub: Path, paths: FleetPaths, kiosk: str, url: str, dest: Path
) -> tuple[ProvisioningBundle, KioskIdentity]:
    store = HubStore(fleet_hub / "hub.db")
    try:
        with immediate(store.db.conn) as conn:
            bundle = add_kiosk(conn, paths, kiosk, broker_url=url, hub_url=None, clinic_id=None, now=time.time())
            write_broker_files(conn, paths, now=time.time())
    finally:
        store.close()
    return bundle, import_bundle(bundle.model_dump_json().encode(), dest)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    hub = tmp_path / "hub"
    paths = FleetPaths(hub)
    HubStore(hub / "hub.db").close()
    ensure_server_cert(paths, ["127.0.0.1", "localhost"], now=time.time())
    tls_port = free_port()
    url = f"mqtts://127.0.0.1:{tls_port}"
    bundles, identities = {}, {}
    for kiosk in ("kiosk-a", "kiosk-b"):
        bundles[kiosk], identities[kiosk] = _provision(hub, paths, kiosk, url, tmp_path / kiosk)
    broker = MosquittoProcess(hub / "broker", kiosks=KioskListener(paths.auth, port=tls_port))
    broker.start()
    try:
        yield Fleet(hub, paths, broker, BrokerUrl.parse(url), BrokerUrl.parse(broker.url), identities, bundles)
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


def _kiosk(fleet: Fleet, kiosk: str) -> Probe:
    ident = fleet.identities[kiosk]
    return (
        Probe(f"probe-{kiosk}")
        .tls(ident, ca=ident.ca_file)
        .login(kiosk, ident.mqtt_password())
        .connect(fleet.kiosk_url)
    )


def _hub_client(fleet: Fleet) -> Probe:
    return Probe("hub-probe").login(INGEST_USER, ingest_password(fleet.paths)).connect(fleet.hub_url)


def _agent_overrides(identity: KioskIdentity) -> dict[str, object]:
    return {
        "ca_file": str(identity.ca_file),
        "cert_file": str(identity.cert_file),
        "key_file": str(identity.key_file),
        "username": identity.kiosk_id,
        "password": identity.mqtt_password(),
        "heartbeat_s": 3600.0,
    }


def test_a_provisioned_kiosk_delivers_over_tls_exactly_once(tmp_path: Path, fleet: Fleet) -> None:
    ident = fleet.identities["kiosk-a"]
    with fleet.ingest(), kiosk_agent(tmp_path / "kiosk-a", "kiosk-a", fleet.kiosk_url, **_agent_overrides(ident)) as a:
        rng = random.Random(5)
        sent = [encode(a.outbox.enqueue("observations", single_reading(rng, datetime.now(UTC)))) for _ in range(40)]
        wait_until(lambda: a.outbox.backlog().items == 0, 20, "delivery through the locked-down broker")
    assert_delivered_exactly_once(fleet.db, "kiosk-a", sent)


def test_a_kiosk_can_neither_publish_as_another_nor_read_its_downlink(tmp_path: Path, fleet: Fleet) -> None:
    box = Outbox(tmp_path / "forge.db", "kiosk-b")
    as_b = encode(box.enqueue("observations", single_reading(random.Random(6), datetime.now(UTC))))
    box.close()
    with fleet.ingest():
        a = _kiosk(fleet, "kiosk-a")
        try:
            assert a.connected.is_set(), a.connack
            # B's topic with B's envelope, from A's connection: the broker refuses it.
            a.ask(lambda: a.client.publish(Topics.uplink("kiosk-b", "observations"), as_b, qos=1))
            assert [rc.getName() for rc in a.puback] == ["Not authorized"]
            # Reading B's downlink or B's uplink: Mosquitto grants the subscription but delivers
            # nothing the ACL forbids. B's own subscription gets the message; A's gets nothing.
            seen_by_a: list[str] = []
            a.client.on_message = lambda _c, _u, m: seen_by_a.append(m.topic)
            a.ask(lambda: a.client.subscribe(Topics.downlink_filter("kiosk-b"), qos=1))
            a.ask(lambda: a.client.subscribe(Topics.UPLINK_FILTER, qos=1))
            b = _kiosk(fleet, "kiosk-b")
            seen_by_b: list[str] = []
            b.client.on_message = lambda _c, _u, m: seen_by_b.append(m.topic)
            b.ask(lambda: b.client.subscribe(Topics.downlink_filter("kiosk-b"), qos=1))
            hub = _hub_client(fleet)
            hub.ask(lambda: hub.client.publish(Topics.message("kiosk-b"), b"{}", qos=1))
            b.ask(lambda: b.client.publish(Topics.uplink("kiosk-b", "delivered"), b"{}", qos=1))
            wait_until(lambda: seen_by_b == [Topics.message("kiosk-b")], 10, "kiosk-b's own downlink message")
            time.sleep(0.5)
            assert seen_by_a == [], "kiosk-a read another kiosk's traffic"
            for client in (b, hub):
                client.close()
            # On its own topic, an envelope claiming to be B's reaches ingest and is dead-lettered there.
            a.ask(lambda: a.client.publish(Topics.uplink("kiosk-a", "observations"), as_b, qos=1))
            assert a.puback[-1].getName() == "Success"
            store = HubStore(fleet.db)
            try:
                wait_until(lambda: store.counts()["dead_letters"] > 0, 10, "the forged envelope in dead letters")
                reasons = [d["reason"] for d in store.dead_letters()]
            finally:
                store.close()
            assert any("does not match topic kiosk 'kiosk-a'" in r for r in reasons), reasons
        finally:
            a.close()
    assert hub_rows(fleet.db, "kiosk-b") == []


def test_a_revoked_kiosk_is_disconnected_at_once_and_refused_after(fleet: Fleet) -> None:
    a = _kiosk(fleet, "kiosk-a")
    b = _kiosk(fleet, "kiosk-b")
    try:
        assert a.connected.is_set() and b.connected.is_set()
        assert hub_main(["kiosks", "revoke", "kiosk-a", "--data", str(fleet.hub)]) == 0
        assert a.disconnected.wait(10), "the revoked kiosk stayed connected"
        time.sleep(0.5)
        assert not b.disconnected.is_set(), "revoking kiosk-a disconnected kiosk-b"
    finally:
        a.close()
        b.close()
    # Refused: at TLS (the broker re-read its revocation list) or by CONNACK (the password is gone).
    _refused(lambda: _kiosk(fleet, "kiosk-a"))
    listing = [json.loads(line) for line in _run_cli(["kiosks", "identities", "--data", str(fleet.hub)]).splitlines()]
    assert {row["kiosk"]: row["revoked"] for row in listing} == {"kiosk-a": True, "kiosk-b": False}


def _run_cli(argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert hub_main(argv) == 0
    return out.getvalue()


def _refused(probe_factory: Callable[[], Probe]) -> None:
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


def test_wrong_or_missing_certificates_plaintext_and_bad_passwords_are_refused(tmp_path: Path, fleet: Fleet) -> None:
    ident = fleet.identities["kiosk-a"]
    password = ident.mqtt_password()
    stranger = HubCA(tmp_path / "stranger-ca")
    forged = stranger.issue_kiosk("kiosk-a")
    (tmp_path / "forged.pem").write_bytes(forged.cert_pem)
    (tmp_path / "forged.key").write_bytes(forged.key_pem)

    # The control: the right certificate and password get in.
    ok = _kiosk(fleet, "kiosk-a")
    assert ok.connected.is_set()
    ok.close()
    # A certificate kiosk-a's name but from another CA.
    _refused(lambda: Probe("p1").tls(None, ca=ident.ca_file, cert=tmp_path / "forged.pem", key=tmp_path / "forged.key")
             .login("kiosk-a", password).connect(fleet.kiosk_url))  # fmt: skip
    # No client certificate at all.
    _refused(lambda: Probe("p2").tls(None, ca=ident.ca_file).login("kiosk-a", password).connect(fleet.kiosk_url))
    # The right certificate with a wrong password, or none.
    _refused(
        lambda: Probe("p3").tls(ident, ca=ident.ca_file).login("kiosk-a", "not-the-password").connect(fleet.kiosk_url)
    )
    _refused(lambda: Probe("p4").tls(ident, ca=ident.ca_file).login(None, None).connect(fleet.kiosk_url))
    # kiosk-b's password with kiosk-a's name.
    b_password = fleet.identities["kiosk-b"].mqtt_password()
    _refused(lambda: Probe("p5").tls(ident, ca=ident.ca_file).login("kiosk-a", b_password).connect(fleet.kiosk_url))
    # Plaintext MQTT on the TLS port gets no session.
    _refused(lambda: Probe("p6").login("kiosk-a", password).connect(fleet.kiosk_url))
    # The hub's loopback listener wants a password too: anonymous and kiosk logins there get nothing.
    _refused(lambda: Probe("p7").connect(fleet.hub_url))
    _refused(lambda: Probe("p8").login(INGEST_USER, "guess").connect(fleet.hub_url))


def test_a_replaced_kiosks_old_certificate_is_revoked(tmp_path: Path, fleet: Fleet) -> None:
    """`hub kiosks add` again (a lost or rebuilt kiosk): the old certificate goes on the CRL at once."""
    old = fleet.identities["kiosk-a"]
    old_cert, old_key = tmp_path / "old.pem", tmp_path / "old.key"
    old_cert.write_bytes(old.cert_file.read_bytes())
    old_key.write_bytes(old.key_file.read_bytes())
    bundle_file = tmp_path / "new-bundle.json"
    _run_cli(["kiosks", "add", "kiosk-a", "--data", str(fleet.hub), "--broker-url", str(fleet.kiosk_url),
              "--out", str(bundle_file)])  # fmt: skip
    assert bundle_file.stat().st_mode & 0o777 == 0o600
    new = import_bundle(bundle_file.read_bytes(), tmp_path / "rebuilt")
    fleet.broker.stop()  # Mosquitto reads its revocation list when its listener starts
    fleet.broker.start()
    ok = _kiosk_with(fleet, new, new.cert_file, new.key_file)
    assert ok.connected.is_set(), ok.connack
    ok.close()
    _refused(lambda: _kiosk_with(fleet, new, old_cert, old_key))  # the new password cannot revive the old cert


def _kiosk_with(fleet: Fleet, ident: KioskIdentity, cert: Path, key: Path) -> Probe:
    return (
        Probe(f"probe-{time.monotonic_ns()}")
        .tls(None, ca=ident.ca_file, cert=cert, key=key)
        .login(ident.kiosk_id, ident.mqtt_password())
        .connect(fleet.kiosk_url)
    )
