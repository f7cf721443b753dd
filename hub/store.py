"""What ingest stores: the batched commit of the kiosks' envelopes, and the queries over what it stored.

The schema and its migrations are in hub/db/schema.py; the connection (SQLite or PostgreSQL) in
hub/db. The hot path writes with ``executemany`` inside one write transaction per batch
(``executemany`` measured ~120k rows/s on SQLite here against ~48k for sqlite-utils'
``insert_all``, and each envelope writes two to three rows).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.protocol.envelope import (
    AnyEnvelope,
    AttachmentEnvelope,
    CaseEnvelope,
    ObservationsEnvelope,
    StatusEnvelope,
    utc_iso,
)
from hub.db import (
    Connection,
    DatabaseError,
    Location,
    OperationalError,
    SqliteLocation,
    connect,
    describe_error,
    immediate,
    insert_rows,
    is_broken,
    migrate,
    rows_as_dicts,
)
from hub.db import parse as parse_location
from hub.db.location import sqlite_path

MESSAGE_COLUMNS = (
    "id", "kiosk", "seq", "kind", "device_time", "clock_offset_ms", "received_at", "committed_at", "raw",
)  # fmt: skip
OBSERVATION_COLUMNS = (
    "message_id", "idx", "kiosk", "seq", "code", "value", "unit", "effective", "clock_offset_ms", "device_id",
    "device", "flags", "subject", "device_user", "device_sequence", "device_clock_offset_s", "method", "quality",
)  # fmt: skip
BACKLOG_WINDOW_S = 600.0  # how far back a kiosk's backlog is compared, to call it growing


@dataclass(frozen=True)
class Accepted:
    envelope: AnyEnvelope
    raw: bytes
    received_at: float
    topic: str = ""


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    reason: str
    raw: bytes  # possibly truncated to the storage limit
    size: int
    sha256: str
    truncated: bool
    received_at: float
    kiosk_hint: str | None = None
    message_id: str | None = None

    @classmethod
    def build(
        cls,
        topic: str,
        reason: str,
        raw: bytes,
        received_at: float,
        *,
        keep_bytes: int = 64 * 1024,
        kiosk_hint: str | None = None,
        message_id: str | None = None,
    ) -> DeadLetter:
        """Keep the reason, the size and the first `keep_bytes`; repeats are counted by content hash."""
        return cls(
            topic=topic,
            reason=reason,
            raw=raw[:keep_bytes],
            size=len(raw),
            # surrogatepass: a topic never holds a lone surrogate (MQTT topics are UTF-8), but building a
            # dead letter must not be the step that raises.
            sha256=hashlib.sha256(raw + topic.encode(errors="surrogatepass")).hexdigest(),
            truncated=len(raw) > keep_bytes,
            received_at=received_at,
            kiosk_hint=kiosk_hint,
            message_id=message_id,
        )


@dataclass(frozen=True)
class Poisoned:
    """An envelope the contract let through that the database cannot hold; dead-lettered, to be rejected."""

    item: Accepted
    reason: str  # for a person, and for the kiosk's `rejected` receipt: never the health values themselves


@dataclass(frozen=True)
class CommitResult:
    new: list[str]
    duplicates: list[str]
    conflicts: list[Accepted]  # an id already stored with other content: dead-lettered, never merged
    # Failed to store on their own content (a gap in the contract): dead-lettered, the rest of the batch stored.
    poisoned: list[Poisoned] = field(default_factory=list)


class StoreReader:
    """The read queries, over any connection to the hub database (request threads each have their own)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return rows_as_dicts(self.conn.execute(sql, params))

    def kiosks(self, clinic_id: str | None = None) -> list[dict[str, Any]]:
        """All kiosks, or one clinic's."""
        if clinic_id is None:
            return self._dicts("SELECT * FROM kiosks ORDER BY id")
        return self._dicts("SELECT * FROM kiosks WHERE clinic_id = ? ORDER BY id", [clinic_id])

    def kiosk(self, kiosk_id: str) -> dict[str, Any] | None:
        rows = self._dicts("SELECT * FROM kiosks WHERE id = ?", [kiosk_id])
        return rows[0] if rows else None

    def observations(
        self,
        kiosk: str,
        *,
        code: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """A kiosk's observations in kiosk order (seq, then position in the envelope)."""
        where = ["kiosk = ?"]
        params: list[Any] = [kiosk]
        if code:
            where.append("code = ?")
            params.append(code)
        if since:
            where.append("effective >= ?")
            params.append(since)
        if until:
            where.append("effective < ?")
            params.append(until)
        sql = (
            "SELECT message_id, idx, seq, code, value, unit, effective, clock_offset_ms, device_id, device, flags, "
            "subject, device_user, device_sequence, device_clock_offset_s, method, quality "
            f"FROM observations WHERE {' AND '.join(where)} ORDER BY seq, idx LIMIT ?"
        )
        return self._dicts(sql, [*params, limit])

    def attachments(self, kiosk: str) -> list[dict[str, Any]]:
        """A kiosk's files, newest first, without their bytes."""
        return self._dicts(
            "SELECT id, kiosk, subject, media_type, size, sha256, status, first_chunk_at, completed_at "
            "FROM attachments WHERE kiosk = ? ORDER BY first_chunk_at DESC",
            [kiosk],
        )

    def attachment(self, attachment_id: str) -> dict[str, Any] | None:
        rows = self._dicts("SELECT * FROM attachments WHERE id = ?", [attachment_id])
        return rows[0] if rows else None

    def complete_attachment_bytes(self, attachment_id: str, kiosk: str) -> tuple[bytes, str] | None:
        """A kiosk's file, assembled and matching its checksum: (its bytes, its media type); else None.

        Keyed by the kiosk too: an attachment id is the kiosk's to choose, so another kiosk's file of the
        same id is never served as this one's.
        """
        row = self.conn.execute(
            "SELECT data, media_type FROM attachments WHERE id = ? AND kiosk = ? AND status = 'complete'",
            (attachment_id, kiosk),
        ).fetchone()
        return None if row is None else (bytes(row[0]), row[1])

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT id, topic, kiosk_hint, message_id, reason, size, raw_truncated, first_seen, last_seen, count, "
            "raw FROM dead_letters ORDER BY last_seen DESC LIMIT ?",
            [limit],
        )

    def counts(self) -> dict[str, int]:
        return {
            t: self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("kiosks", "messages", "observations", "dead_letters")
        }

    def ping(self) -> None:
        self.conn.execute("SELECT 1 FROM messages LIMIT 1").fetchall()


