"""Units as clinicians write them, for people: `mm[Hg]` is shown as mmHg, `Cel` as °C.

The data keep UCUM (the wire contract, the database, the API, FHIR and the readings CSV's `ucum` column): this
is the one mapping from a UCUM code to the text a person reads, used by the workspace's pages (the Jinja
filter `unit`), its scripts (the trend charts get `unit_label` in their JSON, the call page a table of labels)
and the readings CSV's `unit` column. Every unit device/protocol/vitals.py allows has an entry (a test holds it
to that); any other UCUM code is shown with its annotations (`{beats}`) dropped, else as it is.
"""

from __future__ import annotations

import re

UNIT_LABELS: dict[str, str] = {
    "mm[Hg]": "mmHg",
    "kPa": "kPa",
    "Cel": "°C",
    "[degF]": "°F",
    "/min": "/min",
    "%": "%",
    "kg": "kg",
    "g": "g",
    "[lb_av]": "lb",
    "cm": "cm",
    "m": "m",
    "[in_i]": "in",
    "kg/m2": "kg/m²",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
    "L/min": "L/min",
    "s": "s",
    "min": "min",
    "h": "h",
    "d": "d",
    "{score}": "",  # a NEWS2 score is a number of points, written bare ("NEWS2 7")
    "1": "",  # UCUM's unity: a plain number
}

_ANNOTATION = re.compile(r"\{[^{}]*\}")


def unit_label(ucum: str | None) -> str:
    """The unit as a person reads it; "" for none (a bare number)."""
    if not ucum:
        return ""
    known = UNIT_LABELS.get(ucum)
    if known is not None:
        return known
    bare = _ANNOTATION.sub("", ucum)  # "{beats}/min" -> "/min"; annotations carry no unit
    return UNIT_LABELS.get(bare, bare)


def with_unit(value: str, ucum: str | None) -> str:
    """A value and its unit as one piece of text: "151 mmHg", "95 %", "7" (a bare score)."""
    label = unit_label(ucum)
    return f"{value} {label}" if label else value
