"""Triage: NEWS2 bands and rules by hand-worked examples, then alerts raised through the real attribution pass."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from device.protocol.envelope import utc_iso
from device.yaml_config import ConfigError, load_model
from hub import attribution
from hub.db import immediate
from hub.triage import alerts, news2
from hub.triage.config import DEFAULT, Rule, TriageConfig
from hub.triage.rules import judge
from hub.web.templating import utc_label
from tests.workspace.world import NOW, World, day, obs, session_csrf

OXIMETER = {"id": "ox-1", "type": "ble", "model": "3230"}


@pytest.mark.parametrize(
    ("scorer", "cases"),
    [
        (news2.respiration_score, [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)]),
        (news2.spo2_score, [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]),
        (news2.systolic_score, [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)]),
        (news2.pulse_score, [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2),
                             (131, 3)]),
        (news2.temperature_score, [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1),
                                   (39.1, 2)]),
    ],
)  # fmt: skip
def test_news2_band_edges_from_the_rcp_chart(scorer: Callable[[float], int], cases: list[tuple[float, int]]) -> None:
    assert [(v, scorer(v)) for v, _ in cases] == cases


def vitals(rr: float, spo2: float, sbp: float, hr: float, temp: float) -> dict[str, float]:
    return {news2.RESPIRATION: rr, news2.SPO2: spo2, news2.SYSTOLIC: sbp, news2.PULSE: hr, news2.TEMPERATURE: temp}


def test_news2_totals_and_risk_worked_by_hand() -> None:
    calm = news2.score(vitals(16, 97, 125, 72, 36.8))
    assert calm is not None and (calm.total, calm.risk) == (0, "low")
    # 22/min (2) + 93 % (2) + 105 mmHg (1) + 105 /min (1) + 38.3 °C (1) = 7: high.
    sick = news2.score(vitals(22, 93, 105, 105, 38.3))
    assert sick is not None and (sick.total, sick.risk) == (7, "high")
    # 26/min alone scores 3: total 3 but low-medium because of the single 3.
    one = news2.score(vitals(26, 97, 125, 72, 36.8))
    assert one is not None and (one.total, one.risk, one.any_single_three) == (3, "low-medium", True)
    # 21/min (2) + 94 % (1) + 95 /min (1) + 38.5 (1) = 5: medium.
    medium = news2.score(vitals(21, 94, 125, 95, 38.5))
    assert medium is not None and (medium.total, medium.risk) == (5, "medium")
    assert news2.score({news2.SPO2: 97}) is None  # not a full set: no score


def test_rules_by_hand() -> None:
    spo2, sbp, hr = (
        next(r for r in DEFAULT.rules if r.id == i) for i in ("spo2-low", "systolic-high", "heart-rate-band")
    )
    assert judge(spo2, "59408-5", 89, "%").triggered is True  # type: ignore[union-attr]
    assert judge(spo2, "59408-5", 90, "%").triggered is False  # type: ignore[union-attr]  # "below 90" is strict
    assert judge(spo2, "8867-4", 50, "/min") is None  # not this rule's vital
    assert judge(sbp, "8480-6", 25, "kPa").triggered is True  # type: ignore[union-attr]  # 25 kPa = 187.5 mmHg
    assert judge(hr, "8867-4", 39, "/min").triggered is True  # type: ignore[union-attr]
    assert judge(hr, "8867-4", 130, "/min").triggered is False  # type: ignore[union-attr]
    assert judge(spo2.model_copy(update={"enabled": False}), "59408-5", 80, "%") is None


def test_a_rules_file_is_validated_with_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text("rules:\n  - id: spo2-low\n    title: SpO2 under 92\n    severity: high\n    code: 59408-5\n"
                    "    unit: '%'\n    below: 92\nnews2:\n  window_minutes: 30\n")  # fmt: skip
    config = load_model(good, TriageConfig)
    assert config.rules[0].below == 92 and config.news2.window_minutes == 30
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: a\n    title: t\n    severity: high\n    code: 59408-5\n    unit: mm[Hg]\n"
                   "    below: 92\n    above: 99\n  - id: b\n    title: t\n    severity: urgent\n"
                   "    no_reading_days: 3\n")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_model(bad, TriageConfig)
    text = str(caught.value)
    assert f"{bad}:2:" in text and "exactly one of below, above" in text
    assert f"{bad}:11:" in text and "severity" in text


def alert_rows(world: World, patient_code: str) -> dict[str, tuple[str, int, int, int]]:
    pid = world.north.patients[patient_code]
    rows = world.store.conn.execute(
        "SELECT rule_id, state, trigger_count, reopened, condition_active FROM alerts WHERE patient_id = ?", (pid,)
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def test_an_alert_storm_is_one_alert_per_patient_and_condition(world: World) -> None:
    before = world.store.conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
    for code in ("N100", "N101"):
        for batch in range(5):  # 5,000 low SpO2 readings per patient, 1,000 per envelope
            t0 = NOW - timedelta(hours=10) + timedelta(minutes=batch * 100)
            world.send(
                world.north.kiosk,
                [obs("59408-5", 85, "%", t0 + timedelta(seconds=i), device=OXIMETER) for i in range(1000)],
                subject=code,
            )
    conn = world.store.conn
    assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] - before == 2
    for code in ("N100", "N101"):
        assert alert_rows(world, code)["spo2-low"] == ("open", 5000, 0, 1)


def test_resolved_alerts_reopen_when_the_condition_returns_and_calm_when_it_goes(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    world.send(world.north.kiosk, [obs("59408-5", 86, "%", day(1), device=OXIMETER)], subject="N100")
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 1, 0, 1)
    world.send(world.north.kiosk, [obs("59408-5", 97, "%", day(1) + timedelta(hours=1), device=OXIMETER)],
               subject="N100")  # fmt: skip
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 1, 0, 0)  # back in range, still for a person
    provider = client_as(world.north.provider)
    (alert_id,) = [a["id"] for a in alerts.queue(world.store.conn, "north-clinic") if a["rule_id"] == "spo2-low"]
    csrf = session_csrf(provider)
    assert provider.post(f"/triage/{alert_id}/acknowledge", data={"csrf_token": csrf}).status_code == 303
    assert (
        provider.post(f"/triage/{alert_id}/note", data={"csrf_token": csrf, "text": "Called, fine."}).status_code == 303
    )
    assert provider.post(f"/triage/{alert_id}/resolve", data={"csrf_token": csrf}).status_code == 303
    assert alert_rows(world, "N100")["spo2-low"][0] == "resolved"
    # A reading older than the resolution does not undo it; a new low one re-opens the same alert.
    world.send(world.north.kiosk, [obs("59408-5", 85, "%", day(2), device=OXIMETER)], subject="N100")
    assert alert_rows(world, "N100")["spo2-low"][:2] == ("resolved", 2)
    world.send(world.north.kiosk, [obs("59408-5", 84, "%", day(0), device=OXIMETER)], subject="N100")
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 3, 1, 1)
    page = provider.get(f"/triage/{alert_id}").text
    for event in ("opened", "acknowledged", "note", "Called, fine.", "resolved", "reopened"):
        assert event in page
    actions = {r[0] for r in world.store.conn.execute("SELECT action FROM audit WHERE target = ?",
                                                          (f"alert:{alert_id}",))}  # fmt: skip
    assert {"acknowledge_alert", "note_alert", "resolve_alert", "view_alert"} <= actions


def send_spo2(world: World, value: float, when: datetime, *, kiosk: str | None = None,
              subject: str | None = "N100", offset_ms: float = 250.0) -> str:  # fmt: skip
    """One oximeter reading, stamped `when` by a kiosk whose clock is `offset_ms` behind the hub's."""
    return world.send(kiosk or world.north.kiosk, [obs("59408-5", value, "%", when, device=OXIMETER)], subject=subject,
                      offset_ms=offset_ms)  # fmt: skip


