"""The kiosk's durable outbox: every reading waits here, on disk, until the hub's receipt.

Durability: WAL with ``synchronous=FULL``, so ``enqueue`` returns only after the
commit is fsynced; a SIGKILL or power cut after it returns cannot lose the item, and
one before it returns leaves no trace (the caller was never told it was stored).

Capacity policy (never silent): when clinical items would exceed ``max_items`` or
``max_bytes``, or the disk holding the outbox cannot take them, ``enqueue`` raises
:class:`OutboxFull` (:class:`DiskFull` for the disk) so the screen can tell the patient
the reading was not stored, and an ``outbox_full`` alert is raised in the kiosk's
status. Nothing already stored is ever dropped to make room. Status items are exempt
from the caps and from the disk reserve, and coalesced (only the newest unsent one is
kept), so the alert itself can always leave the kiosk.

The disk is a limit like the caps (issue 25). SQLite needs free space to delete, not only to
insert: a delete writes its pages to the write-ahead log before a checkpoint copies them back.
A kiosk whose outbox filled the disk could therefore no longer delete what the hub had
receipted, and kept sending it again. So clinical items are refused while the filesystem's
free space (plus the free pages inside the database, which inserts reuse) would fall under
``disk_reserve_bytes``: what is left is kept for deletes, status, the WAL and its checkpoints.
The WAL is bounded (``wal_autocheckpoint`` of ``WAL_AUTOCHECKPOINT_PAGES`` pages instead of
SQLite's 1,000, and deletes committed in transactions of at most ``REMOVE_TXN_BYTES``), so
that reserve is a known size whatever the backlog. A write that still meets a full disk
(another program filled it) raises :class:`DiskFull` from enqueue and
:class:`OutboxWriteError` from the delete path, each chained to SQLite's own error: SQLite
rolls the transaction back by itself on SQLITE_FULL, and an explicit ROLLBACK used to replace
"database or disk is full" with "cannot rollback - no transaction is active".
"""

from __future__ import annotations

import contextlib
import logging
import os
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

log = logging.getLogger(__name__)

NEAR_FULL_FRACTION = 0.8
FULL_CLEARS_BELOW = 0.9
MIB = 1024 * 1024
# The WAL is checkpointed once it holds this many pages (1 MiB at 4 KiB pages; SQLite's default of 1,000
# pages let it grow to about 4 MiB before the first checkpoint, whatever the backlog).
WAL_AUTOCHECKPOINT_PAGES = 256
# Receipted items are deleted in transactions of at most this many bytes of bodies (and REMOVE_TXN_ITEMS
# items): a transaction cannot be checkpointed before it commits, and with secure_delete every freed page
# of a photo chunk is written to the WAL, so one large delete would otherwise grow the WAL past its bound.
REMOVE_TXN_BYTES = 256 * 1024
REMOVE_TXN_ITEMS = 500
# The WAL's peak: the checkpoint threshold, one bounded transaction on top (its pages, the id index's and
# the meta row's), and the frame headers. tests/test_outbox.py measures it while enqueueing and draining.
WAL_BOUND_BYTES = 2 * MIB
# Free disk space clinical items may not use: room for the WAL at its bound, for status messages (coalesced,
# exempt from the caps), for the -shm file and the pages a checkpoint or the `rejected` table adds, with a
# margin of 2 MiB for a filesystem's rounding. 4 MiB is nothing on a kiosk's storage and, unlike SQLite's
# default WAL, it is enough whatever the backlog.
DISK_RESERVE_BYTES = WAL_BOUND_BYTES + 2 * MIB
# The outbox_full alert of a full disk clears once this much more (a few hundred readings) would fit again:
# a little hysteresis, so that the alert does not flap at the edge of the reserve.
DISK_CLEAR_MARGIN = REMOVE_TXN_BYTES
SQLITE_FULL = 13
SQLITE_IOERR = 10

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


class DiskFull(OutboxFull):
    """The disk holding the outbox cannot take the item (free space under the reserve, or SQLite found it full)."""


