"""`hub bench ingest` end to end on a tiny load: every phase runs, nothing is lost, the JSON is complete."""

from __future__ import annotations

import json

import pytest

from hub.cli import main
from hub.db import PostgresLocation, connect
from tests.postgres import PostgresServer

KEYS = {
    "bare_msgs_per_s",
    "bare_readings_per_s",
    "ingest_msgs_per_s",
    "ingest_readings_per_s",
    "ratio",
    "p50_latency_ms",
    "p99_latency_ms",
    "drain_readings_per_s",
    "lost",
    "duplicates",
}


def test_bench_ingest_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "ingest", "--messages", "3000", "--kiosks", "2", "--drain-readings", "1000"]
    assert main([*argv, "--latency-seconds", "1", "--load-fraction", "0.05", "--rounds", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result.keys() >= KEYS
    assert result["lost"] == 0 and result["duplicates"] == 0 and result["bare_lost"] == 0
    assert result["full_path"]["audit"]["committed"] == 3000, "each round's rows are its own"
    # Two rounds of (a) then (b); the figures reported are the median round's, of two the lower one.
    assert len(result["round_ratios"]) == 2
    assert result["ratio"] == pytest.approx(min(result["round_ratios"]), abs=0.005)
    assert result["drain"]["audit"]["committed"] == 1000
    assert result["bare_msgs_per_s"] > 0 and result["ingest_msgs_per_s"] > 0 and result["drain_readings_per_s"] > 0
    assert result["p99_latency_ms"] >= result["p50_latency_ms"] > 0
    # The two parts of the commit latency each lie within it (a sum of p99s need not equal the p99 of a sum).
    assert 0 < result["p99_to_hub_latency_ms"] <= result["latency"]["max_ms"]
    assert 0 <= result["p99_in_hub_latency_ms"] <= result["latency"]["max_ms"]


def test_bench_ingest_on_postgresql(capsys: pytest.CaptureFixture[str], postgres_server: PostgresServer) -> None:
    """The same phases with ingest writing to PostgreSQL: every message committed once, the store named."""
    url = postgres_server.fresh_database()
    argv = ["bench", "ingest", "--messages", "2000", "--kiosks", "2", "--drain-readings", "1000", "--database", url]
    assert main([*argv, "--latency-seconds", "1", "--load-fraction", "0.05", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result.keys() >= KEYS and result["store"] == "postgresql"
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert result["full_path"]["audit"]["committed"] == 2000
    assert result["drain"]["audit"]["committed"] == 1000
    conn = connect(PostgresLocation(url), read_only=True)
    try:
        (stored,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        conn.close()
    assert stored >= 3000  # (b), (c) and (d) all wrote to the server, not to a file
