"""Server-side sessions: the cookie holds a random token, the database holds only its SHA-256.

A session ends on logout, on an admin's order, on idle (no request for `idle_s`) and at
its absolute limit (`absolute_s` after login, however active). An ended session is kept
with its reason, so "who was logged in when" can be answered, and it never comes back.
A session is `mfa` between a right password and a right TOTP code: it may do nothing but
finish the second step.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from hub.db import Connection

Stage = Literal["mfa", "active"]


@dataclass(frozen=True)
class SessionPolicy:
    idle_s: float = 15 * 60
    absolute_s: float = 12 * 3600
    mfa_s: float = 5 * 60  # time allowed between the password and the TOTP code


@dataclass(frozen=True)
class Session:
    id: str  # sha256 of the cookie token
    user_id: int
    stage: Stage
    csrf: str
    created_at: float
    last_seen: float
    ip: str | None
    user_agent: str | None


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    conn: Connection, user_id: int, stage: Stage, now: float, *, ip: str | None, user_agent: str | None
) -> tuple[str, Session]:
    """A new session and the cookie token for it (returned once, never stored)."""
    token = secrets.token_urlsafe(32)
    session = Session(
        token_id(token), user_id, stage, secrets.token_urlsafe(32), now, now, ip, (user_agent or "")[:200]
    )
    conn.execute(
        "INSERT INTO sessions (id, user_id, stage, csrf, created_at, last_seen, ip, user_agent) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (session.id, user_id, stage, session.csrf, now, now, ip, session.user_agent),
    )
    return token, session


def expiry_reason(session: Session, now: float, policy: SessionPolicy) -> str | None:
    """Why a live-looking session must end now, or None."""
    if session.stage == "mfa" and now - session.created_at > policy.mfa_s:
        return "second factor not given in time"
    if now - session.created_at > policy.absolute_s:
        return "absolute timeout"
    if now - session.last_seen > policy.idle_s:
        return "idle timeout"
    return None


def lookup(conn: Connection, token: str, now: float, policy: SessionPolicy, *, touch: bool = True) -> Session | None:
    """The live session for a cookie token; an expired one is ended here and None returned.

    `touch=False` for a page's own background refreshes: a chart polling every few seconds
    must not keep an unattended screen logged in.
    """
    row = conn.execute(
        "SELECT id, user_id, stage, csrf, created_at, last_seen, ip, user_agent FROM sessions "
        "WHERE id = ? AND ended_at IS NULL",
        (token_id(token),),
    ).fetchone()
    if row is None:
        return None
    session = Session(*row)
    reason = expiry_reason(session, now, policy)
    if reason is not None:
        end(conn, session.id, now, reason)
        return None
    # Touch at most every few seconds: idle expiry stays exact to that, and reads stay reads.
    if touch and now - session.last_seen >= min(5.0, policy.idle_s / 10):
        conn.execute("UPDATE sessions SET last_seen = ? WHERE id = ? AND ended_at IS NULL", (now, session.id))
    return session


def end(conn: Connection, session_id: str, now: float, reason: str) -> bool:
    cur = conn.execute(
        "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL", (now, reason, session_id)
    )
    return cur.rowcount == 1


def end_all(conn: Connection, user_id: int, now: float, reason: str) -> int:
    cur = conn.execute(
        "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE user_id = ? AND ended_at IS NULL",
        (now, reason, user_id),
    )
    return cur.rowcount


def end_others_after_password_change(conn: Connection, user_id: int, current_session_id: str, now: float) -> int:
    """End every live session of the person but the one that changed the password: whoever knew the old
    password is logged out. How many were ended."""
    cur = conn.execute(
        "UPDATE sessions SET ended_at = ?, end_reason = 'password changed' "
        "WHERE user_id = ? AND ended_at IS NULL AND id != ?",
        (now, user_id, current_session_id),
    )
    return cur.rowcount


def live_count(conn: Connection, user_id: int, now: float, policy: SessionPolicy) -> int:
    (count,) = conn.execute(
        "SELECT count(*) FROM sessions WHERE user_id = ? AND ended_at IS NULL AND last_seen > ? AND created_at > ?",
        (user_id, now - policy.idle_s, now - policy.absolute_s),
    ).fetchone()
    return int(count)
