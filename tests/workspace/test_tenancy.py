"""A provider sees only their clinic: every route, enumerated from the app, is tried against another clinic.

The routes are not hand-listed: a new route with a path parameter this test does not know
fails the test until someone says which of the other clinic's objects it must be tried on.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from hub import attribution
from hub.app import EXEMPT_PATHS, EXEMPT_PREFIXES
from hub.consults import store as consults
from hub.db import immediate
from hub.fhir import resources as fr
from hub.triage import alerts
from tests.harness import api_token
from tests.workspace.world import World, day, obs, session_csrf

SAFE = {"GET", "HEAD"}


def routes(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for route in iter_route_contexts(app.routes):
        if route.path in EXEMPT_PATHS or route.path.startswith(EXEMPT_PREFIXES) or not route.methods:
            continue
        found.extend((method, route.path) for method in sorted(route.methods) if method != "HEAD")
    # Logging out ends the caller's own session: try it last.
    return sorted(found, key=lambda mp: mp[1] == "/logout")


def websocket_routes(app: FastAPI) -> list[str]:
    return [
        r.path for r in iter_route_contexts(app.routes) if isinstance(r.original_route, APIWebSocketRoute) and r.path
    ]


def waiting_consult(world: World, kiosk: str, subject: str) -> str:
    """A patient waiting for a live consult at the kiosk (as the kiosk's request leaves it)."""
    consult_id = str(uuid.uuid4())
    with immediate(world.store.conn) as conn:
        consults.request(conn, kiosk=kiosk, consult_id=consult_id, subject=subject, language="en", vitals=[],
                         now=world.clock())  # fmt: skip
    return consult_id


def south_state(world: World) -> list[Any]:
    """Everything of South's that a North request could change."""
    conn = world.connect()
    try:
        return [
            conn.execute("SELECT * FROM patients WHERE clinic_id = 'south-clinic' ORDER BY id").fetchall(),
            conn.execute(
                "SELECT message_id, idx, attribution, patient_id FROM observations WHERE clinic_id = 'south-clinic' "
                "ORDER BY 1, 2"
            ).fetchall(),
            conn.execute(
                "SELECT id, disabled_at, password_hash, totp_secret FROM users WHERE clinic_id = 'south-clinic'"
            ).fetchall(),
            conn.execute("SELECT * FROM device_user_slots WHERE clinic_id = 'south-clinic'").fetchall(),
            conn.execute("SELECT * FROM alerts WHERE clinic_id = 'south-clinic'").fetchall(),
            conn.execute("SELECT * FROM cases WHERE clinic_id = 'south-clinic'").fetchall(),
            conn.execute(
                "SELECT count(*) FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
                "WHERE a.clinic_id = 'south-clinic'"
            ).fetchall(),
            conn.execute("SELECT id, clinic_id FROM kiosks ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM clinics WHERE id = 'south-clinic'").fetchall(),
            conn.execute(
                "SELECT d.id, d.kind, d.body, d.superseded_by, d.delivered_at FROM downlink d "
                "JOIN kiosks k ON k.id = d.kiosk WHERE k.clinic_id = 'south-clinic' ORDER BY d.id"
            ).fetchall(),
            conn.execute("SELECT * FROM kiosk_setups WHERE clinic_id = 'south-clinic'").fetchall(),
            conn.execute("SELECT * FROM consults WHERE clinic_id = 'south-clinic' ORDER BY id").fetchall(),
        ]
    finally:
        conn.close()


def south_markers(world: World, attachment: str) -> list[str]:
    s = world.south
    return [*s.names, *s.patients, *s.patients.values(), s.kiosk, "south.example", attachment]


def test_every_route_refuses_anyone_not_logged_in(app: FastAPI, world: World) -> None:
    anonymous = TestClient(app, base_url="https://testserver", follow_redirects=False)
    listed = routes(app)
    assert len(listed) >= 25
    for method, path in listed:
        concrete = re.sub(r"\{[a-z_]+\}", "1", path)
        response = anonymous.request(method, concrete, headers={"accept": "text/html"})
        if method == "GET" and not path.startswith(("/api/", "/fhir/")):
            assert response.status_code == 303, f"{method} {path} answered {response.status_code}"
            assert response.headers["location"].startswith("/login?next=")
        else:
            assert response.status_code == 401, f"{method} {path} answered {response.status_code}"


def test_another_clinics_provider_and_admin_are_refused_on_every_route(
    app: FastAPI, world: World, client_as: Callable[[str], TestClient]
) -> None:
    attachment = world.send_file(world.south.kiosk, b"\xff\xd8south photo\xff\xd9", subject="S100")
    south_queue = attribution.queue(world.store.conn, "south-clinic")
    assert south_queue, "South needs a waiting reading to try to steal"
    south_key = f"{south_queue[0]['message_id']}:{south_queue[0]['idx']}"
    south_patient = next(iter(world.south.patients.values()))
    world.send(world.south.kiosk, [obs("59408-5", 85, "%", day(1))], subject="S100")
    (south_alert,) = alerts.queue(world.store.conn, "south-clinic")
    (message_id,) = world.store.conn.execute(
        "SELECT message_id FROM observations WHERE clinic_id = 'south-clinic' AND attribution = 'attributed' LIMIT 1"
    ).fetchone()
    south_observation = f"obs-{message_id}-0"
    targets = {
        "alert_id": str(south_alert["id"]),
        "observation_id": south_observation,
        "case_id": (
            south_case := world.send_case(world.south.kiosk, "S100", text="south case", attachments=[attachment])
        ),
        "response_id": f"case-{south_case}",
        "patient_id": south_patient,
        "user_id": str(world.south.user_ids[world.south.provider]),
        "kiosk_id": world.south.kiosk,
        "device_id": fr.kiosk_device_id(world.south.kiosk),  # South's kiosk as a FHIR Device
        "attachment_id": attachment,
        "consult_id": waiting_consult(world, world.south.kiosk, "S100"),
    }
    south_browser = client_as(world.south.provider)  # South is logged in throughout: nothing North does may end it
    before = south_state(world)
    markers = [*south_markers(world, attachment), targets["consult_id"]]

    north_token = api_token(world.db, clinic="north-clinic", name="north-ehr")  # every scope, FHIR included
    callers: list[tuple[str, TestClient, dict[str, str]]] = [
        ("north provider", client_as(world.north.provider), {}),
        ("north admin", client_as(world.north.admin), {}),
        ("north API token", TestClient(app, base_url="https://testserver"), {"authorization": f"Bearer {north_token}"}),
    ]
    tried = 0
    for who, client, headers in callers:
        csrf = session_csrf(client) if not headers else ""
        for method, path in routes(app):
            if path.startswith(("/api/", "/fhir/")) != bool(headers):
                continue
            params = re.findall(r"\{([a-z_]+)\}", path)
            unknown = [p for p in params if p not in targets]
            assert not unknown, f"{path}: say which of another clinic's objects to try {unknown} on"
            concrete = path
            for p in params:
                concrete = concrete.replace("{" + p + "}", targets[p])
            data: dict[str, Any] = {
                "csrf_token": csrf,
                "key": [south_key],
                "patient_code": "S100",
                "reason": "crossing clinics",
                "remember_slot": "true",
                "code": "N900",
                "name": "Cross Clinic",
                "email": "intruder@south.example",
                "role": "provider",
                "password": "a long enough password",
                "device_id": "AA:BB:CC:00:00:01",
                "device_user": "2",
                "assignee": str(world.south.user_ids[world.south.provider]),
                "text": "crossing clinics",
                "message": "crossing clinics",
                "minutes": "5",
                "activity": "crossing clinics",
                "pin": "1234",
                "state": "on",
            }
            response = client.request(method, concrete, headers=headers, data=None if method in SAFE else data)
            tried += 1
            if params:
                assert response.status_code in (403, 404), f"{who}: {method} {concrete} -> {response.status_code}"
            else:
                assert response.status_code < 500, f"{who}: {method} {concrete} -> {response.status_code}"
            body = response.text
            leaked = [m for m in markers if m in body]
            assert not leaked, f"{who}: {method} {concrete} showed another clinic's {leaked}"
            location = response.headers.get("location", "")
            assert not any(m in location for m in markers), f"{who}: {method} {concrete} redirected to {location}"
    assert tried >= 40
    assert south_state(world) == before, "a North request changed South's data"
    assert south_browser.get("/patients").status_code == 200


def test_the_queue_assign_of_another_clinics_reading_changes_nothing(
    world: World, client_as: Callable[[str], TestClient]
) -> None:
    south_queue = attribution.queue(world.store.conn, "south-clinic")
    key = f"{south_queue[0]['message_id']}:{south_queue[0]['idx']}"
    north = client_as(world.north.admin)
    response = north.post(
        "/queue/assign", data={"csrf_token": session_csrf(north), "key": [key], "patient_code": "N100"}
    )
    assert response.status_code == 303 and "Assigned+0+reading" in response.headers["location"]
    assert attribution.queue_size(world.store.conn, "south-clinic") == len(south_queue)


def test_every_state_change_without_the_csrf_token_is_refused(
    app: FastAPI, world: World, client_as: Callable[[str], TestClient]
) -> None:
    admin = client_as(world.north.admin)
    world.send(world.north.kiosk, [obs("59408-5", 85, "%", day(1))], subject="N100")
    (north_alert,) = alerts.queue(world.store.conn, "north-clinic")
    targets = {
        "patient_id": world.north.patients["N100"],
        "user_id": str(world.north.user_ids[world.north.provider]),
        "alert_id": str(north_alert["id"]),
        "case_id": world.send_case(world.north.kiosk, "N100", text="north case"),
        "consult_id": waiting_consult(world, world.north.kiosk, "N100"),
    }
    before = world.connect().execute("SELECT count(*) FROM audit").fetchone()
    changes = [(m, p) for m, p in routes(app) if m not in SAFE and not p.startswith(("/api/", "/fhir/"))]
    assert len(changes) >= 10
    for method, path in changes:
        concrete = re.sub(r"\{([a-z_]+)\}", lambda m: targets[m.group(1)], path)
        data = {"code": "N555", "name": "No Token", "key": ["x:1"], "patient_code": "N100", "reason": "no token"}
        response = admin.request(method, concrete, data=data)
        assert response.status_code == 403, f"{method} {path} without a CSRF token answered {response.status_code}"
        assert "CSRF" in response.json()["detail"]
    assert admin.get("/patients").status_code == 200  # the admin is still logged in: nothing happened
    assert world.connect().execute("SELECT count(*) FROM audit").fetchone() == (before[0] + 1,)


def test_every_websocket_route_refuses_anyone_without_its_own_credential(
    app: FastAPI, world: World, client_as: Callable[[str], TestClient]
) -> None:
    """The sockets are not exempt: each authenticates itself before reading (app.py says why there and not here)."""
    sockets = websocket_routes(app)
    assert sockets == ["/ws/kiosk", "/ws/consults/{consult_id}"]
    north = client_as(world.north.provider)
    session = north.cookies.get("__Host-session", "")
    consult_id = waiting_consult(world, world.north.kiosk, "N100")
    wrong: list[dict[str, str]] = [
        {},  # nothing at all
        {"authorization": "Bearer the_not-a-kiosk"},
        {"authorization": f"Bearer {api_token(world.db, clinic='north-clinic', name='ws')}"},  # an API token
        {"cookie": f"__Host-session={session}-tampered"},
        {"cookie": "__Host-session="},
    ]
    for path in sockets:
        concrete = path.replace("{consult_id}", consult_id)
        for headers in wrong:
            with TestClient(app).websocket_connect(concrete, headers={"origin": "https://testserver", **headers}) as s:
                s.send_text('{"type": "ping"}')  # never read: the socket closes before its first receive
                with pytest.raises(WebSocketDisconnect) as refused:
                    s.receive_text()
                assert refused.value.code == 4401, (path, headers, refused.value.code)
    # A person's session is no kiosk credential: the kiosk socket takes bearer credentials only.
    with TestClient(app).websocket_connect("/ws/kiosk", headers={"cookie": f"__Host-session={session}"}) as s:
        with pytest.raises(WebSocketDisconnect) as refused:
            s.receive_text()
        assert refused.value.code == 4401
