"""A disk that fills up for real, for tests of what a full disk does (issue 25); shared by kiosk and hub tests.

- `small_tmpfs(path, size_bytes)`: a tmpfs of that size mounted on `path` for a `with` block, unmounted
  after. Mounting needs root or CAP_SYS_ADMIN: where it is not permitted the test is skipped, saying so;
  any other failure to mount is an error, not a skip.
- `fill(path, leave=0)`: a filler file taking all the free space of the filesystem holding `path` but
  `leave` bytes; delete it (`filler.unlink()`) to give the space back. `free_bytes(path)` says what is free.
- `sqlite_disk_full(conn, what)`: the fault-injection seam for where mounting is not allowed. Called inside
  a write transaction (e.g. as `Outbox.write_hook`), it makes SQLite itself fail with SQLITE_FULL
  ("database or disk is full"): the page limit is pinned to the pages the file has and a row larger than
  its free pages is written to a scratch table, in the caller's transaction (any schema). SQLite then rolls
  the transaction back as it does on a full disk, and the caller's error handling takes the same path.
"""

from __future__ import annotations

import errno
import itertools
import os
import sqlite3
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MIB = 1024 * 1024
NOT_PERMITTED = "mounting a tmpfs needs root/CAP_SYS_ADMIN"
_PERMISSION_WORDS = ("permission denied", "not permitted", "only root", "must be superuser")
_fillers = itertools.count()


@contextmanager
def small_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a `size_bytes` tmpfs on `path` (created if missing); skip the test if mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except FileNotFoundError:
        pytest.skip(f"{NOT_PERMITTED} and a `mount` command; there is none here")
    if result.returncode != 0:
        said = result.stderr.strip()
        if os.geteuid() != 0 or any(word in said.lower() for word in _PERMISSION_WORDS):
            pytest.skip(f"{NOT_PERMITTED} (mount said: {said})")
        raise RuntimeError(f"could not mount a tmpfs on {path}: {said}")
    try:
        yield path
    finally:
        _unmount(path)


def _unmount(path: Path) -> None:
    done = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        # Something still holds a file open there (a test that failed half-way): detach it anyway, so no
        # mount outlives the test.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)
        warnings.warn(f"tmpfs {path} was busy at unmount ({done.stderr.strip()}); detached lazily", stacklevel=3)


def free_bytes(path: Path) -> int:
    """Free space on the filesystem holding `path`, as an unprivileged process may use it."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int = 0) -> Path:
    """Write a filler file in the folder `path` until only `leave` bytes are free (0: until the disk says
    ENOSPC). Returns the filler; unlink it to give the space back."""
    filler = path / f"filler-{os.getpid()}-{next(_fillers)}"
    chunk = bytes(MIB)
    with filler.open("wb", buffering=0) as out:
        try:
            while (room := free_bytes(path) - leave if leave else len(chunk)) > 0:
                out.write(chunk[: min(len(chunk), room)])
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        os.fsync(out.fileno())
    return filler


def sqlite_disk_full(conn: sqlite3.Connection, _what: str = "") -> None:
    """Make SQLite raise its own SQLITE_FULL in the transaction open on `conn` (see the module docstring)."""
    (limit,) = conn.execute("PRAGMA max_page_count").fetchone()
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (free_pages,) = conn.execute("PRAGMA freelist_count").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.execute(f"PRAGMA max_page_count={int(pages)}")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS main._disk_full_seam (x)")  # rolled back with the transaction
        conn.execute("INSERT INTO main._disk_full_seam VALUES (zeroblob(?))", ((int(free_pages) + 2) * int(page_size),))
    finally:
        conn.execute(f"PRAGMA max_page_count={int(limit)}")
    raise AssertionError("SQLite wrote past max_page_count: the seam did not make the disk full")
