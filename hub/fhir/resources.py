"""Pure builders: hub rows in, FHIR R4 resources (plain JSON dicts) out.

Following the vital-signs profiles of FHIR R4 and the HL7 Personal Health Device IG:
LOINC codes plus the IEEE 11073-10101 (MDC) code for readings from Bluetooth health
devices, UCUM units, blood pressure as one Observation with systolic and diastolic
components, the measuring device and the kiosk (the gateway) as Device resources, and
the PHD identifier (device, patient, time, type, value) for de-duplication by receivers.
Camera estimates carry LOINC only: no 11073 device measured them.

fhir.resources validates these in the tests; it does not check codes, units or
references, so the tests check those too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from device.protocol.unit_conversion import in_unit
from device.protocol.vitals import VITALS

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
GATEWAY_EXT = "http://hl7.org/fhir/uv/phd/StructureDefinition/GatewayDeviceExt"
# Our own extensions: the corrections applied to the measurement time (device clock vs kiosk, kiosk vs hub),
# and a value as the device reported it when the profile's unit needed a conversion.
CLOCK_EXT = "urn:telehealth-hub:fhir:StructureDefinition:clock-correction"
AS_MEASURED_EXT = "urn:telehealth-hub:fhir:StructureDefinition:as-measured"
HUB = "urn:telehealth-hub"

BP_PANEL = "85354-9"
NOT_VITAL_SIGNS = frozenset({"41653-7", "14743-9", "99504-3"})  # glucose: a measurement, not a vital sign
BP_PARTS = {"8480-6": "systolic", "8462-4": "diastolic", "8478-0": "mean"}

# LOINC -> (MDC code, MDC reference id), for readings a PHD (Bluetooth health device) measured, whatever its kind.
MDC_CODES: dict[str, tuple[str, str]] = {
    "59408-5": ("150456", "MDC_PULS_OXIM_SAT_O2"),
    "8480-6": ("150021", "MDC_PRESS_BLD_NONINV_SYS"),
    "8462-4": ("150022", "MDC_PRESS_BLD_NONINV_DIA"),
    "8478-0": ("150023", "MDC_PRESS_BLD_NONINV_MEAN"),
    BP_PANEL: ("150020", "MDC_PRESS_BLD_NONINV"),
    "8310-5": ("150364", "MDC_TEMP_BODY"),
    "29463-7": ("188736", "MDC_MASS_BODY_ACTUAL"),
    "8302-2": ("188740", "MDC_LEN_BODY_ACTUAL"),
    "39156-5": ("188752", "MDC_RATIO_MASS_BODY_LEN_SQ"),
    "41982-0": ("188748", "MDC_BODY_FAT"),
    "41653-7": ("160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),
    "14743-9": ("160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),
    "9279-1": ("151562", "MDC_RESP_RATE"),
}
# One LOINC vital, a different 11073 term by the kind of device that measured it (the device's `kind`, from
# its Bluetooth SIG service): the cuff's pulse is non-invasive pulse rate, the oximeter's is taken from the
# plethysmogram, the chest strap's is the heart's electrical rate. A device of unknown kind gets no MDC term.
MDC_BY_KIND: dict[tuple[str, str], tuple[str, str]] = {
    ("8867-4", "blood_pressure"): ("149546", "MDC_PULS_RATE_NON_INV"),
    ("8867-4", "pulse_oximeter"): ("149530", "MDC_PULS_OXIM_PULS_RATE"),
    ("8867-4", "heart_rate"): ("147842", "MDC_ECG_HEART_RATE"),
}
KIND_DEPENDENT = frozenset(code for code, _ in MDC_BY_KIND)

# FHIR R4 vital-signs profiles by LOINC code.
PROFILES: dict[str, str] = {
    "8867-4": "heartrate",
    "9279-1": "resprate",
    "59408-5": "oxygensat",
    "8310-5": "bodytemp",
    "29463-7": "bodyweight",
    "8302-2": "bodyheight",
    "39156-5": "bmi",
    BP_PANEL: "bp",
}
# The UCUM units each profile allows (its required value set or fixed code), the first the one converted to.
# Blood pressure: every component, the mean too (the bp profile fixes mm[Hg] for its sliced components).
PROFILE_UNITS: dict[str, tuple[str, ...]] = {
    "heartrate": ("/min",),
    "resprate": ("/min",),
    "oxygensat": ("%",),
    "bodytemp": ("Cel", "[degF]"),
    "bodyweight": ("kg", "g", "[lb_av]"),
    "bodyheight": ("cm", "[in_i]"),
    "bmi": ("kg/m2",),
    "bp": ("mm[Hg]",),
}
# Significant decimals kept when converting into a profile's unit: a cuff's 0.1 kPa is 0.75 mm[Hg].
_DECIMALS = {"mm[Hg]": 1, "cm": 1, "[in_i]": 2, "kg": 3, "Cel": 2}


def profile_url(code: str) -> str | None:
    name = PROFILES.get(code)
    return None if name is None else f"http://hl7.org/fhir/StructureDefinition/{name}"


def device_id(clinic_id: str, device: str) -> str:
    """A stable FHIR id for a measuring device (FHIR ids allow [A-Za-z0-9-.], at most 64)."""
    return "dev-" + hashlib.sha256(f"{clinic_id}\0{device}".encode()).hexdigest()[:24]


def kiosk_device_id(kiosk: str) -> str:
    return "kiosk-" + hashlib.sha256(kiosk.encode()).hexdigest()[:24]


def patient_fhir_id(patient_id: str) -> str:
    """Hub patient ids are `pt_<hex>`; FHIR ids may not hold `_`."""
    return patient_id.replace("_", "-")


def patient_hub_id(fhir_id: str) -> str:
    bare = fhir_id.removeprefix("Patient/")
    return "pt_" + bare[3:] if bare.startswith("pt-") else bare


def patient(row: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_fhir_id(row["id"]),
        "identifier": [{"system": f"{HUB}:clinic:{row['clinic_id']}:check-in-code", "value": row["code"]}],
        "name": [{"text": row["name"]}],
    }
    if row.get("birth_date"):
        resource["birthDate"] = row["birth_date"]
    return resource


def device(clinic_id: str, dev: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": device_id(clinic_id, str(dev["id"])),
        "identifier": [{"system": f"{HUB}:device-id", "value": str(dev["id"])}],
        "status": "active",
    }
    if dev.get("manufacturer"):
        resource["manufacturer"] = dev["manufacturer"]
    if dev.get("model"):
        resource["deviceName"] = [{"name": dev["model"], "type": "model-name"}]
        resource["modelNumber"] = dev["model"]
    if dev.get("serial"):
        resource["serialNumber"] = dev["serial"]
    if dev.get("firmware"):
        resource["version"] = [{"type": {"text": "firmware"}, "value": dev["firmware"]}]
    kind = {"ble": "Bluetooth health device", "camera": "kiosk camera (estimates)"}.get(str(dev.get("type")))
    resource["type"] = {"text": kind or str(dev.get("type", "device"))}
    return resource


def gateway(kiosk: str) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": kiosk_device_id(kiosk),
        "identifier": [{"system": f"{HUB}:kiosk-id", "value": kiosk}],
        "status": "active",
        "type": {"text": "Telehealth kiosk (personal health gateway)"},
    }


def _mdc(code: str, kind: str | None) -> tuple[str, str] | None:
    if code in KIND_DEPENDENT:
        return None if kind is None else MDC_BY_KIND.get((code, kind))
    return MDC_CODES.get(code)


def _coding(code: str, phd: bool, kind: str | None = None) -> list[dict[str, Any]]:
    spec = VITALS.get(code)
    coding = [{"system": LOINC, "code": code, **({"display": spec.name} if spec else {})}]
    if code == "59408-5":  # the R4 oxygensat profile requires 2708-6 beside the pulse-oximetry code
        coding.insert(0, {"system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"})
    mdc = _mdc(code, kind) if phd else None
    if mdc is not None:
        coding.append({"system": MDC, "code": mdc[0], "display": mdc[1]})
    return coding


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _profiled_quantity(value: float, unit: str, allowed: tuple[str, ...] | None) -> dict[str, Any] | None:
    """The value in a unit the profile allows, the device's own value kept beside it; None if none converts."""
    if allowed is None or unit in allowed:
        return _quantity(value, unit)
    wanted = allowed[0]
    converted = in_unit(value, unit, wanted)
    if converted is None:
        return None
    quantity = _quantity(round(converted, _DECIMALS.get(wanted, 3)), wanted)
    quantity["extension"] = [{"url": AS_MEASURED_EXT, "valueQuantity": _quantity(value, unit)}]
    return quantity


