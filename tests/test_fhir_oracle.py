"""The FHIR oracle (tests/fhir_oracle.py) itself: it passes valid R4 resources and refuses broken ones, saying why.

Hand-written resources, not the hub's: the oracle must be trusted before it judges the hub.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests import fhir_oracle

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SD = "http://hl7.org/fhir/StructureDefinition/"
VITAL_SIGNS = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]
}


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def vital(profile: str, codes: list[str], value: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{profile}-1",
        "meta": {"profile": [SD + profile]},
        "status": "final",
        "category": [VITAL_SIGNS],
        "code": {"coding": [{"system": LOINC, "code": c} for c in codes]},
        "subject": {"reference": "Patient/pt-1"},
        "effectiveDateTime": "2026-12-07T10:15:00+01:00",
    }
    if value is not None:
        resource["valueQuantity"] = value
    return resource | extra


def component(code: str, value: float, unit: str = "mm[Hg]") -> dict[str, Any]:
    return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": quantity(value, unit)}


def bp(*parts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return vital("bp", ["85354-9"], component=list(parts), **extra)


SYS, DIA, MEAN = component("8480-6", 120), component("8462-4", 80), component("8478-0", 93)
PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "pt-1", "name": [{"family": "Example", "given": ["Ann"]}]}
DEVICE: dict[str, Any] = {
    "resourceType": "Device",
    "id": "dev-1",
    "status": "active",
    "manufacturer": "Acme",
    "serialNumber": "A1",
}
HEART_RATE = vital("heartrate", ["8867-4"], quantity(72, "/min"))

VALID: dict[str, dict[str, Any]] = {
    "patient": PATIENT,
    "device": DEVICE,
    "questionnaire-response": {
        "resourceType": "QuestionnaireResponse",
        "id": "case-1",
        "status": "completed",
        "subject": {"reference": "Patient/pt-1"},
        "authored": "2026-12-07T10:00:00Z",
        "item": [
            {"linkId": "fever", "text": "Fever?", "answer": [{"valueBoolean": True}]},
            {"linkId": "pain", "answer": [{"valueInteger": 4}]},
        ],
    },
    "operation-outcome": {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found", "diagnostics": "no such patient"}],
    },
    "searchset": {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 2,
        "entry": [
            {"fullUrl": "https://hub.example/fhir/Patient/pt-1", "resource": PATIENT, "search": {"mode": "match"}},
            {"fullUrl": "https://hub.example/fhir/Device/dev-1", "resource": DEVICE, "search": {"mode": "include"}},
        ],
    },
    "capability-statement": {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-07",
        "kind": "instance",
        "implementation": {"description": "Telehealth hub FHIR export"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": "Observation",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [{"name": "patient", "type": "reference"}, {"name": "date", "type": "date"}],
                    }
                ],
            }
        ],
    },
    "heartrate": HEART_RATE,
    "resprate": vital("resprate", ["9279-1"], quantity(16, "/min")),
    "oxygensat": vital("oxygensat", ["2708-6", "59408-5"], quantity(97, "%")),
    "bodytemp": vital("bodytemp", ["8310-5"], quantity(36.8, "Cel")),
    "bodyweight": vital("bodyweight", ["29463-7"], quantity(70.5, "kg")),
    "bodyheight": vital("bodyheight", ["8302-2"], quantity(172, "cm")),
    "bmi": vital("bmi", ["39156-5"], quantity(23.8, "kg/m2")),
    "bp": bp(SYS, DIA),
    "bp-with-mean": bp(SYS, DIA, MEAN),
}

WRONG_DATE = copy.deepcopy(HEART_RATE) | {"effectiveDateTime": "2026-13-45"}
NO_CATEGORY = {k: v for k, v in HEART_RATE.items() if k != "category"}
BAD_BUNDLE = copy.deepcopy(VALID["searchset"])
BAD_BUNDLE["entry"][1]["resource"] = {**DEVICE, "status": "switched-on"}

# name -> (resource, substrings that one issue must all contain)
INVALID: dict[str, tuple[dict[str, Any], list[str]]] = {
    "bodyheight-in-m": (
        vital("bodyheight", ["8302-2"], quantity(1.72, "m")),
        ["snapshot[bodyheight]", '"m" is not in the required value set', "ValueSet/ucum-bodylength"],
    ),
    "bp-systolic-in-kpa": (
        bp(component("8480-6", 16, "kPa"), DIA),
        ["SystolicBP", '"kPa" is not the fixed value "mm[Hg]"', "@Observation.component[0].valueQuantity.code"],
    ),
    "bp-without-diastolic": (bp(SYS, MEAN), ["Observation.component:DiastolicBP: 0 value(s)", "1..1"]),
    "bp-with-value": (
        bp(SYS, DIA, valueQuantity=quantity(120, "mm[Hg]")),
        ["Observation.value[x]:valueQuantity: 1 value(s)", "0..0"],
    ),
    "heartrate-beats-per-min": (
        vital("heartrate", ["8867-4"], quantity(72, "{beats}/min")),
        ['"{beats}/min" is not the fixed value "/min"', "@Observation.valueQuantity.code"],
    ),
    "oxygensat-without-2708-6": (
        vital("oxygensat", ["59408-5"], quantity(97, "%")),
        ["Observation.code.coding:OxygenSatCode: 0 value(s)"],
    ),
    "vital-sign-without-category": (NO_CATEGORY, ["Observation.category:VSCat: 0 value(s)", "1..1"]),
    "impossible-date": (WRONG_DATE, ['"2026-13-45"', "@Observation.effectiveDateTime"]),
    "unknown-element": (PATIENT | {"colour": "blue"}, ['unknown element "colour"', "@Patient"]),
    "id-with-underscore": (PATIENT | {"id": "pt_1"}, ['"pt_1" should match pattern', "@Patient.id"]),
    "operation-outcome-without-issue": (
        {"resourceType": "OperationOutcome"},
        ["schema:", "required property 'issue'", "@OperationOutcome"],
    ),
    "unknown-profile": (
        PATIENT | {"meta": {"profile": ["http://example.org/StructureDefinition/kiosk-patient"]}},
        ["profile not known to the validator", "kiosk-patient", "@Patient.meta.profile[0]"],
    ),
    "bundle-with-a-bad-entry": (BAD_BUNDLE, ["entry[1] ", '"switched-on"', "@Device.status"]),
}

# Broken for every checker: an unknown element (schema, medplum), a kPa systolic and no diastolic (the profile).
BROKEN_BP = bp(component("8480-6", 16, "kPa"), MEAN, foo=1)
ALL = [*VALID.values(), *(resource for resource, _ in INVALID.values()), BROKEN_BP]


@pytest.fixture(scope="module")
def verdicts() -> list[fhir_oracle.Result]:
    """One validator run for every case (loading the definitions takes ~2 s)."""
    return fhir_oracle.results(ALL)


@pytest.mark.parametrize("name", list(VALID))
def test_valid_resource_passes(name: str, verdicts: list[fhir_oracle.Result]) -> None:
    assert verdicts[list(VALID).index(name)]["issues"] == []


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_resource_is_refused_with_the_reason(name: str, verdicts: list[fhir_oracle.Result]) -> None:
    issues = verdicts[len(VALID) + list(INVALID).index(name)]["issues"]
    wanted = INVALID[name][1]
    assert any(all(part in issue for part in wanted) for issue in issues), (wanted, issues)


def test_each_checker_speaks(verdicts: list[fhir_oracle.Result]) -> None:
    """The JSON Schema, medplum (base and profile) and the snapshot checker each report on a broken bp panel."""
    issues = verdicts[-1]["issues"]
    for checker in ("schema:", "medplum:", "medplum[bp]:", "snapshot[bp]:"):
        assert any(issue.startswith(checker) for issue in issues), (checker, issues)


def test_profile_shortcut_agrees_with_medplums_documented_call(verdicts: list[fhir_oracle.Result]) -> None:
    """validate.mjs parses each profile once instead of on every call: the verdicts must not change."""
    assert fhir_oracle.results(ALL, medplum_reparse=True) == verdicts


def test_assert_valid_names_the_resource_and_the_issue() -> None:
    fhir_oracle.assert_valid([VALID["bp"], VALID["patient"]], "two valid resources")
    with pytest.raises(AssertionError) as failure:
        fhir_oracle.assert_valid([VALID["patient"], WRONG_DATE], "hand-written")
    message = str(failure.value)
    assert "hand-written: 1 of 2 resource(s) fail" in message
    assert "[1] Observation/heartrate-1" in message
    assert "2026-13-45" in message


def test_missing_install_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fhir_oracle, "VALIDATOR_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="make fhir-validator"):
        fhir_oracle.problems([PATIENT])