def north_kiosk(world: World, kiosk_id: str) -> str:
    """Another kiosk of North's, put in the clinic as an operator does."""
    with immediate(world.store.conn):
        attribution.assign_kiosk(world.store.conn, kiosk_id, "north-clinic", world.clock())
    return kiosk_id


def spo2_alert(world: World) -> dict[str, Any]:
    conn = world.store.conn
    (alert,) = [a for a in alerts.queue(conn, "north-clinic") if a["rule_id"] == "spo2-low"]
    return alert


def test_back_in_range_is_decided_by_measurement_time_not_by_arrival(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    """A late 86 % measured before the 97 % that brought SpO2 back in range leaves it back in range (issue 20.7)."""
    t1 = day(1) + timedelta(hours=2)
    t2, t3, t4 = t1 + timedelta(hours=1), t1 + timedelta(hours=2), t1 + timedelta(hours=3)
    send_spo2(world, 86, t1)
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 1, 0, 1)
    send_spo2(world, 97, t3)
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 1, 0, 0)
    send_spo2(world, 86, t2)  # measured before the 97 %, arrives after it
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 2, 0, 0)  # counted, still back in range
    provider = client_as(world.north.provider)
    alert_id = spo2_alert(world)["id"]
    assert "2 readings met this condition, back in range now" in provider.get("/triage").text
    measured = utc_label(utc_iso(t2 + timedelta(milliseconds=250)))  # the kiosk's stamp plus its clock offset
    assert f"the latest measured {measured}: 86 %; back in range now." in provider.get(f"/triage/{alert_id}").text
    # The mirror: an 86 % measured after the 97 % is out of range again, whenever it arrives.
    send_spo2(world, 86, t4)
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 3, 0, 1)
    measured = utc_label(utc_iso(t4 + timedelta(milliseconds=250)))
    assert f"the latest measured {measured}: 86 %; still out of range." in provider.get(f"/triage/{alert_id}").text


