"""Per-client API tokens with scopes, replacing the spine's single shared bearer token.

A token belongs to one clinic and sees only that clinic's kiosks and data; a token with
no clinic is a hub operator's (fleet-wide, e.g. dead letters, which no clinic owns).
Only the SHA-256 of a token is stored: the secret is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from hub.db import Connection

SCOPES: dict[str, str] = {
    "kiosks:read": "list kiosks and their status",
    "observations:read": "read kiosks' observations",
    "attachments:read": "read kiosks' files (case photos)",
    "dead-letters:read": "read refused messages (operator tokens only)",
    "fhir:read": "read the clinic's patients, devices and readings as FHIR R4 (clinic tokens only)",
    # The whole hub's figures (no health data, but the fleet's shape): refused to a clinic's token when used.
    "metrics:read": "scrape the hub's Prometheus metrics at /api/v1/metrics (operator tokens only)",
}
PREFIX = "the_"  # recognisable in a leaked-secret scan


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    clinic_id: str | None
    scopes: frozenset[str]

    @property
    def label(self) -> str:
        return f"token:{self.name}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: Connection, name: str, clinic_id: str | None, scopes: list[str], now: float) -> str:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise TokenError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise TokenError("a token needs at least one scope")
    if "dead-letters:read" in scopes and clinic_id is not None:
        raise TokenError("dead-letters:read is for operator tokens (no clinic): dead letters belong to no clinic")
    if "fhir:read" in scopes and clinic_id is None:
        # Refused here, not first when used: FHIR serves one clinic's patients, and an operator token has none.
        raise TokenError("fhir:read is for a clinic's tokens: give --clinic (FHIR serves one clinic's patients)")
    if clinic_id is not None and conn.execute("SELECT 1 FROM clinics WHERE id = ?", (clinic_id,)).fetchone() is None:
        raise TokenError(f"no clinic {clinic_id!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (name, clinic_id, scopes, token_sha256, created_at) VALUES (?,?,?,?,?)",
        (name, clinic_id, " ".join(sorted(set(scopes))), _digest(token), now),
    )
    return token


def lookup(conn: Connection, token: str, now: float) -> ApiToken | None:
    row = conn.execute(
        "SELECT id, name, clinic_id, scopes, last_used_at FROM api_tokens "
        "WHERE token_sha256 = ? AND revoked_at IS NULL",
        (_digest(token),),
    ).fetchone()
    if row is None:
        return None
    if row[4] is None or now - row[4] > 60:  # last use to the minute: enough to spot a dead token, few writes
        conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, row[0]))
    return ApiToken(row[0], row[1], row[2], frozenset(row[3].split()))


def revoke(conn: Connection, token_id: int, now: float) -> bool:
    cur = conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id))
    return cur.rowcount == 1


def listing(conn: Connection) -> list[dict[str, object]]:
    cols = ["id", "name", "clinic_id", "scopes", "created_at", "last_used_at", "revoked_at"]
    rows = conn.execute(f"SELECT {', '.join(cols)} FROM api_tokens ORDER BY id")
    return [dict(zip(cols, r, strict=True)) for r in rows]
