"""A live consult's record: asked for at a kiosk, waiting in the clinic's queue, joined by a provider, ended.

States: waiting -> live -> ended (or waiting -> ended when the patient gives up, or their kiosk vanishes).
The id is the UUID the kiosk chose, so a request sent twice (a reconnect, a retry) is one consult.
Every function takes the caller's connection and runs inside the caller's transaction; none commits.
The record holds who, when and how it ended; the vitals are the ones the kiosk sent with the request.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from device.protocol.signaling import Reason, Vital
from hub.db import Connection

State = Literal["waiting", "live", "ended"]
EndedBy = Literal["kiosk", "provider", "hub"]
# The waiting estimate looks at this many of the clinic's recent finished calls, at most this old.
ESTIMATE_CALLS = 20
ESTIMATE_WINDOW_S = 30 * 86400
ESTIMATE_MIN_CALLS = 3


class ConsultError(ValueError):
    """A consult cannot do that now (e.g. join one that is no longer waiting); the message says why."""


@dataclass(frozen=True)
class Consult:
    id: str
    clinic_id: str
    kiosk: str
    subject: str
    patient_id: str | None
    language: str
    vitals: list[dict[str, Any]]
    state: State
    requested_at: float
    joined_at: float | None
    provider_user_id: int | None
    ended_at: float | None
    reason: Reason | None
    ended_by: EndedBy | None


_COLUMNS = (
    "id, clinic_id, kiosk, subject, patient_id, language, vitals, state, requested_at, joined_at, "
    "provider_user_id, ended_at, reason, ended_by"
)


def _consult(row: Sequence[Any]) -> Consult:
    values = list(row)
    values[6] = json.loads(values[6])
    return Consult(*values)


def by_id(conn: Connection, consult_id: str) -> Consult | None:
    """Any clinic's consult: for the relay, which checks the kiosk or provider itself. Pages use `get`."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM consults WHERE id = ?", (consult_id,)).fetchone()
    return None if row is None else _consult(row)


def get(conn: Connection, clinic_id: str, consult_id: str) -> Consult | None:
    """A consult of this clinic; another clinic's is not found, exactly like one that does not exist."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM consults WHERE id = ? AND clinic_id = ?", (consult_id, clinic_id)
    ).fetchone()
    return None if row is None else _consult(row)


def request(
    conn: Connection,
    *,
    kiosk: str,
    consult_id: str,
    subject: str,
    language: str,
    vitals: Sequence[Vital],
    now: float,
) -> tuple[Consult, bool]:
    """Put a patient in their clinic's queue; (the consult, whether it is new).

    Idempotent by id: the same kiosk asking again gets the consult as it is now (waiting, live or
    ended). An id another kiosk used is refused, as is a kiosk that belongs to no clinic (nobody
    could see the patient: the kiosk must be assigned first, `hub kiosks assign`).
    """
    existing = by_id(conn, consult_id)
    if existing is not None:
        if existing.kiosk != kiosk:
            raise ConsultError("that consult id is already in use")
        return existing, False
    row = conn.execute("SELECT clinic_id FROM kiosks WHERE id = ?", (kiosk,)).fetchone()
    if row is None or row[0] is None:
        raise ConsultError(f"kiosk {kiosk} is not assigned to a clinic, so no provider can see the patient")
    clinic_id = str(row[0])
    patient = conn.execute("SELECT id FROM patients WHERE clinic_id = ? AND code = ?", (clinic_id, subject)).fetchone()
    conn.execute(
        "INSERT INTO consults (id, clinic_id, kiosk, subject, patient_id, language, vitals, state, requested_at) "
        "VALUES (?,?,?,?,?,?,?,'waiting',?)",
        (
            consult_id,
            clinic_id,
            kiosk,
            subject,
            patient[0] if patient else None,
            language,
            json.dumps([v.model_dump() for v in vitals]),
            now,
        ),
    )
    created = by_id(conn, consult_id)
    assert created is not None
    return created, True


def waiting(conn: Connection, clinic_id: str) -> list[Consult]:
    """The clinic's queue, first come first served."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM consults INDEXED BY consults_waiting "
        "WHERE clinic_id = ? AND state = 'waiting' ORDER BY requested_at, id",
        (clinic_id,),
    )
    return [_consult(r) for r in rows]


def waiting_count(conn: Connection, clinic_id: str) -> int:
    (n,) = conn.execute(
        "SELECT count(*) FROM consults INDEXED BY consults_waiting WHERE clinic_id = ? AND state = 'waiting'",
        (clinic_id,),
    ).fetchone()
    return int(n)