def test_a_resolved_alert_is_not_reopened_by_a_reading_measured_before_the_one_back_in_range(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    t1 = day(1) + timedelta(hours=2)
    t2, t3, t4 = t1 + timedelta(hours=1), t1 + timedelta(hours=2), t1 + timedelta(hours=3)
    send_spo2(world, 86, t1)
    provider = client_as(world.north.provider)
    alert_id = spo2_alert(world)["id"]
    assert provider.post(f"/triage/{alert_id}/resolve", data={"csrf_token": session_csrf(provider)}).status_code == 303
    send_spo2(world, 97, t3)  # back in range after the person resolved it
    send_spo2(world, 86, t2)  # measured before that, arrives after: counted, the decision stands
    assert alert_rows(world, "N100")["spo2-low"][:3] == ("resolved", 2, 0)
    send_spo2(world, 86, t4)  # measured after the 97 %: the condition is back, the same alert re-opens
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 3, 1, 1)


def test_readings_are_ordered_by_the_hub_clock_not_the_kiosk_stamp(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    """A kiosk whose clock is 3 h behind: its stamps are 3 h early, its offset puts them right."""
    conn = world.store.conn
    behind = north_kiosk(world, "kiosk-north-behind")
    three_hours = 3 * 3600 * 1000.0
    t = day(1) + timedelta(hours=2)
    send_spo2(world, 86, t)
    send_spo2(world, 97, t + timedelta(hours=1))
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 1, 0, 0)
    # Stamped t - 1 h by the slow clock, before both readings above; measured t + 2 h, after them.
    send_spo2(world, 86, t - timedelta(hours=1), kiosk=behind, offset_ms=three_hours)
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 2, 0, 1)
    assert spo2_alert(world)["triggered_at"] == utc_iso(t + timedelta(hours=2))
    send_spo2(world, 97, t + timedelta(hours=3))
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 2, 0, 0)
    # The same through the queue: stamped t + 1 h (before the 97 %), measured t + 4 h (after it); staff assign it.
    send_spo2(world, 86, t + timedelta(hours=1), kiosk=behind, subject=None, offset_ms=three_hours)
    (waiting,) = [r for r in attribution.queue(conn, "north-clinic") if r["kiosk"] == behind]
    provider = client_as(world.north.provider)
    done = provider.post("/queue/assign", data={"csrf_token": session_csrf(provider),
                                                "key": [f"{waiting['message_id']}:{waiting['idx']}"],
                                                "patient_code": "N100"})  # fmt: skip
    assert done.status_code == 303
    assert alert_rows(world, "N100")["spo2-low"] == ("open", 3, 0, 1)
    assert spo2_alert(world)["triggered_at"] == utc_iso(t + timedelta(hours=4))
    page = provider.get(f"/triage/{spo2_alert(world)['id']}").text
    assert f"the latest measured {utc_label(utc_iso(t + timedelta(hours=4)))}: 86 %; still out of range." in page
    # The patient's last reading, which the no-reading rules compare with the hub's clock, is on that clock too.
    last = conn.execute("SELECT last_reading_at FROM patients WHERE id = ?", (world.north.patients["N100"],))
    assert last.fetchone()[0] == utc_iso(t + timedelta(hours=4))


