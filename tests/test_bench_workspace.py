"""`hub bench workspace --quick --json`: it loads what was asked, where it belongs, reports every figure, cleans up.

No timing is asserted (this machine is shared): only that each figure is there, that the data
the pages were measured on is the data asked for, every reading under a patient of its
kiosk's clinic, and that the server process is gone afterwards.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hub import bench_workspace
from hub.cli import main

PATIENTS, READINGS, QUEUED, REQUESTS = 50, 20_000, 50, 10
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


def _bench(db: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    argv = ["bench", "workspace", "--quick", "--json", "--db", str(db), "--requests", str(REQUESTS), "--warmup", "1"]
    code = main([*argv, *extra])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def _one(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def test_quick_run_loads_what_was_asked_and_reports_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "hub.db"
    code, result = _bench(db, capsys)
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

    conn = sqlite3.connect(db)
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
    counts = result["counts"]
    assert counts["readings"] == READINGS and counts["patients"] == PATIENTS and counts["cross_clinic"] == 0

    # A second run with the same sizes reuses the database; other sizes are refused, not mixed in.
    code, again = _bench(db, capsys)
    assert code == 0 and again["reused_db"] is True
    assert again["counts"]["readings"] == READINGS
    code, _ = _bench(db, capsys, "--readings", "30000")
    assert code == 1


def test_fidelity_check_catches_a_row_commit_batch_would_not_write(tmp_path: Path) -> None:
    """The loader is trusted because this check compares it with commit_batch; the check must be able to fail."""
    config = bench_workspace.Config(
        patients=3, readings=200, requests=1, warmup=0, queued=2, audit_rows=0, seed=1, db=None, tmpfs=False
    )
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
