"""Kiosk identities: provisioning a kiosk (`hub kiosks add`) and cutting it off (`hub kiosks revoke`).

A provisioned kiosk holds a client certificate from the hub's CA, an MQTT password (only
its PBKDF2 hash is kept here, in the form Mosquitto's password file takes) and a credential
for the hub's consult socket. All three reach the kiosk once, in the provisioning bundle;
the hub keeps no copy of any secret. Revoking removes the password from the broker's file,
puts its certificates on the revocation list, revokes the consult credential and signals the
broker, which disconnects the kiosk. A live kiosk renews its own certificate over MQTT
(`renew_kiosk`, device/protocol/renewal.py) in the last RENEW_DAYS of it.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from device.protocol.provisioning import BUNDLE_FORMAT, ProvisioningBundle
from device.protocol.renewal import RENEW_DAYS as KIOSK_RENEW_DAYS
from device.protocol.renewal import RenewalRequest
from device.protocol.topics import Topics
from hub.accounts import kiosk_credentials
from hub.db import Connection
from hub.fleet import remote_config
from hub.fleet.broker_auth import (
    HUB_USER_PREFIX,
    INGEST_USER,
    BrokerAuthFiles,
    mosquitto_hash,
    mosquitto_hash_matches,
    new_password,
    passwd_text,
    read_passwd,
)
from hub.fleet.pki import RENEW_DAYS, HubCA, IssuedCert, write_private


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
    conn: Connection,
    paths: FleetPaths,
    kiosk_id: str,
    *,
    broker_url: str | Sequence[str],
    hub_url: str | None,
    clinic_id: str | None,
    now: float,
) -> ProvisioningBundle:
    """A new identity for the kiosk (replacing and revoking any earlier one); the bundle is its only copy.

    `broker_url`: the broker the kiosk reaches, or several in the order to try them (the bundle then lists them
    all, its `broker` the first, which is what a kiosk from before lists reads)."""
    urls = [broker_url] if isinstance(broker_url, str) else list(broker_url)
    if not Topics.is_valid_kiosk_id(kiosk_id):
        raise IdentityError(f"{kiosk_id!r} is not a usable kiosk id (letters, digits, '_', '.', '-'; 1 to 64)")
    if kiosk_id.startswith(HUB_USER_PREFIX):
        raise IdentityError(f"{kiosk_id!r} is not a usable kiosk id: names starting {HUB_USER_PREFIX!r} are the hub's")
    ca = HubCA(paths.ca_folder)
    _revoke_certs(conn, kiosk_id, now)  # a replaced kiosk: its old certificates must stop working too
    issued = ca.issue_kiosk(kiosk_id, now=_now(now))
    _record_cert(conn, kiosk_id, issued, now)
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
        broker=urls[0],
        brokers=urls if len(urls) > 1 else None,
        hub_url=hub_url,
        ca_pem=ca.cert_pem.decode(),
        cert_pem=issued.cert_pem.decode(),
        key_pem=issued.key_pem.decode(),
        mqtt_password=password,
        hub_credential=credential,
        issued_at=_now(now),
    )


def revoke_kiosk(conn: Connection, kiosk_id: str, now: float) -> None:
    row = conn.execute(
        "SELECT cert_serial FROM kiosk_identities WHERE kiosk = ? AND revoked_at IS NULL", (kiosk_id,)
    ).fetchone()
    if row is None:
        raise IdentityError(f"kiosk {kiosk_id!r} has no live identity")
    conn.execute("UPDATE kiosk_identities SET revoked_at = ? WHERE kiosk = ?", (now, kiosk_id))
    _revoke_certs(conn, kiosk_id, now)
    kiosk_credentials.revoke(conn, kiosk_id, now)
    remote_config.withdraw(conn, kiosk_id)
    # Offline now, whether or not the broker is up to say so (the broker plugin publishes it too).
    conn.execute("UPDATE kiosks SET online = 0, presence_at = ? WHERE id = ?", (now, kiosk_id))


def _record_cert(conn: Connection, kiosk_id: str, issued: IssuedCert, now: float) -> None:
    conn.execute(
        "INSERT INTO kiosk_certs (serial, kiosk, not_after, issued_at) VALUES (?,?,?,?)",
        (format(issued.serial, "x"), kiosk_id, issued.not_after.timestamp(), now),
    )


def _revoke_certs(conn: Connection, kiosk_id: str, now: float) -> None:
    """Every certificate the kiosk was ever issued, onto the revocation list (a renewed one's predecessor too)."""
    conn.execute(
        "INSERT INTO revoked_certs (serial, kiosk, revoked_at) "
        "SELECT serial, kiosk, ? FROM kiosk_certs WHERE kiosk = ? ON CONFLICT (serial) DO NOTHING",
        (now, kiosk_id),
    )


def renew_kiosk(conn: Connection, paths: FleetPaths, kiosk_id: str, request: RenewalRequest, now: float) -> IssuedCert:
    """A certificate for the new key in the kiosk's signing request, in the last RENEW_DAYS of its current one.

    `kiosk_id` is the one the broker authenticated (the request's topic), never a name from the request:
    the request must name that kiosk, and the kiosk's identity must be live. "Current" is the certificate
    the kiosk says it holds (one this hub issued it and has not revoked), not the newest issued: a kiosk
    whose reply was lost still holds the old one and asks again. The previous certificate stays valid
    until it ends, so a kiosk that has not yet switched is not cut off; revoking the kiosk revokes all.
    Raises IdentityError with the reason, which the kiosk is told.
    """
    if (
        conn.execute("SELECT 1 FROM kiosk_identities WHERE kiosk = ? AND revoked_at IS NULL", (kiosk_id,)).fetchone()
        is None
    ):
        raise IdentityError(f"kiosk {kiosk_id!r} has no live identity on this hub")
    ca = HubCA(paths.ca_folder)
    held = _held_certificate(conn, ca, kiosk_id, request)
    due = held.not_valid_after_utc - dt.timedelta(days=KIOSK_RENEW_DAYS)
    if _now(now) < due:
        raise IdentityError(f"the certificate is not due for renewal until {due:%Y-%m-%d}")
    key = _requested_key(request, kiosk_id)
    issued = ca.issue_kiosk(kiosk_id, now=_now(now), public_key=key)
    _record_cert(conn, kiosk_id, issued, now)
    conn.execute(
        "UPDATE kiosk_identities SET cert_serial = ?, cert_not_after = ? WHERE kiosk = ?",
        (format(issued.serial, "x"), issued.not_after.timestamp(), kiosk_id),
    )
    return issued


def _held_certificate(conn: Connection, ca: HubCA, kiosk_id: str, request: RenewalRequest) -> x509.Certificate:
    """The certificate the request says the kiosk holds: this CA's, the kiosk's, not revoked, and its key signed
    the request (a certificate alone is public and proves nothing)."""
    try:
        held = x509.load_pem_x509_certificate(request.cert_pem.encode())
        held.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError("the certificate held is not one this hub's CA issued") from None
    if (
        conn.execute(
            "SELECT 1 FROM kiosk_certs WHERE serial = ? AND kiosk = ? "
            "AND serial NOT IN (SELECT serial FROM revoked_certs)",
            (format(held.serial_number, "x"), kiosk_id),
        ).fetchone()
        is None
    ):
        raise IdentityError("the certificate held is not a live certificate of this kiosk")
    public = held.public_key()
    try:
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        public.verify(base64.b64decode(request.proof), request.csr_pem.encode(), ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        raise IdentityError("the request is not signed by the key of the certificate held") from None
    return held


def _requested_key(request: RenewalRequest, kiosk_id: str) -> ec.EllipticCurvePublicKey:
    """The new key from the signing request, which must be self-consistent, name this kiosk and be EC P-256."""
    try:
        csr = x509.load_pem_x509_csr(request.csr_pem.encode())
    except ValueError as exc:
        raise IdentityError(f"the signing request cannot be read: {exc}") from None
    if not csr.is_signature_valid:
        raise IdentityError("the signing request's signature does not match its key")
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [kiosk_id]:
        raise IdentityError(f"the signing request names {names}, not kiosk {kiosk_id!r}")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise IdentityError("the signing request's key is not EC P-256")
    return key


def listing(conn: Connection) -> list[dict[str, object]]:
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


def write_broker_files(conn: Connection, paths: FleetPaths, *, now: float) -> bool:
    """Password file, ACL and revocation list from the database: what the broker must enforce now.

    Only what changed is written (whether anything was is returned): `hub serve` calls this at every
    start, and a start with nothing changed must write nothing, or it cannot start on a full disk. So
    the ingest user's hash keeps its salt while it still matches the password, and the revocation
    list is signed again only when what it revokes changed or its next update nears; both would
    otherwise differ at every start.
    """
    ca = HubCA(paths.ca_folder)
    password = ingest_password(paths)
    kept = read_passwd(paths.auth.passwd).get(INGEST_USER)
    entries = [(INGEST_USER, kept if kept and mosquitto_hash_matches(password, kept) else mosquitto_hash(password))]
    entries += [
        (str(k), str(h))
        for k, h in conn.execute(
            "SELECT kiosk, mqtt_password_hash FROM kiosk_identities WHERE revoked_at IS NULL ORDER BY kiosk"
        )
    ]
    revoked = [(int(s, 16), _now(float(at))) for s, at in conn.execute("SELECT serial, revoked_at FROM revoked_certs")]
    revoked_kiosks = [
        str(k)
        for (k,) in conn.execute("SELECT kiosk FROM kiosk_identities WHERE revoked_at IS NOT NULL ORDER BY kiosk")
    ]
    crl = _current_crl(ca, paths.auth.crl, revoked, _now(now)) or ca.crl_pem(revoked, now=_now(now))
    return paths.auth.write(passwd_text(entries), crl, revoked_kiosks)


def _current_crl(ca: HubCA, path: Path, revoked: list[tuple[int, dt.datetime]], now: dt.datetime) -> bytes | None:
    """The revocation list already written, if it is this CA's, revokes exactly `revoked` and is not near its end."""
    try:
        pem = path.read_bytes()
        crl = x509.load_pem_x509_crl(pem)
    except (OSError, ValueError):
        return None
    public = ca.cert.public_key()
    if (
        crl.issuer != ca.cert.subject
        or not isinstance(public, ec.EllipticCurvePublicKey)
        or not crl.is_signature_valid(public)
        or crl.next_update_utc is None
        or crl.next_update_utc - now < dt.timedelta(days=RENEW_DAYS)
    ):
        return None
    listed = {(r.serial_number, r.revocation_date_utc) for r in crl}
    wanted = {(serial, at.replace(microsecond=0)) for serial, at in revoked}
    return pem if listed == wanted else None


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
