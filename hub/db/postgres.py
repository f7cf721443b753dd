"""PostgreSQL behind the connection interface the hub's SQL is written to (sqlite3's).

The hub's queries are plain SQL in the subset both engines read, with sqlite3's `?`
placeholders; this adapter turns them into psycopg's (`%s`, `%` doubled) once per distinct
statement. It runs in autocommit, as the hub's SQLite connections do (isolation_level=None),
so the code's own BEGIN / COMMIT / SAVEPOINT statements mean the same on both engines.

`BEGIN IMMEDIATE` (SQLite: take the one write lock now) becomes BEGIN plus a transaction-level
advisory lock that every writer of the cluster shares: the hub's write transactions were
written for one writer at a time (read, decide, write), and that stays true with several
hub instances on one server. The lock ends with the transaction, or with the connection when
an instance dies holding it, so a killed instance never blocks the others.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import adapt, pq

# One key for "a hub write transaction" (pg_advisory_xact_lock's bigint); any value no other tool uses.
WRITER_LOCK_KEY = 0x7E1E_4EA1_0001
_BEGIN_IMMEDIATE = f"BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})"
# SQLite's deferred BEGIN reads one snapshot from its first read on; REPEATABLE READ is PostgreSQL's snapshot.
_BEGIN_DEFERRED = "BEGIN ISOLATION LEVEL REPEATABLE READ"


class _BoolAsInt(adapt.Dumper):
    """Flags are 0/1 integers in the schema (SQLite has no boolean): send Python's bools as such."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


# SQLite's planner hints (`INDEXED BY`, chosen where SQLite's planner picked a worse index): PostgreSQL has its
# own statistics and no such clause, so the hint is dropped; the index it names exists on both.
_SQLITE_HINT = re.compile(r"\s+(?:INDEXED\s+BY\s+\w+|NOT\s+INDEXED)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """sqlite3's `?` placeholders to psycopg's `%s`, literal `%` doubled; quoted text left as it is.

    `?` inside a string literal or a quoted identifier is text, not a placeholder; `%` anywhere
    must be doubled, since psycopg reads the whole statement for its own placeholders.
    """
    sql = _SQLITE_HINT.sub("", sql)
    stripped = sql.strip().rstrip(";").strip().upper()
    if stripped == "BEGIN IMMEDIATE":
        return _BEGIN_IMMEDIATE
    if stripped in ("BEGIN", "BEGIN DEFERRED", "BEGIN TRANSACTION"):
        return _BEGIN_DEFERRED
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
            out.append("%%" if ch == "%" else ch)
            continue
        if ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PgCursor:
    """The part of sqlite3.Cursor the hub uses."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """One PostgreSQL session, spoken to as the hub speaks to sqlite3.Connection."""

    engine = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @classmethod
    def open(cls, url: str, *, read_only: bool = False, connect_timeout: float = 10) -> PgConnection:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, round(connect_timeout)),
            application_name="telehealth-hub",
            # Every session in UTC: the few date functions the SQL uses then read and write UTC only.
            options="-c TimeZone=UTC" + (" -c default_transaction_read_only=on" if read_only else ""),
        )
        conn.adapters.register_dumper(bool, _BoolAsInt)
        return cls(conn)

    @property
    def raw(self) -> psycopg.Connection[Any]:
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != pq.TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self._conn.closed or self._conn.broken

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> PgCursor:
        cursor = self._conn.cursor()
        query = translate(sql)
        if query is _BEGIN_IMMEDIATE:
            cursor.execute("BEGIN")
            cursor.execute(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})")
            return PgCursor(cursor)
        cursor.execute(query, tuple(parameters))
        return PgCursor(cursor)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> PgCursor:
        cursor = self._conn.cursor()
        cursor.executemany(translate(sql), parameters)
        return PgCursor(cursor)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Rows in by COPY: one stream, no statement per row (ingest's messages and readings; 5x executemany here)."""
        with self._conn.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        self._conn.close()
