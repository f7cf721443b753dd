"""Messages the hub must get to a kiosk exactly once: kept here until the kiosk says it has stored them.

Sent at once, again whenever the kiosk comes back online, and while unacknowledged on a
backoff (30 s doubling to 10 min). The kiosk stores by id and acknowledges every copy, so
resends are harmless; the broker may also hold a copy for an offline kiosk's persistent
session, but nothing depends on it.

A kiosk setup replaces the one before it: enqueuing one marks the kiosk's undelivered older
setups `superseded_by` the new one, and those are never sent again (a stale roster must not
arrive after a fresh one). `delivered_at` keeps meaning "the kiosk said it stored this".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from device.protocol.downlink import CaseAnswerBody, CaseAnswerMessage, KioskSetupBody, KioskSetupMessage
from device.protocol.ids import new_message_id
from hub.db import Connection


@dataclass(frozen=True)
class Route:
    """A sender on one of several brokers: it sends to the kiosks last online through its broker, and the first
    broker's sender also to kiosks not yet seen on any."""

    broker: str
    first: bool


def broker_filter(route: Route | None, kiosk_broker: str = "k.broker") -> tuple[str, tuple[str, ...]]:
    """The SQL condition (to AND onto a WHERE) and its parameter that keep `route`'s kiosks; nothing for one broker."""
    if route is None:
        return "", ()
    unseen = f" OR {kiosk_broker} IS NULL" if route.first else ""
    return f" AND ({kiosk_broker} = ?{unseen})", (route.broker,)


FIRST_RESEND_S = 30.0
MAX_RESEND_S = 600.0


def enqueue_case_answer(conn: Connection, kiosk: str, body: CaseAnswerBody, now: float) -> str:
    message = CaseAnswerMessage(id=new_message_id(), kiosk=kiosk, created=datetime.fromtimestamp(now, UTC), body=body)
    conn.execute(
        "INSERT INTO downlink (id, kiosk, kind, case_id, body, created_at) VALUES (?,?,?,?,?,?)",
        (message.id, kiosk, message.kind, body.case, message.model_dump_json(), now),
    )
    return message.id


def enqueue_kiosk_setup(conn: Connection, kiosk: str, body: KioskSetupBody, now: float) -> str:
    """Queue a setup for the kiosk; its older setups not yet delivered are superseded and never sent again."""
    message = KioskSetupMessage(id=new_message_id(), kiosk=kiosk, created=datetime.fromtimestamp(now, UTC), body=body)
    conn.execute(
        "UPDATE downlink SET superseded_by = ? WHERE kiosk = ? AND kind = ? AND delivered_at IS NULL "
        "AND superseded_by IS NULL",
        (message.id, kiosk, message.kind),
    )
    conn.execute(
        "INSERT INTO downlink (id, kiosk, kind, body, created_at) VALUES (?,?,?,?,?)",
        (message.id, kiosk, message.kind, message.model_dump_json(), now),
    )
    return message.id


@dataclass(frozen=True)
class Pending:
    id: str
    kiosk: str
    body: bytes


def resend_after(attempts: int) -> float:
    return float(min(FIRST_RESEND_S * 2 ** max(0, attempts - 1), MAX_RESEND_S))


def due(conn: Connection, now: float, limit: int = 200, *, route: Route | None = None) -> list[Pending]:
    """What is due to be sent (again); with several brokers (`route`), only to kiosks on this sender's broker."""
    where, params = broker_filter(route)
    rows = conn.execute(
        "SELECT d.id, d.kiosk, d.body, d.attempts, d.last_sent_at FROM downlink d INDEXED BY downlink_pending "
        f"LEFT JOIN kiosks k ON k.id = d.kiosk WHERE d.delivered_at IS NULL AND d.superseded_by IS NULL{where} "
        "ORDER BY d.created_at LIMIT ?",
        (*params, limit * 5),
    ).fetchall()
    out = [Pending(r[0], r[1], r[2].encode()) for r in rows if r[4] is None or now - r[4] >= resend_after(r[3])]
    return out[:limit]


def mark_sent(conn: Connection, ids: list[str], now: float) -> None:
    conn.executemany(
        "UPDATE downlink SET attempts = attempts + 1, last_sent_at = ? WHERE id = ?", [(now, i) for i in ids]
    )


def mark_delivered(conn: Connection, kiosk: str, ids: list[str], now: float) -> int:
    """Only the kiosk a message was for can acknowledge it; the case shows when its answer arrived."""
    delivered = 0
    for message_id in ids:
        cur = conn.execute(
            "UPDATE downlink SET delivered_at = ? WHERE id = ? AND kiosk = ? AND delivered_at IS NULL",
            (now, message_id, kiosk),
        )
        if cur.rowcount:
            delivered += 1
            conn.execute(
                "UPDATE cases SET delivered_at = ? WHERE id = (SELECT case_id FROM downlink WHERE id = ?)",
                (now, message_id),
            )
    return delivered


def kiosk_online(conn: Connection, kiosk: str) -> int:
    """The kiosk is back: whatever it still lacks goes out at the next chance, not after the backoff."""
    cur = conn.execute(
        "UPDATE downlink SET last_sent_at = NULL WHERE kiosk = ? AND delivered_at IS NULL AND superseded_by IS NULL",
        (kiosk,),
    )
    return cur.rowcount
