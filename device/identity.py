"""The kiosk's provisioned identity: imported once from the hub's bundle, read at every start.

`kiosk provision FILE` checks the bundle before it keeps anything: the certificate must be
issued by the bundle's CA, name this kiosk, match the private key and be valid now. The
secrets land owner-only in `{data}/identity/`; the agent then needs no identity flags.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from device.files import write_atomic
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import EnvelopeError
from device.protocol.provisioning import ProvisioningBundle, parse_bundle

FOLDER = "identity"


class IdentityError(ValueError):
    pass


@dataclass(frozen=True)
class KioskIdentity:
    kiosk_id: str
    broker: BrokerUrl
    hub_url: str | None
    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.folder / "kiosk.pem"

    @property
    def key_file(self) -> Path:
        return self.folder / "kiosk.key"

    @property
    def mqtt_password_file(self) -> Path:
        return self.folder / "mqtt-password"

    @property
    def hub_credential_file(self) -> Path:
        return self.folder / "hub-credential"

    def mqtt_password(self) -> str:
        return self.mqtt_password_file.read_text().strip()


def check_bundle(bundle: ProvisioningBundle, now: dt.datetime) -> None:
    """Refuse a bundle whose parts do not belong together (or to this kiosk), before anything is written."""
    # Imported here: cryptography costs the running agent ~11 MB of memory, and only provisioning needs it.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    try:
        ca = x509.load_pem_x509_certificate(bundle.ca_pem.encode())
        cert = x509.load_pem_x509_certificate(bundle.cert_pem.encode())
        key = serialization.load_pem_private_key(bundle.key_pem.encode(), password=None)
    except ValueError as exc:
        raise IdentityError(f"the bundle's certificates or key cannot be read: {exc}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError("the kiosk certificate was not issued by the bundle's CA") from None
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [bundle.kiosk_id]:
        raise IdentityError(f"the certificate names {names}, not kiosk {bundle.kiosk_id!r}")
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cert_public = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != cert_public:
        raise IdentityError("the private key does not match the kiosk certificate")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise IdentityError(
            f"the kiosk certificate is valid from {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}, not now ({now:%Y-%m-%d}): check the kiosk's clock"
        )
    if not bundle.broker.startswith("mqtts://"):
        raise IdentityError(f"the bundle's broker {bundle.broker!r} is not mqtts://: a kiosk talks to the hub over TLS")


def import_bundle(raw: bytes, data_dir: Path, *, now: dt.datetime | None = None) -> KioskIdentity:
    """Check and keep the bundle's identity in `data_dir`; importing the same or a newer one again replaces it."""
    try:
        bundle = parse_bundle(raw)
    except EnvelopeError as exc:
        raise IdentityError(str(exc)) from None
    check_bundle(bundle, now or dt.datetime.now(dt.UTC))
    folder = data_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    write_atomic(folder / "ca.pem", bundle.ca_pem.encode(), 0o644)
    write_atomic(folder / "kiosk.pem", bundle.cert_pem.encode(), 0o644)
    write_atomic(folder / "kiosk.key", bundle.key_pem.encode(), 0o600)
    write_atomic(folder / "mqtt-password", bundle.mqtt_password.encode(), 0o600)
    if bundle.hub_credential:
        write_atomic(folder / "hub-credential", bundle.hub_credential.encode(), 0o600)
    public = {
        "kiosk_id": bundle.kiosk_id,
        "clinic_id": bundle.clinic_id,
        "broker": bundle.broker,
        "hub_url": bundle.hub_url,
        "issued_at": bundle.issued_at.isoformat(),
    }
    # Written last: the commit point (load_identity finds nothing until it is there).
    write_atomic(folder / "identity.json", (json.dumps(public, indent=2) + "\n").encode(), 0o644)
    identity = load_identity(data_dir)
    assert identity is not None
    return identity


def load_identity(data_dir: Path) -> KioskIdentity | None:
    """The imported identity, or None when this kiosk was never provisioned."""
    folder = data_dir / FOLDER
    try:
        public = json.loads((folder / "identity.json").read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise IdentityError(f"{folder / 'identity.json'} is damaged ({exc}): provision the kiosk again") from None
    return KioskIdentity(
        kiosk_id=public["kiosk_id"],
        broker=BrokerUrl.parse(public["broker"]),
        hub_url=public.get("hub_url"),
        folder=folder,
    )
