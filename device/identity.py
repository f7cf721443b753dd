"""The kiosk's provisioned identity: imported once from the hub's bundle, read at every start.

`kiosk provision FILE` checks the bundle before it keeps anything: the certificate must be
issued by the bundle's CA, name this kiosk, match the private key and be valid now. The
public parts (id, brokers, CA, certificate) land in `{data}/identity/`; the agent then needs
no identity flags.

Brokers: a bundle names one (`broker`, a string, as bundles always did) or several in the order to try
them (`brokers`, a list; with both, `broker` must be the list's first). Every one must be mqtts://.
`identity.json` keeps the list as `brokers` and its first as `broker`, which is what an older agent reads.

The secrets (private key, MQTT password, consult credential) go beside them, owner-only, or,
with `--secrets-dir`, to a root-only folder (the install script uses /etc/credstore/telehealth-kiosk)
from which systemd hands them to the service at each start (`LoadCredential=`). The service
user then cannot read them at rest, and they are not in the data folder a backup copies; the
running agent reads them from `$CREDENTIALS_DIRECTORY`, a private, read-only, in-memory folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from device.files import write_atomic
from device.protocol.endpoints import BrokerUrl, parse_brokers
from device.protocol.envelope import EnvelopeError
from device.protocol.provisioning import ProvisioningBundle, parse_bundle

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

FOLDER = "identity"
SECRETS = ("kiosk.key", "mqtt-password", "hub-credential")  # also their credential names in kiosk-agent.service


class IdentityError(ValueError):
    pass


@dataclass(frozen=True)
class KioskIdentity:
    kiosk_id: str
    brokers: tuple[BrokerUrl, ...]  # in the order to try them; never empty
    hub_url: str | None
    folder: Path
    secrets: Path  # the identity folder, or systemd's credentials folder

    @property
    def broker(self) -> BrokerUrl:
        """The first broker: what needs only one (a certificate renewal's own connection) uses it."""
        return self.brokers[0]

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert_file(self) -> Path:
        """kiosk.pem, or a renewal's new certificate where the renewal was cut off after replacing the key."""
        pending = self.folder / "kiosk.pem.new"
        if pending.exists() and pair_matches(pending, self.key_file):
            return pending
        return self.folder / "kiosk.pem"

    @property
    def key_file(self) -> Path:
        return self.secrets / "kiosk.key"

    @property
    def mqtt_password_file(self) -> Path:
        return self.secrets / "mqtt-password"

    @property
    def hub_credential_file(self) -> Path:
        return self.secrets / "hub-credential"

    def mqtt_password(self) -> str:
        return self.mqtt_password_file.read_text().strip()


def pair_matches(cert: Path, key: Path) -> bool:
    """Whether this certificate and key belong together (by ssl: the agent does not load cryptography)."""
    try:
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError):
        return False
    return True


def check_certificate(
    ca: x509.Certificate, cert: x509.Certificate, key: PublicKeyTypes, kiosk_id: str, now: dt.datetime
) -> None:
    """A kiosk certificate fit to use: from this CA, naming this kiosk, for this public key, valid now.

    Checked on what a bundle brings (provisioning) and on what a renewal brings back."""
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - see check_bundle
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError("the kiosk certificate was not issued by this kiosk's CA") from None
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [kiosk_id]:
        raise IdentityError(f"the certificate names {names}, not kiosk {kiosk_id!r}")
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise IdentityError("the private key does not match the kiosk certificate")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise IdentityError(
            f"the kiosk certificate is valid from {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}, not now ({now:%Y-%m-%d}): check the kiosk's clock"
        )


def check_bundle(bundle: ProvisioningBundle, now: dt.datetime) -> tuple[BrokerUrl, ...]:
    """Refuse a bundle whose parts do not belong together (or to this kiosk), before anything is written.

    Returns the brokers to try, in order."""
    # Imported here: cryptography costs the running agent ~11 MB of memory, and only provisioning needs it.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        ca = x509.load_pem_x509_certificate(bundle.ca_pem.encode())
        cert = x509.load_pem_x509_certificate(bundle.cert_pem.encode())
        key = serialization.load_pem_private_key(bundle.key_pem.encode(), password=None)
    except ValueError as exc:
        raise IdentityError(f"the bundle's certificates or key cannot be read: {exc}") from None
    check_certificate(ca, cert, key.public_key(), bundle.kiosk_id, now)
    return bundle_brokers(bundle.broker, bundle.brokers)


