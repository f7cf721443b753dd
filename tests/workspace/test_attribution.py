"""Which patient a reading belongs to: the pure rules by hand, then the store and the queue."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from hub import attribution, patients
from hub.attribution import Decision, decide
from hub.db import immediate
from tests.workspace.world import World, day, obs, session_csrf

CODES = {"P1": "pt_a", "P2": "pt_b"}
SLOTS = {("cuff-1", 1): "pt_a", ("cuff-1", 2): "pt_b"}


@pytest.mark.parametrize(
    ("clinic", "subject", "user", "expected"),
    [
        ("c", "P1", None, Decision("attributed", "pt_a", "check-in", None)),
        ("c", None, 2, Decision("attributed", "pt_b", "device-user", None)),
        ("c", "P1", 1, Decision("attributed", "pt_a", "check-in", None)),  # both agree
        ("c", "P1", 2, Decision("queued", None, None,
                                "the check-in and the device's user slot 2 name different patients")),
        ("c", "P9", None, Decision("queued", None, None, "the check-in code is not a patient of this clinic")),
        ("c", None, 3, Decision("queued", None, None, "user slot 3 on this device is not mapped to a patient")),
        ("c", None, 255, Decision("queued", None, None, "the device did not know which of its users this was")),
        ("c", None, None, Decision("queued", None, None, "taken without a check-in")),
        (None, "P1", 1, Decision("no-clinic", None, None, "the kiosk belongs to no clinic yet")),
    ],
)  # fmt: skip
def test_rules(clinic: str | None, subject: str | None, user: int | None, expected: Decision) -> None:
    got = decide(
        clinic_id=clinic, subject=subject, device_id="cuff-1", device_user=user,
        patient_by_code=CODES, patient_by_slot=SLOTS,
    )  # fmt: skip
    assert got == expected


def attributed_to(world: World, message_id: str) -> list[tuple[str, str | None]]:
    rows = world.store.conn.execute(
        "SELECT attribution, patient_id FROM observations WHERE message_id = ? ORDER BY idx", (message_id,)
    )
    return [(str(a), p) for a, p in rows]


def test_a_kiosk_without_a_clinic_parks_readings_until_it_is_assigned(world: World) -> None:
    m = world.send("kiosk-new", [obs("8867-4", 66, "/min", day(1))], subject="N100")
    assert attributed_to(world, m) == [("no-clinic", None)]
    conn = world.store.conn
    with immediate(conn):
        assert attribution.assign_kiosk(conn, "kiosk-new", "north-clinic", world.clock()) == 1
    attribution.run_until_done(conn, world.clock())
    assert attributed_to(world, m) == [("attributed", world.north.patients["N100"])]


def test_a_check_in_code_registered_later_picks_up_its_waiting_readings(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    m = world.send(world.north.kiosk, [obs("8867-4", 66, "/min", day(1))], subject="N777")
    assert attributed_to(world, m) == [("queued", None)]
    admin = client_as(world.north.admin)
    made = admin.post("/patients", data={"csrf_token": session_csrf(admin), "code": "N777", "name": "Late Registrant"})
    assert made.status_code == 303
    attribution.run_until_done(world.store.conn, world.clock())
    patient = patients.search(world.store.conn, "north-clinic", "Late Registrant")[0]
    assert attributed_to(world, m) == [("attributed", patient.id)]
    assert patient.reading_count == 1


def test_staff_assign_from_the_queue_and_remember_the_device_slot(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    conn = world.store.conn
    waiting = attribution.queue(conn, "north-clinic")
    assert [(r["code"], r["device_user"]) for r in waiting] == [("8480-6", 2)]
    provider = client_as(world.north.provider)
    page = provider.get("/queue")
    assert "user slot 2 on this device is not mapped" in page.text
    key = f"{waiting[0]['message_id']}:{waiting[0]['idx']}"
    done = provider.post(
        "/queue/assign",
        data={"csrf_token": session_csrf(provider), "key": [key], "patient_code": "N101", "remember_slot": "true"},
    )
    assert done.status_code == 303 and "Assigned+1+reading" in done.headers["location"]
    bob = world.north.patients["N101"]
    assert attributed_to(world, waiting[0]["message_id"]) == [("attributed", bob)]
    # The slot is now known: the cuff's next reading for user 2 goes to Bob without anyone's help.
    later = world.send(world.north.kiosk, [obs("8480-6", 133, "mm[Hg]", day(0), device_user=2)])
    assert attributed_to(world, later) == [("attributed", bob)]
    row = conn.execute(
        "SELECT attribution_how, attributed_by FROM observations WHERE message_id = ?", (waiting[0]["message_id"],)
    ).fetchone()
    assert row == ("staff", world.north.user_ids[world.north.provider])
    # Bob's page lists the mapping; unmapping it sends the slot's next reading back to the queue.
    page = provider.get(f"/patients/{bob}").text
    assert "Unmap user 2 of AA:BB:CC:00:00:01" in page
    unmapped = provider.post(
        f"/patients/{bob}/slots/unmap",
        data={"csrf_token": session_csrf(provider), "device_id": "AA:BB:CC:00:00:01", "device_user": "2"},
    )
    assert unmapped.status_code == 303
    after = world.send(world.north.kiosk, [obs("8480-6", 134, "mm[Hg]", day(0), device_user=2)])
    assert attributed_to(world, after) == [("queued", None)]
    assert attributed_to(world, later) == [("attributed", bob)]  # what was attributed stays


def test_discarded_readings_leave_the_queue_and_appear_under_no_patient(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    conn = world.store.conn
    (waiting,) = attribution.queue(conn, "north-clinic")
    provider = client_as(world.north.provider)
    key = f"{waiting['message_id']}:{waiting['idx']}"
    short = provider.post("/queue/discard", data={"csrf_token": session_csrf(provider), "key": [key], "reason": ""})
    assert short.status_code == 422  # a reason is required
    gone = provider.post(
        "/queue/discard", data={"csrf_token": session_csrf(provider), "key": [key], "reason": "staff test reading"}
    )
    assert "Discarded+1+reading" in gone.headers["location"]
    assert attribution.queue_size(conn, "north-clinic") == 0
    assert attributed_to(world, waiting["message_id"]) == [("discarded", None)]
    for patient_id in world.north.patients.values():
        rows = csv.DictReader(io.StringIO(provider.get(f"/patients/{patient_id}/readings.csv").text))
        # By value and by message, not a substring of the file: a random message id may hold "151".
        assert all(r["message_id"] != waiting["message_id"] for r in rows)


def test_a_garbage_reading_key_is_refused_with_a_message(world: World, client_as: Callable[[str], TestClient]) -> None:
    provider = client_as(world.north.provider)
    bad = provider.post(
        "/queue/assign", data={"csrf_token": session_csrf(provider), "key": ["no-colon"], "patient_code": "N100"}
    )
    assert bad.status_code == 303 and "is+not+a+reading+key" in bad.headers["location"].replace("%20", "+")
