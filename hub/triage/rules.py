"""What a reading means for each rule: pure functions, tested against hand-worked examples."""

from __future__ import annotations

from dataclasses import dataclass

from device.protocol.unit_conversion import in_unit
from hub.triage.config import Rule

__all__ = ["Verdict", "in_unit", "judge", "silent_for"]


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    triggered: bool


def judge(rule: Rule, code: str, value: float, unit: str) -> Verdict | None:
    """Whether this reading meets the rule's condition; None when the rule is not about this reading."""
    if not rule.enabled or rule.no_reading_days is not None or rule.code != code or rule.unit is None:
        return None
    v = in_unit(value, unit, rule.unit)
    if v is None:
        return None
    if rule.below is not None:
        return Verdict(rule, v < rule.below)
    if rule.above is not None:
        return Verdict(rule, v > rule.above)
    assert rule.outside is not None
    low, high = rule.outside
    return Verdict(rule, v < low or v > high)


def silent_for(rule: Rule, last_reading_s: float | None, now: float) -> bool | None:
    """For a no-reading rule: True when the patient's last reading is older than the rule allows."""
    if not rule.enabled or rule.no_reading_days is None or last_reading_s is None:
        return None
    return now - last_reading_s > rule.no_reading_days * 86400