# One message's rows, all but the commit time (known only once the write lock is held):
# (the messages row's leading columns, the raw text, its observations rows).
_Rows = tuple[tuple[Any, ...], str, list[tuple[Any, ...]]]


def _build_rows(items: list[Accepted]) -> dict[str, _Rows]:
    rows: dict[str, _Rows] = {}
    # A kiosk's few devices recur in every batch. Keyed by their field values: hashing and comparing
    # the pydantic models themselves cost about 4 us per reading.
    device_json: dict[tuple[Any, ...], str] = {}
    for item in items:
        env = item.envelope
        if env.id in rows:
            continue  # a second copy in the same batch: a duplicate, or a conflict, never what is stored
        offset = env.clock.offset_ms
        observations = []
        if isinstance(env, ObservationsEnvelope):
            subject = env.payload.subject
            for idx, obs in enumerate(env.payload.observations):
                key = tuple(obs.device.__dict__.values())
                device = device_json.get(key)
                if device is None:
                    device = device_json[key] = obs.device.model_dump_json(exclude_none=True)
                observations.append(
                    (
                        env.id,
                        idx,
                        env.kiosk,
                        env.seq,
                        obs.code,
                        obs.value,
                        obs.unit,
                        utc_iso(obs.effective),
                        offset,
                        obs.device.id,
                        device,
                        json.dumps(obs.flags) if obs.flags else "[]",
                        subject,
                        obs.device_user,
                        obs.device_sequence,
                        obs.device_clock_offset_s,
                        obs.method,
                        obs.quality,
                    )
                )
        head = (env.id, env.kiosk, env.seq, env.kind, utc_iso(env.clock.time), offset, item.received_at)
        rows[env.id] = (head, item.raw.decode(), observations)
    return rows


