"""mqtts:// between kiosk, broker and hub: readings flow over TLS, plaintext and strangers are refused."""

from __future__ import annotations

import random
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.simulate import single_reading
from hub.broker import MosquittoProcess, TlsFiles
from tests.harness import assert_delivered_exactly_once, ingest_thread, kiosk_agent, wait_until


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def make_server_cert(folder: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
         "-days", "2", "-extfile", str(ext), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoProcess, Path, Path]]:
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_key, ca_cert = make_ca(pki, "hub-ca")
    server_key, server_cert = make_server_cert(pki, ca_key, ca_cert)
    _, stranger_ca = make_ca(pki, "stranger-ca")
    broker = MosquittoProcess(tmp_path / "broker", tls=TlsFiles(ca_cert, server_cert, server_key))
    broker.start()
    try:
        yield broker, ca_cert, stranger_ca
    finally:
        broker.stop()


def test_readings_flow_over_tls(tmp_path: Path, tls_broker: tuple[MosquittoProcess, Path, Path]) -> None:
    broker, ca, _ = tls_broker
    url = BrokerUrl.parse(broker.url)
    assert url.tls
    db = tmp_path / "hub.db"
    with (
        ingest_thread(db, url, ca_file=str(ca)),
        kiosk_agent(tmp_path / "k", "k1", url, ca_file=str(ca), heartbeat_s=3600) as agent,
    ):
        rng = random.Random(1)
        sent = [encode(agent.outbox.enqueue("observations", single_reading(rng, datetime.now(UTC)))) for _ in range(50)]
        wait_until(lambda: agent.outbox.backlog().items == 0, 20, "delivery over TLS")
    assert_delivered_exactly_once(db, "k1", sent)


def _connect(url: BrokerUrl, ca: Path | None) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    if ca is not None:
        c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    c.connect(url.host, url.port, keepalive=5)
    rc = c.loop(timeout=3)
    c.loop(timeout=1)
    connected = c.is_connected()
    c.disconnect()
    if rc != 0 or not connected:
        raise ConnectionError(f"not connected (rc={rc})")


def test_plaintext_and_unknown_certificates_are_refused(tls_broker: tuple[MosquittoProcess, Path, Path]) -> None:
    broker, ca, stranger = tls_broker
    url = BrokerUrl.parse(broker.url)
    _connect(url, ca)  # the right CA works
    with pytest.raises(ssl.SSLCertVerificationError):
        _connect(url, stranger)  # a broker whose certificate we cannot verify is not trusted
    with pytest.raises((ConnectionError, OSError)):
        _connect(url, None)  # plaintext to the TLS port gets no session