def test_news2_from_a_full_set_of_kiosk_vitals(world: World) -> None:
    t = day(1)
    world.send(world.north.kiosk, [
        obs("9279-1", 22, "/min", t, device={"id": "cam", "type": "camera"}),
        obs("59408-5", 93, "%", t + timedelta(minutes=2), device=OXIMETER),
        obs("8480-6", 105, "mm[Hg]", t + timedelta(minutes=5)),
        obs("8867-4", 105, "/min", t + timedelta(minutes=5)),
        obs("8310-5", 38.3, "Cel", t + timedelta(minutes=8), device={"id": "th", "type": "ble"}),
    ], subject="N101")  # fmt: skip
    conn = world.store.conn
    row = conn.execute(
        "SELECT severity, last_value, title FROM alerts WHERE patient_id = ? AND rule_id = 'news2'",
        (world.north.patients["N101"],),
    ).fetchone()
    assert row[0] == "high" and row[1] == 7 and "consciousness not assessed" in row[2]
    # The same vitals an hour and a half apart are not one set: no score.
    world.send(world.north.kiosk, [obs("9279-1", 30, "/min", day(3), device={"id": "cam", "type": "camera"})],
               subject="N100")  # fmt: skip
    assert "news2" not in alert_rows(world, "N100")


def test_per_patient_overrides(world: World) -> None:
    conn = world.store.conn
    alice, bob = world.north.patients["N100"], world.north.patients["N101"]
    conn.execute("BEGIN IMMEDIATE")
    alerts.set_patient_overrides(conn, "north-clinic", alice, [Rule(id="spo2-low", title="SpO2 below 85 % (COPD)",
        severity="high", code="59408-5", unit="%", below=85)], by="test", now=world.clock())  # fmt: skip
    alerts.set_patient_overrides(conn, "north-clinic", bob, [next(r for r in DEFAULT.rules if r.id == "spo2-low")
        .model_copy(update={"enabled": False})], by="test", now=world.clock())  # fmt: skip
    with pytest.raises(alerts.AlertError, match="no rule nope"):
        alerts.set_patient_overrides(conn, "north-clinic", bob, [Rule(id="nope", title="x", severity="low",
            no_reading_days=2)], by="test", now=world.clock())  # fmt: skip
    conn.execute("COMMIT")
    world.send(world.north.kiosk, [obs("59408-5", 88, "%", day(1), device=OXIMETER)], subject="N100")
    world.send(world.north.kiosk, [obs("59408-5", 80, "%", day(1), device=OXIMETER)], subject="N101")
    assert "spo2-low" not in alert_rows(world, "N100") and "spo2-low" not in alert_rows(world, "N101")
    world.send(world.north.kiosk, [obs("59408-5", 84, "%", day(0), device=OXIMETER)], subject="N100")
    assert alert_rows(world, "N100")["spo2-low"][0] == "open"