def position(conn: Connection, consult: Consult) -> int | None:
    """1 = next to be seen; None once the consult is no longer waiting."""
    if consult.state != "waiting":
        return None
    (ahead,) = conn.execute(
        "SELECT count(*) FROM consults INDEXED BY consults_waiting WHERE clinic_id = ? AND state = 'waiting' "
        "AND (requested_at < ? OR (requested_at = ? AND id < ?))",
        (consult.clinic_id, consult.requested_at, consult.requested_at, consult.id),
    ).fetchone()
    return int(ahead) + 1


def median_handle_s(conn: Connection, clinic_id: str, now: float) -> float | None:
    """The median length (join to end) of the clinic's last 20 finished calls of the past 30 days; None below 3."""
    rows = conn.execute(
        "SELECT ended_at - joined_at FROM consults INDEXED BY consults_handled "
        "WHERE clinic_id = ? AND joined_at IS NOT NULL AND ended_at >= ? AND reason = 'finished' "
        "ORDER BY ended_at DESC LIMIT ?",
        (clinic_id, now - ESTIMATE_WINDOW_S, ESTIMATE_CALLS),
    ).fetchall()
    if len(rows) < ESTIMATE_MIN_CALLS:
        return None
    return float(statistics.median(max(0.0, float(r[0])) for r in rows))


def estimate_s(conn: Connection, clinic_id: str, position: int, now: float) -> int | None:
    """How long the patient at `position` may wait: position x the median length of the clinic's recent calls.

    Why this is honest, and what it does not claim:
    - It comes only from this clinic's own calls (the last 20 that a provider joined and someone ended
      with End, within 30 days), never from a default: with fewer than 3 such calls there is nothing to
      say, and it says nothing (None; the kiosk shows the position alone).
    - The median, not the mean: one 50-minute call does not make every patient expect a long wait.
    - It assumes one provider taking the queue one call after another, and that the call in progress has
      just begun. With several providers free it overstates the wait, which errs towards a patient
      pleasantly surprised, never one promised a time nobody planned for. It knows nothing of who is on
      duty, so it is an estimate of the queue, not a promise.
    """
    return estimate_from(median_handle_s(conn, clinic_id, now), position)


def estimate_from(median_s: float | None, position: int) -> int | None:
    """`estimate_s` once the median is known (the relay tells a whole queue at once)."""
    return None if median_s is None else round(position * median_s)


