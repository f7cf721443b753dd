"""The kiosk's durable outbox: every reading waits here, on disk, until the hub's receipt.

Durability: WAL with ``synchronous=FULL``, so ``enqueue`` returns only after the
commit is fsynced; a SIGKILL or power cut after it returns cannot lose the item, and
one before it returns leaves no trace (the caller was never told it was stored).

Capacity policy (never silent): when clinical items would exceed ``max_items`` or
``max_bytes``, ``enqueue`` raises :class:`OutboxFull` so the screen can tell the
patient the reading was not stored, and an ``outbox_full`` alert is raised in the
kiosk's status. Nothing already stored is ever dropped to make room. Status items
are exempt from the cap and coalesced (only the newest unsent one is kept), so the
alert itself can always leave the kiosk.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from device.protocol import ClockInfo, StatusAlert, new_message_id
from device.protocol.envelope import MAX_ENVELOPE_BYTES, AnyEnvelope, EnvelopeError, build_envelope, encode

NEAR_FULL_FRACTION = 0.8
FULL_CLEARS_BELOW = 0.9

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    enqueued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('items', 0), ('bytes', 0), ('full_since', NULL),
    ('clock_offset_ms', NULL), ('clock_source', 'none');
"""


class OutboxFull(Exception):
    """The outbox is at capacity; the item was NOT stored. Tell the person, do not retry silently."""


class OutboxItem(NamedTuple):
    """One stored envelope as the forwarder reads it. A tuple: a backlog is read thousands at a time, and a
    frozen dataclass cost about 2 us each to build (a seventh of the kiosk's CPU while draining)."""

    seq: int
    id: str
    kind: str
    body: bytes


@dataclass(frozen=True)
class Backlog:
    items: int
    bytes: int
    max_items: int
    max_bytes: int
    oldest_enqueued_at: float | None

    @property
    def fill(self) -> float:
        return max(self.items / self.max_items, self.bytes / self.max_bytes)