def test_escalation_and_silence_are_found_by_the_sweep(world: World) -> None:
    conn = world.store.conn
    world.send(world.north.kiosk, [obs("59408-5", 86, "%", day(1), device=OXIMETER)], subject="N100")
    world.send(world.north.kiosk, [obs("8867-4", 140, "/min", day(1))], subject="N101")
    now = world.clock()
    conn.execute("BEGIN IMMEDIATE")
    assert alerts.escalate(conn, now + 29 * 60) == []
    high = alerts.escalate(conn, now + 30 * 60)  # the high SpO2 alert, not the medium heart-rate one
    assert [a["rule_id"] for a in alerts.queue(conn, "north-clinic") if a["id"] in high] == ["spo2-low"]
    assert alerts.escalate(conn, now + 31 * 60) == []  # once per opening
    # The world's readings stop a day before NOW: three days later both patients have gone quiet.
    assert alerts.check_silence(conn, now + 2 * 86400) == 0
    assert alerts.check_silence(conn, now + 3 * 86400 + 60) == 4  # both clinics' two patients
    conn.execute("COMMIT")
    queue = alerts.queue(conn, "north-clinic")
    assert queue[0]["rule_id"] == "spo2-low" and queue[0]["escalated_at"] is not None  # escalated comes first
    assert [a["severity"] for a in queue[1:]] == ["medium", "low", "low"]


def test_the_triage_page_lists_alerts_by_urgency(world: World, client_as: Callable[[str], TestClient]) -> None:
    world.send(world.north.kiosk, [obs("8867-4", 140, "/min", day(1))], subject="N101")
    world.send(world.north.kiosk, [obs("59408-5", 86, "%", day(1), device=OXIMETER)], subject="N100")
    page = client_as(world.north.provider).get("/triage").text
    assert page.index("SpO2 below 90 %") < page.index("Heart rate outside 40-130 /min")
    assert "Alice North" in page and "Bob North" in page
    assert "Zed Southerly" not in client_as(world.south.provider).get("/triage").text.split("<tbody>")[1]


def test_rules_are_checked_set_and_overridden_from_the_command_line(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main

    data = world.cli_data()
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: spo2-low, title: SpO2 below 92 %, severity: high, code: 59408-5, unit: '%', "
                     "below: 92}\ncases:\n  respond_within_hours: 4\n")  # fmt: skip
    assert main(["triage", "check", str(rules)]) == 0
    assert main(["triage", "set", *data, "--clinic", "north-clinic", str(rules)]) == 0
    assert "version 1" in capsys.readouterr().out
    world.send(world.north.kiosk, [obs("59408-5", 91, "%", day(0), device=OXIMETER)], subject="N100")
    assert alert_rows(world, "N100")["spo2-low"][0] == "open"  # 91 % is below the clinic's 92
    override = tmp_path / "copd.yaml"
    override.write_text("rules:\n  - {id: spo2-low, title: off for COPD, severity: high, code: 59408-5, unit: '%', "
                        "below: 85, enabled: false}\n")  # fmt: skip
    bob = world.north.patients["N101"]
    assert main(["triage", "override", *data, "--patient", bob, str(override)]) == 0
    world.send(world.north.kiosk, [obs("59408-5", 80, "%", day(0), device=OXIMETER)], subject="N101")
    assert "spo2-low" not in alert_rows(world, "N101")
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - {id: x, title: t, severity: high, code: 59408-5, unit: mm[Hg], below: 1}\n")
    assert main(["triage", "set", *data, "--clinic", "north-clinic", str(broken)]) == 2
    assert f"{broken}:2:" in capsys.readouterr().err


