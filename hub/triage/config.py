"""Alert rules as validated configuration: per clinic, with per-patient overrides of single rules by id.

Clinic rules are a YAML file (`hub triage set`) validated here, with file and line for each
problem; they are stored as JSON in the hub database with a version. A patient override is
the same rule list: a rule with an existing id replaces the clinic's, `enabled: false`
switches it off for that patient.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device.protocol.vitals import VITALS

Severity = Literal["low", "medium", "high"]
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """One condition. Exactly one of `below`, `above`, `outside` (with `code` and `unit`) or `no_reading_days`."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="Stable id; overrides refer to it.")
    title: str = Field(min_length=1, max_length=120)
    severity: Severity
    enabled: bool = True
    code: str | None = Field(default=None, description="LOINC code of the vital")
    unit: str | None = Field(default=None, description="UCUM unit the thresholds are in")
    below: float | None = None
    above: float | None = None
    outside: tuple[float, float] | None = Field(default=None, description="[low, high]: alert below low or above high")
    no_reading_days: int | None = Field(default=None, ge=1, le=365)

    @model_validator(mode="after")
    def _one_condition(self) -> Self:
        given = [k for k in ("below", "above", "outside", "no_reading_days") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of below, above, outside, no_reading_days (got {given or 'none'})")
        if self.no_reading_days is not None:
            if self.code or self.unit:
                raise ValueError("a no_reading_days rule is about any reading: leave code and unit out")
            return self
        if not self.code or not self.unit:
            raise ValueError("a threshold rule needs the vital's `code` (LOINC) and the `unit` of its thresholds")
        spec = VITALS.get(self.code)
        if spec is None:
            raise ValueError(f"unknown vital {self.code!r}; known: {', '.join(sorted(VITALS))}")
        if self.unit not in spec.units:
            raise ValueError(f"{spec.name} is measured in {', '.join(spec.units)}, not {self.unit!r}")
        if self.outside is not None and not self.outside[0] < self.outside[1]:
            raise ValueError("outside: the low bound must be below the high bound")
        return self


class News2Settings(_Model):
    enabled: bool = True
    window_minutes: int = Field(default=60, ge=1, le=24 * 60, description="vitals this close together form one set")
    medium_at: int = Field(default=5, ge=1, le=20)
    high_at: int = Field(default=7, ge=1, le=20)
    single_three: bool = Field(default=True, description="alert when one parameter scores 3 (low-medium risk)")


class Escalation(_Model):
    """Minutes an alert may stay unacknowledged before it is escalated, by severity."""

    high: int = Field(default=30, ge=1)
    medium: int = Field(default=4 * 60, ge=1)
    low: int = Field(default=24 * 60, ge=1)

    def minutes(self, severity: str) -> int:
        return int(getattr(self, severity))


class CaseSettings(_Model):
    respond_within_hours: float = Field(default=24, gt=0, le=24 * 14, description="the clinic's promised response time")


class TriageConfig(_Model):
    rules: list[Rule] = Field(default_factory=list)
    news2: News2Settings = Field(default_factory=News2Settings)
    escalation: Escalation = Field(default_factory=Escalation)
    cases: CaseSettings = Field(default_factory=CaseSettings)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen or rule.id.startswith("news2"):
                raise ValueError(f"rule id {rule.id!r} is used twice or is reserved (news2*)")
            seen.add(rule.id)
        return self

    def with_overrides(self, overrides: list[Rule]) -> TriageConfig:
        by_id = {r.id: r for r in self.rules}
        for rule in overrides:
            by_id[rule.id] = rule
        return self.model_copy(update={"rules": list(by_id.values())})


class PatientOverrides(_Model):
    rules: list[Rule]


DEFAULT = TriageConfig(
    rules=[
        Rule(id="spo2-low", title="SpO2 below 90 %", severity="high", code="59408-5", unit="%", below=90),
        Rule(id="systolic-high", title="Systolic above 180 mmHg", severity="high", code="8480-6", unit="mm[Hg]",
             above=180),
        Rule(id="systolic-low", title="Systolic below 90 mmHg", severity="medium", code="8480-6", unit="mm[Hg]",
             below=90),
        Rule(id="heart-rate-band", title="Heart rate outside 40-130 /min", severity="medium", code="8867-4",
             unit="/min", outside=(40, 130)),
        Rule(id="temperature-high", title="Temperature above 38.0 °C", severity="medium", code="8310-5",
             unit="Cel", above=38.0),
        Rule(id="no-reading", title="No reading for 3 days", severity="low", no_reading_days=3),
    ]
)  # fmt: skip
