"""Cluster jobs run on one hub instance at a time, and move to another when the holder's session dies."""

from __future__ import annotations

from hub.db import PostgresLocation, connect
from hub.db.lease import CLUSTER_JOBS, Leases, held_here, job_key
from tests.postgres import PostgresServer


def _backend_pid(leases: Leases) -> int:
    return int(leases.conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def test_one_instance_holds_each_job_and_another_takes_it_when_the_holder_dies(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.fresh_database()
    first, second = Leases(connect(PostgresLocation(url))), Leases(connect(PostgresLocation(url)))
    try:
        assert first.take() == set(CLUSTER_JOBS)
        assert second.take() == set()  # asked again and again: never two holders
        assert second.take() == set()
        # The holder's process dies (what a SIGKILL of `hub serve` leaves the server with: a session that ends).
        # pg_terminate_backend only signals the session unless given a time to wait for its end: the test once
        # asked for the jobs between the signal and the session's exit, and rightly got none.
        with postgres_server.admin() as admin:
            [ended] = admin.execute("SELECT pg_terminate_backend(%s, 10000)", (_backend_pid(first),)).fetchone() or (
                None,
            )
        assert ended is True, "the holder's session did not end"
        first.lost()
        assert second.take() == set(CLUSTER_JOBS)
        assert held_here() == set(CLUSTER_JOBS)
        # A clean stop hands the jobs over at once.
        third = Leases(connect(PostgresLocation(url)))
        assert third.take() == set()
        second.release_all()
        assert third.take() == set(CLUSTER_JOBS)
        third.release_all()
        third.conn.close()
    finally:
        second.conn.close()
        second.lost()


def test_job_keys_are_distinct_and_stable() -> None:
    keys = {job_key(job) for job in CLUSTER_JOBS}
    assert len(keys) == len(CLUSTER_JOBS)
    assert all(0 <= k < 2**63 for k in keys)
    assert job_key("attribution") == job_key("attribution")
