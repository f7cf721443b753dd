"""`hub bench workspace --quick --json`: it loads what was asked, where it belongs, reports every figure, cleans up.

No timing is asserted (this machine is shared): only that each figure is there, that the data
the pages were measured on is the data asked for, every reading under a patient of its
kiosk's clinic, and that the server process is gone afterwards. Once on a SQLite file and
once on an empty PostgreSQL database (`--database`), with the same sizes and the same checks.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub import bench_workspace
from hub.cli import main
from hub.db import Connection, PostgresLocation, connect
from tests.postgres import PostgresServer

# Smaller than --quick's own sizes: a smoke test of the command, not a measurement (that is `make bench`).
PATIENTS, READINGS, QUEUED, REQUESTS, AUDIT_ROWS = 20, 5_000, 20, 10, 1_000
KINDS = [k.key for k in bench_workspace.KINDS]
STATS = {"count", "p50_ms", "p95_ms", "max_ms", "mean_ms"}
TOP = {
    "patients", "readings", "queued_readings", "audit_rows_preloaded", "requests_per_kind", "db", "db_location",
    "db_bytes", "reused_db", "load_seconds", "load_readings_per_s", "attribution_seconds",
    "attribution_readings_per_s", "attribution_decided", "fidelity_messages_checked", "counts", "deep_page",
    "target_p95_ms", "patient_list_p95_ms", "patient_page_p95_ms", "healthz_p95_ms", "http", "db_work",
    "audit_write_share_of_patient_page_p50", "server_cpu_ms_per_request", "client_cpu_ms_per_request", "targets",
    "server_pid", "runtime_s",
}  # fmt: skip


def _bench(where: list[str], capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    """`where`: `--db PATH` or `--database URL`."""
    sizes = ["--patients", str(PATIENTS), "--readings", str(READINGS), "--queued", str(QUEUED)]
    argv = ["bench", "workspace", "--quick", "--json", *where, *sizes, "--audit-rows", str(AUDIT_ROWS)]
    argv += ["--requests", str(REQUESTS), "--warmup", "1"]
    code = main([*argv, *extra])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def _one(conn: Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def _check_run(where: list[str], conn: Callable[[], Connection], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """One quick run, its report and the database it leaves, then a reuse and a refused other size; the report."""
    code, result = _bench(where, capsys)
    assert code == 0
    assert result.keys() >= TOP
    http, work = result["http"], result["db_work"]
    for kind in KINDS:
        assert http[kind].keys() >= {*STATS, "bytes_p50", "p95_vs_floor", "target_met"}
        assert http[kind]["count"] == REQUESTS
        assert http[kind]["p95_ms"] >= http[kind]["p50_ms"] > 0
    for kind in [*KINDS[1:], "trends_audit_check", "session_check", "audit_write"]:
        assert work[kind].keys() >= STATS and work[kind]["count"] == REQUESTS
    assert {"patient_list", "patient_page"} <= result["targets"].keys()
    assert result["reused_db"] is False and result["fidelity_messages_checked"] >= 100
    assert result["attribution_decided"] == READINGS

    # The server process is gone (reaped, not a zombie).
    with pytest.raises(ProcessLookupError):
        os.kill(result["server_pid"], 0)

    _check_contents(conn)
    counts = result["counts"]
    assert counts["readings"] == READINGS and counts["patients"] == PATIENTS and counts["cross_clinic"] == 0

    # A second run with the same sizes reuses the database; other sizes are refused, not mixed in.
    code, again = _bench(where, capsys)
    assert code == 0 and again["reused_db"] is True
    assert again["counts"]["readings"] == READINGS
    code, _ = _bench(where, capsys, "--readings", "30000")
    assert code == 1
    return result


def _check_contents(connect_to: Callable[[], Connection]) -> None:
    """What the pages were measured on is what was asked for, every reading where it belongs."""
    conn = connect_to()
    try:
        assert _one(conn, "SELECT count(*) FROM observations") == READINGS
        assert _one(conn, "SELECT count(*) FROM patients WHERE clinic_id = 'bench-clinic'") == PATIENTS
        assert _one(conn, "SELECT count(*) FROM observations WHERE attribution IS NULL") == 0
        assert _one(conn, "SELECT count(*) FROM observations WHERE attribution = 'attributed'") == READINGS - QUEUED
        # Every attributed reading is under a patient of its kiosk's clinic; the queued ones wait in that clinic.
        assert (
            _one(
                conn,
                "SELECT count(*) FROM observations o JOIN kiosks k ON k.id = o.kiosk "
                "JOIN patients p ON p.id = o.patient_id "
                "WHERE o.attribution = 'attributed' AND o.clinic_id = k.clinic_id AND p.clinic_id = k.clinic_id "
                "AND p.code = o.subject",
            )
            == READINGS - QUEUED
        )
        assert (
            _one(
                conn,
                "SELECT count(*) FROM observations o JOIN kiosks k ON k.id = o.kiosk "
                "WHERE o.attribution = 'queued' AND o.patient_id IS NULL AND o.clinic_id = k.clinic_id "
                "AND k.clinic_id = 'bench-clinic'",
            )
            == QUEUED
        )
        # The second clinic has readings of its own, under the same check-in codes as patients of the first.
        assert _one(conn, "SELECT count(*) FROM observations WHERE clinic_id = 'bench-other-clinic'") > 0
        assert (
            _one(
                conn,
                "SELECT count(*) FROM patients a JOIN patients b ON a.code = b.code "
                "WHERE a.clinic_id = 'bench-clinic' AND b.clinic_id = 'bench-other-clinic'",
            )
            > 0
        )
        # The attribution pass kept the patients' counters, which the list shows.
        assert _one(conn, "SELECT sum(reading_count) FROM patients") == READINGS - QUEUED
    finally:
        conn.close()


def test_quick_run_loads_what_was_asked_and_reports_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "hub.db"
    result = _check_run(["--db", str(db)], lambda: sqlite3.connect(db), capsys)
    assert result["store"] == "sqlite" and result["db"] == str(db)
    assert result["analyze_seconds"] is None and result["vacuum_seconds"] is None


def test_quick_run_on_postgresql(postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]) -> None:
    """`--database URL` of an empty database: the same load, checks, reuse and refusal as on SQLite."""
    url = postgres_server.create("bench_workspace_quick")  # empty: no schema, as an operator would create it
    try:
        result = _check_run(["--database", url], lambda: connect(url), capsys)
        assert result["store"] == "postgresql" and result["db"] == PostgresLocation(url).describe()
        assert result["db_location"].startswith("PostgreSQL ") and result["db_bytes"] > 0
        assert result["analyze_seconds"] >= 0 and result["vacuum_seconds"] >= 0
        conn = connect(url)
        try:  # the fidelity check's scratch schema is gone
            assert (
                _one(conn, f"SELECT count(*) FROM pg_namespace WHERE nspname = '{bench_workspace.FIDELITY_SCHEMA}'")
                == 0
            )
        finally:
            conn.close()
    finally:
        postgres_server.drop("bench_workspace_quick")


def test_database_must_be_a_postgresql_url_and_not_beside_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["bench", "workspace", "--quick"]
    assert main([*base, "--database", str(tmp_path / "hub.db")]) == 2
    assert "postgresql://" in capsys.readouterr().err
    url = "postgresql://hub@127.0.0.1:1/x"
    assert main([*base, "--database", url, "--db", str(tmp_path / "hub.db")]) == 2
    assert main([*base, "--database", url, "--tmpfs"]) == 2
    assert "--database" in capsys.readouterr().err


CONFIG = bench_workspace.Config(
    patients=3, readings=200, requests=1, warmup=0, queued=2, audit_rows=0, seed=1, db=None, tmpfs=False
)


def test_fidelity_check_catches_a_row_commit_batch_would_not_write(tmp_path: Path) -> None:
    """The loader is trusted because this check compares it with commit_batch; the check must be able to fail."""
    config = CONFIG
    db = tmp_path / "hub.db"
    bench_workspace.load(config, db, "a password long enough", tmp_path)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY id")]
        assert bench_workspace.check_fidelity(conn, ids, tmp_path) == len(ids)
        conn.execute("UPDATE observations SET device = '{}' WHERE message_id = ? AND idx = 0", (ids[3],))
        with pytest.raises(bench_workspace.BenchError, match="observations differ"):
            bench_workspace.check_fidelity(conn, ids, tmp_path)
    finally:
        conn.close()


def test_fidelity_check_catches_a_copied_row_commit_batch_would_not_write(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The same on PostgreSQL, where the loader COPYs and commit_batch writes into a scratch schema."""
    location = PostgresLocation(postgres_server.fresh_database())
    bench_workspace.load(CONFIG, location, "a password long enough", tmp_path)
    conn = connect(location)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY id")]
        assert bench_workspace.check_fidelity(conn, ids, location) == len(ids)
        conn.execute("UPDATE observations SET device = '{}' WHERE message_id = ? AND idx = 0", (ids[3],))
        with pytest.raises(bench_workspace.BenchError, match="observations differ"):
            bench_workspace.check_fidelity(conn, ids, location)
    finally:
        conn.close()
        postgres_server.drop(location.url.rsplit("/", 1)[1])
