"""`hub backup` and `hub restore`: the hub's state in one archive, and a fresh hub made from it.

What is state, and what the hub rebuilds at every start (so it is left out):

- `hub.db` is state: readings, cases, case photos (attachments are BLOBs in the database, no files),
  patients, accounts, audit log, the fleet's records (kiosk identities: password hashes, certificate
  serials, revocations; remote configs; downlink messages).
- `pki/` is state: the hub's CA key and certificate. Every kiosk's certificate chains to that CA and
  the kiosks trust only it, so a hub restored with another CA could reach no kiosk until each one was
  provisioned again.
- `broker/` is rebuilt: `hub serve` writes the password, ACL, CRL and revoked files from the database,
  issues the broker's certificate from the CA, writes its configuration, compiles the plugin and makes
  its own ingest password. The broker's persistence (sessions, queued and retained messages) is not
  needed either: kiosks resend everything not receipted, ingest publishes a kiosk's remote config again
  when the kiosk comes online, and the downlink table resends what kiosks have not confirmed.

The database is copied with SQLite's online backup API while the hub serves, in steps of
PAGES_PER_STEP pages, inside one read transaction held on the source. In WAL mode a reader never
blocks writers, so ingest keeps committing throughout; the open read transaction pins the copy to one
snapshot (without it, every commit made between two steps by another connection restarts the copy,
which under steady ingest may never finish). That snapshot is the recovery point: every transaction
committed before the manifest's `created` is in the archive.

The archive (tar, gzip) holds patient data and the CA's private key: it is created owner-only (0600)
whatever the umask, and never overwrites a file. Its MANIFEST.json lists every member's size and
SHA-256; a restore checks all of them before it writes anything, extracts into a folder beside the
target (tarfile's "data" filter: no absolute paths, no `..`, no links out) and renames it into place,
so an interrupted restore leaves the target as it was.

On PostgreSQL (`--database postgresql://...` or $HUB_DATABASE) the database part is PostgreSQL's own: a
custom-format pg_dump of the hub's database, taken from one snapshot while the hub serves, archived as
`hub.pgdump` beside the same PKI folder and manifest (hub/backup_postgres.py drives the tools). A restore
checks the archive whole, then the target database: it must be reachable, unused by any hub and empty (no
relation in its public schema; --force drops and recreates that schema first), and a pg_restore must be
installed that reads the dump; then it runs pg_restore in one transaction, migrates forward, marks kiosks
offline, audits the restore, and renames the PKI folder into the data folder as on SQLite. An archive restores
into the engine that made it only: moving a hub between engines is a migration of its own, not a restore.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

import hub
from hub import audit
from hub import backup_postgres as pg
from hub.db import DatabaseError, Location, PostgresLocation, SqliteLocation, applied, connect, immediate
from hub.db.schema import MIGRATIONS
from hub.fleet.identities import FleetPaths
from hub.store import HubStore

FORMAT = "telehealth-hub-backup"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
DB = "hub.db"
PG_DUMP = "hub.pgdump"  # pg_dump --format=custom: pg_restore reads it, and so can a site's DBA by hand
PKI = "pki"
# 16 MiB a step at 4 KiB pages: each step is one call into SQLite; the snapshot, not the step, is what is consistent.
PAGES_PER_STEP = 4096
HASH_CHUNK = 1 << 20
MANIFEST_MAX_BYTES = 1 << 20
# SQLite's "dead man switch": every connection to a WAL database holds a read lock on this byte of its
# -shm file for as long as it is open (os_unix.c, UNIX_SHM_DMS), so a free byte means no process has it open.
SHM_DMS_BYTE = 128
CLI = audit.Actor("cli", None)


class BackupError(Exception):
    """Bad input or a refused archive: the message is one line for the operator, and says what was kept."""


class Member(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int
    sha256: str


class PostgresDump(BaseModel):
    """Which PostgreSQL made the dump: a restore needs a pg_restore at least as new as its pg_dump."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_version: str
    pg_dump_version: str

    @property
    def dump_major(self) -> int:
        head = self.pg_dump_version.split(".")[0]
        return int(head) if head.isdigit() else 0


