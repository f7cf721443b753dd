"""The PostgreSQL half of `hub backup` / `hub restore`: PostgreSQL's own pg_dump and pg_restore, driven for the hub.

Why the standard tools: a custom-format pg_dump is what a site's database administrators already know how to
read, list (`pg_restore --list`), restore selectively and verify; it is consistent while the hub serves
(one MVCC snapshot, taking only ACCESS SHARE locks, which no hub write waits on); and pg_restore rebuilds
indexes, sequences, the audit log's append-only triggers and the generated columns exactly as the server
made them, where a copy through the hub's own SQL would have to know every one of them.

The snapshot is exported by a session of ours (`pg_export_snapshot()` in a REPEATABLE READ, READ ONLY
transaction) and handed to pg_dump (`--snapshot`), so that the schema version recorded in the manifest and
the recovery point are read from the very snapshot that is dumped: `now()` in that transaction is when it
began, before its first statement took the snapshot, so everything committed before it is in the dump.

Binaries: Debian installs PostgreSQL's client programs per major version under /usr/lib/postgresql/<major>/bin
and puts only a wrapper on PATH, so they are looked up there (PATH only where that folder does not exist). The
oldest pg_dump at least as new as the server is taken: pg_dump refuses a server newer than itself, and what a
much newer pg_dump writes may use syntax that a server of the source's own version cannot restore.

The password: never in argv (`ps` shows argv to every user) and never printed. The URL handed to the tools
has it taken out; it travels in PGPASSWORD, in the child's environment only. Errors name the database by
`PostgresLocation.describe()`.

Nothing here knows about archives: hub/backup.py makes them, checks them and calls these functions.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import psycopg

from hub.db.location import PostgresLocation

DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# What the hub's own sessions call themselves (hub/db/postgres.py): a target they are connected to is in use.
HUB_APPLICATION = "telehealth-hub"
CONNECT_TIMEOUT_S = 10
# The first lines of a tool's stderr that an error quotes: enough to say why, never a screenful.
STDERR_LINES = 6
# Relations that make a database not empty: tables (plain, partitioned, foreign), views, sequences.
NOT_EMPTY_KINDS = ("r", "p", "f", "v", "m", "S")


class PgToolError(Exception):
    """A one-line reason for the operator; hub/backup.py turns it into a BackupError with what was kept."""


@dataclass(frozen=True)
class Tool:
    """One pg_dump or pg_restore binary and the major version it speaks."""

    path: Path
    major: int


@dataclass(frozen=True)
class Dumped:
    """What a dump is, for the manifest: the recovery point, read in the dump's own snapshot."""

    created: datetime
    schema_version: int
    server_version: str
    tool_version: str


@dataclass(frozen=True)
class Target:
    """The database a restore writes into, as found before anything is changed."""

    server_major: int
    relations: tuple[str, ...]  # what is in its public schema already (empty: a database ready for a restore)


# -- the binaries --------------------------------------------------------------------------------------


def _major_of(text: str) -> int | None:
    """`pg_dump (PostgreSQL) 15.20 (Debian ...)` -> 15; 9.6 style versions are too old to matter here."""
    found = re.search(r"\(PostgreSQL\)\s+(\d+)", text)
    return int(found.group(1)) if found else None


