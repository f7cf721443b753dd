"""Each kiosk's own secret for the hub's kiosk socket (`/ws/kiosk`): the device speaks only for itself.

`hub kiosks credential --kiosk K` creates or replaces the secret and prints it once; only its SHA-256
is stored. On the socket the kiosk's identity comes from this credential, never from a message.
Revoking (or replacing) takes effect for new sockets at once and for an open one at its next check.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from device.protocol.topics import KIOSK_ID_PATTERN
from hub.db import Connection

PREFIX = "thk_"  # recognisable in a leaked-secret scan (API tokens are "the_")


class CredentialError(ValueError):
    pass


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(conn: Connection, kiosk: str, now: float) -> str:
    """A new secret for the kiosk, replacing any earlier one (which stops working); returned once."""
    if not re.match(KIOSK_ID_PATTERN, kiosk) or kiosk.endswith("\n"):
        raise CredentialError(f"{kiosk!r} is not a kiosk id")
    secret = PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO kiosk_credentials (kiosk, token_sha256, created_at) VALUES (?,?,?) "
        "ON CONFLICT (kiosk) DO UPDATE SET token_sha256 = excluded.token_sha256, "
        "created_at = excluded.created_at, revoked_at = NULL",
        (kiosk, digest(secret), now),
    )
    return secret


def revoke(conn: Connection, kiosk: str, now: float) -> bool:
    cur = conn.execute(
        "UPDATE kiosk_credentials SET revoked_at = ? WHERE kiosk = ? AND revoked_at IS NULL", (now, kiosk)
    )
    return cur.rowcount == 1


def kiosk_for(conn: Connection, secret: str) -> str | None:
    """The kiosk a presented secret belongs to; None for an unknown, replaced or revoked one."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    row = conn.execute(
        "SELECT kiosk FROM kiosk_credentials WHERE token_sha256 = ? AND revoked_at IS NULL", (digest(secret),)
    ).fetchone()
    return None if row is None else str(row[0])


def still_valid(conn: Connection, kiosk: str, secret_sha256: str) -> bool:
    """Whether an open socket's credential is still the kiosk's live one (not revoked, not replaced)."""
    row = conn.execute(
        "SELECT 1 FROM kiosk_credentials WHERE kiosk = ? AND token_sha256 = ? AND revoked_at IS NULL",
        (kiosk, secret_sha256),
    ).fetchone()
    return row is not None