class Manifest(BaseModel):
    """What the archive holds; `created` is the recovery point (the database snapshot began after it).

    `postgres` is there for a PostgreSQL archive only, and left out of a SQLite archive's manifest (written
    without None fields), so that a SQLite archive reads the same to a hub from before PostgreSQL.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["telehealth-hub-backup"]
    format_version: int
    created: datetime
    hub_version: str
    store: Literal["sqlite", "postgresql"]
    schema_version: int
    members: tuple[Member, ...]
    rebuilt_at_start: str
    postgres: PostgresDump | None = None

    @model_validator(mode="after")
    def _engine_described(self) -> Manifest:
        if (self.store == "postgresql") != (self.postgres is not None):
            raise ValueError("`postgres` describes a PostgreSQL dump, and only one")
        return self

    @property
    def database_member(self) -> str:
        return PG_DUMP if self.store == "postgresql" else DB


@dataclass(frozen=True)
class BackupResult:
    archive: Path
    manifest: Manifest
    bytes: int
    seconds: float
    audited: str | None  # None when it was; else why the audit entry could not be written

    def summary(self) -> dict[str, object]:
        return {
            "archive": str(self.archive),
            "mode": "0600",
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "store": self.manifest.store,
            "recovery_point": self.manifest.created.isoformat(),
            "schema_version": self.manifest.schema_version,
            "members": [m.model_dump() for m in self.manifest.members],
            "audit_failed": self.audited,
        }


@dataclass(frozen=True)
class RestoreResult:
    data_dir: Path
    manifest: Manifest
    replaced: Path | None  # where the folder it replaced (--force) was kept
    seconds: float
    database: str  # where the database went, without a password (Location.describe())

    def summary(self) -> dict[str, object]:
        return {
            "data_dir": str(self.data_dir),
            "store": self.manifest.store,
            "database": self.database,
            "recovery_point": self.manifest.created.isoformat(),
            "schema_version": self.manifest.schema_version,
            "hub_version": self.manifest.hub_version,
            "members": [m.path for m in self.manifest.members],
            "replaced_kept_at": str(self.replaced) if self.replaced else None,
            "seconds": round(self.seconds, 3),
        }


def default_archive(now: datetime) -> Path:
    return Path(f"hub-backup-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.tar.gz")


# -- backup ------------------------------------------------------------------------------------------


def backup(data_dir: Path, target: Path, database: Location | None = None) -> BackupResult:
    """Write one owner-only archive of the hub's state to `target` (never overwritten): its database (`database`,
    by default the SQLite file in `data_dir`) and the CA in `data_dir`."""
    started = time.monotonic()
    where = database if database is not None else SqliteLocation(data_dir / DB)
    if isinstance(where, SqliteLocation) and not where.path.is_file():
        raise BackupError(f"{where.path.parent} holds no hub database ({where.path.name}): nothing to back up")
    if isinstance(where, PostgresLocation) and not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a folder: give the hub's --data (its CA is kept there)")
    target = target.absolute()
    if target.exists():
        raise BackupError(f"{target} exists: give another name (an archive is never overwritten)")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder")
    # The copies are made beside the archive (same disk, owner-only folder), not in /tmp (often RAM).
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".hub-backup-") as work_dir:
        work = Path(work_dir)
        postgres: PostgresDump | None = None
        if isinstance(where, SqliteLocation):
            created, schema = _snapshot(where.path, work / DB)
            member = DB
        else:
            with _refused("no archive was written"):
                dumped = pg.dump(where, work / PG_DUMP)
            created, schema, member = dumped.created, dumped.schema_version, PG_DUMP
            postgres = PostgresDump(server_version=dumped.server_version, pg_dump_version=dumped.tool_version)
        files = [(member, work / member), *_copy_pki(FleetPaths(data_dir).ca_folder, work)]
        source = "the database" if postgres else DB
        manifest = Manifest(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            created=created,
            hub_version=hub.__version__,
            store=where.engine,
            schema_version=schema,
            members=tuple(_member(name, path) for name, path in files),
            rebuilt_at_start=f"broker/ (its files from {source} and the CA; kiosks resend what was not receipted)",
            postgres=postgres,
        )
        _write_archive(target, manifest, files)
    audited = _audit(where, {"archive": target.name, "recovery_point": created.isoformat()})
    return BackupResult(target, manifest, target.stat().st_size, time.monotonic() - started, audited)


@contextlib.contextmanager
def _refused(kept: str) -> Iterator[None]:
    """PostgreSQL's tools' failures as the command's one line, saying what was kept."""
    try:
        yield
    except pg.PgToolError as exc:
        raise BackupError(f"{exc}; {kept}") from None


