"""The CapabilityStatement (`GET /fhir/metadata`): what this server serves, declared for FHIR clients.

Built from the same tables the routes and builders use (the profiles by code, the search page limit), so
a new profile or limit is declared where it is made. Checked by the independent validator in the tests.
"""

from __future__ import annotations

from typing import Any

from hub import __version__
from hub.fhir import resources as fr
from hub.fhir import search

# When what this statement declares last changed (CapabilityStatement.date is required).
DECLARED = "2026-12-07"
_PAGING = (
    f"_count (0 for the total only; at most {search.MAX_COUNT}, more is served at {search.MAX_COUNT} with a "
    "warning) and _offset (set by the next/previous links) page by resources: a blood-pressure panel is never "
    "split. Bundle.total counts every match. Unknown search parameters are refused (400), not ignored."
)


def _param(name: str, kind: str, doc: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "documentation": doc}


def _resource(kind: str, profile: str, params: list[dict[str, Any]], doc: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{profile}",
        **extra,
        "documentation": doc,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "searchParam": params,
    }


def statement(base: str) -> dict[str, Any]:
    profiles = sorted({f"http://hl7.org/fhir/StructureDefinition/{p}" for p in fr.PROFILES.values()})
    patient_param = _param("patient", "reference", "Patient/<id> or <id>: one patient of the token's clinic")
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": DECLARED,
        "publisher": "telehealth hub",
        "kind": "instance",
        "software": {"name": "telehealth-hub", "version": __version__},
        "implementation": {"description": "Telehealth hub: a clinic's kiosk readings and cases", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read-only. Everything a token reaches belongs to its clinic; every read, search and export is "
                    "audited. " + _PAGING + " GET /fhir/$export streams the clinic's Patients, Devices, "
                    "QuestionnaireResponses and Observations as NDJSON (synchronous: not the Bulk Data kick-off "
                    "protocol)."
                ),
                "security": {
                    "cors": False,
                    "description": (
                        "An API token with the fhir:read scope, issued to one clinic (`hub token create --clinic "
                        "<id> --scope fhir:read`), sent as `Authorization: Bearer <token>` over TLS."
                    ),
                },
                "resource": [
                    _resource(
                        "Patient",
                        "Patient",
                        [
                            _param("_id", "token", "the patient's id"),
                            _param("identifier", "token", "[system|]the kiosk check-in code"),
                            _param("name", "string", "part of the name"),
                        ],
                        "The clinic's patients, ordered by name.",
                    ),
                    _resource(
                        "Observation",
                        "Observation",
                        [
                            patient_param,
                            _param("subject", "reference", "the same as patient"),
                            _param(
                                "code",
                                "token",
                                "[http://loinc.org|]LOINC code, comma-separated for any; 85354-9 "
                                "finds blood-pressure panels, 2708-6 pulse-oximetry readings",
                            ),
                            _param(
                                "date",
                                "date",
                                "the measurement time on the hub's corrected clock; prefixes eq ne "
                                "gt ge lt le sa eb, repeatable (ANDed); a time without a zone is UTC",
                            ),
                        ],
                        "Readings from the kiosks' Bluetooth devices and camera. Vital signs claim their FHIR R4 "
                        "vital-signs profile, in its units (a value converted keeps the device's own in the "
                        "as-measured extension); blood pressure is one panel with components. _sort: date "
                        "(default) or -date.",
                        supportedProfile=profiles,
                    ),
                    _resource(
                        "Device",
                        "Device",
                        [patient_param],
                        "The measuring devices and the kiosks (personal health gateways) that forwarded readings.",
                    ),
                    _resource(
                        "QuestionnaireResponse",
                        "QuestionnaireResponse",
                        [patient_param],
                        "Asynchronous cases: intake answers, the patient's own words and the case's photo ids.",
                    ),
                ],
            }
        ],
    }
