"""The hub's SQLite database: schema, migrations, the batched ingest commit, and queries.

Opened through sqlite-utils (schema introspection, queries, row dicts). The ingest hot
path uses the same connection's ``executemany`` inside one ``BEGIN IMMEDIATE``
transaction per batch: sqlite-utils' ``insert_all`` measured ~48k rows/s here against
~120k for ``executemany``, and each envelope writes two to three rows.

``synchronous=FULL``: a receipt tells the kiosk to delete its copy, so the commit it
follows must survive a power cut, not only a process crash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from device.protocol.envelope import (
    AnyEnvelope,
    AttachmentEnvelope,
    CaseEnvelope,
    ObservationsEnvelope,
    StatusEnvelope,
    utc_iso,
)

MIGRATIONS: list[str] = [
    # 1: the spine
    """
    CREATE TABLE kiosks (
        id TEXT PRIMARY KEY,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        online INTEGER,
        presence_at REAL,
        software_version TEXT,
        outbox_backlog INTEGER,
        alerts TEXT NOT NULL DEFAULT '[]',
        last_status_at REAL,
        clock_offset_ms REAL
    );
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        kiosk TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        device_time TEXT NOT NULL,
        clock_offset_ms REAL,
        received_at REAL NOT NULL,
        committed_at REAL NOT NULL,
        raw TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX messages_kiosk_seq ON messages (kiosk, seq);
    CREATE TABLE observations (
        message_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        kiosk TEXT NOT NULL,
        seq INTEGER NOT NULL,
        code TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL,
        effective TEXT NOT NULL,
        clock_offset_ms REAL,
        device_id TEXT NOT NULL,
        device TEXT NOT NULL,
        flags TEXT NOT NULL,
        PRIMARY KEY (message_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX observations_kiosk_code_time ON observations (kiosk, code, effective);
    CREATE INDEX observations_kiosk_time ON observations (kiosk, effective);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        kiosk_hint TEXT,
        message_id TEXT,
        reason TEXT NOT NULL,
        size INTEGER NOT NULL,
        raw BLOB NOT NULL,
        raw_truncated INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        count INTEGER NOT NULL
    );
    """,
    # 2: Bluetooth readings carry their patient, device user slot, record number and device-clock offset
    """
    ALTER TABLE observations ADD COLUMN subject TEXT;
    ALTER TABLE observations ADD COLUMN device_user INTEGER;
    ALTER TABLE observations ADD COLUMN device_sequence INTEGER;
    ALTER TABLE observations ADD COLUMN device_clock_offset_s REAL;
    CREATE INDEX observations_subject_time ON observations (subject, effective);
    """,
    # 3: derived values (camera vitals) carry how they were computed and how sure the estimator was
    """
    ALTER TABLE observations ADD COLUMN method TEXT;
    ALTER TABLE observations ADD COLUMN quality REAL;
    """,
    # 4: files (case photos), sent in chunks and assembled here once all have arrived
    """
    CREATE TABLE attachment_chunks (
        attachment TEXT NOT NULL,
        idx INTEGER NOT NULL,
        count INTEGER NOT NULL,
        kiosk TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (attachment, idx)
    ) WITHOUT ROWID;
    CREATE TABLE attachments (
        id TEXT PRIMARY KEY,
        kiosk TEXT NOT NULL,
        subject TEXT,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        data BLOB,
        first_chunk_at REAL NOT NULL,
        completed_at REAL
    );
    CREATE INDEX attachments_kiosk ON attachments (kiosk, first_chunk_at);
    """,
    # 5: the provider workspace: clinics, people, sessions, API tokens, patients, attribution, audit
    """
    CREATE TABLE clinics (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    ALTER TABLE kiosks ADD COLUMN clinic_id TEXT REFERENCES clinics (id);
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('provider', 'clinic_admin')),
        password_hash TEXT NOT NULL,
        totp_secret TEXT,
        totp_last_step INTEGER,
        disabled_at REAL,
        created_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id),
        stage TEXT NOT NULL CHECK (stage IN ('mfa', 'active')),
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen REAL NOT NULL,
        ended_at REAL,
        end_reason TEXT,
        ip TEXT,
        user_agent TEXT
    ) WITHOUT ROWID;
    CREATE INDEX sessions_user ON sessions (user_id, ended_at);
    CREATE TABLE login_failures (
        key TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures (key, at);
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        clinic_id TEXT REFERENCES clinics (id),
        scopes TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        last_used_at REAL,
        revoked_at REAL
    );
    CREATE TABLE patients (
        id TEXT PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        code TEXT NOT NULL,
        name TEXT NOT NULL,
        birth_date TEXT,
        created_at REAL NOT NULL,
        reading_count INTEGER NOT NULL DEFAULT 0,
        last_reading_at TEXT,
        UNIQUE (clinic_id, code)
    );
    CREATE INDEX patients_clinic_name ON patients (clinic_id, name);
    CREATE TABLE device_user_slots (
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        device_id TEXT NOT NULL,
        device_user INTEGER NOT NULL,
        patient_id TEXT NOT NULL REFERENCES patients (id),
        device TEXT NOT NULL,
        created_by INTEGER REFERENCES users (id),
        created_at REAL NOT NULL,
        PRIMARY KEY (clinic_id, device_id, device_user)
    ) WITHOUT ROWID;
    ALTER TABLE observations ADD COLUMN attribution TEXT;
    ALTER TABLE observations ADD COLUMN clinic_id TEXT;
    ALTER TABLE observations ADD COLUMN patient_id TEXT;
    ALTER TABLE observations ADD COLUMN attribution_how TEXT;
    ALTER TABLE observations ADD COLUMN attribution_note TEXT;
    ALTER TABLE observations ADD COLUMN attributed_by INTEGER;
    ALTER TABLE observations ADD COLUMN attributed_at REAL;
    -- Attribution replaces looking readings up by check-in code; one index fewer for ingest to keep.
    DROP INDEX observations_subject_time;
    CREATE INDEX observations_undecided ON observations (kiosk) WHERE attribution IS NULL;
    CREATE INDEX observations_patient ON observations (patient_id, clinic_id, effective)
        WHERE attribution = 'attributed';
    CREATE INDEX observations_queue ON observations (clinic_id, effective) WHERE attribution = 'queued';
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        clinic_id TEXT,
        actor_user INTEGER,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        patient_id TEXT,
        target TEXT,
        ip TEXT,
        detail TEXT
    );
    CREATE INDEX audit_clinic_at ON audit (clinic_id, at);
    CREATE INDEX audit_patient_at ON audit (patient_id, at);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 6: triage: alert rules per clinic and patient, the alerts they raise, and what staff did about them
    """
    CREATE TABLE triage_configs (
        clinic_id TEXT PRIMARY KEY REFERENCES clinics (id),
        config TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE patient_triage_overrides (
        patient_id TEXT PRIMARY KEY REFERENCES patients (id),
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        rules TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        patient_id TEXT NOT NULL REFERENCES patients (id),
        rule_id TEXT NOT NULL,
        title TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
        state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
        condition_active INTEGER NOT NULL,
        trigger_count INTEGER NOT NULL,
        triggered_at TEXT NOT NULL,
        last_value REAL,
        last_unit TEXT,
        first_opened_at REAL NOT NULL,
        opened_at REAL NOT NULL,
        reopened INTEGER NOT NULL DEFAULT 0,
        acknowledged_by INTEGER REFERENCES users (id),
        acknowledged_at REAL,
        assigned_to INTEGER REFERENCES users (id),
        resolved_by INTEGER REFERENCES users (id),
        resolved_at REAL,
        escalated_at REAL,
        UNIQUE (patient_id, rule_id)
    );
    CREATE INDEX alerts_queue ON alerts (clinic_id, state, opened_at);
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts (id),
        at REAL NOT NULL,
        event TEXT NOT NULL,
        user_id INTEGER REFERENCES users (id),
        note TEXT
    );
    CREATE INDEX alert_events_alert ON alert_events (alert_id, at);
    """,
    # 7: asynchronous cases: what the patient sent, and the provider's handling and answer
    """
    CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL,
        kiosk TEXT NOT NULL,
        subject TEXT NOT NULL,
        clinic_id TEXT REFERENCES clinics (id),
        patient_id TEXT REFERENCES patients (id),
        questionnaire_id TEXT NOT NULL,
        questionnaire_version INTEGER NOT NULL,
        answers TEXT NOT NULL,
        text TEXT NOT NULL,
        attachments TEXT NOT NULL,
        vitals TEXT NOT NULL,
        created TEXT NOT NULL,
        received_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('new', 'in_review', 'answered', 'closed')),
        reviewer INTEGER REFERENCES users (id),
        review_started_at REAL,
        answer TEXT,
        answered_by INTEGER REFERENCES users (id),
        answered_at REAL,
        delivered_at REAL,
        closed_by INTEGER REFERENCES users (id),
        closed_at REAL
    );
    CREATE INDEX cases_queue ON cases (clinic_id, state, received_at);
    CREATE INDEX cases_unmatched ON cases (kiosk) WHERE patient_id IS NULL;
    """,
    # 8: messages the hub must get to a kiosk exactly once (case answers), kept until the kiosk has them
    """
    CREATE TABLE downlink (
        id TEXT PRIMARY KEY,
        kiosk TEXT NOT NULL,
        kind TEXT NOT NULL,
        case_id TEXT REFERENCES cases (id),
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_sent_at REAL,
        delivered_at REAL
    ) WITHOUT ROWID;
    CREATE INDEX downlink_pending ON downlink (kiosk) WHERE delivered_at IS NULL;
    """,
    # 9: remote-monitoring time a provider logs by hand (calls, care coordination) beside what the audit log shows
    """
    CREATE TABLE rpm_time (
        id INTEGER PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        patient_id TEXT NOT NULL REFERENCES patients (id),
        user_id INTEGER NOT NULL REFERENCES users (id),
        at REAL NOT NULL,
        minutes REAL NOT NULL CHECK (minutes > 0 AND minutes <= 240),
        activity TEXT NOT NULL
    );
    CREATE INDEX rpm_time_patient ON rpm_time (patient_id, at);
    """,
    # 10: a clinic's own intake questionnaires (immutable versions; built-in ones ship as YAML files)
    """
    CREATE TABLE questionnaires (
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        definition TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (clinic_id, id, version)
    ) WITHOUT ROWID;
    """,
    # 11: kiosk setup (roster with optional PIN hashes, questionnaire) pushed to each kiosk of a clinic
    """
    ALTER TABLE patients ADD COLUMN kiosk_pin_hash TEXT;
    ALTER TABLE clinics ADD COLUMN kiosk_pin_required INTEGER NOT NULL DEFAULT 0;
    -- What was last enqueued for each kiosk: a refresh with the same content (version aside) sends nothing.
    CREATE TABLE kiosk_setups (
        kiosk TEXT PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        digest TEXT NOT NULL,
        version INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        enqueued_at REAL NOT NULL
    ) WITHOUT ROWID;
    -- A newer setup replaces an undelivered older one: the older is superseded (never sent again), not "delivered".
    ALTER TABLE downlink ADD COLUMN superseded_by TEXT;
    DROP INDEX downlink_pending;
    CREATE INDEX downlink_pending ON downlink (kiosk) WHERE delivered_at IS NULL AND superseded_by IS NULL;
    """,
    # 12: live video consults (the record; media never passes through the hub) and the kiosks' own credentials
    """
    CREATE TABLE consults (
        id TEXT PRIMARY KEY,  -- the UUID the kiosk chose: a repeated request is the same consult
        clinic_id TEXT NOT NULL REFERENCES clinics (id),
        kiosk TEXT NOT NULL,
        subject TEXT NOT NULL,  -- the check-in code
        patient_id TEXT REFERENCES patients (id),  -- NULL: no patient of the clinic has that code (yet)
        language TEXT NOT NULL,
        vitals TEXT NOT NULL,  -- JSON: the readings the kiosk sent with the request
        state TEXT NOT NULL CHECK (state IN ('waiting', 'live', 'ended')),
        requested_at REAL NOT NULL,
        joined_at REAL,
        provider_user_id INTEGER REFERENCES users (id),
        ended_at REAL,
        reason TEXT CHECK (reason IN ('finished', 'cancelled', 'peer_gone', 'failed', 'declined')),
        ended_by TEXT CHECK (ended_by IN ('kiosk', 'provider', 'hub')),
        CHECK ((state = 'ended') = (ended_at IS NOT NULL)),
        CHECK ((state = 'waiting') = (joined_at IS NULL) OR state = 'ended')
    );
    CREATE INDEX consults_waiting ON consults (clinic_id, requested_at) WHERE state = 'waiting';
    CREATE INDEX consults_handled ON consults (clinic_id, ended_at) WHERE joined_at IS NOT NULL;
    CREATE INDEX consults_patient ON consults (patient_id, joined_at);
    CREATE INDEX consults_open ON consults (kiosk) WHERE state != 'ended';
    CREATE TABLE kiosk_credentials (
        kiosk TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,  -- the secret itself is printed once and never stored
        created_at REAL NOT NULL,
        revoked_at REAL
    ) WITHOUT ROWID;
    """,
    # 13: provisioned kiosk identities (hub.fleet.identities) and the CA's revocation list.
    """
    CREATE TABLE kiosk_identities (
        kiosk TEXT PRIMARY KEY,
        cert_serial TEXT NOT NULL,  -- hex: serials are up to 159 bits, SQLite integers 64
        cert_not_after REAL NOT NULL,
        mqtt_password_hash TEXT NOT NULL,  -- the $7$ PBKDF2 form Mosquitto's password file holds
        created_at REAL NOT NULL,
        revoked_at REAL
    ) WITHOUT ROWID;
    CREATE TABLE revoked_certs (
        serial TEXT PRIMARY KEY,
        kiosk TEXT NOT NULL,
        revoked_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 14: remote configuration (hub.fleet.remote_config): what each kiosk should run, and what it reports.
    """
    CREATE TABLE kiosk_configs (
        kiosk TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,  -- the RemoteConfig JSON, published retained on kiosk/{id}/down/config
        created_at REAL NOT NULL,
        published_version INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    ALTER TABLE kiosks ADD COLUMN config_version INTEGER;
    ALTER TABLE kiosks ADD COLUMN config_error TEXT;
    -- The backlog some minutes back (hub.web.routes.fleet.backlog_growing compares it with now).
    ALTER TABLE kiosks ADD COLUMN backlog_base INTEGER;
    ALTER TABLE kiosks ADD COLUMN backlog_base_at REAL;
    """,
    # 15: NEWS2 looks up a patient's reading of one vital nearest a time. Through observations_patient it
    # walked every reading of the hour on either side, of all vitals, five times per new reading: an
    # oximeter sending every second made that quadratic. Partial like it: ingest never writes to it.
    """
    CREATE INDEX observations_patient_code ON observations (patient_id, clinic_id, code, effective)
        WHERE attribution = 'attributed';
    """,
    # 16: every certificate issued to each kiosk. A renewal leaves the previous one valid until it ends, so
    # revoking or replacing a kiosk must put all of them on the revocation list, not only the newest.
    """
    CREATE TABLE kiosk_certs (
        serial TEXT PRIMARY KEY,  -- hex, as kiosk_identities.cert_serial
        kiosk TEXT NOT NULL,
        not_after REAL NOT NULL,
        issued_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX kiosk_certs_kiosk ON kiosk_certs (kiosk);
    INSERT INTO kiosk_certs (serial, kiosk, not_after, issued_at)
        SELECT cert_serial, kiosk, cert_not_after, created_at FROM kiosk_identities;
    """,
    # 17: when a reading was measured, on the hub's clock: the kiosk's stamp plus the kiosk's clock offset, in
    # whole UTC milliseconds. Everything that orders or compares readings by time (FHIR date search and its
    # order, triage's "in range now") needs the time the resource and the pages show, not the kiosk's raw
    # clock, which may be hours off. Generated, so no writer can forget it and the old rows have it at once;
    # SQLite keeps milliseconds of a time, and utc_iso writes milliseconds, so the two agree exactly.
    """
    ALTER TABLE observations ADD COLUMN measured_ms INTEGER GENERATED ALWAYS AS (
        CAST(round((julianday(effective) - 2440587.5) * 86400000.0 + coalesce(clock_offset_ms, 0)) AS INTEGER)
    ) VIRTUAL;
    CREATE INDEX observations_clinic_measured ON observations (clinic_id, measured_ms)
        WHERE attribution = 'attributed';
    CREATE INDEX observations_patient_measured ON observations (patient_id, clinic_id, measured_ms)
        WHERE attribution = 'attributed';
    DROP INDEX observations_patient_code;
    CREATE INDEX observations_patient_code ON observations (patient_id, clinic_id, code, measured_ms)
        WHERE attribution = 'attributed';
    -- The measurement time of the newest reading back in range: a late reading measured before it
    -- (an old value that arrives after a newer one) must not turn the condition back on.
    ALTER TABLE alerts ADD COLUMN in_range_at TEXT;
    -- A patient's last reading, on the same corrected clock that every new one is now tallied in.
    UPDATE patients SET last_reading_at = (
        SELECT strftime('%Y-%m-%dT%H:%M:%fZ', max(o.measured_ms) / 1000.0, 'unixepoch') FROM observations o
        WHERE o.patient_id = patients.id AND o.clinic_id = patients.clinic_id AND o.attribution = 'attributed'
    ) WHERE last_reading_at IS NOT NULL;
    """,
    # 18: what was committed since a moment (the metrics' ingest counters at each scrape, retention's purge by
    # age) without reading the whole table: 0.1 s per 500,000 messages on every scrape before, under 1 ms now.
    """
    CREATE INDEX messages_committed ON messages (committed_at);
    """,
]


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


def connect(path: str | Path) -> sqlite_utils.Database:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # on a database already in WAL mode: a read, nothing written
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
    except BaseException:
        conn.close()  # e.g. a disk too full for SQLite's shared-memory index: the caller may try again
        raise
    return sqlite_utils.Database(conn)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (BEGIN IMMEDIATE: no upgrade deadlock between writers).

    On an error the error itself is what the caller gets. SQLite may have ended the transaction
    already (it rolls back by itself on SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM, in a statement or
    in the COMMIT), and a ROLLBACK then fails with "cannot rollback - no transaction is active", which
    used to replace "database or disk is full". So only a transaction still open is rolled back, and
    a rollback that fails too is noted on the original error, never raised in its place.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as rollback_failed:
                exc.add_note(f"the rollback after it failed too: {rollback_failed}")
        raise


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; a trigger's body holds semicolons, so ask SQLite where each one ends."""
    buffer = ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                yield buffer
            buffer = ""


def _user_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(db: sqlite_utils.Database) -> int:
    """Apply pending migrations (recorded in PRAGMA user_version); several workers may race here.

    A database that is up to date is only read, never locked for writing: opening it writes
    nothing, so the hub starts on a full disk when nothing changed (journal_mode=WAL on a WAL
    database is a read too).
    """
    if _user_version(db.conn) >= len(MIGRATIONS):
        return len(MIGRATIONS)
    with immediate(db.conn) as conn:
        version = _user_version(conn)  # again under the write lock: another worker may have migrated meanwhile
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)


class StoreReader:
    """The read queries, over any connection to the hub database (request threads each have their own)."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def kiosks(self, clinic_id: str | None = None) -> list[dict[str, Any]]:
        """All kiosks, or one clinic's."""
        if clinic_id is None:
            return list(self.db.query("SELECT * FROM kiosks ORDER BY id"))
        return list(self.db.query("SELECT * FROM kiosks WHERE clinic_id = ? ORDER BY id", [clinic_id]))

    def kiosk(self, kiosk_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM kiosks WHERE id = ?", [kiosk_id]))
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
        where = ["kiosk = :kiosk"]
        params: dict[str, Any] = {"kiosk": kiosk, "limit": limit}
        if code:
            where.append("code = :code")
            params["code"] = code
        if since:
            where.append("effective >= :since")
            params["since"] = since
        if until:
            where.append("effective < :until")
            params["until"] = until
        sql = (
            "SELECT message_id, idx, seq, code, value, unit, effective, clock_offset_ms, device_id, device, flags, "
            "subject, device_user, device_sequence, device_clock_offset_s, method, quality "
            f"FROM observations WHERE {' AND '.join(where)} ORDER BY seq, idx LIMIT :limit"
        )
        return list(self.db.query(sql, params))

    def attachments(self, kiosk: str) -> list[dict[str, Any]]:
        """A kiosk's files, newest first, without their bytes."""
        return list(
            self.db.query(
                "SELECT id, kiosk, subject, media_type, size, sha256, status, first_chunk_at, completed_at "
                "FROM attachments WHERE kiosk = ? ORDER BY first_chunk_at DESC",
                [kiosk],
            )
        )

    def attachment(self, attachment_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM attachments WHERE id = ?", [attachment_id]))
        return rows[0] if rows else None

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT id, topic, kiosk_hint, message_id, reason, size, raw_truncated, first_seen, last_seen, count, "
                "raw FROM dead_letters ORDER BY last_seen DESC LIMIT ?",
                [limit],
            )
        )

    def counts(self) -> dict[str, int]:
        return {
            t: self.db.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("kiosks", "messages", "observations", "dead_letters")
        }

    def ping(self) -> None:
        self.db.conn.execute("SELECT 1 FROM messages LIMIT 1").fetchall()


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

    The exception's own words (SQLite's and Python's conversions name the problem, not the value),
    bounded to fit a receipt's rejection.
    """
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return _text(f"could not be stored: {detail}")[:500]


def _text(value: object) -> str:
    """`value` as text SQLite and a receipt can hold: a lone surrogate (JSON allows one as \\ud800) escaped."""
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text


class IngestTurn:
    """Ingest workers take turns at the database through a lock file before they ask SQLite.

    Two workers' commits contend for SQLite's one write lock. SQLite's busy handler
    polls for it with growing sleeps (up to 100 ms each), so the waiting worker often
    slept on well after the other had committed; a blocking flock is handed over by the
    kernel the moment the holder lets go. Other writers (the web app's audit rows,
    attribution) still meet ingest only at SQLite's own lock.
    """

    def __init__(self, db_path: Path) -> None:
        self._fd = os.open(f"{db_path}-ingest.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextmanager
    def held(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class HubStore(StoreReader):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(connect(self.path))
        try:
            migrate(self.db)
            self._turn = IngestTurn(self.path)
        except BaseException:
            self.db.conn.close()
            raise

    def close(self) -> None:
        self.db.conn.close()
        self._turn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._turn.held(), immediate(self.db.conn) as conn:
            yield conn

    # -- ingest --------------------------------------------------------------------------

    def commit_batch(
        self, accepted: list[Accepted], dead: list[DeadLetter], *, now: float | None = None
    ) -> CommitResult:
        """Store a batch in one transaction; envelopes already stored are reported as duplicates.

        An envelope the database cannot hold (an integer past SQLite's 64 bits, a time that
        cannot be turned to UTC: whatever the contract lets through and storage does not)
        would fail every retry of its batch, and hold up every kiosk whose messages share
        it. So a failure that is not the database's own (`sqlite3.OperationalError`: locked,
        full, I/O; raised for the caller to retry) is taken to be the batch's content: the
        envelopes at fault are found, dead-lettered and reported in `poisoned`, and the rest
        is stored. The common path pays nothing for it.

        `now` is the hub's time of the commit (tests with a moved clock give theirs).
        """
        try:
            return self._commit(accepted, dead, now)
        except sqlite3.OperationalError:
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
                except sqlite3.OperationalError:
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
        self, conn: sqlite3.Connection, accepted: list[Accepted], rows: dict[str, _Rows], committed_at: float
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
    def _stored_raw(conn: sqlite3.Connection, ids: list[str]) -> dict[str, bytes]:
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
    def _insert_messages(conn: sqlite3.Connection, rows: list[_Rows], committed_at: float) -> None:
        conn.executemany(
            "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?)",
            [(*head, committed_at, raw) for head, raw, _ in rows],
        )
        conn.executemany(
            "INSERT INTO observations (message_id, idx, kiosk, seq, code, value, unit, effective, clock_offset_ms, "
            "device_id, device, flags, subject, device_user, device_sequence, device_clock_offset_s, method, quality) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [obs for _, _, observations in rows for obs in observations],
        )

    @staticmethod
    def _store_chunks(conn: sqlite3.Connection, chunks: list[AttachmentEnvelope], now: float) -> None:
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
    def _store_cases(conn: sqlite3.Connection, cases: list[CaseEnvelope], now: float) -> None:
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
    def _update_kiosks(conn: sqlite3.Connection, items: list[Accepted], now: float) -> None:
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
                "last_seq = max(last_seq, excluded.last_seq), "
                "clock_offset_ms = coalesce(excluded.clock_offset_ms, clock_offset_ms)",
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
    def _insert_dead(conn: sqlite3.Connection, dead: list[DeadLetter]) -> None:
        """Store dead letters; every value is coerced to what its column holds, so that this, the last
        resort for a bad message, cannot fail on the message too (a lone surrogate in a claimed id,
        say) and hold up the batch around it."""
        for d in dead:
            conn.execute(
                "INSERT INTO dead_letters (sha256, topic, kiosk_hint, message_id, reason, size, raw, raw_truncated, "
                "first_seen, last_seen, count) VALUES (?,?,?,?,?,?,?,?,?,?,1) "
                "ON CONFLICT (sha256) DO UPDATE SET count = count + 1, last_seen = excluded.last_seen",
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

    def set_presence(self, kiosk: str, online: bool, at: float) -> None:
        """A revoked kiosk is never online: a retained "online" from before its revocation must not revive it."""
        with self._transaction() as conn:
            if (
                online
                and conn.execute(
                    "SELECT 1 FROM kiosk_identities WHERE kiosk = ? AND revoked_at IS NOT NULL", (kiosk,)
                ).fetchone()
            ):
                online = False
            conn.execute(
                "INSERT INTO kiosks (id, first_seen, last_seen, online, presence_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (id) DO UPDATE SET online = excluded.online, presence_at = excluded.presence_at, "
                "last_seen = CASE WHEN excluded.online THEN excluded.last_seen ELSE last_seen END",
                (kiosk, at, at, int(online), at),
            )

    def raw_messages(self, kiosk: str) -> Iterable[tuple[int, str]]:
        return [
            (int(s), str(r))
            for s, r in self.db.conn.execute("SELECT seq, raw FROM messages WHERE kiosk = ? ORDER BY seq", (kiosk,))
        ]
