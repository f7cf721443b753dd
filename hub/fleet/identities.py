"""Kiosk identities: provisioning a kiosk (`hub kiosks add`) and cutting it off (`hub kiosks revoke`).

A provisioned kiosk holds a client certificate from the hub's CA, an MQTT password (only
its PBKDF2 hash is kept here, in the form Mosquitto's password file takes) and a credential
for the hub's consult socket. All three reach the kiosk once, in the provisioning bundle;
the hub keeps no copy of any secret. Revoking removes the password from the broker's file,
puts the certificate on the revocation list, revokes the consult credential and signals the
broker, which disconnects the kiosk.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from device.protocol.provisioning import BUNDLE_FORMAT, ProvisioningBundle
from device.protocol.topics import Topics
from hub.accounts import kiosk_credentials
from hub.fleet import remote_config
from hub.fleet.broker_auth import INGEST_USER, BrokerAuthFiles, mosquitto_hash, new_password, passwd_text
from hub.fleet.pki import RENEW_DAYS, HubCA, write_private


class IdentityError(ValueError):
    pass


@dataclass(frozen=True)
class FleetPaths:
    """The hub's data folder as the fleet code sees it."""

    data: Path

    @property
    def ca_folder(self) -> Path:
        return self.data / "pki"

    @property
    def auth(self) -> BrokerAuthFiles:
        return BrokerAuthFiles(self.data / "broker" / "auth")

    @property
    def broker_pid(self) -> Path:
        return self.data / "broker" / "mosquitto.pid"


def _now(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


def add_kiosk(
    conn: sqlite3.Connection,
    paths: FleetPaths,
    kiosk_id: str,
    *,
    broker_url: str,
    hub_url: str | None,
    clinic_id: str | None,
    now: float,
) -> ProvisioningBundle:
    """A new identity for the kiosk (replacing and revoking any earlier one); the bundle is its only copy."""
    if not Topics.is_valid_kiosk_id(kiosk_id) or kiosk_id == INGEST_USER:
        raise IdentityError(f"{kiosk_id!r} is not a usable kiosk id (letters, digits, '_', '.', '-'; 1 to 64)")
    ca = HubCA(paths.ca_folder)
    previous = conn.execute(
        "SELECT cert_serial FROM kiosk_identities WHERE kiosk = ? AND revoked_at IS NULL", (kiosk_id,)
    ).fetchone()
    if previous is not None:  # a replaced kiosk: its old certificate must stop working too
        conn.execute(
            "INSERT OR IGNORE INTO revoked_certs (serial, kiosk, revoked_at) VALUES (?,?,?)",
            (previous[0], kiosk_id, now),
        )
    issued = ca.issue_kiosk(kiosk_id, now=_now(now))
    password = new_password()
    conn.execute(
        "INSERT INTO kiosk_identities (kiosk, cert_serial, cert_not_after, mqtt_password_hash, created_at) "
        "VALUES (?,?,?,?,?) ON CONFLICT (kiosk) DO UPDATE SET cert_serial = excluded.cert_serial, "
        "cert_not_after = excluded.cert_not_after, mqtt_password_hash = excluded.mqtt_password_hash, "
        "created_at = excluded.created_at, revoked_at = NULL",
        (kiosk_id, format(issued.serial, "x"), issued.not_after.timestamp(), mosquitto_hash(password), now),
    )
    credential = kiosk_credentials.issue(conn, kiosk_id, now)
    return ProvisioningBundle(
        format=BUNDLE_FORMAT,
        kiosk_id=kiosk_id,
        clinic_id=clinic_id,
        broker=broker_url,
        hub_url=hub_url,
        ca_pem=ca.cert_pem.decode(),
        cert_pem=issued.cert_pem.decode(),
        key_pem=issued.key_pem.decode(),
        mqtt_password=password,
        hub_credential=credential,
        issued_at=_now(now),
    )


def revoke_kiosk(conn: sqlite3.Connection, kiosk_id: str, now: float) -> None:
    row = conn.execute(
        "SELECT cert_serial FROM kiosk_identities WHERE kiosk = ? AND revoked_at IS NULL", (kiosk_id,)
    ).fetchone()
    if row is None:
        raise IdentityError(f"kiosk {kiosk_id!r} has no live identity")
    conn.execute("UPDATE kiosk_identities SET revoked_at = ? WHERE kiosk = ?", (now, kiosk_id))
    conn.execute(
        "INSERT OR IGNORE INTO revoked_certs (serial, kiosk, revoked_at) VALUES (?,?,?)", (row[0], kiosk_id, now)
    )
    kiosk_credentials.revoke(conn, kiosk_id, now)
    remote_config.withdraw(conn, kiosk_id)


def listing(conn: sqlite3.Connection) -> list[dict[str, object]]:
    return [
        {"kiosk": k, "cert_serial": s, "cert_not_after": _now(a).isoformat(), "revoked": r is not None}
        for k, s, a, r in conn.execute(
            "SELECT kiosk, cert_serial, cert_not_after, revoked_at FROM kiosk_identities ORDER BY kiosk"
        )
    ]


def ingest_password(paths: FleetPaths) -> str:
    """The hub's own broker password (created on first use, owner-only); ingest reads it at start."""
    path = paths.auth.ingest_password
    if not path.exists():
        write_private(path, new_password().encode())
    return path.read_text().strip()


def write_broker_files(conn: sqlite3.Connection, paths: FleetPaths, *, now: float) -> None:
    """Password file, ACL and revocation list from the database: what the broker must enforce now."""
    ca = HubCA(paths.ca_folder)
    entries = [(INGEST_USER, mosquitto_hash(ingest_password(paths)))]
    entries += [
        (str(k), str(h))
        for k, h in conn.execute(
            "SELECT kiosk, mqtt_password_hash FROM kiosk_identities WHERE revoked_at IS NULL ORDER BY kiosk"
        )
    ]
    revoked = [(int(s, 16), _now(float(at))) for s, at in conn.execute("SELECT serial, revoked_at FROM revoked_certs")]
    paths.auth.write(passwd_text(entries), ca.crl_pem(revoked, now=_now(now)))


def ensure_server_cert(paths: FleetPaths, names: list[str], *, now: float) -> bool:
    """The broker's TLS certificate for these names, issued again when the names change or it nears its end.

    Returns whether it was issued: a running broker must then be restarted to serve it. Without the
    renewal, every kiosk would be refused the day the certificate expired (SERVER_DAYS after the first start).
    """
    auth = paths.auth
    ca = HubCA(paths.ca_folder)
    names_file = auth.folder / "server.names"
    wanted = "\n".join(names)
    if (
        auth.server_cert.exists()
        and names_file.exists()
        and names_file.read_text() == wanted
        and HubCA.expires(auth.server_cert.read_bytes()) - _now(now) > dt.timedelta(days=RENEW_DAYS)
    ):
        return False
    issued = ca.issue_server(names, now=_now(now))
    write_private(auth.server_key, issued.key_pem)
    write_private(auth.server_cert, issued.cert_pem)
    write_private(auth.ca, ca.cert_pem)
    write_private(names_file, wanted.encode())
    return True
