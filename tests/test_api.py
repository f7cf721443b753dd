"""The hub API: bearer token on every data route, filters that do what they say, honest health."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from device.outbox import Outbox
from device.protocol.envelope import encode
from device.simulate import DEVICES
from hub.app import EXEMPT_PATHS, create_app
from hub.db import Location
from hub.store import HubStore
from hub.uplink import Sorted, classify
from tests.harness import api_token

AUTH: dict[str, str] = {}
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def ingest_directly(db: Location, bodies: list[bytes], kiosk: str = "k1") -> None:
    """Run the real validation and commit path without a broker (the API tests are about the API)."""
    store = HubStore(db)
    pending = Sorted()
    for body in bodies:
        classify(f"kiosk/{kiosk}/up/observations", body, T0.timestamp(), pending)
    store.commit_batch([a for _, a in pending.accepted], pending.dead)
    store.close()


@pytest.fixture
def db(tmp_path: Path, hub_database: Location) -> Location:
    """Five days of a cuff's and an oximeter's readings and one dead letter, on each store."""
    path = hub_database
    box = Outbox(tmp_path / "o.db", "k1")
    rng = random.Random(1)
    bp, spo2 = DEVICES[0], DEVICES[1]
    bodies = []
    for day in range(5):
        when = T0 + timedelta(days=day)
        bodies.append(encode(box.enqueue("observations", bp.reading(rng, when))))
        bodies.append(encode(box.enqueue("observations", spo2.reading(rng, when))))
    ingest_directly(path, bodies)
    ingest_directly(path, [b"not json"])
    return path


@pytest.fixture
def client(db: Location) -> TestClient:
    AUTH["Authorization"] = f"Bearer {api_token(db)}"
    return TestClient(create_app(db))


def test_every_route_but_the_exempt_list_needs_a_token(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    guarded = [p for p in paths if p not in EXEMPT_PATHS]
    assert len(guarded) >= 4
    assert all(set(paths[p]) == {"get"} for p in paths), "a new method needs its own auth check here"
    for route in guarded:
        path = route.replace("{kiosk_id}", "k1").replace("{attachment_id}", "0b1e8c2a-1111-4222-8333-444455556666")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, f"{path} answered {response.status_code} with {headers}"
        authorised = client.get(path, headers=AUTH)
        if "{attachment_id}" in route:  # no such file in this database: found the route, not the file
            assert authorised.status_code == 404 and "no attachment" in authorised.json()["detail"]
        elif route.startswith("/fhir/"):  # patient data: an operator's token (no clinic) is refused
            assert authorised.status_code == 403 and authorised.json()["resourceType"] == "OperationOutcome"
        else:
            assert authorised.status_code == 200
    assert {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json"} <= EXEMPT_PATHS


def test_kiosks_list(client: TestClient) -> None:
    (kiosk,) = client.get("/api/v1/kiosks", headers=AUTH).json()
    assert kiosk["id"] == "k1" and kiosk["last_seq"] == 10 and kiosk["status"] == "unknown"
    assert client.get("/api/v1/kiosks/nope", headers=AUTH).status_code == 404


def test_observations_by_code_and_time_range(client: TestClient) -> None:
    every = client.get("/api/v1/kiosks/k1/observations", headers=AUTH).json()
    assert len(every) == 5 * (4 + 2)
    assert [o["seq"] for o in every] == sorted(o["seq"] for o in every)
    spo2 = client.get("/api/v1/kiosks/k1/observations", params={"code": "59408-5"}, headers=AUTH).json()
    assert len(spo2) == 5 and {o["unit"] for o in spo2} == {"%"}
    assert spo2[0]["device"]["id"] == "sim-spo2-01"
    window = client.get(
        "/api/v1/kiosks/k1/observations",
        params={"code": "8480-6", "since": "2026-11-02T00:00:00Z", "until": "2026-11-04T00:00:00+00:00"},
        headers=AUTH,
    ).json()
    assert [o["effective"] for o in window] == ["2026-11-02T08:00:00.000Z", "2026-11-03T08:00:00.000Z"]


def test_bad_queries_get_clear_errors(client: TestClient) -> None:
    r = client.get("/api/v1/kiosks/k1/observations", params={"since": "yesterday"}, headers=AUTH)
    assert r.status_code == 422 and "since" in r.text
    r = client.get("/api/v1/kiosks/k1/observations", params={"since": "2026-11-02T00:00:00"}, headers=AUTH)
    assert r.status_code == 422 and "timezone" in r.text
    r = client.get("/api/v1/kiosks/k1/observations", params={"code": "'; drop table"}, headers=AUTH)
    assert r.status_code == 422


def test_dead_letters_are_visible(client: TestClient) -> None:
    (dead,) = client.get("/api/v1/dead-letters", headers=AUTH).json()
    assert dead["raw_preview"] == "not json" and "Invalid JSON" in dead["reason"] and dead["count"] == 1


def test_health_and_readiness(db: Location) -> None:
    ready = {"value": False}
    client = TestClient(create_app(db, broker_ready=lambda: ready["value"]))
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"] == {"database": "ok", "broker": "not connected"}
    ready["value"] = True
    assert client.get("/readyz").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "Telehealth hub"


def test_a_token_needs_the_scope_of_the_route_and_stops_working_when_revoked(db: Location, client: TestClient) -> None:
    from hub.accounts import tokens

    kiosks_only = api_token(db, "kiosks:read", name="fleet-dashboard")
    headers = {"Authorization": f"Bearer {kiosks_only}"}
    assert client.get("/api/v1/kiosks", headers=headers).status_code == 200
    refused = client.get("/api/v1/kiosks/k1/observations", headers=headers)
    assert refused.status_code == 403 and "observations:read" in refused.json()["detail"]
    assert client.get("/api/v1/dead-letters", headers=headers).status_code == 403
    store = HubStore(db)
    (row,) = [t for t in tokens.listing(store.conn) if t["name"] == "fleet-dashboard"]
    assert row["last_used_at"] is not None and "secret" not in row and kiosks_only not in str(row)
    assert tokens.revoke(store.conn, int(str(row["id"])), 0.0)
    store.close()
    assert client.get("/api/v1/kiosks", headers=headers).status_code == 401
