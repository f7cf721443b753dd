"""What a patient sent and whether it has reached the clinic, for the next time they check in.

Kept per message id: the patient's code, what it was (`case` or `vitals`), when it was saved and
when the hub's receipt arrived; no clinical content. A delivered notice is shown once and then
removed; an undelivered one is shown as still waiting, honestly, until its receipt comes.

The hub's receipt can arrive before the notice is written: a message goes into the outbox first, and the
forwarder may send it and hear back at once. A receipt that names no notice yet is kept a while in memory
and applied when the notice is written, so the order never matters.

Per case sent, also what lets the patient know it again when its answer comes: when it was sent and the
first words they gave (`SentCase`). Kept until that answer has been shown, or `CASE_KEEP_S` at most.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

What = Literal["case", "vitals"]
Origin = Literal["form", "call"]  # the patient's own case, or a video call that could not go on
# Receipts for messages with no notice (yet): the gap they cover is the few statements between an enqueue and
# its notice, so a few minutes and a few thousand ids are plenty (most are never notices: status, readings of
# no visit, photo chunks).
EARLY_RECEIPTS_S = 600.0
EARLY_RECEIPTS_MAX = 20_000
CASE_KEEP_S = 90 * 86400.0


@dataclass(frozen=True)
class Notice:
    message_id: str
    what: What
    saved_at: float
    delivered_at: float | None


@dataclass(frozen=True)
class SentCase:
    case_id: str
    message_id: str
    sent_at: float
    words: str  # the first words of the patient's reason or text; "" when they gave none
    origin: Origin


class Notices:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written from the forwarder's network thread (receipts) and the screen's event loop.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS notices (message_id TEXT PRIMARY KEY, subject TEXT NOT NULL, "
            "what TEXT NOT NULL, saved_at REAL NOT NULL, delivered_at REAL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS notices_subject ON notices (subject)")
        # The patient's first words stay no longer than needed: removed rows are overwritten.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS cases (case_id TEXT PRIMARY KEY, subject TEXT NOT NULL, "
            "message_id TEXT NOT NULL, sent_at REAL NOT NULL, words TEXT NOT NULL, origin TEXT NOT NULL)"
        )
        self._lock = threading.Lock()
        self._early: OrderedDict[str, float] = OrderedDict()  # receipts that named no notice yet: id -> when

    def saved(self, subject: str, what: What, message_id: str, at: float) -> None:
        with self._lock:
            early = self._early.pop(message_id, None)  # its receipt came first
            self._db.execute(
                "INSERT OR IGNORE INTO notices (message_id, subject, what, saved_at, delivered_at) VALUES (?,?,?,?,?)",
                (message_id, subject, what, at, None if early is None else max(early, at)),
            )

    def delivered(self, message_ids: Iterable[str], at: float) -> None:
        """The hub's receipt arrived (called for every receipt: ids that are not notices change nothing, but are
        kept a while in case their notice is still being written)."""
        with self._lock:
            for i in message_ids:
                cur = self._db.execute(
                    "UPDATE notices SET delivered_at = ? WHERE message_id = ? AND delivered_at IS NULL", (at, i)
                )
                if cur.rowcount == 0:
                    self._early[i] = at
                    self._early.move_to_end(i)
            while self._early and (
                len(self._early) > EARLY_RECEIPTS_MAX or next(iter(self._early.values())) < at - EARLY_RECEIPTS_S
            ):
                self._early.popitem(last=False)

    def for_subject(self, subject: str) -> list[Notice]:
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, what, saved_at, delivered_at FROM notices WHERE subject = ? ORDER BY saved_at",
                (subject,),
            ).fetchall()
        return [Notice(*r) for r in rows]

    def status(self, subject: str, message_id: str) -> Notice | None:
        with self._lock:
            row = self._db.execute(
                "SELECT message_id, what, saved_at, delivered_at FROM notices WHERE message_id = ? AND subject = ?",
                (message_id, subject),
            ).fetchone()
        return None if row is None else Notice(*row)

    def forget_shown(self, message_ids: Iterable[str]) -> None:
        """Delivered notices the patient has seen are done with; waiting ones stay until delivered and seen."""
        with self._lock:
            self._db.executemany(
                "DELETE FROM notices WHERE message_id = ? AND delivered_at IS NOT NULL", [(i,) for i in message_ids]
            )

    # -- what identifies a case to its patient when the answer comes

    def case_sent(self, subject: str, case_id: str, message_id: str, at: float, *, words: str, origin: Origin) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO cases (case_id, subject, message_id, sent_at, words, origin) "
                "VALUES (?,?,?,?,?,?)",
                (case_id, subject, message_id, at, words, origin),
            )
            self._db.execute("DELETE FROM cases WHERE sent_at < ?", (at - CASE_KEEP_S,))

    def sent_cases(self, subject: str, case_ids: Iterable[str]) -> dict[str, SentCase]:
        """The patient's own cases among these, by case id (another patient's are never found)."""
        found = {}
        with self._lock:
            for case_id in set(case_ids):
                row = self._db.execute(
                    "SELECT case_id, message_id, sent_at, words, origin FROM cases WHERE case_id = ? AND subject = ?",
                    (case_id, subject),
                ).fetchone()
                if row is not None:
                    found[case_id] = SentCase(*row)
        return found

    def forget_cases(self, case_ids: Iterable[str]) -> None:
        """Their answers have been shown: what identified them is no longer needed on the kiosk."""
        with self._lock:
            self._db.executemany("DELETE FROM cases WHERE case_id = ?", [(i,) for i in case_ids])

    def close(self) -> None:
        self._db.close()
