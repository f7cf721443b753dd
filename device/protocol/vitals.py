"""The vital signs the contract knows: LOINC code, the UCUM units allowed for it, and a plausible range.

A reading with a known code in a unit not listed here, or outside the range a living
patient (or the measuring device) could produce, is refused with a message that says
so: it is a decoding or unit bug, and storing it would mislead a provider. Codes not
listed here are accepted with any syntactically valid UCUM unit, so new devices do not
need a protocol release.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VitalSpec:
    name: str
    units: dict[str, tuple[float, float]]  # UCUM unit -> (lowest, highest) plausible value


VITALS: dict[str, VitalSpec] = {
    "8867-4": VitalSpec("Heart rate", {"/min": (10, 350)}),
    "9279-1": VitalSpec("Respiratory rate", {"/min": (1, 120)}),
    "8480-6": VitalSpec("Systolic blood pressure", {"mm[Hg]": (20, 320), "kPa": (2.6, 42.7)}),
    "8462-4": VitalSpec("Diastolic blood pressure", {"mm[Hg]": (5, 250), "kPa": (0.6, 33.4)}),
    "8478-0": VitalSpec("Mean blood pressure", {"mm[Hg]": (10, 280), "kPa": (1.3, 37.4)}),
    "8310-5": VitalSpec("Body temperature", {"Cel": (25, 46), "[degF]": (77, 114.8)}),
    "29463-7": VitalSpec("Body weight", {"kg": (0.2, 650), "[lb_av]": (0.4, 1433)}),
    "8302-2": VitalSpec("Body height", {"cm": (20, 280), "m": (0.2, 2.8), "[in_i]": (8, 110)}),
    "39156-5": VitalSpec("Body mass index", {"kg/m2": (5, 150)}),
    "41982-0": VitalSpec("Body fat percentage", {"%": (0, 100)}),
    "73965-6": VitalSpec("Body muscle percentage", {"%": (0, 100)}),
    "73964-9": VitalSpec("Body muscle mass", {"kg": (0.1, 400), "[lb_av]": (0.2, 882)}),
    "101683-1": VitalSpec("Body water mass", {"kg": (0.1, 400), "[lb_av]": (0.2, 882)}),
    "59408-5": VitalSpec("Oxygen saturation by pulse oximetry", {"%": (0, 100)}),
    "2708-6": VitalSpec("Oxygen saturation in arterial blood", {"%": (0, 100)}),
    "41653-7": VitalSpec("Glucose in capillary blood by glucometer", {"mg/dL": (5, 1500)}),
    "14743-9": VitalSpec("Glucose in capillary blood by glucometer", {"mmol/L": (0.3, 83)}),
    "99504-3": VitalSpec("Glucose in interstitial fluid", {"mg/dL": (5, 1500)}),
}

# UCUM case-sensitive codes are printable ASCII without spaces; this is a syntax guard,
# not a full UCUM grammar (units of known codes are checked against VITALS above).
UCUM_PATTERN = r"^[!-~]{1,32}$"
LOINC_PATTERN = r"^[0-9]{1,7}-[0-9]$"
