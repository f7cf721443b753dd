"""The hub's data layer: where the data lives (location), how it is opened (engine), its schema and migrations.

SQL itself lives with the concern it serves (hub/store.py for ingest, hub/accounts, hub/cases, ...);
this package is what all of them share, on SQLite and on PostgreSQL alike.
"""

from hub.db.engine import (
    Connection,
    Cursor,
    DatabaseError,
    Engine,
    IntegrityError,
    OperationalError,
    connect,
    describe_error,
    engine_of,
    immediate,
    insert_rows,
    is_broken,
    rows_as_dicts,
)
from hub.db.location import Location, LocationError, PostgresLocation, SqliteLocation, parse
from hub.db.migrate import applied, migrate

__all__ = [
    "Connection",
    "Cursor",
    "DatabaseError",
    "Engine",
    "IntegrityError",
    "Location",
    "LocationError",
    "OperationalError",
    "PostgresLocation",
    "SqliteLocation",
    "applied",
    "connect",
    "describe_error",
    "engine_of",
    "immediate",
    "insert_rows",
    "is_broken",
    "migrate",
    "parse",
    "rows_as_dicts",
]