def observation_id(message_id: str, idx: int) -> str:
    return f"obs-{message_id}-{idx}"


def _phd_identifier(device: str, patient_id: str, effective: str, code: str, value: str) -> dict[str, Any]:
    return {"value": "-".join((device, patient_id, effective, code, value))}


def observation(group: list[dict[str, Any]], clinic_id: str) -> dict[str, Any]:
    """One Observation from one reading, or from a cuff's systolic/diastolic/mean taken together (a BP panel).

    Each row carries `corrected`: its measurement time on the hub's clock (what the searches compare).
    A vital sign claims its R4 profile only in the profile's units: a height in m is served in cm, a pressure
    in kPa in mm[Hg], each with the device's own value in an extension; the PHD identifier keeps the device's.
    """
    first = group[0]
    dev = first["device"]
    phd = dev.get("type") == "ble"
    kind = dev.get("kind")
    bp = len(group) > 1 or first["code"] in BP_PARTS
    code = BP_PANEL if bp else first["code"]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id(first["message_id"], first["idx"]),
        "status": "final",
        "code": {"coding": _coding(code, phd, kind)},
        "subject": {"reference": f"Patient/{patient_fhir_id(first['patient_id'])}"},
        "effectiveDateTime": first["corrected"],
        "device": {"reference": f"Device/{device_id(clinic_id, str(dev['id']))}"},
        "extension": [
            {"url": GATEWAY_EXT, "valueReference": {"reference": f"Device/{kiosk_device_id(first['kiosk'])}"}}
        ],
    }
    if code not in NOT_VITAL_SIGNS:
        resource["category"] = [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}]
    profile = PROFILES.get(code)
    allowed = PROFILE_UNITS.get(profile) if profile else None
    corrections = []
    if first.get("device_clock_offset_s") is not None:
        corrections.append(
            {"url": "device-clock-minus-kiosk", "valueQuantity": _quantity(first["device_clock_offset_s"], "s")}
        )
    if first.get("clock_offset_ms") is not None:
        corrections.append({"url": "hub-minus-kiosk-clock", "valueQuantity": _quantity(first["clock_offset_ms"], "ms")})
    if corrections:
        resource["extension"].append({"url": CLOCK_EXT, "extension": corrections})
    rows = sorted(group, key=lambda r: list(BP_PARTS).index(r["code"])) if bp else group
    quantities = [_profiled_quantity(r["value"], r["unit"], allowed) for r in rows]
    if any(q is None for q in quantities):  # no conversion into the profile's unit: do not claim the profile
        profile = None
        quantities = [_quantity(r["value"], r["unit"]) for r in rows]
    if profile == "bp" and not {"8480-6", "8462-4"} <= {r["code"] for r in rows}:
        profile = None  # the bp profile requires both pressures; a cuff that sent one is a plain panel
    if profile:
        resource["meta"] = {"profile": [f"http://hl7.org/fhir/StructureDefinition/{profile}"]}
    if bp:
        resource["component"] = [
            {"code": {"coding": _coding(r["code"], phd, kind)}, "valueQuantity": q}
            for r, q in zip(rows, quantities, strict=True)
        ]
        value = "/".join(f"{r['value']:g}" for r in rows)
    else:
        resource["valueQuantity"] = quantities[0]
        value = f"{first['value']:g}"
    if first.get("method"):
        resource["method"] = {"text": first["method"]}
    resource["identifier"] = [_phd_identifier(str(dev["id"]), first["patient_id"], first["effective"], code, value)]
    return resource


