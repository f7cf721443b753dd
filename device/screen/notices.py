"""What a patient sent and whether it has reached the clinic, for the next time they check in.

Kept per message id: the patient's code, what it was (`case` or `vitals`), when it was saved and
when the hub's receipt arrived; no clinical content. A delivered notice is shown once and then
removed; an undelivered one is shown as still waiting, honestly, until its receipt comes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

What = Literal["case", "vitals"]


@dataclass(frozen=True)
class Notice:
    message_id: str
    what: What
    saved_at: float
    delivered_at: float | None


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
        self._lock = threading.Lock()

    def saved(self, subject: str, what: What, message_id: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO notices (message_id, subject, what, saved_at) VALUES (?,?,?,?)",
                (message_id, subject, what, at),
            )

    def delivered(self, message_ids: Iterable[str], at: float) -> None:
        """The hub's receipt arrived (called for every receipt: ids that are not notices change nothing)."""
        with self._lock:
            self._db.executemany(
                "UPDATE notices SET delivered_at = ? WHERE message_id = ? AND delivered_at IS NULL",
                [(at, i) for i in message_ids],
            )

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

    def close(self) -> None:
        self._db.close()
