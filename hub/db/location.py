"""Where the hub keeps its data: a SQLite file (the embedded default) or a PostgreSQL server.

`hub serve --database` and `database:` in hub.yaml take either a path or a `postgresql://` URL;
everything that opens the database is given one of these, never a bare path, so that no
module has to know which engine it is talking to until it connects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")


class LocationError(ValueError):
    """A database location the hub cannot use, said in words an operator can act on."""


@dataclass(frozen=True)
class SqliteLocation:
    path: Path

    engine = "sqlite"

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class PostgresLocation:
    url: str

    engine = "postgresql"

    def describe(self) -> str:
        """The URL without its password: what logs, errors and `/readyz` may show."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


Location = SqliteLocation | PostgresLocation


def sqlite_path(location: Location) -> Path:
    """The SQLite file, for what only a file has (its size, its folder, the online backup API)."""
    if not isinstance(location, SqliteLocation):
        raise TypeError(f"{location.describe()} is not a SQLite file")
    return location.path


def parse(value: str | Path | Location) -> Location:
    """A path is a SQLite file; `postgresql://user@host:port/name` (or libpq's `postgres://`) a server."""
    if isinstance(value, SqliteLocation | PostgresLocation):
        return value
    if isinstance(value, Path):
        return SqliteLocation(value)
    text = value.strip()
    if not text:
        raise LocationError("the database location is empty: give a file path or a postgresql:// URL")
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() in POSTGRES_SCHEMES:
        parts = urlsplit(text)
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise LocationError(f"{PostgresLocation(text).describe()}: name the database (postgresql://host/NAME)")
        return PostgresLocation(text)
    if sep:
        raise LocationError(
            f"{scheme}:// is not a database the hub can use: give a SQLite file path or a postgresql:// URL"
        )
    return SqliteLocation(Path(text))


DATABASE_ENV = "HUB_DATABASE"


def for_data(data: Path, database: str | Path | None = None) -> Location:
    """What a command opens: `--database`, else $HUB_DATABASE, else the SQLite file in the data folder.

    The environment is how an operator gives every `hub` command a PostgreSQL URL, password and all,
    without writing it into argv (which `ps` shows) or into each command line.
    """
    chosen = database if database not in (None, "") else os.environ.get(DATABASE_ENV) or None
    if chosen is None:
        return SqliteLocation(data / "hub.db")
    return parse(chosen)


def add_argument(parser: Any) -> None:
    """`--database` beside a command's `--data`, with the same meaning everywhere."""
    parser.add_argument(
        "--database",
        default=None,
        metavar="PATH_OR_URL",
        help=f"the hub's database: a SQLite file or a postgresql:// URL (default: ${DATABASE_ENV}, else DATA/hub.db)",
    )
