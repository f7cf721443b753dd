"""Everything the FHIR API serves, through the independent validator (tests/fhir_oracle.py): HL7's R4 JSON
Schema, medplum's validator over the R4 StructureDefinitions, and the vital-signs profiles' own snapshot
rules (fixed units, required value sets, slices), none of them ours.

The world holds every kind of reading the contract accepts in its other units too (a height in m, a pressure
in kPa, a temperature in °F, a weight in lb), devices of every kind and of none, a kiosk whose clock is
hours behind, a cuff that sent a systolic pressure only, and cases. Then: the bulk export, every page of
every search form the CapabilityStatement declares at _count 1, 2 and 5, every resource read by id, the
CapabilityStatement itself, and the OperationOutcomes of errors.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fhir_oracle import assert_valid
from tests.harness import api_token
from tests.workspace.world import CAMERA, NOW, World, obs

DEVICES = {
    "scale": {"id": "scale-1", "type": "ble", "model": "WS-1", "kind": "weight_scale"},
    "eu-cuff": {"id": "eu-cuff-1", "type": "ble", "model": "EU-1", "kind": "blood_pressure"},
    "oximeter": {"id": "oxi-1", "type": "ble", "model": "PO-1", "kind": "pulse_oximeter"},
    "strap": {"id": "strap-1", "type": "ble", "model": "HRM-1", "kind": "heart_rate"},
    "thermometer": {"id": "thermo-1", "type": "ble", "model": "TH-1", "kind": "thermometer"},
    "glucose": {"id": "glu-1", "type": "ble", "model": "GM-1", "kind": "glucose"},
    "old": {"id": "old-1", "type": "ble", "model": "Before kinds"},
    "manual": {"id": "manual-entry", "type": "manual"},
}


def varied(world: World) -> None:
    """Bob's readings in every unit and from every kind of device; one kiosk clock three hours behind."""
    k, t = world.north.kiosk, NOW - timedelta(hours=6)
    d = DEVICES
    sends: list[tuple[list[dict[str, Any]], float]] = [
        ([obs("8302-2", 1.753, "m", t, device=d["scale"]), obs("29463-7", 154.3, "[lb_av]", t, device=d["scale"]),
          obs("39156-5", 22.8, "kg/m2", t, device=d["scale"]), obs("41982-0", 21.5, "%", t, device=d["scale"])], 250.0),
        ([obs("8480-6", 16.0, "kPa", t, device=d["eu-cuff"]), obs("8462-4", 10.7, "kPa", t, device=d["eu-cuff"]),
          obs("8478-0", 12.5, "kPa", t, device=d["eu-cuff"]), obs("8867-4", 64, "/min", t, device=d["eu-cuff"])],
         250.0),
        ([obs("8480-6", 131, "mm[Hg]", t + timedelta(minutes=1), device=d["eu-cuff"])], 250.0),  # systolic only
        ([obs("59408-5", 97, "%", t, device=d["oximeter"]), obs("8867-4", 66, "/min", t, device=d["oximeter"])],
         3 * 3600e3),
        ([obs("8867-4", 88, "/min", t, device=d["strap"])], 250.0),
        ([obs("8310-5", 99.1, "[degF]", t, device=d["thermometer"])], 250.0),
        ([obs("8310-5", 37.2, "Cel", t + timedelta(minutes=5), device=d["thermometer"])], 250.0),
        ([obs("41653-7", 104, "mg/dL", t, device=d["glucose"])], 250.0),
        ([obs("14743-9", 5.8, "mmol/L", t + timedelta(hours=1), device=d["glucose"])], 250.0),
        ([obs("8867-4", 71, "/min", t, device=d["old"])], 250.0),
        ([obs("8302-2", 69.0, "[in_i]", t, device=d["manual"]), obs("29463-7", 70.1, "kg", t, device=d["manual"])],
         0.0),
        ([obs("9279-1", 15, "/min", t, device=CAMERA, method="motion", quality=0.7)], 250.0),
    ]  # fmt: skip
    for observations, offset_ms in sends:
        world.send(k, observations, subject="N101", offset_ms=offset_ms)
    world.send_case(k, "N101", answers=[{"link_id": "main", "value": "Rash"}, {"link_id": "fever", "value": True}],
                    text="Since Monday.")  # fmt: skip
    world.send_case(k, "N100", text="A second case.")


