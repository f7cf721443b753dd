"""What a provider reads: the trend data, the raw readings with device and clock details, the export, the fleet."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from device.outbox import Outbox
from device.protocol.envelope import encode
from hub.db import immediate
from hub.fleet import remote_config
from hub.fleet.identities import FleetPaths, add_kiosk, revoke_kiosk
from hub.store import Accepted
from hub.web.routes.fleet import backlog_growing, kiosk_state
from tests.workspace.world import CAMERA, NOW, World, day, obs


def test_trend_data_has_every_reading_split_by_source_with_ranges_and_clock_correction(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    alice = world.north.patients["N100"]
    provider = client_as(world.north.provider)
    page = provider.get(f"/patients/{alice}")
    assert page.status_code == 200 and "Alice North" in page.text
    data = provider.get(f"/patients/{alice}/trends.json", params={"range": "30d"}).json()
    charts = {c["code"]: c for c in data["charts"]}
    assert [c["code"] for c in data["charts"]][:3] == ["8480-6", "8462-4", "8867-4"]  # BP first
    assert len(charts["8480-6"]["points"]) == 5 and charts["8480-6"]["normal"] == [90, 120]
    hr = charts["8867-4"]["points"]
    assert sorted(p["source"] for p in hr) == ["camera"] + ["device"] * 5
    assert [p["t"] for p in hr] == sorted(p["t"] for p in hr)
    # Times are the reading's time plus the kiosk clock offset the hub measured (250 ms in this world).
    assert {round(p["t"] - int(p["t"]), 3) for p in charts["8480-6"]["points"]} == {0.25}
    # Bob's readings are not Alice's, and the queued walk-up reading is no one's.
    assert all(p["v"] != 151 for c in data["charts"] for p in c["points"])
    assert len(charts["8480-6"]["points"]) + 0 == page.text.count("LOINC 8480-6")


def test_a_time_range_narrows_charts_and_table(world: World, client_as: Callable[[str], TestClient]) -> None:
    alice = world.north.patients["N100"]
    provider = client_as(world.north.provider)
    window = {"since": day(3).isoformat(), "until": day(1).isoformat()}
    data = provider.get(f"/patients/{alice}/trends.json", params=window).json()
    sbp = next(c for c in data["charts"] if c["code"] == "8480-6")
    assert len(sbp["points"]) == 2  # days 3 and 2; day 1 is the end, excluded
    # The range form's datetime-local fields have no offset: they are UTC, as the page says.
    naive = provider.get(f"/patients/{alice}", params={"since": "2026-11-17T00:00", "until": "2026-11-19T00:00"})
    assert naive.status_code == 200 and naive.text.count("LOINC 8480-6") == 2  # days 3 and 2
    backwards = provider.get(
        f"/patients/{alice}/trends.json", params={"since": window["until"], "until": window["since"]}
    )
    assert backwards.status_code == 422 and "before" in backwards.text
    assert provider.get(f"/patients/{alice}", params={"range": "2y"}).status_code == 422


def test_raw_readings_show_device_identity_and_both_clock_corrections(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    alice = world.north.patients["N100"]
    text = client_as(world.north.provider).get(f"/patients/{alice}").text
    assert "A&amp;D Medical UA-651BLE (serial S1)" in text
    assert "device clock -2.5 s vs kiosk" in text and "kiosk clock +250 ms vs hub" in text
    assert "rppg-pos" in text and "quality 0.80" in text and "check-in" in text


def test_the_csv_export_has_every_reading_with_codes_units_and_provenance(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    alice = world.north.patients["N100"]
    response = client_as(world.north.provider).get(f"/patients/{alice}/readings.csv", params={"range": "90d"})
    assert response.headers["content-disposition"].startswith('attachment; filename="readings-N100-')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 5 * 3 + 1
    camera = [r for r in rows if r["device_type"] == "camera"]
    assert len(camera) == 1 and camera[0]["method"] == "rppg-pos" and camera[0]["loinc"] == "8867-4"
    assert {r["ucum"] for r in rows} == {"mm[Hg]", "/min"}
    assert all(r["effective_corrected_utc"].endswith("Z") for r in rows)


def test_new_readings_appear_in_the_chart_data_without_reloading_the_page(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    alice = world.north.patients["N100"]
    provider = client_as(world.north.provider)
    before = provider.get(f"/patients/{alice}/trends.json", params={"range": "7d"}).json()
    just_now = NOW - timedelta(minutes=1)
    world.send(world.north.kiosk, [obs("9279-1", 16, "/min", just_now, device=CAMERA, method="optical-flow")],
               subject="N100")  # fmt: skip
    after = provider.get(f"/patients/{alice}/trends.json", params={"range": "7d"}).json()
    assert sum(len(c["points"]) for c in after["charts"]) == sum(len(c["points"]) for c in before["charts"]) + 1
    (rr,) = [c for c in after["charts"] if c["code"] == "9279-1"]
    assert [(p["v"], p["source"]) for p in rr["points"]] == [(16, "camera")] and rr["normal"] == [12, 20]


def test_patient_search_by_name_or_code(world: World, client_as: Callable[[str], TestClient]) -> None:
    provider = client_as(world.north.provider)
    by_name = provider.get("/patients", params={"q": "bob"}).text
    assert "Bob North" in by_name and "Alice North" not in by_name
    by_code = provider.get("/patients", params={"q": "N100"}).text
    assert "Alice North" in by_code and "Bob North" not in by_code
    assert "No patients match" in provider.get("/patients", params={"q": "%_"}).text


def test_kiosk_state_from_presence_and_heartbeats() -> None:
    assert kiosk_state(None, None, 100.0, 60) == "unknown"
    assert kiosk_state(0, 90.0, 100.0, 60) == "offline"
    assert kiosk_state(1, 90.0, 100.0, 60) == "online"
    assert kiosk_state(1, 30.0, 100.0, 60) == "late"


def test_the_fleet_page_shows_the_clinics_kiosks_with_status(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    world.store.set_presence(world.north.kiosk, True, world.clock())
    rows = client_as(world.north.provider).get("/fleet/rows").text
    assert world.north.kiosk in rows and 'class="badge online"' in rows and world.south.kiosk not in rows
    world.store.set_presence(world.north.kiosk, False, world.clock())
    assert 'class="badge offline"' in client_as(world.north.provider).get("/fleet/rows").text


def test_the_fleet_page_compares_the_wanted_config_with_what_the_kiosk_applied(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    kiosk = world.north.kiosk
    world.store.set_presence(kiosk, True, world.clock())

    def cell() -> str:
        row = client_as(world.north.provider).get("/fleet/rows").text
        return row.split(f'data-kiosk="{kiosk}"')[1].split("</tr>")[0]

    assert "defaults" in cell()
    with immediate(world.store.conn) as conn:
        remote_config.change(conn, kiosk, {"heartbeat_s": "60"}, world.clock())
    assert "v0, v1 pending" in cell()
    world.store.conn.execute("UPDATE kiosks SET config_version = 1 WHERE id = ?", (kiosk,))
    assert ">v1<" in cell()
    with immediate(world.store.conn) as conn:
        remote_config.change(conn, kiosk, {"heartbeat_s": "90"}, world.clock())
        conn.execute("UPDATE kiosks SET config_error = 'remote config: settings.heartbeat_s: too big' WHERE id = ?",
                     (kiosk,))  # fmt: skip
    assert "v2 refused" in cell() and "too big" in cell()


def test_backlog_growing_needs_real_growth_over_minutes() -> None:
    assert not backlog_growing(900, None, None, 1000.0)  # no history yet
    assert not backlog_growing(900, 100, 950.0, 1000.0)  # compared over less than two minutes
    assert backlog_growing(900, 100, 800.0, 1000.0)
    assert not backlog_growing(130, 100, 800.0, 1000.0)  # fewer than 50 more
    assert not backlog_growing(10_900, 10_000, 800.0, 1000.0)  # 9 %: not yet
    assert not backlog_growing(50, 5_000, 800.0, 1000.0)  # draining


def test_the_fleet_page_flags_a_kiosk_whose_backlog_keeps_growing(
    tmp_path: Path, world: World, client_as: Callable[[str], TestClient]
) -> None:
    """Status messages through the real commit path, minutes apart by the kiosk's clock."""
    kiosk = world.north.kiosk
    box = Outbox(tmp_path / "o.db", kiosk)
    start = datetime.now(UTC)

    def report(backlog: int, minutes: float) -> None:
        env = box.enqueue("status", {"software_version": "1", "outbox_backlog": backlog, "outbox_capacity": 10**6,
                                     "uptime_s": 1.0})  # fmt: skip
        env = env.model_copy(
            update={"clock": env.clock.model_copy(update={"time": start + timedelta(minutes=minutes)})}
        )
        raw = encode(env)
        world.store.commit_batch([Accepted(env, raw, world.clock(), f"kiosk/{kiosk}/up/status")], [])

    def growing() -> bool:
        row = client_as(world.north.provider).get("/fleet/rows").text.split(f'data-kiosk="{kiosk}"')[1]
        return "growing</span>" in row.split("</tr>")[0]

    world.store.set_presence(kiosk, True, world.clock())
    report(100, 0)
    report(120, 1)
    assert not growing()
    for minute in range(2, 12):  # readings pile up: nothing gets through
        report(100 + 200 * minute, minute)
    assert growing()
    for minute in range(12, 30):  # the link is back: the backlog drains
        report(max(0, 2300 - 400 * (minute - 11)), minute)
    assert not growing()
    box.close()


