"""FHIR R4 export: every resource validated with fhir.resources (R4B); codes, units and references checked by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from device.protocol.vitals import VITALS
from hub.fhir import resources as fr
from tests.harness import api_token
from tests.workspace.world import World

MODELS = {"Patient": Patient, "Observation": Observation, "Device": Device,
          "QuestionnaireResponse": QuestionnaireResponse}  # fmt: skip


@pytest.fixture
def fhir(app: FastAPI, world: World) -> TestClient:
    token = api_token(world.db, "fhir:read", clinic="north-clinic", name="north-ehr")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    MODELS[resource["resourceType"]].model_validate(resource)
    return resource


def entries(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    Bundle.model_validate(body)
    return [validated(e["resource"]) for e in body.get("entry", [])]


def check_observation(o: dict[str, Any], known: set[str]) -> None:
    """What fhir.resources does not check: codes, units, references, profiles."""
    loinc = [c["code"] for c in o["code"]["coding"] if c["system"] == fr.LOINC]
    assert loinc and all(code in VITALS or code in (fr.BP_PANEL, "2708-6") for code in loinc), loinc
    assert o["subject"]["reference"] in known and o["device"]["reference"] in known
    gateway = next(e for e in o["extension"] if e["url"] == fr.GATEWAY_EXT)
    assert gateway["valueReference"]["reference"] in known
    quantities = [o["valueQuantity"]] if "valueQuantity" in o else [c["valueQuantity"] for c in o["component"]]
    parts = [o["code"]] if "valueQuantity" in o else [c["code"] for c in o["component"]]
    for q, code in zip(quantities, parts, strict=True):
        (lcode,) = [c["code"] for c in code["coding"] if c["system"] == fr.LOINC and c["code"] != "2708-6"]
        assert q["system"] == fr.UCUM and q["code"] == q["unit"] and q["code"] in VITALS[lcode].units
    if fr.BP_PANEL in loinc:
        assert o["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]
        assert {c["code"]["coding"][0]["code"] for c in o["component"]} >= {"8480-6", "8462-4"}
    if "59408-5" in loinc:
        assert "2708-6" in loinc  # the R4 oxygensat profile's required code
    assert o["identifier"][0]["value"]  # the PHD de-duplication identifier


def test_every_resource_of_the_bulk_export_is_valid_and_references_resolve(fhir: TestClient, world: World) -> None:
    response = fhir.get("/fhir/$export")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+ndjson")
    resources = [validated(json.loads(line)) for line in response.text.splitlines()]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    known = {f"{r['resourceType']}/{r['id']}" for r in resources}
    assert len(by_type["Patient"]) == 2 and {p["name"][0]["text"] for p in by_type["Patient"]} == set(world.north.names)
    for o in by_type["Observation"]:
        check_observation(o, known)
    # Each patient: 5 cuff visits = 5 BP panels + 5 cuff pulse readings, and one camera heart rate.
    assert len(by_type["Observation"]) == 2 * (5 + 5 + 1)
    camera = [o for o in by_type["Observation"] if o.get("method", {}).get("text") == "rppg-pos"]
    assert len(camera) == 2 and all(fr.MDC not in {c["system"] for c in o["code"]["coding"]} for o in camera)
    cuff_bp = [o for o in by_type["Observation"] if "component" in o]
    assert all(any(c["system"] == fr.MDC and c["code"] == "150020" for c in o["code"]["coding"]) for o in cuff_bp)
    clock = next(e for e in cuff_bp[0]["extension"] if e["url"] == fr.CLOCK_EXT)
    assert {e["url"] for e in clock["extension"]} == {"device-clock-minus-kiosk", "hub-minus-kiosk-clock"}
    devices = {d["identifier"][0]["value"] for d in by_type["Device"]}
    assert {"AA:BB:CC:00:00:01", "kiosk-camera-0", world.north.kiosk} <= devices
    assert not any("South" in line or "kiosk-south" in line for line in response.text.splitlines())


def test_search_by_patient_code_and_date(fhir: TestClient, world: World) -> None:
    alice = world.north.patients["N100"]
    everything = entries(fhir.get("/fhir/Observation", params={"patient": f"Patient/{fr.patient_fhir_id(alice)}"}))
    assert len(everything) == 11
    bp = entries(fhir.get("/fhir/Observation", params={"patient": alice, "code": "http://loinc.org|85354-9"}))
    assert len(bp) == 5 and all("component" in o for o in bp)
    hr = entries(fhir.get("/fhir/Observation", params={"patient": alice, "code": "8867-4"}))
    assert len(hr) == 6
    window = entries(fhir.get("/fhir/Observation", params=[("patient", alice), ("code", "8867-4"),
        ("date", "ge2026-11-17T00:00:00Z"), ("date", "lt2026-11-19T00:00:00Z")]))  # fmt: skip
    assert len(window) == 3  # days 3 and 2 from the cuff, and the camera reading of day 2
    paged = fhir.get("/fhir/Observation", params={"patient": alice, "_count": 4}).json()
    assert len(paged["entry"]) == 4 and "next" in {link["relation"] for link in paged["link"]}
    (patient,) = entries(fhir.get("/fhir/Patient", params={"identifier": "N100"}))
    assert patient["id"] == fr.patient_fhir_id(alice) and patient["birthDate"] == "1970-01-01"
    assert validated(fhir.get(f"/fhir/Patient/{patient['id']}").json()) == patient
    first = everything[0]
    assert fhir.get(f"/fhir/Observation/{first['id']}").json() == first
    devices = entries(fhir.get("/fhir/Device", params={"patient": alice}))
    assert {d["identifier"][0]["value"] for d in devices} == {"AA:BB:CC:00:00:01", "kiosk-camera-0", "kiosk-north"}


def test_another_clinic_is_out_of_reach_and_errors_are_operation_outcomes(
    fhir: TestClient, world: World, app: FastAPI
) -> None:
    zed = fr.patient_fhir_id(world.south.patients["S100"])
    missing = fhir.get(f"/fhir/Patient/{zed}")
    assert missing.status_code == 404
    OperationOutcome.model_validate(missing.json())
    assert entries(fhir.get("/fhir/Observation", params={"patient": zed})) == []
    assert entries(fhir.get("/fhir/Device", params={"patient": zed})) == []
    bad = fhir.get("/fhir/Observation", params={"date": "yesterday"})
    assert bad.status_code == 400 and "date" in bad.json()["issue"][0]["diagnostics"]
    no_scope = TestClient(app, headers={"Authorization": f"Bearer {api_token(world.db, 'kiosks:read')}"})
    assert no_scope.get("/fhir/Patient").status_code == 403
    actions = [r[0] for r in world.store.conn.execute("SELECT action FROM audit WHERE actor = 'token:north-ehr'")]
    assert {"fhir_search_observation", "fhir_search_device"} <= set(actions)


def test_cases_are_questionnaire_responses_with_question_texts_and_typed_answers(
    fhir: TestClient, world: World
) -> None:
    answers = [{"link_id": "main", "value": "Rash"}, {"link_id": "fever", "value": True},
               {"link_id": "fever_days", "value": 2}, {"link_id": "pain", "value": True},
               {"link_id": "pain_where", "value": ["arm or leg", "skin"]}]  # fmt: skip
    case_id = world.send_case(world.north.kiosk, "N100", answers=answers, text="Itchy since Friday.")
    world.send_case(world.south.kiosk, "S100", text="a south case")
    alice = fr.patient_fhir_id(world.north.patients["N100"])
    (response,) = entries(fhir.get("/fhir/QuestionnaireResponse", params={"patient": alice}))
    assert response["id"] == f"case-{case_id}" and response["subject"]["reference"] == f"Patient/{alice}"
    items = {i["linkId"]: i for i in response["item"]}
    assert items["fever"]["text"] == "Have you had a fever?" and items["fever"]["answer"] == [{"valueBoolean": True}]
    assert items["fever_days"]["answer"] == [{"valueInteger": 2}]
    assert [a["valueString"] for a in items["pain_where"]["answer"]] == ["arm or leg", "skin"]
    assert items["free-text"]["answer"] == [{"valueString": "Itchy since Friday."}]
    assert validated(fhir.get(f"/fhir/QuestionnaireResponse/{response['id']}").json()) == response
    exported = [json.loads(line) for line in fhir.get("/fhir/$export").text.splitlines()]
    assert [r["id"] for r in exported if r["resourceType"] == "QuestionnaireResponse"] == [response["id"]]
