"""The append-only audit log: who looked at or changed what, which patient, when, and from where.

The table refuses UPDATE and DELETE (triggers in migration 5), so a bug or an intruder
using the application cannot rewrite it. Entries name actions and ids, never health values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hub.db import Connection


@dataclass(frozen=True)
class Actor:
    label: str  # an email, "token:<name>", or "system"
    clinic_id: str | None
    user_id: int | None = None
    ip: str | None = None


def record(
    conn: Connection,
    actor: Actor,
    action: str,
    now: float,
    *,
    outcome: str = "ok",
    patient_id: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    clinic_id: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit (at, clinic_id, actor_user, actor, action, outcome, patient_id, target, ip, detail) "
        "VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            now,
            clinic_id if clinic_id is not None else actor.clinic_id,
            actor.user_id,
            actor.label,
            action,
            outcome,
            patient_id,
            target,
            actor.ip,
            json.dumps(detail, sort_keys=True) if detail else None,
        ),
    )


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    patient_id: str | None = None
    since: float | None = None
    until: float | None = None


def entries(
    conn: Connection, clinic_id: str, f: AuditFilter, *, limit: int = 200, before_id: int | None = None
) -> list[dict[str, Any]]:
    """A clinic's entries, newest first, filtered; page on with `before_id`."""
    where = ["a.clinic_id = ?"]
    params: list[Any] = [clinic_id]
    if f.actor:  # case-insensitive, as SQLite's LIKE is (PostgreSQL's is not)
        where.append("lower(a.actor) LIKE lower(?)")
        params.append(f"%{f.actor}%")
    if f.action:
        where.append("a.action = ?")
        params.append(f.action)
    if f.patient_id:
        where.append("a.patient_id = ?")
        params.append(f.patient_id)
    if f.since is not None:
        where.append("a.at >= ?")
        params.append(f.since)
    if f.until is not None:
        where.append("a.at < ?")
        params.append(f.until)
    if before_id is not None:
        where.append("a.id < ?")
        params.append(before_id)
    cur = conn.execute(
        "SELECT a.id, a.at, a.actor, a.action, a.outcome, a.patient_id, p.name, a.target, a.ip, a.detail "
        f"FROM audit a LEFT JOIN patients p ON p.id = a.patient_id AND p.clinic_id = a.clinic_id "
        f"WHERE {' AND '.join(where)} ORDER BY a.id DESC LIMIT ?",
        [*params, limit],
    )
    cols = ["id", "at", "actor", "action", "outcome", "patient_id", "patient_name", "target", "ip", "detail"]
    return [dict(zip(cols, row, strict=True)) for row in cur]


def actions(conn: Connection, clinic_id: str) -> list[str]:
    return [
        r[0] for r in conn.execute("SELECT DISTINCT action FROM audit WHERE clinic_id = ? ORDER BY 1", (clinic_id,))
    ]


def last_consults_view_detail(
    conn: Connection, clinic_id: str, user_id: int, target: str, since: float
) -> dict[str, Any] | None:
    """What this person's latest waiting-room view with `target` (their session) after `since` showed: its
    detail (`{}` for none), or None when there is no such entry. A self-refresh that would show the same
    adds no entry of its own (hub/web/routes/consults.py)."""
    last = conn.execute(
        "SELECT detail FROM audit WHERE clinic_id = ? AND at > ? AND actor_user = ? "
        "AND action = 'view_consults' AND target = ? ORDER BY id DESC LIMIT 1",
        (clinic_id, since, user_id, target),
    ).fetchone()
    if last is None:
        return None
    shown: dict[str, Any] = json.loads(last[0] or "{}")
    return shown


def viewed_trends_since(conn: Connection, user_id: int, patient_id: str, target: str, since: float) -> bool:
    """Whether this person viewed the patient's trends from `target` (their session) after `since`: the charts
    refresh every few seconds, and one entry per session and patient per refresh window is the trail."""
    return (
        conn.execute(
            "SELECT 1 FROM audit WHERE actor_user = ? AND action = 'view_trends' AND patient_id = ? AND at > ? "
            "AND target = ? LIMIT 1",
            (user_id, patient_id, since, target),
        ).fetchone()
        is not None
    )
