"""What the collector remembers between connections: devices, readings already taken, readings held back.

Devices re-send stored readings (cuffs on every connect, glucose meters when asked again),
so each reading that carries its own time stamp or record number is remembered by a
fingerprint, and a second copy is dropped before it reaches the outbox. The last glucose
record number per device lets the next download ask only for newer ones. Readings that
cannot be attributed to a patient wait here, never in the outbox, until someone assigns or
discards them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, address TEXT NOT NULL, info TEXT NOT NULL,
                                    first_seen REAL NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seen (device_id TEXT NOT NULL, fingerprint TEXT NOT NULL, at REAL NOT NULL,
                                 PRIMARY KEY (device_id, fingerprint)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_numbers (device_id TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS held (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, device_user INTEGER,
                                 observations TEXT NOT NULL, reason TEXT NOT NULL, held_at REAL NOT NULL);
"""


@dataclass(frozen=True)
class HeldReading:
    id: int
    device_id: str
    device_user: int | None
    observations: list[dict[str, Any]]
    reason: str
    held_at: float


class Ledger:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # held readings are clinical data
        self._db.execute("PRAGMA secure_delete=ON")  # a released or discarded reading is overwritten
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def remember_device(self, device_id: str, address: str, info: dict[str, Any]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO devices VALUES (?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET address = excluded.address, "
                "info = excluded.info, last_seen = excluded.last_seen",
                (device_id, address, json.dumps(info, sort_keys=True), now, now),
            )

    def device_info(self, address: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT info FROM devices WHERE address = ? ORDER BY last_seen DESC LIMIT 1", (address,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def first_time(self, device_id: str, fingerprint: str) -> bool:
        """True the first time this reading is seen from this device (and remember it); False for a repeat."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?,?,?)", (device_id, fingerprint, time.time()))
            return cur.rowcount == 1

    def forget(self, device_id: str, fingerprint: str) -> None:
        """Undo first_time when the reading could not be stored after all, so a re-send is taken."""
        with self._lock:
            self._db.execute("DELETE FROM seen WHERE device_id = ? AND fingerprint = ?", (device_id, fingerprint))

    def last_record_number(self, device_id: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT last FROM record_numbers WHERE device_id = ?", (device_id,)).fetchone()
        return int(row[0]) if row else None

    def set_last_record_number(self, device_id: str, number: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO record_numbers VALUES (?,?) ON CONFLICT (device_id) DO UPDATE "
                "SET last = max(last, excluded.last)",
                (device_id, number),
            )

    def hold(self, device_id: str, device_user: int | None, observations: list[dict[str, Any]], reason: str) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO held (device_id, device_user, observations, reason, held_at) VALUES (?,?,?,?,?)",
                (device_id, device_user, json.dumps(observations), reason, time.time()),
            )
            return int(cur.lastrowid or 0)

    def held(self) -> list[HeldReading]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device_id, device_user, observations, reason, held_at FROM held ORDER BY id"
            ).fetchall()
        return [HeldReading(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def release(self, held_id: int) -> HeldReading | None:
        """Take a held reading out (to send it under a patient, or to discard it)."""
        with self._lock:
            row = self._db.execute(
                "DELETE FROM held WHERE id = ? RETURNING id, device_id, device_user, observations, reason, held_at",
                (held_id,),
            ).fetchone()
        return HeldReading(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5]) if row else None