def _audit(where: Location, detail: dict[str, str]) -> str | None:
    """The copy of everything, in the audit log: None, or why it could not be written (a full disk must not
    stop a backup; the command says it was not audited)."""
    try:
        conn = _open_existing(where.path) if isinstance(where, SqliteLocation) else connect(where)
        try:
            with immediate(conn):
                audit.record(conn, CLI, "backup", time.time(), detail=detail)
        finally:
            conn.close()
    except DatabaseError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _open_existing(db: Path) -> sqlite3.Connection:
    """A connection to a database that must exist (mode=rw never creates one)."""
    conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _snapshot(db: Path, copy: Path) -> tuple[datetime, int]:
    """Copy `db` to `copy` as of one moment; return that moment (a lower bound) and the schema version.

    The read transaction opened first fixes the snapshot every step copies from; ingest and the web
    app go on writing to the WAL meanwhile (checkpoints wait for it to end, so the WAL grows by what is
    written during the copy).
    """
    source = _open_existing(db)
    try:
        source.execute("BEGIN")
        created = datetime.now(UTC)
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read takes the snapshot
        (schema,) = source.execute("PRAGMA user_version").fetchone()
        dest = sqlite3.connect(copy, isolation_level=None)
        try:
            # Only this connection ever opens the copy: its lock is taken once, and in WAL mode (which the copy
            # takes from its source's header) exclusive mode needs no shared-memory file beside it.
            dest.execute("PRAGMA locking_mode=EXCLUSIVE")
            source.backup(dest, pages=PAGES_PER_STEP, sleep=0)
            source.execute("ROLLBACK")
            dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            (check,) = dest.execute("PRAGMA quick_check").fetchone()
        finally:
            dest.close()
    except sqlite3.Error as exc:
        raise BackupError(f"could not copy {db}: {exc}") from exc
    finally:
        source.close()
    if check != "ok":
        raise BackupError(f"the copy of {db} fails SQLite's check ({check}): the database itself may be damaged")
    return created, int(schema)


def _copy_pki(pki: Path, work: Path) -> list[tuple[str, Path]]:
    """The CA's files, copied first so each is hashed and archived from the same bytes."""
    if not pki.is_dir():
        return []  # no kiosk provisioned and no embedded broker started yet: no CA to keep
    out = []
    for path in sorted(p for p in pki.rglob("*") if p.is_file()):
        name = f"{PKI}/{path.relative_to(pki).as_posix()}"
        copy = work / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        out.append((name, copy))
    return out


