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

from hub.db.engine import Connection, engine_of

# The jobs that run once per cluster (hub.service's job thread).
CLUSTER_JOBS = ("attribution", "triage-sweep", "retention")


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