def test_news2_takes_each_vital_nearest_the_reading_as_the_full_scan_did(world: World) -> None:
    """The look-up (the batch's, `nearest_vitals`, one window here) finds what ordering the whole window by distance
    finds, in measured time.

    Half the readings come from a kiosk whose clock is 3 h behind: their stamps are 3 h early, and only their
    corrected times (the stamp plus the kiosk's offset) put them in and out of the window where they belong.
    """
    rng = random.Random(15)
    behind = north_kiosk(world, "kiosk-north-behind")
    codes = [("9279-1", "/min", 18), ("59408-5", "%", 95), ("8480-6", "mm[Hg]", 120), ("8867-4", "/min", 70)]
    start = day(5)
    readings: dict[str, list[dict[str, Any]]] = {world.north.kiosk: [], behind: []}
    for second in sorted(rng.sample(range(3 * 3600), 300)):
        code, unit, value = rng.choice(codes)
        kiosk = rng.choice([world.north.kiosk, behind])
        stamp = start + timedelta(seconds=second) - (timedelta(hours=3) if kiosk == behind else timedelta())
        readings[kiosk].append(obs(code, value + rng.randint(-5, 5), unit, stamp, device=OXIMETER))
    world.send(world.north.kiosk, readings[world.north.kiosk], subject="N100")  # offset 250 ms
    world.send(behind, readings[behind], subject="N100", offset_ms=3 * 3600 * 1000.0)
    conn, patient = world.store.conn, world.north.patients["N100"]

    def ms(when: datetime) -> int:
        return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

    for _ in range(60):
        # Readings are measured at whole seconds, or 250 ms past: a probe 100 ms past is never equidistant from two.
        at = start + timedelta(seconds=rng.randrange(3 * 3600), milliseconds=100)
        lo, hi = at - timedelta(minutes=60), at + timedelta(minutes=60)
        probe = alerts.Reading("north-clinic", patient, "8867-4", 0.0, "/min", utc_iso(at))
        for code, _, _ in codes:
            full_scan = conn.execute(
                "SELECT value, unit FROM observations WHERE patient_id = ? AND clinic_id = ? "
                "AND attribution = 'attributed' AND measured_ms BETWEEN ? AND ? AND code = ? "
                "ORDER BY abs(measured_ms - ?) LIMIT 1",
                (patient, "north-clinic", ms(lo), ms(hi), code, ms(at)),
            ).fetchone()
            assert alerts.nearest_reading(conn, probe, code, lo=utc_iso(lo), hi=utc_iso(hi), at=at) == (
                tuple(full_scan) if full_scan else None
            )


def two_seeks(conn: Any, w: alerts.Window, code: str) -> tuple[float, str] | None:
    """The look-up as it was, one reading and vital at a time: the latest reading at or before the reading's time and
    the earliest at or after it, the first unless the second is strictly nearer. The order among readings of one
    millisecond is spelled out as SQLite's index scans gave it (observations_patient_code ends in the primary key)."""
    sql = (
        "SELECT value, unit, measured_ms FROM observations WHERE patient_id = ? AND clinic_id = ? "
        "AND attribution = 'attributed' AND code = ? AND measured_ms BETWEEN ? AND ? "
        "ORDER BY measured_ms {0}, message_id {0}, idx {0} LIMIT 1"
    )
    key = (w.patient_id, w.clinic_id, code)
    before = conn.execute(sql.format("DESC"), (*key, w.lo, w.split)).fetchone()
    after = conn.execute(sql.format("ASC"), (*key, w.split, w.hi)).fetchone()
    if before is None or after is None:
        found = before or after
        return None if found is None else (found[0], found[1])
    nearest = before if abs(before[2] - w.at) <= abs(after[2] - w.at) else after
    return nearest[0], nearest[1]


