"""What the hub sent this kiosk to keep: case answers, and the clinic's setup (roster and questionnaire).

Each message is stored once per id, durably, before it is acknowledged. The kiosk screens read
it. A patient's answers are removed once they have been shown (the kiosk keeps only what it
must; the hub keeps the record); only the newest setup is kept.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from device.protocol.downlink import CaseAnswerMessage, KioskSetupBody, KioskSetupMessage


class Inbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
        # Answers removed after they were shown are overwritten, not just unlinked (see device/outbox.py).
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_size_limit=0")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS inbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, "
            "body TEXT NOT NULL, received_at REAL NOT NULL)"
        )
        # Ids of answers already shown and removed: a resend of one must not bring it back.
        self._db.execute("CREATE TABLE IF NOT EXISTS shown (id TEXT PRIMARY KEY, at REAL NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS setup (one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL, "
            "body TEXT NOT NULL, received_at REAL NOT NULL)"
        )
        self._lock = threading.Lock()

    def store(self, message: CaseAnswerMessage | KioskSetupMessage) -> bool:
        """Keep the message; False when it changes nothing (a resend, or an older setup)."""
        with self._lock:
            if isinstance(message, KioskSetupMessage):
                cur = self._db.execute(
                    "INSERT INTO setup (one, version, body, received_at) VALUES (1,?,?,?) "
                    "ON CONFLICT (one) DO UPDATE SET version = excluded.version, body = excluded.body, "
                    "received_at = excluded.received_at WHERE excluded.version > setup.version",
                    (message.body.version, message.body.model_dump_json(), time.time()),
                )
                return cur.rowcount == 1
            if self._db.execute("SELECT 1 FROM shown WHERE id = ?", (message.id,)).fetchone():
                return False
            cur = self._db.execute(
                "INSERT INTO inbox (id, kind, subject, body, received_at) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                (message.id, message.kind, message.body.subject, message.model_dump_json(), time.time()),
            )
            return cur.rowcount == 1

    def messages(self, subject: str | None = None) -> list[CaseAnswerMessage]:
        with self._lock:
            if subject is None:
                rows = self._db.execute("SELECT body FROM inbox ORDER BY received_at").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT body FROM inbox WHERE subject = ? ORDER BY received_at", (subject,)
                ).fetchall()
        return [CaseAnswerMessage.model_validate_json(r[0]) for r in rows]

    def forget(self, ids: Iterable[str]) -> int:
        """Remove answers the patient has seen; remember their ids so a resend stays out."""
        id_list = list(ids)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO shown (id, at) VALUES (?,?)", [(i, now) for i in id_list])
                removed = sum(self._db.execute("DELETE FROM inbox WHERE id = ?", (i,)).rowcount for i in id_list)
                # The hub stops resending once the kiosk acknowledged; a month of ids is plenty.
                self._db.execute("DELETE FROM shown WHERE at < ?", (now - 30 * 86400,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return removed

    def setup(self) -> KioskSetupBody | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM setup").fetchone()
        return None if row is None else KioskSetupBody.model_validate_json(row[0])

    def close(self) -> None:
        self._db.close()