class OutboxWriteError(Exception):
    """A write other than an enqueue failed (deleting receipted items, moving rejected ones): the items stay.

    `removed` items were deleted before the failure (deletes commit in bounded transactions); `disk_full`
    says whether the cause is a full disk; `cause` is a fixed phrase for it, to log once per state change.
    """

    def __init__(self, message: str, *, cause: str, disk_full: bool, removed: int = 0) -> None:
        super().__init__(message)
        self.cause = cause
        self.disk_full = disk_full
        self.removed = removed


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL (any extended code): "database or disk is full"."""
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_FULL


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
        disk_reserve_bytes: int = DISK_RESERVE_BYTES,
        on_enqueue: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kiosk_id = kiosk_id
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.disk_reserve_bytes = disk_reserve_bytes
        self.on_enqueue = on_enqueue
        # Fault-injection seam: called inside every write transaction of enqueue ("enqueue") and of the
        # delete path ("remove", "reject") just before COMMIT. An error raised from it takes the path a real
        # one takes (tests/diskfull.py makes SQLite itself report SQLITE_FULL there).
        self.write_hook: Callable[[sqlite3.Connection, str], None] | None = None
        self._clock = clock
        self._lock = threading.Lock()
        # When a refusal was first noted; kept here too, since on a full disk writing full_since can fail.
        self._full_since: float | None = None
        # SQLite's own "database or disk is full" at the last refusal: the disk is full even where statvfs
        # does not show it (a quota, a file size limit); until a clinical item is stored again.
        self._sqlite_full: str | None = None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, which is what "durable on return" means.
        self._db.execute("PRAGMA synchronous=FULL")
        # A receipted item's bytes (a patient's readings, words, photos) are overwritten, not just unlinked
        # from the b-tree; the WAL is cut back after each checkpoint so old frames do not linger in it.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_size_limit=0")
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        self._db.executescript(_SCHEMA)
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])

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
            try:
                self._db.execute("BEGIN IMMEDIATE")
                envelopes = self._enqueue_locked(items, now)
                if self.write_hook is not None:
                    self.write_hook(self._db, "enqueue")
                self._db.execute("COMMIT")
            except OutboxFull:
                self._rollback_locked()
                self._note_full_locked(now)  # the refusal itself is recorded: the status carries outbox_full
                raise
            except sqlite3.Error as exc:
                self._rollback_locked()
                if not self._is_disk_full_locked(exc):
                    raise
                self._note_full_locked(now)
                self._sqlite_full = str(exc)
                raise DiskFull(
                    f"the disk holding the outbox is full ({self._free_text()}; SQLite: {exc}); "
                    "the reading was not stored"
                ) from exc
            except BaseException:
                self._rollback_locked()
                raise
            if self._sqlite_full is not None and any(kind != "status" for kind, _ in items):
                self._sqlite_full = None
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
        if clinical_items and not self._disk_room_locked(clinical_bytes):
            raise DiskFull(
                f"the disk holding the outbox is full ({self._free_text()}, the rest kept to deliver the "
                f"{meta['items']} items already stored); the reading was not stored"
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
        """Delete receipted items; unknown ids (already removed, or another kiosk's) are ignored.

        Raises OutboxWriteError (chained to SQLite's error) when a delete fails, e.g. on a full disk.
        """
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
        """Delete (or move to `rejected`) in transactions of bounded size, so the WAL stays bounded."""
        why = dict(reasons) if reasons else None
        removed = done = 0
        try:
            for chunk in self._remove_plan_locked(id_list):
                self._db.execute("BEGIN IMMEDIATE")
                if why is not None:
                    self._db.executemany(
                        "INSERT OR IGNORE INTO rejected SELECT seq, id, kind, body, ?, ? FROM outbox WHERE id = ?",
                        [(why[mid], self._clock(), mid) for mid in chunk],
                    )
                removed_items, removed_bytes, count = self._delete_locked(chunk)
                self._db.execute(
                    "UPDATE meta SET value = value - CASE key WHEN 'items' THEN ? ELSE ? END "
                    "WHERE key IN ('items', 'bytes')",
                    (removed_items, removed_bytes),
                )
                self._clear_full_if_drained()
                if self.write_hook is not None:
                    self.write_hook(self._db, "reject" if why is not None else "remove")
                self._db.execute("COMMIT")
                removed += count
                done += len(chunk)
        except sqlite3.Error as exc:
            self._rollback_locked()
            what = "move rejected" if why is not None else "delete receipted"
            raise self._write_error(exc, f"could not {what} items ({done} of {len(id_list)} done)", removed) from exc
        except BaseException:
            self._rollback_locked()
            raise
        return removed

    def _remove_plan_locked(self, ids: list[str]) -> list[list[str]]:
        """The stored ones of `ids`, in transactions of at most REMOVE_TXN_ITEMS items and REMOVE_TXN_BYTES."""
        sizes: dict[str, int] = {}
        for start in range(0, len(ids), REMOVE_TXN_ITEMS):
            chunk = ids[start : start + REMOVE_TXN_ITEMS]
            marks = ",".join("?" * len(chunk))
            sizes.update(self._db.execute(f"SELECT id, length(body) FROM outbox WHERE id IN ({marks})", chunk))
        plan: list[list[str]] = []
        current: list[str] = []
        size = 0
        for mid in ids:
            if mid not in sizes:
                continue  # already gone (a receipt for a resend), or never ours: nothing to write
            if current and (len(current) >= REMOVE_TXN_ITEMS or size + sizes[mid] > REMOVE_TXN_BYTES):
                plan.append(current)
                current, size = [], 0
            current.append(mid)
            size += sizes.pop(mid)  # popped: an id given twice is deleted once
        if current:
            plan.append(current)
        return plan

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
        if meta["full_since"] is not None and not self._still_full_locked(meta):
            self._db.execute("UPDATE meta SET value = NULL WHERE key = 'full_since'")

    def _still_full_locked(self, meta: dict[str, Any]) -> bool:
        """Whether a refusal still stands: the caps not yet drained below FULL_CLEARS_BELOW, or the disk short."""
        return self._caps_full(meta) or not self._disk_room_locked(DISK_CLEAR_MARGIN)

    def _caps_full(self, meta: dict[str, Any]) -> bool:
        return bool(
            meta["items"] >= FULL_CLEARS_BELOW * self.max_items or meta["bytes"] >= FULL_CLEARS_BELOW * self.max_bytes
        )

    def set_clock_offset(self, offset_ms: float, source: str) -> None:
        """Record the clock offset; OutboxWriteError when it cannot be written (a full disk)."""
        with self._lock:
            try:
                self._db.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    [(offset_ms, "clock_offset_ms"), (source, "clock_source")],
                )
            except sqlite3.Error as exc:
                self._rollback_locked()
                raise self._write_error(exc, "could not record the clock offset", 0) from exc

    # -- the disk ------------------------------------------------------------------------

    def disk_free_bytes(self) -> int:
        """Free space on the filesystem holding the outbox, as far as an unprivileged process may use it."""
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def _disk_room_locked(self, incoming: int) -> bool:
        """Whether `incoming` more bytes of clinical bodies can be stored without using the disk reserve.

        The reserve is space the database file may not grow into for clinical items: it keeps room for the
        WAL at its bound (shared by inserts and deletes), for status and for checkpoints. What the WAL holds
        now comes back at its next checkpoint, less the pages it adds to the file. Items that fit in the
        file's free pages (left by delivered items) do not grow it, and need only the WAL's room; a
        transaction larger than a bounded one also needs its own size in the WAL until it is checkpointed.
        One statvfs in the common case; a few stats and PRAGMAs near the reserve.
        """
        on_disk = incoming + incoming // 4 + self._page_size  # b-tree pages are not filled to the brim
        wal = on_disk if incoming > REMOVE_TXN_BYTES else 0
        free = self.disk_free_bytes()
        if free >= self.disk_reserve_bytes + on_disk + wal:
            return True
        pages, free_pages = (
            int(self._db.execute(f"PRAGMA {p}").fetchone()[0]) for p in ("page_count", "freelist_count")
        )
        try:
            file_bytes = self.path.stat().st_size
        except FileNotFoundError:
            file_bytes = 0
        free += self._wal_bytes() - max(0, pages * self._page_size - file_bytes)  # after the next checkpoint
        growth = max(0, on_disk - free_pages * self._page_size)
        need = self.disk_reserve_bytes + growth if growth else min(self.disk_reserve_bytes, WAL_BOUND_BYTES)
        return free >= need + wal

    def _wal_bytes(self) -> int:
        try:
            return os.stat(f"{self.path}-wal").st_size
        except FileNotFoundError:
            return 0

    def _free_text(self) -> str:
        try:
            free = self.disk_free_bytes()
        except OSError as exc:
            return f"free space unknown: {exc}"
        return f"{free / MIB:.1f} MiB free, {self.disk_reserve_bytes / MIB:.1f} MiB reserved"

    def _is_disk_full_locked(self, exc: sqlite3.Error) -> bool:
        """SQLITE_FULL; or an I/O error while the disk is under the reserve (SQLite reports ENOSPC met while
        growing the -shm file or syncing as SQLITE_IOERR_SHMSIZE / _FSYNC, not as SQLITE_FULL)."""
        if is_disk_full(exc):
            return True
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF != SQLITE_IOERR:
            return False
        with contextlib.suppress(OSError):
            return self.disk_free_bytes() < self.disk_reserve_bytes
        return False

    def _write_error(self, exc: sqlite3.Error, what: str, removed: int) -> OutboxWriteError:
        disk_full = self._is_disk_full_locked(exc)
        cause = "the disk holding the outbox is full" if disk_full else "SQLite could not write the outbox"
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        return OutboxWriteError(
            f"{what}: {cause} ({self._free_text()}; SQLite: {exc} [{name}])",
            cause=cause,
            disk_full=disk_full,
            removed=removed,
        )

    def _rollback_locked(self) -> None:
        """Roll back what is left of a failed transaction, never hiding why it failed.

        On SQLITE_FULL or an I/O error SQLite may already have rolled the whole transaction back, and
        an explicit ROLLBACK would then raise "cannot rollback - no transaction is active" in place of
        the error that matters.
        """
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("outbox: rollback after a failed write also failed: %s", exc)

    def _note_full_locked(self, now: float) -> None:
        """Remember a refusal: in memory at once, in the meta table if the disk lets us (see alerts)."""
        if self._full_since is None:
            self._full_since = now
        try:
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'full_since' AND value IS NULL", (now,))
        except sqlite3.Error as exc:
            self._rollback_locked()
            log.debug("outbox: could not record full_since (%s); kept in memory", exc)

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
        """Conditions a person should see on the fleet page, derived from stored state and the disk."""
        backlog = self.backlog()
        with self._lock:
            meta = self._meta()
            rejected = self._db.execute("SELECT count(*), min(rejected_at) FROM rejected").fetchone()
            full_since = min((t for t in (meta["full_since"], self._full_since) if t is not None), default=None)
            if full_since is None:
                # A disk that cannot take even a small reading is full before anyone is refused (another
                # program filled it): said at once, kept in memory only (nothing can be written then).
                disk_short = not self._disk_room_locked(1)
                if disk_short:
                    full_since = self._full_since = self._clock()
            else:
                disk_short = self._sqlite_full is not None or not self._disk_room_locked(DISK_CLEAR_MARGIN)
                if not disk_short and not self._caps_full(meta):
                    full_since = self._full_since = None  # drained, or space freed, since the last refusal
                    if meta["full_since"] is not None:
                        self._clear_full_quietly_locked()
            free = self._free_text() if disk_short else ""
            if disk_short and self._sqlite_full is not None:
                free = f"{free}; SQLite: {self._sqlite_full}"
        alerts: list[StatusAlert] = []
        if full_since is not None:
            message = (
                f"Disk full ({free}; {backlog.items} items waiting for the hub): new readings are being refused "
                "until space is freed on the kiosk's storage."
                if disk_short
                else f"Outbox full ({backlog.items} items): new readings are being refused until the hub "
                "is reachable again."
            )
            alerts.append(
                StatusAlert(code="outbox_full", message=message, since=datetime.fromtimestamp(full_since, UTC))
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

    def _clear_full_quietly_locked(self) -> None:
        try:
            self._db.execute("UPDATE meta SET value = NULL WHERE key = 'full_since'")
        except sqlite3.Error as exc:
            self._rollback_locked()
            log.debug("outbox: could not clear full_since (%s)", exc)

    def _meta(self) -> dict[str, Any]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())