def join(conn: Connection, clinic_id: str, consult_id: str, *, user_id: int, now: float) -> str | None:
    """A provider or clinic admin of the consult's clinic takes a waiting consult; returns the patient (audit).

    LookupError: no such consult at this clinic (another clinic's is "not found").
    """
    consult = get(conn, clinic_id, consult_id)
    if consult is None:
        raise LookupError("no such consult at this clinic")
    row = conn.execute("SELECT clinic_id, disabled_at FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None or row[0] != clinic_id or row[1] is not None:
        raise LookupError("no such consult at this clinic")
    if consult.state != "waiting":
        taken = "someone has already joined it" if consult.state == "live" else "it has ended"
        raise ConsultError(f"the patient is no longer waiting: {taken}")
    conn.execute(
        "UPDATE consults SET state = 'live', joined_at = ?, provider_user_id = ? WHERE id = ? AND state = 'waiting'",
        (now, user_id, consult_id),
    )
    return consult.patient_id


def end(conn: Connection, consult_id: str, *, reason: Reason, by: EndedBy, now: float) -> tuple[Consult, bool] | None:
    """End a consult in any state; (the consult as it is now, whether this call ended it). None: no such consult.

    Idempotent: a consult that has ended keeps its first reason, time and author.
    """
    cur = conn.execute(
        "UPDATE consults SET state = 'ended', ended_at = ?, reason = ?, ended_by = ? WHERE id = ? AND state != 'ended'",
        (now, reason, by, consult_id),
    )
    changed = cur.rowcount == 1
    consult = by_id(conn, consult_id)
    return None if consult is None else (consult, changed)


def open_for_kiosk(conn: Connection, kiosk: str) -> list[Consult]:
    """The kiosk's consults that are waiting or live."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM consults INDEXED BY consults_open WHERE kiosk = ? AND state != 'ended' "
        "ORDER BY requested_at",
        (kiosk,),
    )
    return [_consult(r) for r in rows]


def end_orphans(conn: Connection, now: float) -> list[Consult]:
    """At start-up of the one hub on SQLite: consults left waiting or live by a hub that stopped; returns them as
    they were.

    Their sockets died with that hub, so they are over: a waiting one was cancelled, a live one lost its
    peer (both ended by the hub). (On PostgreSQL other instances may hold live sockets: `orphans` below.)"""
    orphans = [_consult(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM consults WHERE state != 'ended'")]
    conn.execute(
        "UPDATE consults SET state = 'ended', ended_at = ?, ended_by = 'hub', "
        "reason = CASE state WHEN 'waiting' THEN 'cancelled' ELSE 'peer_gone' END WHERE state != 'ended'",
        (now,),
    )
    return orphans


def calls_for_patient(
    conn: Connection, clinic_id: str, patient_id: str, since: float, until: float
) -> list[dict[str, Any]]:
    """The patient's calls a provider held (joined, then ended by End or a dropped line), joined in [since, until):
    the interactive communication that counts toward remote-monitoring minutes (hub.rpm). A call that
    could not connect (`failed`) or that the patient left before anyone joined is not one."""
    rows = conn.execute(
        "SELECT c.id, u.email, c.joined_at, c.ended_at, c.reason FROM consults c "
        "JOIN users u ON u.id = c.provider_user_id "
        "WHERE c.patient_id = ? AND c.clinic_id = ? AND c.joined_at >= ? AND c.joined_at < ? "
        "AND c.state = 'ended' AND c.reason IN ('finished', 'peer_gone') ORDER BY c.joined_at",
        (patient_id, clinic_id, since, until),
    )
    return [{"consult": r[0], "user": r[1], "start": r[2], "end": max(r[2], r[3]), "reason": r[4]} for r in rows]


# -- several hub instances on one PostgreSQL: who holds which socket, and what one instance hands another
#
# PostgreSQL only (on SQLite there is one instance, and the relay keeps its sockets in memory alone). Each instance
# holds a session-level advisory lock (RELAY_LOCK_CLASS, its instance number) on its LISTEN connection for as long
# as it runs; the server drops the lock when that session ends, however the instance ended. A socket's row counts
# only while its instance's lock is held: the rows a dead instance left behind say nothing, and are swept away.

Side = Literal["kiosk", "provider"]
RELAY_LOCK_CLASS = 0x7E1E_4EA1  # the first key of pg_try_advisory_lock(int, int); the second is the instance
# The instances running now: those whose lock is granted in this database (advisory locks are per database).
LIVE_INSTANCES = (
    "SELECT l.objid::bigint FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
    f"AND l.classid = {RELAY_LOCK_CLASS} "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def channel(instance: int) -> str:
    """The NOTIFY channel an instance listens on (an identifier: digits and lower case only)."""
    return f"hub_consult_relay_{int(instance)}"


@dataclass(frozen=True)
class Holder:
    """Where a socket is: the instance that holds it, and the socket's own id (None: a provider awaited there)."""

    instance: int
    socket: str | None


@dataclass(frozen=True)
class Forwarded:
    """What another instance handed this one for a socket it holds: a message (JSON) or a close of one socket."""

    id: int
    side: Side
    key: str
    socket: str | None
    message: str | None
    close: tuple[int, str] | None


def live_instances(conn: Connection) -> set[int]:
    return {int(r[0]) for r in conn.execute(LIVE_INSTANCES)}


def holders(conn: Connection, side: Side, keys: Sequence[str], *, me: int) -> dict[str, Holder]:
    """The open sockets of `keys` that a running instance holds (`me`, the asking instance, runs)."""
    if not keys:
        return {}
    marks = ",".join("?" * len(keys))
    rows = conn.execute(
        f"SELECT key, instance, socket FROM consult_sockets WHERE side = ? AND key IN ({marks}) "
        f"AND socket IS NOT NULL AND (instance = ? OR instance IN ({LIVE_INSTANCES}))",
        (side, *keys, me),
    )
    return {str(k): Holder(int(i), str(s)) for k, i, s in rows}


def hold(
    conn: Connection, side: Side, key: str, *, instance: int, socket: str | None, now: float, take_over: bool
) -> Holder | None:
    """In a write transaction: `instance` holds this socket (`socket` None: it awaits the provider's call page).

    Returns the other open socket of the key, if a running instance holds one. With `take_over` that one has been
    replaced (its instance must close it); without, it stays, nothing is written, and the caller refuses its own.
    A row of a dead instance, or an awaited provider's, is simply replaced.
    """
    row = conn.execute(
        "SELECT instance, socket FROM consult_sockets WHERE side = ? AND key = ?", (side, key)
    ).fetchone()
    other = None
    open_elsewhere = row is not None and row[1] is not None and row[1] != socket
    if open_elsewhere and (int(row[0]) == instance or int(row[0]) in live_instances(conn)):
        other = Holder(int(row[0]), str(row[1]))
    if other is not None and not take_over:
        return other
    conn.execute(
        "INSERT INTO consult_sockets (side, key, instance, socket, attached_at) VALUES (?,?,?,?,?) "
        "ON CONFLICT (side, key) DO UPDATE SET instance = excluded.instance, socket = excluded.socket, "
        "attached_at = excluded.attached_at",
        (side, key, instance, socket, now),
    )
    return other


def release(conn: Connection, side: Side, key: str, socket: str) -> None:
    """A socket closed: its row goes; a newer socket's row (the key taken over since) stays."""
    conn.execute("DELETE FROM consult_sockets WHERE side = ? AND key = ? AND socket = ?", (side, key, socket))


def stop_awaiting(conn: Connection, consult_id: str) -> None:
    """The consult is over: nobody awaits its provider's call page any more."""
    conn.execute("DELETE FROM consult_sockets WHERE side = 'provider' AND key = ? AND socket IS NULL", (consult_id,))


def forget_instance(conn: Connection, instance: int) -> None:
    """A new instance took a number a dead one had: what that one left is not the new one's."""
    conn.execute("DELETE FROM consult_sockets WHERE instance = ?", (instance,))
    conn.execute("DELETE FROM consult_relay WHERE instance = ?", (instance,))


def forward(
    conn: Connection,
    instance: int,
    side: Side,
    key: str,
    *,
    message: str | None = None,
    close: tuple[int, str] | None = None,
    socket: str | None = None,
) -> None:
    """Hand `instance` a message (or a close) for a socket it holds: the row, and a NOTIFY of the row's id.

    One statement in autocommit (the caller is in no transaction): the NOTIFY goes out when the row is committed,
    so the receiver always finds it. NOTIFY payloads stop at 8000 bytes and an offer may be far larger: hence the row.
    """
    code, reason = close if close is not None else (None, None)
    conn.execute(
        "WITH m AS (INSERT INTO consult_relay (instance, side, key, socket, message, close_code, close_reason) "
        "VALUES (?,?,?,?,?,?,?) RETURNING id) SELECT pg_notify(?, CAST(id AS TEXT)) FROM m",
        (instance, side, key, socket, message, code, reason, channel(instance)),
    )


def take_forwarded(conn: Connection, instance: int) -> list[Forwarded]:
    """Everything handed to `instance` so far, in the order it was handed; each row is read once (it is deleted)."""
    rows = conn.execute(
        "DELETE FROM consult_relay WHERE instance = ? "
        "RETURNING id, side, key, socket, message, close_code, close_reason",
        (instance,),
    ).fetchall()
    return [
        Forwarded(int(i), side, str(key), socket, message, None if code is None else (int(code), str(reason or "")))
        for i, side, key, socket, message, code, reason in sorted(rows, key=lambda r: int(r[0]))
    ]


def dead_rows(conn: Connection) -> bool:
    """Whether an instance that is no longer running left sockets (or undelivered messages) behind."""
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM consult_sockets WHERE instance NOT IN ({LIVE_INSTANCES})) "
        f"OR EXISTS (SELECT 1 FROM consult_relay WHERE instance NOT IN ({LIVE_INSTANCES}))"
    ).fetchone()
    return bool(row[0])


