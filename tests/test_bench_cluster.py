"""`hub bench cluster` on a tiny load: both instances start, a is killed mid-drain, b stores the rest once.

No timing is asserted (this machine is shared): only that the run completes, reports every figure, that the
kill fell inside the drain (rows committed on both sides of it), and that nothing was lost or doubled.
Batches of 100 readings make the drain dozens of commits long, so that the kill lands inside it; a 1 s
receipt timeout keeps the survivor's part short (the broker goes on routing the dead instance's share of
the shared subscription to its sessions, and the kiosks resend those when their receipts are overdue).
"""

from __future__ import annotations

import json

import pytest

from hub.cli import main
from tests.postgres import PostgresServer

KEYS = {
    "store", "database", "cpu_cores", "instances", "killed_instance", "kiosks", "drain_readings", "kill_after",
    "enqueued", "committed", "killed", "killed_at_committed", "killed_at_s", "committed_before_kill",
    "committed_after_kill", "readings_per_s_before_kill", "readings_per_s_after_kill", "kill_to_first_commit_s",
    "longest_gap_s", "drain_seconds", "drain_readings_per_s", "lost", "doubled", "receipt_deadlines_passed",
    "readings_sent_again", "targets", "runtime_s",
}  # fmt: skip
READINGS = 4000


def test_bench_cluster_smoke(capsys: pytest.CaptureFixture[str], postgres_server: PostgresServer) -> None:
    url = postgres_server.create("bench_cluster_smoke")  # empty: the instances apply the migrations themselves
    argv = ["bench", "cluster", "--database", url, "--kiosks", "2", "--drain-readings", str(READINGS)]
    assert main([*argv, "--batch", "100", "--receipt-timeout", "1", "--workers", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result.keys() >= KEYS
    assert result["store"] == "postgresql" and result["killed_instance"] == "a"
    assert result["lost"] == 0 and result["doubled"] == 0 and result["unexpected"] == 0
    assert result["enqueued"] == result["committed"] == READINGS
    assert result["killed"] is True
    assert 0 < result["killed_at_committed"] < READINGS
    assert result["committed_before_kill"] > 0 and result["committed_after_kill"] > 0
    assert result["committed_before_kill"] + result["committed_after_kill"] == READINGS
    assert result["targets"] == {"no_loss_no_dup": True}
    postgres_server.drop("bench_cluster_smoke")