def _conflict_letters(conflicts: list[Accepted]) -> list[DeadLetter]:
    return [
        DeadLetter.build(
            c.topic,
            f"message id {c.envelope.id} is already stored with different content",
            c.raw,
            c.received_at,
            kiosk_hint=c.envelope.kiosk,
            message_id=c.envelope.id,
        )
        for c in conflicts
    ]


def _poison_letter(p: Poisoned) -> DeadLetter:
    env = p.item.envelope
    return DeadLetter.build(
        p.item.topic, p.reason, p.item.raw, p.item.received_at, kiosk_hint=_text(env.kiosk), message_id=_text(env.id)
    )


def _unstorable(exc: Exception) -> str:
    """The reason an envelope could not be stored, for the dead letter, the log and the kiosk's receipt.

    The exception's own words without any value (hub.db.describe_error), bounded to fit a receipt's rejection.
    """
    return _text(f"could not be stored: {describe_error(exc)}")[:500]


def _text(value: object) -> str:
    """`value` as text SQLite and a receipt can hold: a lone surrogate (JSON allows one as \\ud800) escaped."""
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text


class IngestTurn:
    """Ingest workers take turns at a SQLite file through a lock file before they ask SQLite.

    Two workers' commits contend for SQLite's one write lock. SQLite's busy handler
    polls for it with growing sleeps (up to 100 ms each), so the waiting worker often
    slept on well after the other had committed; a blocking flock is handed over by the
    kernel the moment the holder lets go. Other writers (the web app's audit rows,
    attribution) still meet ingest only at SQLite's own lock. PostgreSQL's writers queue
    on its advisory lock, which is handed over the same way (hub/db/postgres.py).
    """

    def __init__(self, db_path: Path | None) -> None:
        self._fd = (
            None if db_path is None else os.open(f"{db_path}-ingest.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        )

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._fd is None:
            yield
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


class HubStore(StoreReader):
    def __init__(self, where: str | Path | Location) -> None:
        self.location = parse_location(where)
        super().__init__(connect(self.location))
        try:
            migrate(self.conn)
            self._turn = IngestTurn(self.location.path if isinstance(self.location, SqliteLocation) else None)
        except BaseException:
            self.conn.close()
            raise

    @property
    def path(self) -> Path:
        """The SQLite file (for what only a file has: its size, its folder); a PostgreSQL store has none."""
        return sqlite_path(self.location)

    def close(self) -> None:
        self.conn.close()
        self._turn.close()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        self.reconnect_if_broken()
        with self._turn.held(), immediate(self.conn) as conn:
            yield conn

    def reconnect_if_broken(self) -> None:
        """A PostgreSQL session the server ended (a restart, a failover, an operator, the network) is replaced
        before the next write: the failed batch is simply retried on a new session. A SQLite file never is."""
        if is_broken(self.conn):
            old, self.conn = self.conn, connect(self.location)
            with contextlib.suppress(*DatabaseError):
                old.close()

    # -- ingest --------------------------------------------------------------------------

    def commit_batch(
        self, accepted: list[Accepted], dead: list[DeadLetter], *, now: float | None = None
    ) -> CommitResult:
        """Store a batch in one transaction; envelopes already stored are reported as duplicates.

        An envelope the database cannot hold (an integer past SQLite's 64 bits, a time that
        cannot be turned to UTC: whatever the contract lets through and storage does not)
        would fail every retry of its batch, and hold up every kiosk whose messages share
        it. So a failure that is not the database's own (an `OperationalError`: locked,
        full, I/O, connection lost; raised for the caller to retry) is taken to be the batch's content: the
        envelopes at fault are found, dead-lettered and reported in `poisoned`, and the rest
        is stored. The common path pays nothing for it.

        `now` is the hub's time of the commit (tests with a moved clock give theirs).
        """
        try:
            return self._commit(accepted, dead, now)
        except OperationalError:
            raise
        except Exception:  # noqa: BLE001 - any other failure is the content's, narrowed down there
            return self._commit_isolating(accepted, dead, now)

    def _commit(self, accepted: list[Accepted], dead: list[DeadLetter], now: float | None) -> CommitResult:
        # Everything that does not need the write lock is done before it is taken: several workers
        # then overlap their Python work, and the lock is held for little more than SQLite's own.
        # In id (time) order: the primary-key B-trees are then appended to, not split at random.
        accepted = sorted(accepted, key=lambda a: a.envelope.id)
        rows = _build_rows(accepted)
        with self._transaction() as conn:
            # Taken inside the lock: a worker that waited its turn has not committed while it waited.
            committed_at = time.time() if now is None else now
            new, duplicates, conflicts = self._write(conn, accepted, rows, committed_at)
            self._insert_dead(conn, [*dead, *_conflict_letters(conflicts)])
        return CommitResult([a.envelope.id for a in new], duplicates, conflicts)

    def _commit_isolating(self, accepted: list[Accepted], dead: list[DeadLetter], now: float | None) -> CommitResult:
        """Store what can be stored of a batch that failed on its content, and set the rest aside.

        Halving: a part that fails is split in two and each half tried again, down to single
        envelopes, so one bad envelope in a thousand costs about twenty attempts, not a
        thousand. All in one transaction, each attempt under a savepoint: a failed attempt
        leaves nothing behind, a good envelope is written by exactly one attempt (later
        parts see it, so a second copy in the batch is still a duplicate), and the batch
        costs one fsync however many attempts it took. Parts keep arrival order, as the
        whole batch's sort does, so the first copy of an id still wins.
        """
        new: list[Accepted] = []
        duplicates: list[str] = []
        conflicts: list[Accepted] = []
        poisoned: list[Poisoned] = []
        with self._transaction() as conn:
            committed_at = time.time() if now is None else now

            def attempt(part: list[Accepted]) -> None:
                conn.execute("SAVEPOINT ingest_part")
                try:
                    ordered = sorted(part, key=lambda a: a.envelope.id)
                    written = self._write(conn, ordered, _build_rows(ordered), committed_at)
                except OperationalError:
                    raise  # the database's trouble: the whole transaction is rolled back, the caller retries
                except Exception as exc:  # noqa: BLE001 - the content's: narrowed down below
                    # A statement's error undoes only that statement, so the savepoint is still there.
                    conn.execute("ROLLBACK TO ingest_part")
                    conn.execute("RELEASE ingest_part")
                    if len(part) == 1:
                        poisoned.append(Poisoned(part[0], _unstorable(exc)))
                        return
                    half = len(part) // 2
                    attempt(part[:half])
                    attempt(part[half:])
                    return
                conn.execute("RELEASE ingest_part")
                new.extend(written[0])
                duplicates.extend(written[1])
                conflicts.extend(written[2])

            attempt(list(accepted))
            self._insert_dead(conn, [*dead, *_conflict_letters(conflicts), *map(_poison_letter, poisoned)])
        return CommitResult([a.envelope.id for a in new], duplicates, conflicts, poisoned)

    def _write(
        self, conn: Connection, accepted: list[Accepted], rows: dict[str, _Rows], committed_at: float
    ) -> tuple[list[Accepted], list[str], list[Accepted]]:
        """Write the envelopes not stored yet, inside the caller's transaction: (new, duplicate ids, conflicts)."""
        stored = self._stored_raw(conn, list(rows))
        new: list[Accepted] = accepted
        duplicates: list[str] = []
        conflicts: list[Accepted] = []
        if stored or len(rows) != len(accepted):  # the common case, all new and distinct, skips this
            new = []
            for item in accepted:
                previous = stored.get(item.envelope.id)
                if previous is None:
                    stored[item.envelope.id] = item.raw
                    new.append(item)
                elif previous == item.raw:
                    duplicates.append(item.envelope.id)
                else:
                    conflicts.append(item)
        self._insert_messages(conn, [rows[a.envelope.id] for a in new], committed_at)
        self._store_chunks(conn, [a.envelope for a in new if isinstance(a.envelope, AttachmentEnvelope)], committed_at)
        self._store_cases(conn, [a.envelope for a in new if isinstance(a.envelope, CaseEnvelope)], committed_at)
        self._update_kiosks(conn, new, committed_at)
        return new, duplicates, conflicts

    @staticmethod
    def _stored_raw(conn: Connection, ids: list[str]) -> dict[str, bytes]:
        """Raw bytes of the ids already stored (duplicates are rare, so this reads little)."""
        found: dict[str, bytes] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                (r[0], r[1].encode())
                for r in conn.execute(f"SELECT id, raw FROM messages WHERE id IN ({marks})", chunk)
            )
        return found

    @staticmethod
    def _insert_messages(conn: Connection, rows: list[_Rows], committed_at: float) -> None:
        insert_rows(conn, "messages", MESSAGE_COLUMNS, [(*head, committed_at, raw) for head, raw, _ in rows])
        insert_rows(
            conn, "observations", OBSERVATION_COLUMNS, [obs for _, _, observations in rows for obs in observations]
        )

    @staticmethod
    def _store_chunks(conn: Connection, chunks: list[AttachmentEnvelope], now: float) -> None:
        """Keep each chunk; when a file's last chunk is in, assemble it and check size and hash.

        A file whose bytes do not match what the kiosk announced is kept as `corrupt` (never served
        as the photo it claims to be); chunks of a file already assembled are ignored.
        """
        touched: dict[str, AttachmentEnvelope] = {}
        for env in chunks:
            p = env.payload
            conn.execute(
                "INSERT INTO attachments (id, kiosk, subject, media_type, size, sha256, status, first_chunk_at) "
                "VALUES (?,?,?,?,?,?,'receiving',?) ON CONFLICT (id) DO NOTHING",
                (p.attachment, env.kiosk, p.subject, p.media_type, p.size, p.sha256, now),
            )
            conn.execute(
                "INSERT INTO attachment_chunks VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                (p.attachment, p.index, p.count, env.kiosk, p.data),
            )
            touched[p.attachment] = env
        for attachment, env in touched.items():
            row = conn.execute(
                "SELECT status, size, sha256, kiosk FROM attachments WHERE id = ?", (attachment,)
            ).fetchone()
            if row is None or row[0] != "receiving" or row[3] != env.kiosk:
                continue  # assembled already, or another kiosk's file: its chunks are not mixed in
            parts = conn.execute(
                "SELECT data FROM attachment_chunks WHERE attachment = ? AND kiosk = ? AND count = ? ORDER BY idx",
                (attachment, env.kiosk, env.payload.count),
            ).fetchall()
            if len(parts) < env.payload.count:
                continue
            data = b"".join(bytes(part[0]) for part in parts)
            ok = len(data) == row[1] and hashlib.sha256(data).hexdigest() == row[2]
            conn.execute(
                "UPDATE attachments SET status = ?, data = ?, completed_at = ? WHERE id = ?",
                ("complete" if ok else "corrupt", data if ok else None, now, attachment),
            )
            conn.execute("DELETE FROM attachment_chunks WHERE attachment = ?", (attachment,))

    @staticmethod
    def _store_cases(conn: Connection, cases: list[CaseEnvelope], now: float) -> None:
        """Keep each case once (a kiosk resending it changes nothing); its patient is found by attribution."""
        for env in cases:
            p = env.payload
            conn.execute(
                "INSERT INTO cases (id, message_id, kiosk, subject, questionnaire_id, questionnaire_version, answers, "
                "text, attachments, vitals, created, received_at, state) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'new') "
                "ON CONFLICT (id) DO NOTHING",
                (
                    p.case,
                    env.id,
                    env.kiosk,
                    p.subject,
                    p.questionnaire.id,
                    p.questionnaire.version,
                    json.dumps([a.model_dump(mode="json") for a in p.answers]),
                    p.text,
                    json.dumps(p.attachments),
                    json.dumps(p.vitals),
                    utc_iso(p.created),
                    now,
                ),
            )

    @staticmethod
    def _update_kiosks(conn: Connection, items: list[Accepted], now: float) -> None:
        latest: dict[str, AnyEnvelope] = {}
        status: dict[str, StatusEnvelope] = {}
        for item in items:
            env = item.envelope
            if env.kiosk not in latest or env.seq > latest[env.kiosk].seq:
                latest[env.kiosk] = env
            if isinstance(env, StatusEnvelope) and (env.kiosk not in status or env.seq > status[env.kiosk].seq):
                status[env.kiosk] = env
        for kiosk, env in latest.items():
            conn.execute(
                "INSERT INTO kiosks (id, first_seen, last_seen, last_seq, clock_offset_ms) VALUES (?,?,?,?,?) "
                "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, "
                "last_seq = greatest(kiosks.last_seq, excluded.last_seq), "
                "clock_offset_ms = coalesce(excluded.clock_offset_ms, kiosks.clock_offset_ms)",
                (kiosk, now, now, env.seq, env.clock.offset_ms),
            )
        for kiosk, st in status.items():
            conn.execute(
                "UPDATE kiosks SET software_version = ?, outbox_backlog = ?, alerts = ?, last_status_at = ?, "
                "config_version = ?, config_error = ?, "
                # Every BACKLOG_WINDOW_S the backlog reported then becomes the base the next one is compared with.
                "backlog_base = CASE WHEN backlog_base_at IS NULL OR ? - backlog_base_at >= ? "
                "THEN coalesce(outbox_backlog, ?) ELSE backlog_base END, "
                "backlog_base_at = CASE WHEN backlog_base_at IS NULL OR ? - backlog_base_at >= ? "
                "THEN coalesce(last_status_at, ?) ELSE backlog_base_at END "
                "WHERE id = ? AND (last_status_at IS NULL OR last_status_at <= ?)",
                (
                    st.payload.software_version,
                    st.payload.outbox_backlog,
                    json.dumps([a.model_dump(mode="json") for a in st.payload.alerts]),
                    st.clock.time.timestamp(),
                    st.payload.config_version,
                    st.payload.config_error,
                    st.clock.time.timestamp(),
                    BACKLOG_WINDOW_S,
                    st.payload.outbox_backlog,
                    st.clock.time.timestamp(),
                    BACKLOG_WINDOW_S,
                    st.clock.time.timestamp(),
                    kiosk,
                    st.clock.time.timestamp(),
                ),
            )

    @staticmethod
    def _insert_dead(conn: Connection, dead: list[DeadLetter]) -> None:
        """Store dead letters; every value is coerced to what its column holds, so that this, the last
        resort for a bad message, cannot fail on the message too (a lone surrogate in a claimed id,
        say) and hold up the batch around it."""
        for d in dead:
            conn.execute(
                "INSERT INTO dead_letters (sha256, topic, kiosk_hint, message_id, reason, size, raw, raw_truncated, "
                "first_seen, last_seen, count) VALUES (?,?,?,?,?,?,?,?,?,?,1) "
                "ON CONFLICT (sha256) DO UPDATE SET count = dead_letters.count + 1, last_seen = excluded.last_seen",
                (
                    _text(d.sha256),
                    _text(d.topic),
                    None if d.kiosk_hint is None else _text(d.kiosk_hint),
                    None if d.message_id is None else _text(d.message_id),
                    _text(d.reason),
                    int(d.size),
                    bytes(d.raw),
                    int(bool(d.truncated)),
                    float(d.received_at),
                    float(d.received_at),
                ),
            )

    def set_presence(self, kiosk: str, online: bool, at: float, broker: str | None = None) -> None:
        """A revoked kiosk is never online: a retained "online" from before its revocation must not revive it.

        `broker`: which of several brokers said so (None: the hub has one). Online, the kiosk is on that broker
        now; offline from another broker than the kiosk's is that broker's late news (a last will published
        once its keepalive ran out, after the kiosk had failed over) and changes nothing."""
        with self._transaction() as conn:
            if (
                online
                and conn.execute(
                    "SELECT 1 FROM kiosk_identities WHERE kiosk = ? AND revoked_at IS NOT NULL", (kiosk,)
                ).fetchone()
            ):
                online = False
            if broker is not None and not online:
                row = conn.execute("SELECT broker FROM kiosks WHERE id = ?", (kiosk,)).fetchone()
                if row is not None and row[0] is not None and row[0] != broker:
                    return
            conn.execute(
                "INSERT INTO kiosks (id, first_seen, last_seen, online, presence_at, broker) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (id) DO UPDATE SET online = excluded.online, presence_at = excluded.presence_at, "
                "last_seen = CASE WHEN excluded.online = 1 THEN excluded.last_seen ELSE kiosks.last_seen END, "
                "broker = CASE WHEN excluded.online = 1 THEN excluded.broker ELSE kiosks.broker END",
                (kiosk, at, at, int(online), at, broker if online else None),
            )

    def raw_messages(self, kiosk: str) -> Iterable[tuple[int, str]]:
        return [
            (int(s), str(r))
            for s, r in self.conn.execute("SELECT seq, raw FROM messages WHERE kiosk = ? ORDER BY seq", (kiosk,))
        ]
