"""Provisioned kiosks against the hub's locked-down Mosquitto (real broker, real TLS, real ACLs).

A kiosk speaks only for itself: it cannot publish as another kiosk or read another's downlink;
a revoked kiosk is disconnected at once and refused after; a certificate from another CA, no
certificate, plaintext, no password and a wrong password are all refused.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

from device.identity import import_bundle
from device.outbox import Outbox
from device.protocol.envelope import encode
from device.protocol.topics import Topics
from device.simulate import single_reading
from hub.cli import main as hub_main
from hub.fleet.broker_auth import INGEST_USER
from hub.fleet.pki import HubCA
from hub.store import HubStore
from tests.fleet import (
    Fleet,
    Probe,
    agent_overrides,
    hub_probe,
    kiosk_probe,
    kiosk_probe_with,
    refused,
)
from tests.harness import assert_delivered_exactly_once, hub_rows, kiosk_agent, wait_until


def test_a_provisioned_kiosk_delivers_over_tls_exactly_once(tmp_path: Path, fleet_on_each_store: Fleet) -> None:
    fleet = fleet_on_each_store
    ident = fleet.identities["kiosk-a"]
    with fleet.ingest(), kiosk_agent(tmp_path / "kiosk-a", "kiosk-a", fleet.kiosk_url, **agent_overrides(ident)) as a:
        rng = random.Random(5)
        sent = [encode(a.outbox.enqueue("observations", single_reading(rng, datetime.now(UTC)))) for _ in range(40)]
        wait_until(lambda: a.outbox.backlog().items == 0, 20, "delivery through the locked-down broker")
    assert_delivered_exactly_once(fleet.db, "kiosk-a", sent)


def test_a_kiosk_can_neither_publish_as_another_nor_read_its_downlink(
    tmp_path: Path, fleet_on_each_store: Fleet
) -> None:
    fleet = fleet_on_each_store
    box = Outbox(tmp_path / "forge.db", "kiosk-b")
    as_b = encode(box.enqueue("observations", single_reading(random.Random(6), datetime.now(UTC))))
    box.close()
    with fleet.ingest():
        a = kiosk_probe(fleet, "kiosk-a")
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
            b = kiosk_probe(fleet, "kiosk-b")
            seen_by_b: list[str] = []
            b.client.on_message = lambda _c, _u, m: seen_by_b.append(m.topic)
            b.ask(lambda: b.client.subscribe(Topics.downlink_filter("kiosk-b"), qos=1))
            hub = hub_probe(fleet)
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


def test_a_revoked_kiosk_is_disconnected_at_once_and_refused_after(fleet_on_each_store: Fleet) -> None:
    fleet = fleet_on_each_store
    a = kiosk_probe(fleet, "kiosk-a")
    b = kiosk_probe(fleet, "kiosk-b")
    try:
        assert a.connected.is_set() and b.connected.is_set()
        assert hub_main(["kiosks", "revoke", "kiosk-a", *fleet.args]) == 0
        assert a.disconnected.wait(10), "the revoked kiosk stayed connected"
        time.sleep(0.5)
        assert not b.disconnected.is_set(), "revoking kiosk-a disconnected kiosk-b"
    finally:
        a.close()
        b.close()
    # Refused: at TLS (the broker re-read its revocation list) or by CONNACK (the password is gone).
    refused(lambda: kiosk_probe(fleet, "kiosk-a"))
    listing = [json.loads(line) for line in _run_cli(["kiosks", "identities", *fleet.args]).splitlines()]
    assert {row["kiosk"]: row["revoked"] for row in listing} == {"kiosk-a": True, "kiosk-b": False}


def _run_cli(argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert hub_main(argv) == 0
    return out.getvalue()


def test_wrong_or_missing_certificates_plaintext_and_bad_passwords_arerefused(tmp_path: Path, fleet: Fleet) -> None:
    ident = fleet.identities["kiosk-a"]
    password = ident.mqtt_password()
    stranger = HubCA(tmp_path / "stranger-ca")
    forged = stranger.issue_kiosk("kiosk-a")
    (tmp_path / "forged.pem").write_bytes(forged.cert_pem)
    (tmp_path / "forged.key").write_bytes(forged.key_pem)

    # The control: the right certificate and password get in.
    ok = kiosk_probe(fleet, "kiosk-a")
    assert ok.connected.is_set()
    ok.close()
    # A certificate kiosk-a's name but from another CA.
    refused(lambda: Probe("p1").tls(None, ca=ident.ca_file, cert=tmp_path / "forged.pem", key=tmp_path / "forged.key")
             .login("kiosk-a", password).connect(fleet.kiosk_url))  # fmt: skip
    # No client certificate at all.
    refused(lambda: Probe("p2").tls(None, ca=ident.ca_file).login("kiosk-a", password).connect(fleet.kiosk_url))
    # The right certificate with a wrong password, or none.
    refused(
        lambda: Probe("p3").tls(ident, ca=ident.ca_file).login("kiosk-a", "not-the-password").connect(fleet.kiosk_url)
    )
    refused(lambda: Probe("p4").tls(ident, ca=ident.ca_file).login(None, None).connect(fleet.kiosk_url))
    # kiosk-b's password with kiosk-a's name.
    b_password = fleet.identities["kiosk-b"].mqtt_password()
    refused(lambda: Probe("p5").tls(ident, ca=ident.ca_file).login("kiosk-a", b_password).connect(fleet.kiosk_url))
    # Plaintext MQTT on the TLS port gets no session.
    refused(lambda: Probe("p6").login("kiosk-a", password).connect(fleet.kiosk_url))
    # The hub's loopback listener wants a password too: anonymous and kiosk logins there get nothing.
    refused(lambda: Probe("p7").connect(fleet.hub_url))
    refused(lambda: Probe("p8").login(INGEST_USER, "guess").connect(fleet.hub_url))


def test_a_replaced_kiosks_old_certificate_is_revoked(tmp_path: Path, fleet_on_each_store: Fleet) -> None:
    """`hub kiosks add` again (a lost or rebuilt kiosk): the old certificate goes on the CRL at once."""
    fleet = fleet_on_each_store
    old = fleet.identities["kiosk-a"]
    old_cert, old_key = tmp_path / "old.pem", tmp_path / "old.key"
    old_cert.write_bytes(old.cert_file.read_bytes())
    old_key.write_bytes(old.key_file.read_bytes())
    bundle_file = tmp_path / "new-bundle.json"
    _run_cli(["kiosks", "add", "kiosk-a", *fleet.args, "--broker-url", str(fleet.kiosk_url),
              "--out", str(bundle_file)])  # fmt: skip
    assert bundle_file.stat().st_mode & 0o777 == 0o600
    new = import_bundle(bundle_file.read_bytes(), tmp_path / "rebuilt")
    fleet.broker.stop()  # Mosquitto reads its revocation list when its listener starts
    fleet.broker.start()
    ok = kiosk_probe_with(fleet, new, new.cert_file, new.key_file)
    assert ok.connected.is_set(), ok.connack
    ok.close()
    refused(lambda: kiosk_probe_with(fleet, new, old_cert, old_key))  # the new password cannot revive the old cert
