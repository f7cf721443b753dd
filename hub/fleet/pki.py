"""The hub's own certificate authority: the broker's server certificate and one client certificate per kiosk.

A kiosk proves itself to the broker twice: with a client certificate from this CA (TLS
refuses any other) and with its own MQTT password (the broker's ACLs key on that user
name, the kiosk id). A revoked kiosk's certificate goes on the CA's revocation list.

Keys are EC P-256: small, fast to verify on a Pi, and what Mosquitto's OpenSSL accepts.
The CA key never leaves the hub's data folder (owner-only files).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from device.files import write_atomic

CA_DAYS = 3650
SERVER_DAYS = 825  # what browsers and most TLS stacks still accept for a leaf
KIOSK_DAYS = 825
RENEW_DAYS = 30  # a certificate (the broker's, a kiosk's) is issued again when fewer days than this remain
CRL_DAYS = 3650  # an expired list would lock every kiosk out; it is re-signed at every revocation


def write_private(path: Path, data: bytes) -> bool:
    """Owner-only, replaced atomically (the CA key, certificates, the broker's files); whether it wrote.

    A file that already holds exactly `data`, owner-only and ours, is left alone: `hub serve` rewrites
    the broker's files at every start, and with nothing changed that must write nothing, or a hub
    restarted on a full disk dies of ENOSPC instead of starting.
    """
    try:
        st = path.stat()
        if (
            stat.S_ISREG(st.st_mode)
            and stat.S_IMODE(st.st_mode) == 0o600
            and st.st_uid == os.geteuid()
            and st.st_size == len(data)
            and path.read_bytes() == data
        ):
            return False
    except OSError:
        pass  # absent or unreadable: written below
    write_atomic(path, data, 0o600)
    return True


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(pem, pkcs8, serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedCert:
    cert_pem: bytes
    key_pem: bytes
    serial: int
    not_after: dt.datetime


class HubCA:
    """Loads the CA from `folder`, or creates it there on first use."""

    def __init__(self, folder: Path, *, now: dt.datetime | None = None) -> None:
        self.folder = folder
        self.key_path = folder / "ca.key"
        self.cert_path = folder / "ca.pem"
        if not self.key_path.exists():
            self._create(now or dt.datetime.now(dt.UTC))
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.key_path} is not an EC private key")
        self._key = key
        self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    def _create(self, now: dt.datetime) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Telehealth hub CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(self.key_path, _key_pem(key))
        write_private(self.cert_path, _cert_pem(cert))

    def _leaf(
        self,
        common_name: str,
        days: int,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName],
        now: dt.datetime,
        *,
        public_key: ec.EllipticCurvePublicKey | None = None,
    ) -> IssuedCert:
        """A certificate for a new key pair, or for `public_key` (a renewal's request; key_pem is then empty)."""
        key = ec.generate_private_key(ec.SECP256R1()) if public_key is None else None
        subject_key = key.public_key() if key is not None else public_key
        assert subject_key is not None
        serial = x509.random_serial_number()
        not_after = now + dt.timedelta(days=days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(subject_key)
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCert(_cert_pem(cert), _key_pem(key) if key is not None else b"", serial, not_after)

    def issue_server(self, names: list[str], *, now: dt.datetime | None = None) -> IssuedCert:
        """The broker's certificate: every name and address kiosks may use to reach it."""
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        return self._leaf(names[0], SERVER_DAYS, ExtendedKeyUsageOID.SERVER_AUTH, sans, now or dt.datetime.now(dt.UTC))

    @staticmethod
    def expires(cert_pem: bytes) -> dt.datetime:
        return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc

    def issue_kiosk(
        self, kiosk_id: str, *, now: dt.datetime | None = None, public_key: ec.EllipticCurvePublicKey | None = None
    ) -> IssuedCert:
        now = now or dt.datetime.now(dt.UTC)
        return self._leaf(kiosk_id, KIOSK_DAYS, ExtendedKeyUsageOID.CLIENT_AUTH, [], now, public_key=public_key)

    def crl_pem(self, revoked: list[tuple[int, dt.datetime]], *, now: dt.datetime | None = None) -> bytes:
        """The revocation list Mosquitto checks each kiosk's certificate against (serial, revoked at)."""
        now = now or dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=CRL_DAYS))
        )
        for serial, at in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build()
            )
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
