"""Which hub instance runs each periodic job: one at a time across the cluster, moving on when it dies.

On PostgreSQL a job is held through a session-level advisory lock on the job's own key, taken with
`pg_try_advisory_lock` by the instance's job connection. The server releases it when that session
ends: a clean stop, a SIGKILL, a lost network (once the server notices the dead socket). The next
instance to ask takes it at its next turn. No lease table, no clock: nothing to expire or to
clean up, and no two holders however the instances' clocks disagree.

On SQLite there is one hub instance (the file is local to it), which holds every job.
"""

from __future__ import annotations

import hashlib
import json

from hub.db.engine import Connection, engine_of

# The jobs that run once per cluster (hub.service's job thread).
CLUSTER_JOBS = ("attribution", "triage-sweep", "retention", "broker-sessions")


def job_key(job: str) -> int:
    """A stable 63-bit key per job name, apart from the writer and migration keys (hub/db/postgres.py)."""
    return int.from_bytes(hashlib.sha256(f"telehealth-hub job {job}".encode()).digest()[:8], "big") >> 1


_LIVE: list[Leases] = []  # this process's, for what /metrics says it holds


def held_here() -> set[str]:
    """The cluster jobs this process holds now."""
    return {job for leases in list(_LIVE) for job in leases.held}


class Leases:
    """The jobs this instance holds, over one connection that lives as long as the holding does."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.held: set[str] = set()
        _LIVE.append(self)

    def take(self) -> set[str]:
        """Ask for every cluster job this instance does not hold yet; the ones it holds."""
        for job in CLUSTER_JOBS:
            self.holds(job)
        return set(self.held)

    def holds(self, job: str) -> bool:
        """Whether this instance runs `job` now; takes it when no other instance does."""
        if engine_of(self.conn) == "sqlite":
            self.held.add(job)
            return True
        if job not in self.held:
            (taken,) = self.conn.execute("SELECT pg_try_advisory_lock(?)", (job_key(job),)).fetchone()
            if taken:
                self.held.add(job)
        return job in self.held

    def lost(self) -> None:
        """The connection is gone, and with it (on PostgreSQL) every lock it held."""
        self.held.clear()
        if self in _LIVE:
            _LIVE.remove(self)

    def release_all(self) -> None:
        """Let the others take over at once (a clean stop), rather than when the session ends."""
        try:
            if engine_of(self.conn) != "sqlite":
                for job in sorted(self.held):
                    self.conn.execute("SELECT pg_advisory_unlock(?)", (job_key(job),))
        finally:
            self.lost()


class InstanceNameTaken(RuntimeError):
    """Another running instance has this name: two would take each other's broker sessions."""


def _instance_key(name: str) -> int:
    return job_key(f"instance {name}")


def register_instance(conn: Connection, name: str, client_ids: list[tuple[str, str]], now: float) -> None:
    """Say this instance runs, as long as `conn` lives: its name's lock, and its ingest sessions (broker, client id).

    PostgreSQL only (a SQLite hub is one instance)."""
    (taken,) = conn.execute("SELECT pg_try_advisory_lock(?)", (_instance_key(name),)).fetchone()
    if not taken:
        raise InstanceNameTaken(f"another running hub instance is named {name!r}: give each a name of its own")
    conn.execute(
        "INSERT INTO hub_instances (name, client_ids, started_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET client_ids = excluded.client_ids, started_at = excluded.started_at",
        (name, json.dumps(client_ids), now),
    )


def dead_instances(conn: Connection, me: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Registered instances that are not running (their name's lock is free): (name, their ingest sessions)."""
    dead = []
    for name, client_ids in conn.execute("SELECT name, client_ids FROM hub_instances WHERE name != ?", (me,)):
        key = _instance_key(str(name))
        (free,) = conn.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()
        if free:
            conn.execute("SELECT pg_advisory_unlock(?)", (key,))
            dead.append((str(name), [(str(b), str(c)) for b, c in json.loads(client_ids)]))
    return dead


def forget_instance(conn: Connection, name: str) -> None:
    """Its sessions are ended; a restart registers it again."""
    conn.execute("DELETE FROM hub_instances WHERE name = ?", (name,))
