"""Converting a value between UCUM units of one kind of quantity, for the units the contract allows.

The contract accepts a vital in any of several units (device/protocol/vitals.py): a cuff may report kPa, a
scale a height in metres. Readers that want one unit (triage rules, the FHIR vital-signs profiles, which fix
mm[Hg] for blood pressure and cm or [in_i] for body height) convert here, in one table, instead of each
keeping its own factors.
"""

from __future__ import annotations

from collections.abc import Callable

MMHG_PER_KPA = 1000 / 133.322387415  # UCUM: 1 mm[Hg] = 133.322387415 Pa
KG_PER_LB = 0.45359237  # exact, by definition of the avoirdupois pound
CM_PER_IN = 2.54  # exact, the international inch

_CONVERT: dict[tuple[str, str], Callable[[float], float]] = {
    ("kPa", "mm[Hg]"): lambda v: v * MMHG_PER_KPA,
    ("mm[Hg]", "kPa"): lambda v: v / MMHG_PER_KPA,
    ("[degF]", "Cel"): lambda v: (v - 32) * 5 / 9,
    ("Cel", "[degF]"): lambda v: v * 9 / 5 + 32,
    ("[lb_av]", "kg"): lambda v: v * KG_PER_LB,
    ("kg", "[lb_av]"): lambda v: v / KG_PER_LB,
    ("g", "kg"): lambda v: v / 1000,
    ("kg", "g"): lambda v: v * 1000,
    ("m", "cm"): lambda v: v * 100,
    ("cm", "m"): lambda v: v / 100,
    ("[in_i]", "cm"): lambda v: v * CM_PER_IN,
    ("cm", "[in_i]"): lambda v: v / CM_PER_IN,
    ("m", "[in_i]"): lambda v: v * 100 / CM_PER_IN,
    ("[in_i]", "m"): lambda v: v * CM_PER_IN / 100,
}


def in_unit(value: float, unit: str, wanted: str) -> float | None:
    """`value` expressed in `wanted`, or None when there is no conversion."""
    if unit == wanted:
        return value
    convert = _CONVERT.get((unit, wanted))
    return None if convert is None else convert(value)


def convertible(unit: str, wanted: str) -> bool:
    return unit == wanted or (unit, wanted) in _CONVERT
