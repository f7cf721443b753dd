"""Remote-monitoring time: episodes by hand, then a patient's month through the pages and the export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from hub import rpm
from hub.rpm import episodes
from tests.workspace.world import CAMERA, NOW, World, obs, session_csrf


def test_episodes_join_actions_less_than_ten_minutes_apart() -> None:
    events = [(0.0, "a", "view_patient"), (60.0, "a", "view_trends"), (300.0, "a", "answer_case"),
              (300.0 + 601, "a", "view_patient"), (100.0, "b", "view_case")]  # fmt: skip
    found = episodes(events)
    assert [(e.user, e.start, e.end, e.minutes) for e in found] == [
        ("a", 0.0, 300.0, 6.0),  # 0 to 5 min, plus the last action's minute
        ("b", 100.0, 100.0, 1.0),
        ("a", 901.0, 901.0, 1.0),
    ]
    assert found[0].actions == ("view_patient", "view_trends", "answer_case")


def test_a_patients_month_counts_device_days_and_minutes_against_the_thresholds(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    alice = world.north.patients["N100"]
    conn = world.store.conn
    month = rpm.month_for(conn, "north-clinic", alice, "2026-11")
    assert len(month.days) == 5 and month.days_status == "2-15 day tier"  # Nov 15-19 from the cuff
    # A camera estimate on a new day is not a device reading; eleven more cuff days make sixteen.
    world.send(world.north.kiosk, [obs("8867-4", 70, "/min", NOW - timedelta(days=12), device=CAMERA)],
               subject="N100")  # fmt: skip
    for d in range(6, 17):
        world.send(world.north.kiosk, [obs("8480-6", 120, "mm[Hg]", NOW - timedelta(days=d))], subject="N100")
    assert rpm.month_for(conn, "north-clinic", alice, "2026-11").days_status == "met (16+ days)"
    assert rpm.month_for(conn, "north-clinic", alice, "2026-10").days == []

    provider = client_as(world.north.provider)
    for _ in range(3):  # review over five minutes: one episode of six minutes
        provider.get(f"/patients/{alice}")
        world.clock.advance(150)
    m = rpm.month_for(conn, "north-clinic", alice, "2026-11")
    assert m.minutes == 6.0 and m.minutes_status == "not met"

    def log(minutes: str, activity: str) -> int:
        data = {"csrf_token": session_csrf(provider), "minutes": minutes, "activity": activity}
        return provider.post(f"/patients/{alice}/rpm/time", data=data).status_code

    assert log("5", "Phone call") == 303
    assert rpm.month_for(conn, "north-clinic", alice, "2026-11").minutes_status == "10-minute tier"
    assert log("10", "Care plan with GP") == 303
    final = rpm.month_for(conn, "north-clinic", alice, "2026-11")
    assert final.minutes == 21.0 and final.minutes_status == "met (20+ min)"

    page = provider.get(f"/patients/{alice}/rpm", params={"month": "2026-11"}).text
    assert "met (16+ days)" in page and "Phone call" in page and "view_patient" in page
    overview = provider.get("/rpm", params={"month": "2026-11"}).text
    assert "Alice North" in overview and "Zed Southerly" not in overview
    rows = list(csv.DictReader(io.StringIO(provider.get("/rpm.csv", params={"month": "2026-11"}).text)))
    alice_rows = [r for r in rows if r["patient_id"] == alice]
    assert sum(r["evidence"] == "reading day" for r in alice_rows) == 16
    assert [r["detail"] for r in alice_rows if r["evidence"] == "logged time"] == ["Phone call", "Care plan with GP"]
    assert any(r["evidence"] == "total" and "met (16+ days)" in r["detail"] for r in alice_rows)
    assert log("500", "x") == 422
    assert provider.get("/rpm", params={"month": "2026-13"}).status_code == 422
