"""NEWS2 (Royal College of Physicians, 2017): the published bands, as pure functions.

A kiosk measures five of the seven parameters. Consciousness (ACVPU) is not assessed by a
kiosk and supplemental oxygen is not known: both score 0 here (alert, on air), and every
result says so, so that no one reads a kiosk NEWS2 as a full bedside score. SpO2 uses
scale 1 (scale 2 is for hypercapnic respiratory failure, which only a clinician sets).
"""

from __future__ import annotations

from dataclasses import dataclass

RESPIRATION = "9279-1"
SPO2 = "59408-5"
SYSTOLIC = "8480-6"
PULSE = "8867-4"
TEMPERATURE = "8310-5"
PARAMETERS = (RESPIRATION, SPO2, SYSTOLIC, PULSE, TEMPERATURE)
ASSUMPTIONS = "consciousness not assessed (scored as alert); supplemental oxygen unknown (scored as air)"


def _band(value: float, upper_bounds: list[tuple[float, int]], above: int) -> int:
    """The score of the first band whose upper bound (inclusive) holds `value`, else `above`."""
    for bound, score in upper_bounds:
        if value <= bound:
            return score
    return above


def respiration_score(per_min: float) -> int:
    return _band(per_min, [(8, 3), (11, 1), (20, 0), (24, 2)], 3)


def spo2_score(percent: float) -> int:
    return _band(percent, [(91, 3), (93, 2), (95, 1)], 0)


def systolic_score(mm_hg: float) -> int:
    return _band(mm_hg, [(90, 3), (100, 2), (110, 1), (219, 0)], 3)


def pulse_score(per_min: float) -> int:
    return _band(per_min, [(40, 3), (50, 1), (90, 0), (110, 1), (130, 2)], 3)


def temperature_score(celsius: float) -> int:
    return _band(celsius, [(35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)], 2)


SCORERS = {
    RESPIRATION: respiration_score,
    SPO2: spo2_score,
    SYSTOLIC: systolic_score,
    PULSE: pulse_score,
    TEMPERATURE: temperature_score,
}


@dataclass(frozen=True)
class News2:
    total: int
    parts: dict[str, int]  # LOINC code -> its score
    risk: str  # low | low-medium | medium | high

    @property
    def any_single_three(self) -> bool:
        return any(score == 3 for score in self.parts.values())


def score(values: dict[str, float]) -> News2 | None:
    """NEWS2 from one value per parameter (LOINC code -> value in /min, %, mm[Hg], Cel); None if any is missing."""
    if any(code not in values for code in PARAMETERS):
        return None
    parts = {code: SCORERS[code](values[code]) for code in PARAMETERS}
    total = sum(parts.values())
    if total >= 7:
        risk = "high"
    elif total >= 5:
        risk = "medium"
    elif any(s == 3 for s in parts.values()):
        risk = "low-medium"
    else:
        risk = "low"
    return News2(total, parts, risk)