def test_the_fleet_page_warns_before_a_kiosk_certificate_ends_and_shows_a_revoked_one(
    world: World, client_as: Callable[[str], TestClient], tmp_path: Path
) -> None:
    kiosk = world.north.kiosk

    def cell() -> str:
        row = client_as(world.north.provider).get("/fleet/rows").text
        return row.split(f'data-kiosk="{kiosk}"')[1].split("</tr>")[0]

    with immediate(world.store.conn) as conn:
        add_kiosk(conn, FleetPaths(tmp_path), kiosk, broker_url="mqtts://hub.example:8883", hub_url=None,
                  clinic_id=None, now=world.clock())  # fmt: skip
    assert "until 20" in cell() and "certificate ends" not in cell()
    one_day = 86_400.0
    ends = world.clock() + 10.5 * one_day
    move_end = "UPDATE kiosk_identities SET cert_not_after = ? WHERE kiosk = ?"
    world.store.conn.execute(move_end, (ends, kiosk))
    assert "certificate ends in 10 days" in cell()
    world.store.conn.execute(move_end, (ends - 11 * one_day, kiosk))
    assert "certificate expired" in cell()
    with immediate(world.store.conn) as conn:
        revoke_kiosk(conn, kiosk, world.clock())
    assert ">revoked<" in cell()