def epoch_ms(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_news2_looks_up_a_batch_of_readings_as_it_looked_up_one_at_a_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several patients' readings in one batch, their windows merged and read a few statements at a time, still
    each take what the two seeks per reading and vital took: the same vital in one millisecond (twice in one
    envelope, in another envelope, and from a kiosk whose clock is 3 h behind), a probe equidistant from two
    readings (the earlier wins), a probe at a reading's own time, and window edges on a reading (inside)."""
    monkeypatch.setattr(alerts, "INTERVALS_PER_STATEMENT", 3)  # several statements, however few the intervals
    rng = random.Random(7)
    behind = north_kiosk(world, "kiosk-north-behind")
    three_hours = timedelta(hours=3)
    codes = [("9279-1", "/min", 18), ("59408-5", "%", 95), ("8480-6", "mm[Hg]", 120), ("8867-4", "/min", 70)]
    start = day(6)
    # Random readings are measured at whole seconds (the slow kiosk) or 250 ms past (North's): never at `tie`.
    tie = start + timedelta(minutes=30, seconds=1, milliseconds=500)
    for patient_code in ("N100", "N101"):
        readings: dict[str, list[dict[str, Any]]] = {world.north.kiosk: [], behind: []}
        for second in sorted(rng.sample(range(3 * 3600), 150)):
            code, unit, value = rng.choice(codes)
            kiosk = rng.choice([world.north.kiosk, behind])
            stamp = start + timedelta(seconds=second) - (three_hours if kiosk == behind else timedelta())
            readings[kiosk].append(obs(code, value + rng.randint(-5, 5), unit, stamp, device=OXIMETER))
        # North's clock offset is 250 ms; the slow kiosk's stamp is 3 h and 250 ms early, its offset 3 h.
        same_ms = [obs("8867-4", 61, "/min", tie, device=OXIMETER), obs("8867-4", 62, "/min", tie, device=OXIMETER)]
        world.send(world.north.kiosk, [*readings[world.north.kiosk], *same_ms], subject=patient_code)
        world.send(world.north.kiosk, [obs("8867-4", 63, "/min", tie, device=OXIMETER)], subject=patient_code)
        slow = obs("8867-4", 64, "/min", tie + timedelta(milliseconds=250) - three_hours, device=OXIMETER)
        world.send(behind, [*readings[behind], slow], subject=patient_code, offset_ms=3 * 3600 * 1000.0)
    conn = world.store.conn
    windows: list[alerts.Window] = []
    for patient_code in ("N100", "N101"):
        patient = world.north.patients[patient_code]
        rows = conn.execute(
            "SELECT measured_ms FROM observations WHERE patient_id = ? AND attribution = 'attributed' "
            "AND measured_ms BETWEEN ? AND ?",
            (patient, epoch_ms(start - three_hours), epoch_ms(start + 2 * three_hours)),
        )
        times = sorted({ms for (ms,) in rows})
        midpoints = [(a + b) // 2 for a, b in itertools.pairwise(times)]
        for at in [*rng.sample(times, 40), *rng.sample(midpoints, 40), epoch_ms(tie) + 250]:
            span = rng.choice([60_000, 600_000, 3_600_000])
            windows.append(alerts.Window("north-clinic", patient, at - span, at, at + span, at))
        for a, b in zip(rng.sample(times, 20), rng.sample(times, 20), strict=True):  # the edges on readings
            lo, hi = min(a, b), max(a, b)
            windows.append(alerts.Window("north-clinic", patient, lo, (lo + hi) // 2, hi, (lo + hi) // 2))
    found = alerts.nearest_vitals(conn, windows, [code for code, _, _ in codes])
    for w in windows:
        for code, _, _ in codes:
            assert found.get(w, {}).get(code) == two_seeks(conn, w, code), (w, code)
    # Of the readings of one millisecond: the last in the index on the before side, the first on the after side.
    at = epoch_ms(tie) + 250
    patient = world.north.patients["N101"]
    pulse = conn.execute(
        "SELECT value, message_id, idx FROM observations WHERE patient_id = ? AND code = '8867-4' AND measured_ms = ?",
        (patient, at),
    ).fetchall()
    assert sorted(v for v, _, _ in pulse) == [61, 62, 63, 64]
    first, last = min(pulse, key=lambda r: r[1:])[0], max(pulse, key=lambda r: r[1:])[0]
    for split, expected in [(at, last), (at + 1, last), (at - 1, first)]:
        w = alerts.Window("north-clinic", patient, at - 1, split, at + 1, split)
        assert alerts.nearest_vitals(conn, [w], ["8867-4"])[w]["8867-4"] == (expected, "/min")