def installed(name: str) -> list[Tool]:
    """Every `name` (pg_dump, pg_restore) on this machine, oldest major first (tests/postgres.py finds the
    server's binaries the same way)."""
    tools = []
    for folder in glob.glob(DEBIAN_BIN_GLOB):
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK) and path.parent.parent.name.isdigit():
            tools.append(Tool(path, int(path.parent.parent.name)))
    if not tools and (on_path := shutil.which(name)) is not None:
        try:
            answer = subprocess.run([on_path, "--version"], capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            answer = None
        major = _major_of(answer.stdout) if answer is not None else None
        if major is not None:
            tools.append(Tool(Path(on_path), major))
    return sorted(tools, key=lambda t: t.major)


def pick(name: str, at_least: int, *, why: str) -> Tool:
    """The oldest installed `name` whose major version is at least `at_least`."""
    tools = installed(name)
    for tool in tools:
        if tool.major >= at_least:
            return tool
    have = ", ".join(f"{t.major} ({t.path})" for t in tools) or "none"
    raise PgToolError(
        f"{name} {at_least} or later is needed ({why}); installed: {have}; "
        f"install Debian's postgresql-client-{at_least} (or later)"
    )


def version_of(tool: Tool) -> str:
    """The tool's full version (`15.20`), for the manifest."""
    answer = subprocess.run([str(tool.path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    found = re.search(r"\(PostgreSQL\)\s+(\S+)", answer.stdout)
    return found.group(1) if found else str(tool.major)


# -- connections ---------------------------------------------------------------------------------------


def without_password(url: str) -> tuple[str, dict[str, str]]:
    """The URL with its password taken out, and the environment that carries it (PGPASSWORD) instead.

    Works on libpq's multi-host URLs (`postgresql://hub:pw@db1,db2/hub?...`), which urllib cannot take
    apart, and on a `password=` query parameter. A URL without a password is returned as it was.
    """
    env: dict[str, str] = {}
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, env
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        if ":" in userinfo:
            user, _, password = userinfo.partition(":")
            env["PGPASSWORD"] = unquote(password)
            netloc = f"{user}@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k != "password"]
        if len(kept) != len(pairs):
            env["PGPASSWORD"] = next(v for k, v in pairs if k == "password")
        tail = f"{path}?{urlencode(kept)}" if kept else path
    return f"{scheme}://{netloc}{tail}", env


def _connect(location: PostgresLocation, application: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            location.url, autocommit=True, application_name=application, connect_timeout=CONNECT_TIMEOUT_S
        )
    except psycopg.Error as exc:
        raise PgToolError(f"cannot connect to {location.describe()}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _one(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None  # every query here is an aggregate or a SHOW: one row
    return row[0]


def _run(tool: Tool, args: list[str], location: PostgresLocation | None, what: str) -> str:
    """Run a tool with the database (password in its environment only); its stdout, or a PgToolError."""
    env = {**os.environ, "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S)}
    command = [str(tool.path), *args]
    if location is not None:
        url, secret = without_password(location.url)
        env.update(secret)
        command += ["--no-password", f"--dbname={url}"]  # never a prompt: a timer or cron has no terminal
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()][:STDERR_LINES]
        said = " | ".join(lines) or f"exit status {done.returncode}"
        raise PgToolError(f"{what} failed ({tool.path.name} {tool.major}): {said}")
    return done.stdout


# -- backup --------------------------------------------------------------------------------------------


def dump(location: PostgresLocation, out: Path) -> Dumped:
    """A custom-format pg_dump of the hub's database into `out`, while the hub serves, as of one snapshot."""
    conn = _connect(location, "hub-backup")
    try:
        try:
            server_num = int(_one(conn, "SHOW server_version_num"))
            server_version = str(_one(conn, "SHOW server_version"))
            tool = pick("pg_dump", server_num // 10000, why=f"the server is PostgreSQL {server_version}")
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # now() is the transaction's start; the snapshot is taken by this first statement, after it.
            row = conn.execute("SELECT now(), pg_export_snapshot(), to_regclass('schema_migrations')").fetchone()
            assert row is not None
            created, snapshot, migrations = row
            if migrations is None:
                raise PgToolError(f"{location.describe()} holds no hub database (no schema_migrations table)")
            schema = int(_one(conn, "SELECT count(*) FROM schema_migrations"))
        except psycopg.Error as exc:
            raise PgToolError(f"cannot read {location.describe()}: {_first_line(exc)}") from None
        # --compress=0: the archive's gzip compresses it, once; the snapshot's session stays open until pg_dump
        # has imported it (it imports it first thing, before its own reads).
        _run(
            tool,
            ["--format=custom", "--compress=0", f"--snapshot={snapshot}", f"--file={out}"],
            location,
            f"pg_dump of {location.describe()}",
        )
        return Dumped(created.astimezone(UTC), schema, server_version, version_of(tool))
    finally:
        conn.close()


# -- restore -------------------------------------------------------------------------------------------


def inspect_target(location: PostgresLocation) -> Target:
    """Where a restore would write: refused while a hub is connected to it, and described otherwise."""
    conn = _connect(location, "hub-restore")
    try:
        server_num = int(_one(conn, "SHOW server_version_num"))
        sessions = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = %s",
            (HUB_APPLICATION,),
        ).fetchone()
        hubs = int(sessions[0]) if sessions is not None else 0
        if hubs:
            raise PgToolError(
                f"{location.describe()} is in use ({hubs} hub session{'s' if hubs > 1 else ''} connected): "
                "stop the hubs that use it first"
            )
        names = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = ANY(%s) ORDER BY c.relname",
            (list(NOT_EMPTY_KINDS),),
        ).fetchall()
    except psycopg.Error as exc:
        raise PgToolError(f"cannot read {location.describe()}: {_first_line(exc)}") from None
    finally:
        conn.close()
    return Target(server_num // 10000, tuple(str(name) for (name,) in names))


def restore_tool(dump_major: int, server_major: int) -> Tool:
    """A pg_restore that reads the dump (at least as new as the pg_dump that made it), preferably one at least
    as new as the target server too; an older one still restores into it."""
    try:
        return pick("pg_restore", max(dump_major, server_major), why="the target server's version")
    except PgToolError:
        return pick("pg_restore", dump_major, why=f"the archive was made by pg_dump {dump_major}")


def check_dump(tool: Tool, dump_file: Path) -> None:
    """pg_restore reads the dump's table of contents (no database touched): a file it cannot read is refused
    before the target is changed, whatever its checksum says."""
    listing = _run(tool, ["--list", str(dump_file)], None, "reading the dump")
    if "Format: CUSTOM" not in listing:
        raise PgToolError("the dump is not in pg_dump's custom format")


def empty_public_schema(location: PostgresLocation) -> None:
    """--force: the public schema dropped with everything in it and made again, in one transaction."""
    conn = _connect(location, "hub-restore")
    try:
        with conn.transaction():
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")
            conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")  # as a new database's public schema has it
    except psycopg.Error as exc:
        raise PgToolError(
            f"cannot empty the public schema of {location.describe()} for --force: {_first_line(exc)}"
        ) from None
    finally:
        conn.close()


def load(tool: Tool, location: PostgresLocation, dump_file: Path) -> None:
    """pg_restore in one transaction: a restore that fails leaves the database as it was before it."""
    _run(
        tool,
        ["--no-owner", "--exit-on-error", "--single-transaction", str(dump_file)],
        location,
        f"pg_restore into {location.describe()}",
    )