def bundle_brokers(broker: str, brokers: list[str] | None) -> tuple[BrokerUrl, ...]:
    """The brokers a bundle names, in order: each mqtts://, none twice; `broker` alone, or `brokers` (and `broker`,
    if given too, as the list's first: a reader that knows only `broker` must start where the list does)."""
    urls = [broker] if brokers is None else brokers
    for url in urls:
        if not url.startswith("mqtts://"):
            raise IdentityError(f"the bundle's broker {url!r} is not mqtts://: a kiosk talks to the hub over TLS")
    try:
        found = parse_brokers(urls, tls_only=True)
        first = BrokerUrl.parse(broker)
    except ValueError as exc:
        raise IdentityError(f"the bundle's brokers: {exc}") from None
    if first != found[0]:
        raise IdentityError(
            f"the bundle's broker {broker!r} is not the first of its brokers ({', '.join(urls)}): "
            "give the list alone, or `broker` as its first"
        )
    return found


def import_bundle(
    raw: bytes, data_dir: Path, *, now: dt.datetime | None = None, secrets_dir: Path | None = None
) -> KioskIdentity:
    """Check and keep the bundle's identity in `data_dir`; importing the same or a newer one again replaces it.

    `secrets_dir`: keep the secrets there instead, for systemd to pass to the service as credentials.
    """
    try:
        bundle = parse_bundle(raw)
    except EnvelopeError as exc:
        raise IdentityError(str(exc)) from None
    brokers = check_bundle(bundle, now or dt.datetime.now(dt.UTC))
    folder = data_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    write_atomic(folder / "ca.pem", bundle.ca_pem.encode(), 0o644)
    write_atomic(folder / "kiosk.pem", bundle.cert_pem.encode(), 0o644)
    secrets = folder if secrets_dir is None else secrets_dir
    if secrets_dir is not None:
        secrets_dir.mkdir(parents=True, exist_ok=True)
        secrets_dir.chmod(0o700)
    write_atomic(secrets / "kiosk.key", bundle.key_pem.encode(), 0o600)
    write_atomic(secrets / "mqtt-password", bundle.mqtt_password.encode(), 0o600)
    # Always written (empty when the hub issued none): LoadCredential= fails a start on a missing file.
    write_atomic(secrets / "hub-credential", (bundle.hub_credential or "").encode(), 0o600)
    if secrets_dir is not None:
        for name in SECRETS:  # no stale copy left where the service user could read it
            (folder / name).unlink(missing_ok=True)
    public = {
        "kiosk_id": bundle.kiosk_id,
        "clinic_id": bundle.clinic_id,
        "broker": str(brokers[0]),  # what an agent that knows only one broker reads
        "brokers": [str(b) for b in brokers],
        "hub_url": bundle.hub_url,
        "issued_at": bundle.issued_at.isoformat(),
        # Where the secrets are: here, or in systemd's credentials (the folder they are loaded from, for people).
        "secrets": "here" if secrets_dir is None else {"credentials": str(secrets_dir)},
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
    try:
        brokers = parse_brokers(public.get("brokers") or public["broker"], tls_only=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise IdentityError(
            f"{folder / 'identity.json'} has no usable brokers ({exc}): provision the kiosk again"
        ) from None
    return KioskIdentity(
        kiosk_id=public["kiosk_id"],
        brokers=brokers,
        hub_url=public.get("hub_url"),
        folder=folder,
        secrets=_secrets_folder(folder, public.get("secrets", "here")),
    )


def _secrets_folder(folder: Path, where: object) -> Path:
    if where == "here":
        return folder
    loaded = os.environ.get("CREDENTIALS_DIRECTORY")
    if loaded and all((Path(loaded) / name).is_file() for name in SECRETS):
        return Path(loaded)
    source = where.get("credentials") if isinstance(where, dict) else None
    if isinstance(source, str) and os.access(Path(source) / SECRETS[0], os.R_OK):
        return Path(source)  # root checking the installation, outside the service
    raise IdentityError(
        f"this kiosk's secrets are systemd credentials (from {source}), and this process has none: "
        "run it as kiosk-agent.service (LoadCredential=), or as root to check them"
    )
