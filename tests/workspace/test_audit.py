"""The audit log: every look and every login recorded, append-only, filterable by admins, free of health data."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from hub.db import IntegrityError
from tests.workspace.world import World, day, login, obs


def audit_rows(world: World) -> list[tuple[str, str, str, str | None]]:
    return [
        (str(a), str(b), str(c), d)
        for a, b, c, d in world.store.conn.execute("SELECT actor, action, outcome, patient_id FROM audit ORDER BY id")
    ]


def test_views_exports_logins_and_failed_logins_are_recorded(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    alice = world.north.patients["N100"]
    doc = world.north.provider
    anonymous = TestClient(client_as(doc).app, base_url="https://testserver", follow_redirects=False)
    login(anonymous, doc, "wrong password here")
    provider = client_as(doc)
    provider.get(f"/patients/{alice}")
    provider.get(f"/patients/{alice}/readings.csv")
    provider.get(f"/patients/{alice}/trends.json")
    provider.get(f"/patients/{alice}/trends.json")  # a chart refresh: recorded once per window, not per poll
    rows = audit_rows(world)
    assert (doc, "login", "failed: wrong email or password", None) in rows
    assert (doc, "login", "ok", None) in rows
    assert (doc, "view_patient", "ok", alice) in rows
    assert (doc, "export_readings", "ok", alice) in rows
    assert [r for r in rows if r[1] == "view_trends"] == [(doc, "view_trends", "ok", alice)]


def test_the_log_refuses_to_be_rewritten(world: World, client_as: Callable[[str], TestClient]) -> None:
    client_as(world.north.provider).get("/patients")
    conn = world.store.conn
    with pytest.raises(IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET actor = 'someone else'")
    with pytest.raises(IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit")


def test_admins_filter_the_log_and_providers_cannot_read_it(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    alice, bob = world.north.patients["N100"], world.north.patients["N101"]
    provider = client_as(world.north.provider)
    provider.get(f"/patients/{alice}")
    provider.get(f"/patients/{bob}")
    client_as(world.south.provider).get(f"/patients/{next(iter(world.south.patients.values()))}")
    assert provider.get("/admin/audit").status_code == 403
    admin = client_as(world.north.admin)
    page = admin.get("/admin/audit", params={"patient_id": alice, "action": "view_patient"}).text
    assert page.count("<td>view_patient</td>") == 1 and "Alice North" in page and "Bob North" not in page
    everything = admin.get("/admin/audit").text
    assert "south.example" not in everything  # another clinic's entries are theirs
    by_actor = admin.get("/admin/audit", params={"actor": "doc@north"}).text
    assert "admin@north.example" not in by_actor.split("<tbody>")[1]
    exported = admin.get("/admin/audit.csv", params={"action": "view_patient"})
    assert exported.status_code == 200 and exported.text.count("view_patient") == 2
    assert ("admin@north.example", "export_audit", "ok", None) in audit_rows(world)


def test_no_health_data_reaches_the_application_logs_or_the_audit_details(
    world: World, client_as: Callable[[str], TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world.send(world.north.kiosk, [obs("8480-6", 187.5, "mm[Hg]", day(1))], subject="N100")
    world.send(world.north.kiosk, [obs("8480-6", 173.25, "mm[Hg]", day(1))], subject="NOPE-CODE")
    admin = client_as(world.north.admin)
    for path in ("/patients", f"/patients/{world.north.patients['N100']}", "/queue", "/admin/audit"):
        assert admin.get(path).status_code == 200
    admin.get(f"/patients/{world.north.patients['N100']}/readings.csv")
    logged = caplog.text
    details = " ".join(str(r) for r in world.store.conn.execute("SELECT * FROM audit"))
    for planted in ("187.5", "173.25", "Alice North", "mm[Hg]", "correct horse"):
        assert planted not in logged, f"{planted!r} is in the application log"
        assert planted not in details, f"{planted!r} is in the audit log"
