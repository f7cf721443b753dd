"""The embedded broker's TLS certificate is renewed before it ends, and the broker then serves the new one.

Without this, every kiosk would be refused on the day the certificate expired. The hub's clock is moved
(`now` far ahead), the broker is real Mosquitto, and a provisioned kiosk's TLS handshake says which
certificate it is served.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time
from pathlib import Path

from cryptography import x509

from device.identity import import_bundle
from hub.broker import free_port
from hub.db import immediate
from hub.fleet.identities import FleetPaths, add_kiosk, write_broker_files
from hub.fleet.pki import RENEW_DAYS, SERVER_DAYS, HubCA, write_private
from hub.service import HubService, ServeConfig
from hub.store import HubStore

DAY = 86_400.0


def served_serial(port: int, kiosk_dir: Path) -> int:
    """The serial of the certificate the broker presents to a provisioned kiosk (verified against the hub's CA)."""
    identity = import_bundle((kiosk_dir / "bundle.json").read_bytes(), kiosk_dir)
    context = ssl.create_default_context(cafile=str(identity.ca_file))
    context.load_cert_chain(identity.cert_file, identity.key_file)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_the_broker_certificate_is_renewed_before_it_ends_and_served(tmp_path: Path) -> None:
    data, kiosk_dir = tmp_path / "hub", tmp_path / "kiosk"
    mqtt_port = free_port()
    service = HubService(
        ServeConfig(data_dir=data, broker_port=free_port(), http_port=free_port(), mqtt_port=mqtt_port, workers=1)
    )
    assert service.supervisor is not None
    store = HubStore(service.database)
    try:
        with immediate(store.conn) as conn:
            bundle = add_kiosk(conn, FleetPaths(data), "k-renew", broker_url=service.kiosk_broker_url,
                               hub_url=None, clinic_id=None, now=time.time())  # fmt: skip
            write_broker_files(conn, FleetPaths(data), now=time.time())
    finally:
        store.close()
    kiosk_dir.mkdir()
    (kiosk_dir / "bundle.json").write_text(bundle.model_dump_json())
    service.supervisor.start()
    try:
        first = served_serial(mqtt_port, kiosk_dir)
        cert_file = FleetPaths(data).auth.server_cert
        assert x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number == first

        assert service.renew_broker_cert(time.time()) is False, "far from its end: kept"
        assert served_serial(mqtt_port, kiosk_dir) == first

        # A certificate issued long ago, RENEW_DAYS - 1 days from its end, as the broker's current one.
        auth = FleetPaths(data).auth
        old = HubCA(FleetPaths(data).ca_folder).issue_server(
            service.mqtt_names, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=SERVER_DAYS - RENEW_DAYS + 1)
        )
        write_private(auth.server_key, old.key_pem)
        write_private(auth.server_cert, old.cert_pem)
        service.supervisor.restart()
        assert served_serial(mqtt_port, kiosk_dir) == old.serial

        assert service.renew_broker_cert(time.time()) is True
        renewed = x509.load_pem_x509_certificate(cert_file.read_bytes())
        assert renewed.serial_number not in (first, old.serial)
        assert renewed.not_valid_after_utc.timestamp() > time.time() + (SERVER_DAYS - 1) * DAY
        assert served_serial(mqtt_port, kiosk_dir) == renewed.serial_number, "the restarted broker serves it"
        assert service.renew_broker_cert(time.time()) is False, "renewed once, not at every check"
    finally:
        service.supervisor.stop()