def search_forms(world: World, metadata: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each declared search parameter alone, with several values, and the Observation combinations."""
    alice, bob = world.north.patients["N100"], world.north.patients["N101"]
    values: dict[str, list[str]] = {
        "patient": [alice, bob, f"Patient/{bob.replace('_', '-')}"],
        "subject": [f"Patient/{bob.replace('_', '-')}"],
        "code": ["85354-9", "8867-4", "http://loinc.org|8302-2", "2708-6", "8310-5,29463-7", "41653-7,14743-9",
                 "39156-5", "41982-0", "9279-1"],
        "date": ["ge2026-11-01", "le2026-11-19", "2026-11", f"eq{(NOW - timedelta(hours=6)).date()}",
                 "gt2026-11-20T05:00:00Z", "lt2026-11-20T09:00:00+01:00", "ne2026-11-18", "sa2026-11-19", "eb2026"],
        "_id": [alice.replace("_", "-")],
        "identifier": ["N100", "urn:any|N101"],
        "name": ["North", "zz-nobody"],
    }  # fmt: skip
    forms: list[tuple[str, list[tuple[str, str]]]] = []
    (rest,) = metadata["rest"]
    for resource in rest["resource"]:
        forms.append((resource["type"], []))
        for param in resource["searchParam"]:
            forms += [(resource["type"], [(param["name"], v)]) for v in values[param["name"]]]
    forms += [
        ("Observation", [("patient", bob), ("code", "85354-9"), ("date", "ge2026-11-20")]),
        ("Observation", [("patient", alice), ("date", "ge2026-11-16"), ("date", "lt2026-11-19"), ("_sort", "-date")]),
        ("Observation", [("patient", bob), ("_sort", "-date")]),
    ]
    return forms


@pytest.fixture
def fhir(app: FastAPI, world: World) -> TestClient:
    varied(world)
    token = api_token(world.db, "fhir:read", clinic="north-clinic", name="validator")
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_the_export_every_page_of_every_search_and_every_read_pass_the_independent_validator(
    fhir: TestClient, world: World
) -> None:
    metadata = fhir.get("/fhir/metadata").json()
    served: list[dict[str, Any]] = [metadata]
    export = fhir.get("/fhir/$export")
    assert export.status_code == 200
    exported = [json.loads(line) for line in export.text.splitlines()]
    served += exported
    pages = 0
    for kind, params in search_forms(world, metadata):
        for count in ("1", "2", "5"):
            url: str | None = f"/fhir/{kind}"
            query: list[tuple[str, str]] | None = [*params, ("_count", count)]
            seen = 0
            while url is not None:
                response = fhir.get(url, params=query)
                assert response.status_code == 200, (kind, params, response.text)
                bundle = response.json()
                served.append(bundle)  # the Bundle itself, and through it each entry
                pages += 1
                seen += len(bundle.get("entry", []))
                url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
                query = None
            assert seen == bundle["total"], (kind, params, count)  # every match reached, once
    reads = [fhir.get(f"/fhir/{r['resourceType']}/{r['id']}") for r in exported]
    assert all(r.status_code == 200 for r in reads)
    served += [r.json() for r in reads]
    errors = [fhir.get("/fhir/Encounter"), fhir.get("/fhir/Observation", params={"_count": "x"}),
              fhir.get("/fhir/Observation", params={"date": "last week"}), TestClient(fhir.app).get("/fhir/Patient"),
              fhir.get("/fhir/Observation/obs-nope-0")]  # fmt: skip
    assert all(e.status_code >= 400 for e in errors)
    served += [e.json() for e in errors]
    kinds = {r["resourceType"] for r in exported}
    assert kinds == {"Patient", "Device", "QuestionnaireResponse", "Observation"}
    profiles = {p for r in exported for p in r.get("meta", {}).get("profile", [])}
    assert {p.rsplit("/", 1)[1] for p in profiles} == {
        "bp", "heartrate", "oxygensat", "bodytemp", "bodyweight", "bodyheight", "bmi", "resprate",
    }  # fmt: skip
    assert pages > 150
    assert_valid(served, f"{len(served)} resources and bundles from the export, {pages} search pages and reads")