class Outbox:
    """A durable FIFO of envelopes for one kiosk. Thread-safe; several processes may share the file."""

    def __init__(
        self,
        path: str | Path,
        kiosk_id: str,
        *,
        max_items: int = 500_000,
        max_bytes: int = 512 * 1024 * 1024,
        on_enqueue: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kiosk_id = kiosk_id
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.on_enqueue = on_enqueue
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, which is what "durable on return" means.
        self._db.execute("PRAGMA synchronous=FULL")
        # A receipted item's bytes (a patient's readings, words, photos) are overwritten, not just unlinked
        # from the b-tree; the WAL is cut back after each checkpoint so old frames do not linger in it.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_size_limit=0")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing -------------------------------------------------------------------------

    def enqueue(self, kind: str, payload: Any) -> AnyEnvelope:
        """Store one envelope durably and return it (with its id and seq)."""
        return self.enqueue_many([(kind, payload)])[0]

    def enqueue_many(self, items: Sequence[tuple[str, Any]]) -> list[AnyEnvelope]:
        """Store several envelopes in one transaction: all are durable, or none (OutboxFull)."""
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                envelopes = self._enqueue_locked(items, now)
                self._db.execute("COMMIT")
            except OutboxFull:
                self._db.execute("ROLLBACK")
                # The refusal itself is recorded, so the status carries an outbox_full alert.
                self._db.execute("UPDATE meta SET value = coalesce(value, ?) WHERE key = 'full_since'", (now,))
                raise
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if self.on_enqueue is not None:
            self.on_enqueue()
        return envelopes

    def _enqueue_locked(self, items: Sequence[tuple[str, Any]], now: float) -> list[AnyEnvelope]:
        meta = self._meta()
        clock = ClockInfo(
            time=datetime.fromtimestamp(now, UTC),
            offset_ms=meta["clock_offset_ms"],
            source=meta["clock_source"] if meta["clock_offset_ms"] is not None else "none",
        )
        seq = int(meta["last_seq"])
        envelopes: list[AnyEnvelope] = []
        rows: list[tuple[int, str, str, bytes, float]] = []
        clinical_items = 0
        clinical_bytes = 0
        for kind, payload in items:
            seq += 1
            env = build_envelope(
                kind, message_id=new_message_id(), kiosk=self.kiosk_id, seq=seq, clock=clock, payload=payload
            )
            body = encode(env)
            if len(body) > MAX_ENVELOPE_BYTES:
                raise EnvelopeError(
                    f"{kind} envelope of {len(body)} bytes exceeds the {MAX_ENVELOPE_BYTES}-byte limit; split it"
                )
            envelopes.append(env)
            rows.append((seq, env.id, kind, body, now))
            if kind != "status":
                clinical_items += 1
                clinical_bytes += len(body)
        if clinical_items and (
            meta["items"] + clinical_items > self.max_items or meta["bytes"] + clinical_bytes > self.max_bytes
        ):
            raise OutboxFull(
                f"outbox holds {meta['items']} items / {meta['bytes']} bytes of "
                f"{self.max_items} / {self.max_bytes}; the reading was not stored"
            )
        if any(kind == "status" for kind, _ in items):
            # Coalesce: an unsent status is superseded by the newer one.
            self._db.execute("DELETE FROM outbox WHERE kind = 'status'")
        self._db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?)", rows)
        self._db.execute(
            "UPDATE meta SET value = CASE key WHEN 'last_seq' THEN ? WHEN 'items' THEN value + ? "
            "ELSE value + ? END WHERE key IN ('last_seq', 'items', 'bytes')",
            (seq, clinical_items, clinical_bytes),
        )
        return envelopes

    def remove(self, ids: Iterable[str]) -> int:
        """Delete receipted items; unknown ids (already removed, or another kiosk's) are ignored."""
        return self._remove(list(ids), reasons=None)

    def reject(self, rejections: Iterable[tuple[str, str]]) -> int:
        """Move items the hub refused to the local `rejected` table (kept for staff, alerted)."""
        pairs = list(rejections)
        return self._remove([mid for mid, _ in pairs], reasons=pairs)

    def _remove(self, id_list: list[str], reasons: list[tuple[str, str]] | None) -> int:
        if not id_list:
            return 0
        with self._lock:
            # A receipted removal lost to a power cut only brings the item back to be sent
            # again, and the hub absorbs the copy: no fsync needed (still atomic; the next
            # durable commit makes it durable too). Rejections move data, so they stay FULL.
            self._db.execute(f"PRAGMA synchronous={'FULL' if reasons else 'NORMAL'}")
            try:
                return self._remove_locked(id_list, reasons)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def _remove_locked(self, id_list: list[str], reasons: list[tuple[str, str]] | None) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if reasons:
                self._db.executemany(
                    "INSERT OR IGNORE INTO rejected SELECT seq, id, kind, body, ?, ? FROM outbox WHERE id = ?",
                    [(reason, self._clock(), mid) for mid, reason in reasons],
                )
            removed_items, removed_bytes, removed = self._delete_locked(id_list)
            self._db.execute(
                "UPDATE meta SET value = value - CASE key WHEN 'items' THEN ? ELSE ? END "
                "WHERE key IN ('items', 'bytes')",
                (removed_items, removed_bytes),
            )
            self._clear_full_if_drained()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return removed

    def _delete_locked(self, ids: list[str]) -> tuple[int, int, int]:
        removed_items = removed_bytes = removed = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for kind, size in self._db.execute(
                f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING kind, length(body)",
                chunk,
            ):
                removed += 1
                if kind != "status":
                    removed_items += 1
                    removed_bytes += size
        return removed_items, removed_bytes, removed

    def _clear_full_if_drained(self) -> None:
        meta = self._meta()
        if meta["full_since"] is not None and (
            meta["items"] < FULL_CLEARS_BELOW * self.max_items and meta["bytes"] < FULL_CLEARS_BELOW * self.max_bytes
        ):
            self._db.execute("UPDATE meta SET value = NULL WHERE key = 'full_since'")

    def set_clock_offset(self, offset_ms: float, source: str) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE meta SET value = ? WHERE key = ?",
                [(offset_ms, "clock_offset_ms"), (source, "clock_source")],
            )

    # -- reading -------------------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 500, max_bytes: int = 256 * 1024) -> list[OutboxItem]:
        """The next items in seq order after `after_seq`, at most `limit` items and about `max_bytes`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, kind, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        items: list[OutboxItem] = []
        total = 0
        for seq, mid, kind, body in rows:
            if items and total + len(body) > max_bytes:
                break
            items.append(OutboxItem(seq, mid, kind, bytes(body)))
            total += len(body)
        return items

    def backlog(self) -> Backlog:
        with self._lock:
            meta = self._meta()
            (oldest,) = self._db.execute("SELECT min(enqueued_at) FROM outbox").fetchone()
        return Backlog(int(meta["items"]), int(meta["bytes"]), self.max_items, self.max_bytes, oldest)

    def rejected(self) -> list[tuple[int, str, str, str]]:
        with self._lock:
            return [
                (int(seq), str(mid), str(kind), str(reason))
                for seq, mid, kind, reason in self._db.execute(
                    "SELECT seq, id, kind, reason FROM rejected ORDER BY seq"
                )
            ]

    def alerts(self) -> list[StatusAlert]:
        """Conditions a person should see on the fleet page, derived from stored state."""
        backlog = self.backlog()
        with self._lock:
            meta = self._meta()
            rejected = self._db.execute("SELECT count(*), min(rejected_at) FROM rejected").fetchone()
        alerts: list[StatusAlert] = []
        if meta["full_since"] is not None:
            alerts.append(
                StatusAlert(
                    code="outbox_full",
                    message=f"Outbox full ({backlog.items} items): new readings are being refused until the hub "
                    "is reachable again.",
                    since=datetime.fromtimestamp(meta["full_since"], UTC),
                )
            )
        elif backlog.fill >= NEAR_FULL_FRACTION:
            alerts.append(
                StatusAlert(
                    code="outbox_near_full",
                    message=f"Outbox {backlog.fill:.0%} full ({backlog.items} items waiting for the hub).",
                    since=datetime.fromtimestamp(backlog.oldest_enqueued_at or self._clock(), UTC),
                )
            )
        if rejected[0]:
            alerts.append(
                StatusAlert(
                    code="rejected_by_hub",
                    message=f"{rejected[0]} item(s) refused by the hub are kept on the kiosk for review.",
                    since=datetime.fromtimestamp(rejected[1], UTC),
                )
            )
        return alerts

    def _meta(self) -> dict[str, Any]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())