def group_blood_pressure(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Readings to Observations: a cuff's systolic, diastolic and mean from one message and time become one."""
    groups: list[list[dict[str, Any]]] = []
    panels: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["code"] in BP_PARTS:
            key = (r["message_id"], str(r["device"].get("id")), r["effective"])
            if key not in panels:
                panels[key] = []
                groups.append(panels[key])
            panels[key].append(r)
        else:
            groups.append([r])
    return groups


def bundle(
    resources: list[dict[str, Any]],
    base: str,
    *,
    total: int,
    links: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """A searchset page: `total` is every match of the search, not the size of the page.

    `notes` become an OperationOutcome entry (search mode `outcome`): what the server changed about the
    search, e.g. a page size above its limit.
    """
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total}
    if links:
        out["link"] = [{"relation": relation, "url": url} for relation, url in links]
    entries = [
        {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in resources
    ]
    if notes:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "informational", "diagnostics": n} for n in notes],
        }
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:
        out["entry"] = entries
    return out


def questionnaire_response_id(case_id: str) -> str:
    return f"case-{case_id}"


def _answer(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, bool):
        return [{"valueBoolean": value}]
    if isinstance(value, int):
        return [{"valueInteger": value}]
    if isinstance(value, float):
        return [{"valueDecimal": value}]
    if isinstance(value, list):
        return [{"valueString": str(v)} for v in value]
    return [{"valueString": str(value)}]


def questionnaire_response(case: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
    """A case's answers (with the question texts the hub knows), free text and photo ids."""
    items: list[dict[str, Any]] = [
        {"linkId": a["link_id"], **({"text": texts[a["link_id"]]} if a["link_id"] in texts else {}),
         "answer": _answer(a["value"])}
        for a in case["answers"]
    ]  # fmt: skip
    if case["text"]:
        items.append(
            {"linkId": "free-text", "text": "In the patient's words", "answer": [{"valueString": case["text"]}]}
        )
    if case["attachments"]:
        items.append({
            "linkId": "photos", "text": "Photos",
            "answer": [{"valueAttachment": {"contentType": "image/jpeg", "title": f"attachment {a}"}}
                       for a in case["attachments"]],
        })  # fmt: skip
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": questionnaire_response_id(case["id"]),
        "identifier": {"system": f"{HUB}:case-id", "value": case["id"]},
        "questionnaire": f"{HUB}:questionnaire:{case['questionnaire_id']}|{case['questionnaire_version']}",
        "status": "completed",
        "authored": case["created"],
        "item": items,
    }
    if case.get("patient_id"):
        resource["subject"] = {"reference": f"Patient/{patient_fhir_id(case['patient_id'])}"}
    return resource