def orphans(conn: Connection, *, start_up: bool) -> list[Consult]:
    """In a write transaction: forget what dead instances left; the open consults that left without a side.

    Those whose kiosk's socket, or (live ones) whose provider's socket or awaited call page, was on an instance
    that is gone. At start-up also every open consult with no such socket at all (a kiosk socket on a running
    instance, and for a live consult its provider's socket or call page awaited there): the one-instance rule.
    Returned as they are; the caller ends them.
    """
    dead = conn.execute(f"DELETE FROM consult_sockets WHERE instance NOT IN ({LIVE_INSTANCES}) RETURNING side, key")
    gone = [(str(side), str(key)) for side, key in dead.fetchall()]
    conn.execute(f"DELETE FROM consult_relay WHERE instance NOT IN ({LIVE_INSTANCES})")
    found: dict[str, Consult] = {}
    if start_up:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM consults c WHERE c.state != 'ended' AND ("
            "NOT EXISTS (SELECT 1 FROM consult_sockets s WHERE s.side = 'kiosk' AND s.key = c.kiosk) "
            "OR (c.state = 'live' AND NOT EXISTS (SELECT 1 FROM consult_sockets s "
            "WHERE s.side = 'provider' AND s.key = c.id))) ORDER BY c.requested_at"
        )
        found.update((c.id, c) for c in map(_consult, rows))
    for side, key in gone:
        if side == "kiosk":
            found.update((c.id, c) for c in open_for_kiosk(conn, key))
        elif (c := by_id(conn, key)) is not None and c.state == "live":
            found[c.id] = c
    return list(found.values())
