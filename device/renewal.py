"""`kiosk renew`: this kiosk's client certificate, renewed from the hub before it ends, without a visit.

Run daily (kiosk-renew.timer, as root: on an installed kiosk the private key is a root-only
systemd credential). It does nothing until the certificate's last RENEW_DAYS; then it makes a
new key, asks the hub over MQTT (device/protocol/renewal.py), checks what comes back, and puts
the new pair in place of the old. The old certificate stays valid at the broker until it ends,
so the running agent is not cut off; it takes the new pair when it restarts (`--restart`).

The key and the certificate live in two folders, so they cannot be replaced in one step. The
new certificate is written beside the old one first (`kiosk.pem.new`), then the key is
replaced, then the certificate: a crash between the two leaves a `kiosk.pem.new` that matches
the key, and `KioskIdentity.cert_file` takes it, so the kiosk never holds a pair that does
not belong together. The next run finishes the job.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import ssl
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from device.files import write_atomic
from device.identity import IdentityError, KioskIdentity, check_certificate
from device.protocol.envelope import EnvelopeError
from device.protocol.renewal import RENEW_DAYS, RenewalReply, RenewalRequest, parse_reply
from device.protocol.topics import RENEW, Topics

log = logging.getLogger(__name__)


class RenewalError(RuntimeError):
    pass


@dataclass(frozen=True)
class Renewed:
    renewed: bool
    not_after: dt.datetime
    message: str


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_request(identity: KioskIdentity, new_key: ec.EllipticCurvePrivateKey) -> RenewalRequest:
    """A signing request for `new_key`, with the certificate held now and its key's signature of the request."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.kiosk_id)]))
        .sign(new_key, hashes.SHA256())
    )
    csr_pem = csr.public_bytes(serialization.Encoding.PEM)
    held_key = serialization.load_pem_private_key(identity.key_file.read_bytes(), password=None)
    if not isinstance(held_key, ec.EllipticCurvePrivateKey):
        raise RenewalError(f"{identity.key_file} is not an EC key")
    proof = held_key.sign(csr_pem, ec.ECDSA(hashes.SHA256()))
    return RenewalRequest(
        request=str(uuid.uuid4()),
        csr_pem=csr_pem.decode(),
        cert_pem=identity.cert_file.read_text(),
        proof=base64.b64encode(proof).decode(),
    )


def check_reply(
    identity: KioskIdentity, reply: RenewalReply, new_key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> x509.Certificate:
    """The hub's certificate, if it is one for this kiosk and the new key, from its CA, valid now."""
    if reply.cert_pem is None:
        raise RenewalError(f"the hub refused: {reply.error}")
    cert = x509.load_pem_x509_certificate(reply.cert_pem.encode())
    ca = x509.load_pem_x509_certificate(identity.ca_file.read_bytes())
    try:
        check_certificate(ca, cert, new_key.public_key(), identity.kiosk_id, now)
    except IdentityError as exc:
        raise RenewalError(f"the certificate received is not usable: {exc}") from None
    return cert


def install(identity: KioskIdentity, new_key: ec.EllipticCurvePrivateKey, cert_pem: bytes) -> None:
    """New certificate beside the old, then the key, then the certificate (see the module's docstring)."""
    pending = identity.folder / "kiosk.pem.new"
    write_atomic(pending, cert_pem, 0o644)
    _owned_like_its_folder(pending)
    write_atomic(identity.key_file, _pem_key(new_key), 0o600)
    _owned_like_its_folder(identity.key_file)
    os.replace(pending, identity.folder / "kiosk.pem")


def _owned_like_its_folder(path: Path) -> None:
    """Run as root, a new file would be root's: give it to whoever owns the folder, as the file it replaces was
    (the agent's user in its identity folder; root in the root-only credential store)."""
    folder = path.parent.stat()
    if os.geteuid() == 0 and (folder.st_uid, folder.st_gid) != (0, 0):
        os.chown(path, folder.st_uid, folder.st_gid)


def finish_pending(identity: KioskIdentity) -> bool:
    """A renewal cut off between the key and the certificate: put the certificate in place."""
    pending = identity.folder / "kiosk.pem.new"
    if not pending.exists():
        return False
    if identity.cert_file == pending:  # it matches the key in place
        os.replace(pending, identity.folder / "kiosk.pem")
        return True
    pending.unlink()  # cut off before the key was replaced: the old pair stands
    return False


def exchange(identity: KioskIdentity, request: RenewalRequest, timeout_s: float) -> RenewalReply:
    """Send the request as this kiosk (its certificate and password) and wait for the hub's answer."""
    kiosk = identity.kiosk_id
    got: list[RenewalReply] = []
    failure: list[str] = []
    done = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{kiosk}:renew",  # beside the agent's own session (its kiosk id), which it must not take over
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if identity.broker.tls:
        client.tls_set(
            ca_certs=str(identity.ca_file),
            certfile=str(identity.cert_file),
            keyfile=str(identity.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.username_pw_set(kiosk, identity.mqtt_password())

    def on_connect(c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            failure.append(f"the broker refused this kiosk: {rc}")
            done.set()
            return
        c.subscribe(Topics.certificate(kiosk), qos=1)

    def on_subscribe(c: mqtt.Client, _u: object, _m: int, codes: list[ReasonCode], _p: object) -> None:
        if any(code.is_failure for code in codes):
            failure.append(f"the broker refused the subscription: {codes}")
            done.set()
            return
        c.publish(Topics.uplink(kiosk, RENEW), request.model_dump_json(), qos=1)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            reply = parse_reply(bytes(msg.payload))
        except EnvelopeError as exc:
            log.warning("ignoring an unreadable renewal reply: %s", exc)
            return
        if reply.request == request.request:  # an answer to an earlier, abandoned request is not ours
            got.append(reply)
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(identity.broker.host, identity.broker.port, keepalive=30, clean_start=True)
    except (OSError, ssl.SSLError) as exc:
        raise RenewalError(f"cannot reach the broker {identity.broker}: {exc}") from None
    client.loop_start()
    try:
        answered = done.wait(timeout_s)
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()
    if failure:
        raise RenewalError(failure[0])
    if not answered:
        raise RenewalError(f"no answer from the hub within {timeout_s:g} s; the next run asks again")
    return got[0]


def renew(identity: KioskIdentity, *, now: dt.datetime | None = None, timeout_s: float = 30.0) -> Renewed:
    now = now or dt.datetime.now(dt.UTC)
    if finish_pending(identity):
        log.info("finished a renewal that was cut off")
    held = x509.load_pem_x509_certificate(identity.cert_file.read_bytes())
    due = held.not_valid_after_utc - dt.timedelta(days=RENEW_DAYS)
    if now < due:
        return Renewed(False, held.not_valid_after_utc, f"not due: the certificate is valid until "
                       f"{held.not_valid_after_utc:%Y-%m-%d} and is renewed from {due:%Y-%m-%d}")  # fmt: skip
    new_key = ec.generate_private_key(ec.SECP256R1())
    reply = exchange(identity, make_request(identity, new_key), timeout_s)
    cert = check_reply(identity, reply, new_key, now)
    install(identity, new_key, cert.public_bytes(serialization.Encoding.PEM))
    return Renewed(True, cert.not_valid_after_utc, f"renewed: valid until {cert.not_valid_after_utc:%Y-%m-%d}")


def restart(unit: str) -> None:
    """The running agent holds the old pair in memory: restart it (only if it runs) to take the new one."""
    subprocess.run(["systemctl", "try-restart", unit], check=True)
