"""What the hub sent this kiosk to keep (case answers): stored once per id, durably, before it is acknowledged.

The kiosk screens read it; a patient's messages are removed once shown and no longer needed
(the kiosk keeps only what it must, the hub keeps the record).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from device.protocol.downlink import DownlinkMessage


class Inbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS inbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, "
            "body TEXT NOT NULL, received_at REAL NOT NULL)"
        )
        self._lock = threading.Lock()

    def store(self, message: DownlinkMessage) -> bool:
        """Keep the message; False when it was kept already (a resend)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO inbox (id, kind, subject, body, received_at) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                (message.id, message.kind, message.body.subject, message.model_dump_json(), time.time()),
            )
            return cur.rowcount == 1

    def messages(self, subject: str | None = None) -> list[DownlinkMessage]:
        with self._lock:
            if subject is None:
                rows = self._db.execute("SELECT body FROM inbox ORDER BY received_at").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT body FROM inbox WHERE subject = ? ORDER BY received_at", (subject,)
                ).fetchall()
        return [DownlinkMessage.model_validate_json(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()