def _sha256(stream: IO[bytes]) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _member(name: str, path: Path) -> Member:
    with path.open("rb") as f:
        size, sha = _sha256(f)
    return Member(path=name, size=size, sha256=sha)


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_archive(target: Path, manifest: Manifest, files: list[tuple[str, Path]]) -> None:
    """Written owner-only beside `target`, synced, then linked into place (failing if `target` appeared)."""
    fd, partial_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    partial = Path(partial_name)
    try:
        os.fchmod(fd, 0o600)  # mkstemp asks for 0600, but a umask could take the owner's bits too
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                body = manifest.model_dump_json(indent=2, exclude_none=True).encode()
                mtime = manifest.created.timestamp()
                tar.addfile(_tarinfo(MANIFEST, len(body), mtime), io.BytesIO(body))
                for name, path in files:
                    with path.open("rb") as f:
                        tar.addfile(_tarinfo(name, path.stat().st_size, mtime), f)
            raw.flush()
            os.fsync(raw.fileno())
        _publish(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _publish(partial: Path, target: Path) -> None:
    """`partial` becomes `target`, never replacing a file that appeared meanwhile: a hard link where the
    filesystem has them (atomic), else a rename after one more look (a network share without links)."""
    try:
        os.link(partial, target)
    except FileExistsError:
        raise BackupError(f"{target} appeared while the backup ran: it was left alone") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise BackupError(f"cannot write {target}: {exc.strerror}") from None
        if target.exists():
            raise BackupError(f"{target} appeared while the backup ran: it was left alone") from None
        partial.rename(target)
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- restore -----------------------------------------------------------------------------------------


def restore(archive: Path, data_dir: Path, *, force: bool = False, database: Location | None = None) -> RestoreResult:
    """Make `data_dir` (and, on PostgreSQL, `database`) the hub in `archive`: checked whole first, then swapped in
    by rename (SQLite) or restored in one transaction into an empty database (PostgreSQL)."""
    started = time.monotonic()
    data_dir = data_dir.resolve()  # a symbolic link to the data folder keeps pointing at the restored one
    where = database if database is not None else SqliteLocation(data_dir / DB)
    if isinstance(where, SqliteLocation) and where.path.resolve() != data_dir / DB:
        raise BackupError(
            f"a SQLite hub is restored as {data_dir / DB}, not {where.path}: leave --database out; nothing was restored"
        )
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    if (user := in_use(data_dir)) is not None:
        raise BackupError(f"{data_dir} is in use ({user}): stop the hub first; nothing was restored")
    if (held := _holds(data_dir)) is not None and not force:
        raise BackupError(
            f"{data_dir} already holds {held}: restore into an empty folder, or give --force to replace it "
            "(the current folder is kept beside it); nothing was restored"
        )
    manifest = verify(archive)
    _same_engine(archive, manifest, where)
    if isinstance(where, PostgresLocation):
        return _restore_postgres(archive, data_dir, where, manifest, force=force, started=started)
    replaced = _staged(archive, data_dir, manifest, lambda work: _after_restore(work / DB, archive.name, manifest))
    return RestoreResult(data_dir, manifest, replaced, time.monotonic() - started, where.describe())


def _staged(archive: Path, data_dir: Path, manifest: Manifest, finish: Callable[[Path], None]) -> Path | None:
    """The archive extracted into a folder beside `data_dir`, `finish`ed there, synced and renamed into place
    (the old folder kept beside it; `_swap`'s answer): a restore that fails before the rename leaves `data_dir`
    as it was and the half-made folder removed."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f".{data_dir.name}.restore-"))
    try:
        _extract(archive, work, manifest)
        finish(work)
        _sync_tree(work)
        return _swap(work, data_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _same_engine(archive: Path, manifest: Manifest, where: Location) -> None:
    """An archive goes back into the engine that made it: a SQLite file and a pg_dump are not interchangeable,
    and moving a hub from one engine to the other is not what a restore does."""
    if manifest.store == "sqlite" and isinstance(where, PostgresLocation):
        raise BackupError(
            f"{archive} holds a SQLite database: it restores into SQLite only, not into {where.describe()} "
            "(restore does not move a hub from SQLite to PostgreSQL; leave --database and $HUB_DATABASE out); "
            "nothing was restored"
        )
    if manifest.store == "postgresql" and isinstance(where, SqliteLocation):
        raise BackupError(
            f"{archive} holds a PostgreSQL dump: it restores into PostgreSQL only; give --database "
            "postgresql://HOST/EMPTY_DATABASE (or $HUB_DATABASE); nothing was restored"
        )


def _restore_postgres(
    archive: Path, data_dir: Path, where: PostgresLocation, manifest: Manifest, *, force: bool, started: float
) -> RestoreResult:
    """The target database checked before anything changes, the dump restored in one transaction, then the data
    folder (the CA) renamed into place as on SQLite: a restore that fails before the rename leaves the folder as it
    was, and one that fails in pg_restore leaves the database as it was (emptied, with --force)."""
    assert manifest.postgres is not None  # the manifest's validator holds a PostgreSQL archive to it
    with _refused("nothing was restored"):
        target = pg.inspect_target(where)
        if target.relations and not force:
            shown = ", ".join(target.relations[:5]) + (", ..." if len(target.relations) > 5 else "")
            raise BackupError(
                f"{where.describe()} is not empty (its public schema holds {len(target.relations)} relations: "
                f"{shown}): restore into an empty database (CREATE DATABASE ... TEMPLATE template0), or give "
                "--force to drop its public schema with everything in it first; nothing was restored"
            )
        tool = pg.restore_tool(manifest.postgres.dump_major, target.server_major)

    def load(work: Path) -> None:
        dump_file = work / PG_DUMP
        with _refused("nothing was restored"):
            pg.check_dump(tool, dump_file)
            if target.relations:
                pg.empty_public_schema(where)
        emptied = "its public schema was emptied by --force" if target.relations else "it is still empty"
        kept = f"pg_restore runs in one transaction, so {where.describe()} is as before it ({emptied}); "
        with _refused(kept + f"{data_dir} was not changed"):
            pg.load(tool, where, dump_file)
        _after_restore_postgres(where, archive.name, manifest, data_dir)
        dump_file.unlink()  # the database has it; the data folder keeps only what a PostgreSQL hub keeps there

    replaced = _staged(archive, data_dir, manifest, load)
    return RestoreResult(data_dir, manifest, replaced, time.monotonic() - started, where.describe())


def in_use(data_dir: Path) -> str | None:
    """Why `data_dir` is in use by a running hub, or None.

    `hub serve` keeps no lock file of its own; what it does hold: every process with hub.db open (the
    web app, attribution, each ingest worker, `hub ingest`) holds SQLite's read lock on the -shm file's
    dead-man-switch byte, and its embedded broker's pid file names a live mosquitto.
    """
    shm = data_dir / f"{DB}-shm"
    try:
        fd = os.open(shm, os.O_RDWR | os.O_CLOEXEC)  # never created here
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        return f"{shm} cannot be checked: {exc}"
    if fd >= 0:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_BYTE)
        except OSError:
            return f"a process has {data_dir / DB} open"
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_BYTE)
        finally:
            os.close(fd)
    return _live_broker(data_dir)


def _live_broker(data_dir: Path) -> str | None:
    pid_file = FleetPaths(data_dir.resolve()).broker_pid  # the broker's command line names the resolved path
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if str(pid_file.parent / "mosquitto.conf").encode() not in cmdline:
        return None  # a stale pid file: the number now belongs to something else
    return f"its broker runs as pid {pid}"


def _holds(data_dir: Path) -> str | None:
    """What in `data_dir` a restore would replace: None for an absent or empty folder."""
    if not data_dir.exists():
        return None
    if not data_dir.is_dir():
        return "a file of that name"
    if (data_dir / DB).exists():
        return f"a hub database ({DB})"
    if any(data_dir.iterdir()):
        return "files"
    return None


def verify(archive: Path) -> Manifest:
    """The archive's manifest, once every member has been read and matches it; nothing is written."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            manifest, seen = _read_members(tar)
            _read_to_the_end(tar)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BackupError(f"{archive} is damaged or truncated ({exc}); nothing was restored") from None
    if manifest is None:
        raise BackupError(f"{archive} has no {MANIFEST}: not a hub backup; nothing was restored")
    _check_against(manifest, seen, archive)
    return manifest


def _read_members(tar: tarfile.TarFile) -> tuple[Manifest | None, dict[str, tuple[int, str]]]:
    manifest: Manifest | None = None
    seen: dict[str, tuple[int, str]] = {}
    for info in tar:
        name = info.name
        if not info.isfile() or not _safe(name):
            raise BackupError(f"the archive holds {name!r}, which no hub backup holds; nothing was restored")
        if name in seen or (name == MANIFEST and manifest is not None):
            raise BackupError(f"the archive holds {name!r} twice; nothing was restored")
        stream = tar.extractfile(info)
        assert stream is not None  # a regular file always has one
        if name == MANIFEST:
            manifest = _parse_manifest(stream.read(MANIFEST_MAX_BYTES + 1))
        else:
            seen[name] = _sha256(stream)
    return manifest, seen


def _read_to_the_end(tar: tarfile.TarFile) -> None:
    """The gzip stream read to its end, where its length and CRC are checked: tarfile stops at the first header it
    cannot read as if the archive ended there, so damage would otherwise show only as members missing."""
    stream = tar.fileobj
    assert stream is not None
    while stream.read(HASH_CHUNK):
        pass


def _safe(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts


def _parse_manifest(body: bytes) -> Manifest:
    if len(body) > MANIFEST_MAX_BYTES:
        raise BackupError(f"the archive's {MANIFEST} is too large; nothing was restored")
    try:
        head = json.loads(body)
        _refuse_newer_format(head)
        return Manifest.model_validate(head)
    except (ValueError, ValidationError) as exc:
        reason = _first_line(exc)
        raise BackupError(f"the archive's {MANIFEST} cannot be read ({reason}); nothing was restored") from None


def _refuse_newer_format(head: object) -> None:
    """A later hub's archive is refused as such, not as a manifest this one cannot read."""
    version = head.get("format_version") if isinstance(head, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise BackupError(
            f"the archive's format {version} is newer than this hub reads ({FORMAT_VERSION}): "
            "restore it with the hub version that made it; nothing was restored"
        )


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _check_against(manifest: Manifest, seen: dict[str, tuple[int, str]], archive: Path) -> None:
    listed = {m.path: m for m in manifest.members}
    if manifest.database_member not in listed:
        raise BackupError(f"{archive} holds no {manifest.database_member}; nothing was restored")
    if missing := sorted(set(listed) - set(seen)):
        raise BackupError(f"{archive} lacks {', '.join(missing)} (listed in its manifest); nothing was restored")
    if extra := sorted(set(seen) - set(listed)):
        raise BackupError(f"{archive} holds {', '.join(extra)}, not in its manifest; nothing was restored")
    for path, member in listed.items():
        if seen[path] != (member.size, member.sha256):
            raise BackupError(
                f"{path} in {archive} does not match its manifest (size or SHA-256): the archive was altered "
                "or damaged; nothing was restored"
            )
    if manifest.schema_version > len(MIGRATIONS):
        raise BackupError(
            f"{archive} holds schema version {manifest.schema_version}, newer than this hub's ({len(MIGRATIONS)}); "
            f"migrations only go forward: restore it with hub {manifest.hub_version} or later; nothing was restored"
        )


def _extract(archive: Path, work: Path, manifest: Manifest) -> None:
    """Extract (the "data" filter refuses anything outside `work`), then check the files written, again."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(work, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BackupError(f"{archive} could not be extracted ({exc}); nothing was restored") from None
    (work / MANIFEST).unlink()
    for member in manifest.members:
        if _member(member.path, work / member.path) != member:
            raise BackupError(f"{archive} changed while it was restored; nothing was restored")
    for folder in (work, *(p for p in work.rglob("*") if p.is_dir())):
        folder.chmod(0o700)  # the CA key and patient data: owner-only, like the hub's own folders


def _after_restore(db: Path, archive_name: str, manifest: Manifest) -> None:
    """Migrated forward as `hub serve` would, and what the restored database must not believe: that kiosks are
    online (the broker that said so is not restored; each kiosk says so again when it connects). The restore
    itself goes in the audit log."""
    try:
        conn = _open_existing(db)
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
        finally:
            conn.close()
        if version != manifest.schema_version:
            raise BackupError(f"{DB} is at schema {version}, its manifest says {manifest.schema_version}")
        _mark_restored(HubStore(db), archive_name, manifest)
    except sqlite3.Error as exc:
        raise BackupError(f"the restored database cannot be opened ({exc}); nothing was restored") from exc


def _mark_restored(store: HubStore, archive_name: str, manifest: Manifest) -> None:
    """On either engine, in one transaction: every kiosk offline until it says otherwise, and the restore audited.
    The store (opened by the caller, which migrates it forward as `hub serve` would) is closed here."""
    try:
        with immediate(store.conn) as writing:
            now = time.time()
            writing.execute("UPDATE kiosks SET online = 0, presence_at = ? WHERE online = 1", (now,))
            detail = {"archive": archive_name, "recovery_point": manifest.created.isoformat()}
            audit.record(writing, CLI, "restore", now, detail=detail)
    finally:
        store.close()


def _after_restore_postgres(where: PostgresLocation, archive_name: str, manifest: Manifest, data_dir: Path) -> None:
    """As `_after_restore`, on the restored PostgreSQL database (the count of applied migrations is its schema
    version). By now the database holds the dump: a failure here says so."""
    kept = (
        f"{where.describe()} holds the dump, {data_dir} was not changed: fix the cause and restore again with --force"
    )
    try:
        conn = connect(where)
        try:
            version = len(applied(conn))
        finally:
            conn.close()
        if version != manifest.schema_version:
            raise BackupError(
                f"the restored database is at schema {version}, its manifest says {manifest.schema_version}; {kept}"
            )
        _mark_restored(HubStore(where), archive_name, manifest)
    except DatabaseError as exc:
        raise BackupError(f"the restored database cannot be opened or migrated ({_first_line(exc)}); {kept}") from exc


def _sync_tree(root: Path) -> None:
    """Every file and folder on disk before the rename makes them the hub's."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
        else:
            _fsync_dir(path)
    _fsync_dir(root)


def _swap(work: Path, data_dir: Path) -> Path | None:
    """`work` becomes `data_dir`; a folder already there is kept beside it (returned), never deleted."""
    replaced: Path | None = None
    if data_dir.is_dir() and not any(data_dir.iterdir()):
        data_dir.rmdir()
    elif data_dir.exists() or data_dir.is_symlink():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        replaced = data_dir.with_name(f".{data_dir.name}.before-restore-{stamp}")
        _rename(data_dir, replaced)
    try:
        _rename(work, data_dir)
    except BaseException:
        if replaced is not None:
            with contextlib.suppress(OSError):
                replaced.rename(data_dir)
        raise
    _fsync_dir(data_dir.parent)
    return replaced


def _rename(source: Path, target: Path) -> None:
    try:
        source.rename(target)
    except OSError as exc:
        busy = exc.errno == errno.EBUSY
        hint = " (a mount point cannot be replaced: restore into a folder inside it)" if busy else ""
        raise BackupError(f"cannot move {source} to {target}: {exc.strerror}{hint}") from None
