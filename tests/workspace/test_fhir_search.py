"""FHIR searches as an EHR's client reads them (issue 20): units the profiles allow, pages of whole resources,
the total of every match, dates on the clock the resource shows, errors that are OperationOutcomes, and the
11073 term of the device that measured.

Each test here failed on the hub before its fix; tests/workspace/test_fhir_validator.py puts every page of
these searches through the independent validator as well.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from hub.fhir import resources as fr
from tests.harness import api_token
from tests.workspace.world import CUFF, NOW, World, obs

SCALE = {"id": "scale-1", "type": "ble", "manufacturer": "Example", "model": "WS-1", "kind": "weight_scale"}
KPA_CUFF = {"id": "kpa-cuff-1", "type": "ble", "model": "EU-1", "kind": "blood_pressure"}
OXIMETER = {"id": "oxi-1", "type": "ble", "model": "PO-1", "kind": "pulse_oximeter"}
STRAP = {"id": "strap-1", "type": "ble", "model": "HRM-1", "kind": "heart_rate"}
OLD_KIOSK_DEVICE = {"id": "unknown-kind-1", "type": "ble", "model": "Old"}  # a kiosk from before `kind`


@pytest.fixture
def fhir(app: FastAPI, world: World) -> TestClient:
    token = api_token(world.db, "fhir:read", clinic="north-clinic", name="north-ehr")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def bob(world: World) -> str:
    return world.north.patients["N101"]


def search(fhir: TestClient, path: str, params: Any) -> dict[str, Any]:
    response = fhir.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    return body


def matches(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in body.get("entry", []) if e["search"]["mode"] == "match"]


def walk(fhir: TestClient, path: str, params: Any) -> list[dict[str, Any]]:
    """Every page of a search, by its next links, as a client follows them."""
    pages = [search(fhir, path, params)]
    while nxt := next((link["url"] for link in pages[-1].get("link", []) if link["relation"] == "next"), None):
        pages.append(search(fhir, nxt, None))
        assert len(pages) < 500
    return pages


# -- 1. units the profile allows ---------------------------------------------------------------


def test_a_height_in_metres_and_a_pressure_in_kpa_are_served_in_the_profiles_units(
    fhir: TestClient, world: World
) -> None:
    when = NOW - timedelta(hours=5)
    world.send(world.north.kiosk, [obs("8302-2", 1.753, "m", when, device=SCALE)], subject="N101")
    world.send(
        world.north.kiosk,
        [obs("8480-6", 16.0, "kPa", when, device=KPA_CUFF), obs("8462-4", 10.7, "kPa", when, device=KPA_CUFF)],
        subject="N101",
    )
    (height,) = matches(search(fhir, "/fhir/Observation", {"patient": bob(world), "code": "8302-2"}))
    assert height["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bodyheight"]
    q = height["valueQuantity"]
    assert (q["value"], q["code"], q["unit"], q["system"]) == (175.3, "cm", "cm", fr.UCUM)
    (as_measured,) = q["extension"]
    assert as_measured["url"] == fr.AS_MEASURED_EXT and as_measured["valueQuantity"]["value"] == 1.753
    assert as_measured["valueQuantity"]["code"] == "m"
    assert height["identifier"][0]["value"].endswith("-8302-2-1.753")  # the PHD identifier keeps the device's
    panels = matches(search(fhir, "/fhir/Observation", {"patient": bob(world), "code": "85354-9", "_sort": "-date"}))
    kpa = next(p for p in panels if p["device"]["reference"] == f"Device/{fr.device_id('north-clinic', 'kpa-cuff-1')}")
    assert kpa["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]
    values = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in kpa["component"]}
    assert values["8480-6"]["code"] == values["8462-4"]["code"] == "mm[Hg]"
    assert values["8480-6"]["value"] == 120.0 and values["8462-4"]["value"] == 80.3  # 16.0 and 10.7 kPa
    assert values["8480-6"]["extension"][0]["valueQuantity"] == {
        "value": 16.0, "unit": "kPa", "system": fr.UCUM, "code": "kPa",
    }  # fmt: skip


# -- 2 and 3. pages of whole resources, and the total ---------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 5])
def test_paging_never_splits_a_blood_pressure_panel_and_total_counts_every_match(
    fhir: TestClient, world: World, count: int
) -> None:
    alice = world.north.patients["N100"]
    pages = walk(fhir, "/fhir/Observation", {"patient": alice, "code": "85354-9", "_count": count})
    panels = [r for page in pages for r in matches(page)]
    assert all(page["total"] == 5 for page in pages)  # five cuff visits, whatever the page size
    assert len(pages) == -(-5 // count) and all(len(matches(p)) <= count for p in pages)
    assert len(panels) == 5 and len({p["id"] for p in panels}) == 5
    for panel in panels:
        assert {c["code"]["coding"][0]["code"] for c in panel["component"]} == {"8480-6", "8462-4"}
        read = fhir.get(f"/fhir/Observation/{panel['id']}")
        assert read.status_code == 200 and read.json() == panel
    everything = walk(fhir, "/fhir/Observation", {"patient": alice, "_count": count})
    assert all(page["total"] == 11 for page in everything)  # 5 panels, 5 cuff pulses, 1 camera pulse
    assert sum(len(matches(p)) for p in everything) == 11


def test_count_zero_gives_the_total_only_and_a_count_above_the_limit_is_served_at_the_limit_with_a_warning(
    fhir: TestClient, world: World
) -> None:
    alice = world.north.patients["N100"]
    only_total = search(fhir, "/fhir/Observation", {"patient": alice, "_count": 0})
    assert only_total["total"] == 11 and "entry" not in only_total
    big = search(fhir, "/fhir/Observation", {"patient": alice, "_count": 5000})
    assert len(matches(big)) == 11
    (warning,) = [e["resource"] for e in big["entry"] if e["search"]["mode"] == "outcome"]
    OperationOutcome.model_validate(warning)
    assert "1000" in warning["issue"][0]["diagnostics"] and warning["issue"][0]["severity"] == "warning"


# -- 4. dates on the corrected clock -----------------------------------------------------------------


def test_date_search_and_order_use_the_time_the_resource_shows_not_the_kiosks_raw_clock(
    fhir: TestClient, world: World
) -> None:
    behind = 3 * 3600 * 1000.0  # the kiosk's clock is three hours behind the hub's
    raw = NOW - timedelta(hours=10)
    world.send(world.north.kiosk, [obs("9279-1", 14, "/min", raw, device=CUFF)], subject="N101", offset_ms=behind)
    # Measured later by the hub's clock (raw - 3 h + 3 h... = raw + 3 h) than this one at raw + 1 h, sent by a
    # kiosk whose clock is right: by the raw stamps it would come second.
    world.send(
        world.north.kiosk, [obs("9279-1", 16, "/min", raw + timedelta(hours=1), device=CUFF)], subject="N101",
        offset_ms=0.0,
    )  # fmt: skip
    found = matches(search(fhir, "/fhir/Observation", {"patient": bob(world), "code": "9279-1"}))
    assert [o["valueQuantity"]["value"] for o in found] == [16, 14]  # oldest first, by the corrected time
    late = found[1]
    shown = datetime.fromisoformat(late["effectiveDateTime"])
    assert shown == raw + timedelta(hours=3)
    at = late["effectiveDateTime"]
    for params in ([("date", f"ge{at}"), ("date", f"le{at}")], [("date", at)], [("date", f"eq{at[:10]}")]):
        hits = matches(search(fhir, "/fhir/Observation", [("patient", bob(world)), ("code", "9279-1"), *params]))
        assert late["id"] in {o["id"] for o in hits}, params
    before = matches(search(fhir, "/fhir/Observation", [("patient", bob(world)), ("code", "9279-1"),
                                                         ("date", f"lt{at}")]))  # fmt: skip
    assert [o["valueQuantity"]["value"] for o in before] == [16]
    newest_first = matches(search(fhir, "/fhir/Observation", {"patient": bob(world), "code": "9279-1",
                                                               "_sort": "-date"}))  # fmt: skip
    assert [o["valueQuantity"]["value"] for o in newest_first] == [14, 16]


def test_a_date_stands_for_its_whole_range(fhir: TestClient, world: World) -> None:
    alice = world.north.patients["N100"]
    day2 = (NOW - timedelta(days=2)).date().isoformat()  # the cuff's day-2 visit and the camera's reading
    on_day = matches(search(fhir, "/fhir/Observation", {"patient": alice, "code": "8867-4", "date": day2}))
    assert len(on_day) == 2
    up_to = matches(search(fhir, "/fhir/Observation", {"patient": alice, "code": "8867-4", "date": f"le{day2}"}))
    assert len(up_to) == 5  # days 5, 4, 3 and both of day 2
    month = NOW.strftime("%Y-%m")
    assert len(matches(search(fhir, "/fhir/Observation", {"patient": alice, "date": month}))) == 11


# -- 5. errors are OperationOutcomes ------------------------------------------------------------------


def outcome_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json"), response.headers
    body: dict[str, Any] = response.json()
    OperationOutcome.model_validate(body)
    assert body["issue"] and all(i["severity"] == "error" and i["diagnostics"] for i in body["issue"])
    return body


def test_every_error_under_fhir_is_an_operation_outcome(app: FastAPI, world: World, fhir: TestClient) -> None:
    anonymous = TestClient(app)
    assert outcome_of(anonymous.get("/fhir/Patient"), 401)["issue"][0]["code"] == "login"
    unknown = TestClient(app, headers={"Authorization": "Bearer the_not-a-real-token"})
    assert "invalid or revoked" in outcome_of(unknown.get("/fhir/Observation"), 401)["issue"][0]["diagnostics"]
    no_scope = TestClient(app, headers={"Authorization": f"Bearer {api_token(world.db, 'kiosks:read')}"})
    assert "fhir:read" in outcome_of(no_scope.get("/fhir/Patient"), 403)["issue"][0]["diagnostics"]
    encounter = outcome_of(fhir.get("/fhir/Encounter"), 404)
    assert encounter["issue"][0]["code"] == "not-supported" and "metadata" in encounter["issue"][0]["diagnostics"]
    assert "_count" in outcome_of(fhir.get("/fhir/Observation", params={"_count": -1}), 400)["issue"][0]["diagnostics"]
    assert (
        "_count" in outcome_of(fhir.get("/fhir/Observation", params={"_count": "ten"}), 400)["issue"][0]["diagnostics"]
    )
    typo = outcome_of(fhir.get("/fhir/Observation", params={"patinet": "x"}), 400)  # never "all patients" instead
    assert "patinet" in typo["issue"][0]["diagnostics"]
    assert outcome_of(fhir.post("/fhir/Patient", json={}), 405)["issue"][0]["code"] == "not-supported"
    assert outcome_of(fhir.get("/fhir/Observation", params={"date": "2026-02-30"}), 400)
    assert outcome_of(fhir.get("/fhir/Observation", params={"code": "http://snomed.info/sct|1"}), 400)
    assert outcome_of(fhir.get("/fhir/Device/nope"), 404)["issue"][0]["code"] == "not-found"


def test_a_fhir_token_without_a_clinic_is_refused_when_created(tmp_path: Path, world: World) -> None:
    data = world.cli_data()
    hub = [sys.executable, "-m", "hub.cli"]
    refused = subprocess.run([*hub, "token", "create", *data, "--name", "ehr", "--scope", "fhir:read"],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 2 and "--clinic" in refused.stderr, refused.stderr
    with_clinic = [
        "token",
        "create",
        *data,
        "--name",
        "ehr",
        "--scope",
        "fhir:read",
        "--clinic",
        "north-clinic",
    ]
    made = subprocess.run([*hub, *with_clinic], capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0 and made.stdout.startswith("the_"), made.stderr


# -- 6. the 11073 term of the device that measured -------------------------------------------------------


def test_each_pulse_rate_carries_the_mdc_term_of_its_device_kind(fhir: TestClient, world: World) -> None:
    when = NOW - timedelta(hours=2)
    for i, device in enumerate((OXIMETER, STRAP, OLD_KIOSK_DEVICE)):
        world.send(world.north.kiosk, [obs("8867-4", 60 + i, "/min", when + timedelta(minutes=i), device=device)],
                   subject="N101")  # fmt: skip
    world.send(world.north.kiosk, [obs("8867-4", 70, "/min", when - timedelta(minutes=1), device=CUFF)],
               subject="N101")  # fmt: skip
    recent = {"patient": bob(world), "code": "8867-4", "date": f"ge{(when - timedelta(minutes=1)).isoformat()}"}
    found = matches(search(fhir, "/fhir/Observation", recent))
    terms = {
        o["valueQuantity"]["value"]: [c["display"] for c in o["code"]["coding"] if c["system"] == fr.MDC] for o in found
    }
    assert terms == {
        70: ["MDC_PULS_RATE_NON_INV"],  # the cuff's
        60: ["MDC_PULS_OXIM_PULS_RATE"],  # the oximeter's
        61: ["MDC_ECG_HEART_RATE"],  # the chest strap's
        62: [],  # a device of unknown kind: LOINC only, no guess
    }
    codes = {
        o["valueQuantity"]["value"]: [c["code"] for c in o["code"]["coding"] if c["system"] == fr.MDC] for o in found
    }
    assert codes[70] == ["149546"] and codes[60] == ["149530"] and codes[61] == ["147842"]


# -- what the server declares -----------------------------------------------------------------------


def test_metadata_declares_the_resources_searches_and_profiles_served(
    app: FastAPI, fhir: TestClient, world: World
) -> None:
    response = TestClient(app).get("/fhir/metadata")  # no token: clients read it before they log in
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+json")
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    (rest,) = statement["rest"]
    served = {r["type"]: r for r in rest["resource"]}
    assert set(served) == {"Patient", "Observation", "Device", "QuestionnaireResponse"}
    assert {p["name"] for p in served["Observation"]["searchParam"]} == {"patient", "subject", "code", "date"}
    assert "http://hl7.org/fhir/StructureDefinition/bp" in served["Observation"]["supportedProfile"]
    # What it declares is what the server does: every declared search answers, with matches.
    alice = world.north.patients["N100"]
    example = {"patient": alice, "subject": f"Patient/{fr.patient_fhir_id(alice)}", "code": "8867-4",
               "date": "ge2026", "_id": fr.patient_fhir_id(alice), "identifier": "N100", "name": "Alice"}  # fmt: skip
    for kind, resource in served.items():
        for param in resource["searchParam"]:
            body = search(fhir, f"/fhir/{kind}", {param["name"]: example[param["name"]]})
            assert body["total"] >= 1 or kind == "QuestionnaireResponse", (kind, param["name"])
