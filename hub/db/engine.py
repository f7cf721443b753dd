"""Opening the hub's database, on either engine, and the few things that differ between them.

The hub's SQL is written once, in the subset SQLite and PostgreSQL both read: `?` placeholders,
`INSERT ... ON CONFLICT`, `RETURNING`, `coalesce`, `greatest`/`least` (PostgreSQL's, given to
SQLite here as functions with PostgreSQL's meaning: NULLs ignored). Where the engines truly
differ (dates, JSON), `engine_of(conn)` picks the form; those places are few and named.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg

from hub.db.location import Location, PostgresLocation, SqliteLocation, parse
from hub.db.postgres import PgConnection

Engine = Literal["sqlite", "postgresql"]

# What an `except` names to catch the database's errors, on either engine.
DatabaseError = (sqlite3.Error, psycopg.Error)
IntegrityError = (sqlite3.IntegrityError, psycopg.errors.IntegrityError)
# The database's own trouble (locked, full, I/O, connection lost, shut down, serialization): never the content's.
OperationalError = (sqlite3.OperationalError, psycopg.OperationalError)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    @property
    def description(self) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the hub's code asks of a connection: sqlite3.Connection has it, and so has PgConnection."""

    @property
    def in_transaction(self) -> bool: ...
    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...
    def close(self) -> None: ...


def engine_of(conn: Connection) -> Engine:
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgresql"


def _greatest(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _least(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def connect_sqlite(path: Path, *, read_only: bool = False, timeout: float = 30) -> sqlite3.Connection:
    """WAL, synchronous=FULL (a receipt tells the kiosk to delete its copy: the commit must survive a power cut)."""
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=timeout)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        if not read_only:
            conn.execute("PRAGMA journal_mode=WAL")  # on a database already in WAL mode: a read, nothing written
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        conn.create_function("greatest", -1, _greatest, deterministic=True)
        conn.create_function("least", -1, _least, deterministic=True)
    except BaseException:
        conn.close()  # e.g. a disk too full for SQLite's shared-memory index: the caller may try again
        raise
    return conn


def connect(where: str | Path | Location, *, read_only: bool = False, timeout: float = 30) -> Connection:
    """A connection in autocommit: transactions are the caller's own BEGIN (see `immediate`)."""
    location = parse(where)
    if isinstance(location, SqliteLocation):
        return connect_sqlite(location.path, read_only=read_only, timeout=timeout)
    assert isinstance(location, PostgresLocation)
    return PgConnection.open(location.url, read_only=read_only, connect_timeout=timeout)


def is_broken(conn: Connection) -> bool:
    """A PostgreSQL session the server or the network ended: open a new one (a SQLite file never is)."""
    return isinstance(conn, PgConnection) and conn.broken


@contextmanager
def immediate(conn: Connection) -> Iterator[Connection]:
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
        if conn.in_transaction and not is_broken(conn):
            try:
                conn.execute("ROLLBACK")
            except DatabaseError as rollback_failed:
                exc.add_note(f"the rollback after it failed too: {rollback_failed}")
        raise


def insert_rows(conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Many new rows at once: executemany on SQLite (in-process, already the fast way), COPY on PostgreSQL, where a
    statement per row costs a round trip's worth of protocol each. A row that breaks a constraint fails the whole
    call on both engines (the caller's transaction decides what then)."""
    if not rows:
        return
    if isinstance(conn, PgConnection):
        conn.copy_rows(table, columns, rows)
        return
    marks = ",".join("?" * len(columns))
    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def describe_error(exc: BaseException) -> str:
    """An error's words, fit for a log, a dead letter or a kiosk's receipt: never a value it was given.

    SQLite's and Python's conversions name the problem, not the value. PostgreSQL quotes the offending value
    ('value "..." is out of range', a COPY line's CONTEXT), so of its errors only the primary message is kept,
    with whatever it quotes left out.
    """
    if isinstance(exc, psycopg.Error):
        primary = exc.diag.message_primary or type(exc).__name__
        return " ".join(re.sub(r'"[^"]*"', '"…"', primary).split())
    return " ".join(str(exc).split()) or type(exc).__name__


def rows_as_dicts(cursor: Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
