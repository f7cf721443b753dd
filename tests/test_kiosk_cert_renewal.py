"""A kiosk renews its own client certificate over MQTT in its last 30 days, without a visit.

End to end against the hub service (embedded Mosquitto with TLS and ACLs, an ingest worker process that
signs): `kiosk renew` makes a new key, the hub signs it, the kiosk delivers with the new pair, the old
certificate still works until it ends, and revoking the kiosk lists every certificate it was issued. The
hub's refusals (not due, forged, another kiosk's, revoked, a wrong key type) are checked on a real database,
and a renewal cut off between the key and the certificate leaves a pair that belongs together.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.cli import main as kiosk_main
from device.identity import KioskIdentity, import_bundle, load_identity, pair_matches
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.protocol.renewal import RenewalRequest
from device.protocol.topics import Topics
from device.renewal import finish_pending, make_request
from device.simulate import single_reading
from hub.broker import free_port
from hub.cli import main as hub_main
from hub.db import Location, SqliteLocation, immediate
from hub.fleet.identities import FleetPaths, IdentityError, add_kiosk, renew_kiosk, revoke_kiosk, write_broker_files
from hub.service import HubService, ServeConfig
from hub.store import HubStore
from tests.fleet import Probe, agent_overrides
from tests.harness import assert_delivered_exactly_once, kiosk_agent, wait_until

DAY = 86_400.0


def _provision(
    data: Path, kiosk: str, broker_url: str, dest: Path, *, days_ago: float, db: Location | None = None
) -> KioskIdentity:
    store = HubStore(db or SqliteLocation(data / "hub.db"))
    try:
        with immediate(store.conn) as conn:
            bundle = add_kiosk(conn, FleetPaths(data), kiosk, broker_url=broker_url, hub_url=None, clinic_id=None,
                               now=time.time() - days_ago * DAY)  # fmt: skip
            write_broker_files(conn, FleetPaths(data), now=time.time())
    finally:
        store.close()
    return import_bundle(bundle.model_dump_json().encode(), dest)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _probe(url: BrokerUrl, ident: KioskIdentity, cert: Path, key: Path) -> Probe:
    return (
        Probe(f"{ident.kiosk_id}:probe-{time.monotonic_ns()}")
        .tls(None, ca=ident.ca_file, cert=cert, key=key)
        .login(ident.kiosk_id, ident.mqtt_password())
        .connect(url)
    )


def test_a_kiosk_renews_its_certificate_in_its_last_30_days_and_goes_on_with_the_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, kiosk_dir = tmp_path / "hub", tmp_path / "kiosk"
    config = ServeConfig(
        data_dir=data, broker_port=free_port(), http_port=free_port(), mqtt_port=free_port(), workers=1
    )
    url = f"mqtts://127.0.0.1:{config.mqtt_port}"
    HubStore(data / "hub.db").close()
    # Provisioned 800 days ago: its certificate (825 days) ends in 25.
    ident = _provision(data, "lobby-1", url, kiosk_dir, days_ago=800)
    service = HubService(config)
    service.start_background()
    try:
        assert service.ingest.wait_ready(30), "ingest did not connect"
        _renew_and_go_on(tmp_path, service, ident, capsys)
    finally:
        service.stop_background()
    # A second run: not due, and it asks nothing (the hub is stopped: asking would fail).
    assert kiosk_main(["renew", "--data", str(kiosk_dir), "--timeout", "2"]) == 0
    assert "not due: the certificate is valid until" in capsys.readouterr().out
    # Revoked: every certificate it was issued goes on the revocation list, the old one too.
    assert hub_main(["kiosks", "revoke", "lobby-1", "--data", str(data)]) == 0
    crl = {r.serial_number for r in x509.load_pem_x509_crl(FleetPaths(data).auth.crl.read_bytes())}
    renewed = load_identity(kiosk_dir)
    assert renewed is not None
    assert {_cert(tmp_path / "old.pem").serial_number, _cert(renewed.cert_file).serial_number} <= crl


def _renew_and_go_on(
    tmp_path: Path, service: HubService, ident: KioskIdentity, capsys: pytest.CaptureFixture[str]
) -> None:
    url = BrokerUrl.parse(service.kiosk_broker_url)
    kiosk_dir = ident.folder.parent
    old_cert, old_key = tmp_path / "old.pem", tmp_path / "old.key"
    old_cert.write_bytes(ident.cert_file.read_bytes())
    old_key.write_bytes(ident.key_file.read_bytes())
    old = _cert(old_cert)

    # Garbage on the renewal topic first: refused in ingest's log, and ingest goes on.
    probe = _probe(url, ident, ident.cert_file, ident.key_file)
    assert probe.connected.is_set(), probe.connack
    probe.ask(lambda: probe.client.publish(Topics.uplink("lobby-1", "renew"), b"not json", qos=1))
    probe.close()

    assert kiosk_main(["renew", "--data", str(kiosk_dir)]) == 0
    out = capsys.readouterr().out
    assert "lobby-1: renewed: valid until" in out, out
    ident = load_identity(kiosk_dir)
    assert ident is not None
    new = _cert(ident.cert_file)
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc - old.not_valid_after_utc > dt.timedelta(days=790)
    assert ident.key_file.read_bytes() != old_key.read_bytes(), "a new key, made on the kiosk"
    assert ident.key_file.stat().st_mode & 0o777 == 0o600
    assert pair_matches(ident.cert_file, ident.key_file)
    assert not (kiosk_dir / "identity" / "kiosk.pem.new").exists()
    store = HubStore(service.database)
    try:
        (serial,) = store.conn.execute("SELECT cert_serial FROM kiosk_identities WHERE kiosk = 'lobby-1'").fetchone()
        actions = store.conn.execute("SELECT actor, action FROM audit WHERE target = 'kiosk:lobby-1'").fetchall()
    finally:
        store.close()
    assert serial == format(new.serial_number, "x")
    assert ("kiosk:lobby-1", "renew_kiosk_certificate") in actions

    # The agent with the new pair delivers, exactly once.
    with kiosk_agent(tmp_path / "agent", "lobby-1", url, **agent_overrides(ident)) as agent:
        rng = random.Random(9)
        sent = [encode(agent.outbox.enqueue("observations", single_reading(rng, dt.datetime.now(dt.UTC))))
                for _ in range(5)]  # fmt: skip
        wait_until(lambda: agent.outbox.backlog().items == 0, 20, "delivery with the renewed certificate")
    assert_delivered_exactly_once(service.database, "lobby-1", sent)
    # The old certificate still works until it ends: an agent not yet restarted is not cut off.
    still = _probe(url, ident, old_cert, old_key)
    assert still.connected.is_set(), still.connack
    still.close()


# -- the hub's refusals, on a real database --------------------------------------------------------


@pytest.fixture
def hub(tmp_path: Path, hub_database: Location) -> Iterator[tuple[HubStore, FleetPaths]]:
    data = tmp_path / "hub"
    store = HubStore(hub_database)
    try:
        yield store, FleetPaths(data)
    finally:
        store.close()


def _renew(hub: tuple[HubStore, FleetPaths], kiosk: str, request: RenewalRequest) -> x509.Certificate:
    store, paths = hub
    with immediate(store.conn) as conn:
        issued = renew_kiosk(conn, paths, kiosk, request, time.time())
    return x509.load_pem_x509_certificate(issued.cert_pem)


def _kiosk(hub: tuple[HubStore, FleetPaths], tmp_path: Path, kiosk: str, days_ago: float) -> KioskIdentity:
    store, paths = hub
    return _provision(
        paths.data, kiosk, "mqtts://127.0.0.1:8883", tmp_path / kiosk, days_ago=days_ago, db=store.location
    )


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, name: str) -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def _signed(ident: KioskIdentity, csr: bytes) -> RenewalRequest:
    """A request for `csr`, with the kiosk's certificate and its key's signature: only the CSR is odd."""
    held = serialization.load_pem_private_key(ident.key_file.read_bytes(), password=None)
    assert isinstance(held, ec.EllipticCurvePrivateKey)
    proof = base64.b64encode(held.sign(csr, ec.ECDSA(hashes.SHA256()))).decode()
    return RenewalRequest(request="r-0000001", csr_pem=csr.decode(), cert_pem=ident.cert_file.read_text(), proof=proof)


def test_the_hub_signs_only_a_due_request_for_the_kiosk_whose_key_signed_it(
    tmp_path: Path, hub: tuple[HubStore, FleetPaths]
) -> None:
    a = _kiosk(hub, tmp_path, "kiosk-a", days_ago=800)
    b = _kiosk(hub, tmp_path, "kiosk-b", days_ago=800)
    fresh = _kiosk(hub, tmp_path, "kiosk-new", days_ago=0)
    key = ec.generate_private_key(ec.SECP256R1())

    def refused(kiosk: str, request: RenewalRequest, reason: str) -> None:
        with pytest.raises(IdentityError, match=reason):
            _renew(hub, kiosk, request)

    refused("kiosk-new", make_request(fresh, key), "not due for renewal until")
    # kiosk-b's request arriving on kiosk-a's topic (a broker without ACLs): not kiosk-a's certificate.
    refused("kiosk-a", make_request(b, key), "not a live certificate of this kiosk")
    # kiosk-a, properly signed, asking for a certificate in kiosk-b's name.
    refused("kiosk-a", _signed(a, _csr(key, "kiosk-b")), r"names \['kiosk-b'\], not kiosk 'kiosk-a'")
    # kiosk-b's certificate (public) with a request kiosk-a's key signed: not a certificate of kiosk-a's.
    forged = make_request(a, key).model_copy(update={"cert_pem": b.cert_file.read_text()})
    refused("kiosk-a", forged, "not signed by the key of the certificate held|not a live certificate")
    # The right certificate, but the request signed by some other key.
    other = ec.generate_private_key(ec.SECP256R1())
    good = make_request(a, key)
    bad_proof = base64.b64encode(other.sign(good.csr_pem.encode(), ec.ECDSA(hashes.SHA256()))).decode()
    refused("kiosk-a", good.model_copy(update={"proof": bad_proof}), "not signed by the key of the certificate held")
    # A certificate from another CA.
    stranger = _provision(tmp_path / "other-hub", "kiosk-a", "mqtts://127.0.0.1:8883", tmp_path / "x", days_ago=800)
    refused("kiosk-a", make_request(stranger, key), "not one this hub's CA issued")
    # An RSA key in the request.
    refused("kiosk-a", _signed(a, _csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "kiosk-a")),
            "not EC P-256")  # fmt: skip

    # A proper one is signed; a retry after a lost answer (the old certificate still held) is signed again.
    first = _renew(hub, "kiosk-a", make_request(a, key))
    again = _renew(hub, "kiosk-a", make_request(a, ec.generate_private_key(ec.SECP256R1())))
    assert first.subject == again.subject and first.serial_number != again.serial_number
    # Revoked: nothing more is signed, and all three certificates are on the list.
    store, paths = hub
    with immediate(store.conn) as conn:
        revoke_kiosk(conn, "kiosk-a", time.time())
        write_broker_files(conn, paths, now=time.time())
    refused("kiosk-a", make_request(a, key), "no live identity")
    listed = {r.serial_number for r in x509.load_pem_x509_crl(paths.auth.crl.read_bytes())}
    assert {_cert(a.cert_file).serial_number, first.serial_number, again.serial_number} <= listed


def test_a_renewal_cut_off_between_the_key_and_the_certificate_leaves_a_pair_that_belongs_together(
    tmp_path: Path, hub: tuple[HubStore, FleetPaths]
) -> None:
    ident = _kiosk(hub, tmp_path, "kiosk-a", days_ago=800)
    new_key = ec.generate_private_key(ec.SECP256R1())
    cert = _renew(hub, "kiosk-a", make_request(ident, new_key))
    pending = ident.folder / "kiosk.pem.new"
    # Cut off after the new certificate was written beside the old, before the key: the old pair stands.
    pending.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert ident.cert_file == ident.folder / "kiosk.pem"
    assert pair_matches(ident.cert_file, ident.key_file)
    assert finish_pending(ident) is False and not pending.exists()
    # Cut off after the key was replaced, before the certificate: the new certificate is the one taken.
    pending.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ident.key_file.write_bytes(
        new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    )  # fmt: skip
    assert not pair_matches(ident.folder / "kiosk.pem", ident.key_file)
    assert ident.cert_file == pending and pair_matches(ident.cert_file, ident.key_file)
    assert finish_pending(ident) is True
    assert ident.cert_file == ident.folder / "kiosk.pem" and pair_matches(ident.cert_file, ident.key_file)
    assert _cert(ident.cert_file).serial_number == cert.serial_number


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    csr=st.text(max_size=300),
    cert=st.none() | st.text(max_size=300),
    proof=st.none() | st.text(alphabet="AZaz09+/=", min_size=1, max_size=200),
)
def test_any_well_formed_request_is_signed_or_refused_with_a_reason(
    tmp_path: Path, hub: tuple[HubStore, FleetPaths], csr: str, cert: str | None, proof: str | None
) -> None:
    """What passes the model's checks but holds nonsense PEM or base64: refused in words, never another error.
    None: the kiosk's real certificate, or a real signature of the nonsense, so the later checks are reached too."""
    a = load_identity(tmp_path / "kiosk-a") or _kiosk(hub, tmp_path, "kiosk-a", days_ago=800)
    request = _signed(a, ("-----BEGIN CERTIFICATE REQUEST-----" + csr).encode())
    changes = {"cert_pem": None if cert is None else "-----BEGIN CERTIFICATE-----" + cert, "proof": proof}
    request = request.model_copy(update={k: v for k, v in changes.items() if v is not None})
    with pytest.raises(IdentityError) as refused:
        _renew(hub, "kiosk-a", request)
    assert str(refused.value)
