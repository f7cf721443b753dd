"""Bringing a hub database up to the schema this code needs, on either engine, with several hubs racing.

SQLite counts applied migrations in `PRAGMA user_version` (as every hub has since the first);
PostgreSQL in a `schema_migrations` table, by number and name, under an advisory lock, so that
instances started together apply each migration once. PostgreSQL's DDL is transactional: a
migration that fails leaves nothing half-done on either engine.

A database that is up to date is only read, never locked for writing: opening it writes
nothing, so the hub starts on a full disk when nothing changed (journal_mode=WAL on a WAL
database is a read too).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

from hub.db.engine import Connection, engine_of, immediate
from hub.db.postgres import PgConnection
from hub.db.schema import MIGRATIONS

MIGRATE_LOCK_KEY = 0x7E1E_4EA1_0002


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; a trigger's body holds semicolons, so ask SQLite where each one ends."""
    buffer = ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                yield buffer
            buffer = ""


def _user_version(conn: Connection) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def _migrate_sqlite(conn: Connection) -> int:
    if _user_version(conn) >= len(MIGRATIONS):
        return len(MIGRATIONS)
    with immediate(conn):
        version = _user_version(conn)  # again under the write lock: another worker may have migrated meanwhile
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(migration.sql("sqlite")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)


def _pg_applied(conn: PgConnection) -> int:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    return int(conn.execute("SELECT coalesce(max(number), 0) FROM schema_migrations").fetchone()[0])


def _migrate_postgres(conn: PgConnection) -> int:
    if _pg_applied(conn) >= len(MIGRATIONS):
        return len(MIGRATIONS)
    raw = conn.raw
    with raw.transaction():
        raw.execute(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK_KEY})")
        raw.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "number BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at DOUBLE PRECISION NOT NULL)"
        )
        version = _pg_applied(conn)  # again under the lock: another instance may have migrated meanwhile
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            raw.execute(migration.sql("postgresql").encode())  # no parameters: the whole script in one go
            raw.execute(
                "INSERT INTO schema_migrations (number, name, applied_at) VALUES (%s, %s, %s)",
                (number, migration.name, time.time()),
            )
    return len(MIGRATIONS)


def migrate(conn: Connection) -> int:
    """Apply what is pending; the number of migrations the database now has."""
    if engine_of(conn) == "sqlite":
        return _migrate_sqlite(conn)
    assert isinstance(conn, PgConnection)
    return _migrate_postgres(conn)


def applied(conn: Connection) -> list[tuple[int, str]]:
    """(number, name) of every migration the database has, for `hub db status` and the tests."""
    if engine_of(conn) == "sqlite":
        count = _user_version(conn)
        return [(n, MIGRATIONS[n - 1].name) for n in range(1, min(count, len(MIGRATIONS)) + 1)]
    assert isinstance(conn, PgConnection)
    if not _pg_applied(conn):
        return []
    return [(int(n), str(name)) for n, name in conn.execute("SELECT number, name FROM schema_migrations ORDER BY 1")]
