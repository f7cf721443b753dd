"""Alerts: raised by readings as they are attributed, one per patient and condition, worked by staff.

One row per (patient, rule) for good: a condition that keeps firing counts up on the open
alert instead of adding alerts (an alert storm of 10,000 readings is one alert per patient
and condition); a condition that returns after staff resolved it re-opens the same alert,
with its history kept in `alert_events`. A reading back in range marks the condition
inactive but leaves the alert for a person to resolve: nothing clinical disappears on its own.

"In range now" goes by when readings were measured (on the hub's clock: the kiosk's stamp plus its clock
offset), never by when they arrived: a kiosk's backlog may come in hours late, and its clock may be hours
off. An alert keeps the measurement time of its newest triggering reading (`triggered_at`) and of its newest
reading back in range (`in_range_at`); the condition is active while the first is the newer (on a tie, the
reading that came last decides).
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from device.protocol.envelope import utc_iso
from hub.db import Connection
from hub.triage import news2
from hub.triage.config import DEFAULT, SEVERITY_RANK, Rule, TriageConfig
from hub.triage.rules import in_unit, judge, silent_for


@dataclass(frozen=True)
class Reading:
    clinic_id: str
    patient_id: str
    code: str
    value: float
    unit: str
    effective: str  # when it was measured, on the hub's clock (`measured_at` of observations.measured_ms)


class AlertError(ValueError):
    pass


def measured_at(measured_ms: int) -> str:
    """observations.measured_ms (the kiosk's stamp plus its clock offset, UTC ms) as the ISO text stored elsewhere."""
    return utc_iso(datetime.fromtimestamp(measured_ms / 1000, UTC))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(at: datetime) -> int:
    """A time as observations.measured_ms spells it: whole UTC milliseconds since 1970."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


# -- configuration -------------------------------------------------------------------------


def clinic_config(conn: Connection, clinic_id: str) -> TriageConfig:
    row = conn.execute("SELECT config FROM triage_configs WHERE clinic_id = ?", (clinic_id,)).fetchone()
    return DEFAULT if row is None else TriageConfig.model_validate_json(row[0])


def patient_config(
    conn: Connection, clinic_id: str, patient_id: str, *, base: TriageConfig | None = None
) -> TriageConfig:
    """The clinic's rules with the patient's overrides; `base` saves reading the clinic's again in a sweep."""
    base = base or clinic_config(conn, clinic_id)
    row = conn.execute("SELECT rules FROM patient_triage_overrides WHERE patient_id = ?", (patient_id,)).fetchone()
    if row is None:
        return base
    return base.with_overrides([Rule.model_validate(r) for r in json.loads(row[0])])


def set_clinic_config(conn: Connection, clinic_id: str, config: TriageConfig, by: str, now: float) -> int:
    conn.execute(
        "INSERT INTO triage_configs (clinic_id, config, version, updated_by, updated_at) VALUES (?,?,1,?,?) "
        "ON CONFLICT (clinic_id) DO UPDATE SET config = excluded.config, version = triage_configs.version + 1, "
        "updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        (clinic_id, config.model_dump_json(), by, now),
    )
    (version,) = conn.execute("SELECT version FROM triage_configs WHERE clinic_id = ?", (clinic_id,)).fetchone()
    return int(version)


def set_patient_overrides(
    conn: Connection, clinic_id: str, patient_id: str, rules: list[Rule], *, by: str, now: float
) -> None:
    known = {r.id for r in clinic_config(conn, clinic_id).rules}
    unknown = [r.id for r in rules if r.id not in known]
    if unknown:
        raise AlertError(
            f"the clinic has no rule {', '.join(unknown)} to override; its rules: {', '.join(sorted(known))}"
        )
    conn.execute(
        "INSERT INTO patient_triage_overrides (patient_id, clinic_id, rules, updated_by, updated_at) "
        "VALUES (?,?,?,?,?) "
        "ON CONFLICT (patient_id) DO UPDATE SET rules = excluded.rules, updated_by = excluded.updated_by, "
        "updated_at = excluded.updated_at",
        (patient_id, clinic_id, json.dumps([r.model_dump(mode="json") for r in rules]), by, now),
    )


# -- raising and calming ---------------------------------------------------------------------


def _event(
    conn: Connection, alert_id: int, now: float, event: str, *, user_id: int | None = None,
    note: str | None = None,
) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO alert_events (alert_id, at, event, user_id, note) VALUES (?,?,?,?,?)",
        (alert_id, now, event, user_id, note),
    )


def raise_alert(
    conn: Connection,
    *,
    clinic_id: str,
    patient_id: str,
    rule_id: str,
    title: str,
    severity: str,
    value: float | None,
    unit: str | None,
    effective: str,
    now: float,
) -> str:
    """Open, count on, or re-open the patient's alert for this condition; returns what happened.

    `effective` is when the reading was measured. One measured before the alert's newest reading back in
    range is counted but leaves the condition inactive, however late it arrives.
    """
    row = conn.execute(
        "SELECT id, state, triggered_at, in_range_at FROM alerts WHERE patient_id = ? AND rule_id = ?",
        (patient_id, rule_id),
    ).fetchone()
    if row is None:
        cur = conn.execute(
            "INSERT INTO alerts (clinic_id, patient_id, rule_id, title, severity, state, condition_active, "
            "trigger_count, triggered_at, last_value, last_unit, first_opened_at, opened_at) "
            "VALUES (?,?,?,?,?,'open',1,1,?,?,?,?,?) RETURNING id",
            (clinic_id, patient_id, rule_id, title, severity, effective, value, unit, now, now),
        )
        (alert_id,) = cur.fetchone()
        _event(conn, int(alert_id), now, "opened")
        return "opened"
    alert_id, state, triggered_at, in_range_at = row
    newer = effective >= triggered_at
    current = in_range_at is None or effective >= in_range_at  # not measured before the newest in-range reading
    if state == "resolved":
        if not (newer and current):  # a late-arriving old reading is counted but does not undo a person's decision
            conn.execute("UPDATE alerts SET trigger_count = trigger_count + 1 WHERE id = ?", (alert_id,))
            return "counted"
        conn.execute(
            "UPDATE alerts SET state = 'open', condition_active = 1, trigger_count = trigger_count + 1, "
            "triggered_at = ?, last_value = ?, last_unit = ?, title = ?, severity = ?, opened_at = ?, "
            "reopened = reopened + 1, acknowledged_by = NULL, acknowledged_at = NULL, resolved_by = NULL, "
            "resolved_at = NULL, escalated_at = NULL WHERE id = ?",
            (effective, value, unit, title, severity, now, alert_id),
        )
        _event(conn, alert_id, now, "reopened")
        return "reopened"
    if newer:  # the newest triggering reading, though it may have been measured before one back in range
        conn.execute(
            "UPDATE alerts SET condition_active = ?, trigger_count = trigger_count + 1, triggered_at = ?, "
            "last_value = ?, last_unit = ?, title = ?, severity = ? WHERE id = ?",
            (int(current), effective, value, unit, title, severity, alert_id),
        )
    else:
        conn.execute("UPDATE alerts SET trigger_count = trigger_count + 1 WHERE id = ?", (alert_id,))
    return "counted"


def calm(conn: Connection, patient_id: str, rule_id: str, effective: str) -> None:
    """A reading measured at `effective` does not meet the condition.

    When it is not older than the newest triggering reading the alert is marked back in range: still an alert
    for a person. Either way it is remembered, also on a resolved alert, so that a triggering reading measured
    before it and arriving later neither turns the condition back on nor re-opens the alert.
    """
    conn.execute(
        "UPDATE alerts SET in_range_at = greatest(in_range_at, ?), "
        "condition_active = CASE WHEN triggered_at <= ? THEN 0 ELSE condition_active END "
        "WHERE patient_id = ? AND rule_id = ?",
        (effective, effective, patient_id, rule_id),
    )


def on_attributed(conn: Connection, readings: Iterable[Reading], now: float) -> int:
    """Judge newly attributed readings against their patient's rules and NEWS2; returns alerts opened or re-opened.

    NEWS2 needs, for every reading, each other vital nearest it: those look-ups are made for the whole batch
    first (`nearest_vitals`, a few statements), not per reading, because on PostgreSQL each statement is a
    round trip. Nothing here writes observations, so looking them up first finds what looking up as we go did.
    """
    ordered = sorted(readings, key=lambda x: x.effective)
    configs: dict[str, TriageConfig] = {}
    for r in ordered:
        if r.patient_id not in configs:
            configs[r.patient_id] = patient_config(conn, r.clinic_id, r.patient_id)
    windows = {
        i: news2_window(r, configs[r.patient_id].news2.window_minutes)
        for i, r in enumerate(ordered)
        if configs[r.patient_id].news2.enabled and r.code in news2.PARAMETERS
    }
    nearby = nearest_vitals(conn, windows.values(), list(NEWS2_UNITS))
    alerted = Alerted.of(conn, configs)
    changed = 0
    for i, r in enumerate(ordered):
        config = configs[r.patient_id]
        for rule in config.rules:
            verdict = judge(rule, r.code, r.value, r.unit)
            if verdict is None:
                continue
            if verdict.triggered:
                outcome = raise_alert(
                    conn, clinic_id=r.clinic_id, patient_id=r.patient_id, rule_id=rule.id, title=rule.title,
                    severity=rule.severity, value=r.value, unit=r.unit, effective=r.effective, now=now,
                )  # fmt: skip
                alerted.add(r.patient_id, rule.id)
                changed += outcome in ("opened", "reopened")
            else:
                alerted.calm(conn, r.patient_id, rule.id, r.effective)
        if i in windows:
            changed += _news2(conn, r, config, nearby.get(windows[i], {}), alerted=alerted, now=now)
    return changed


@dataclass
class Alerted:
    """Which (patient, rule) pairs have an alert row, so that a reading in range updates only those: `calm` on a
    pair without one changes nothing, and most readings of a batch are in range (on PostgreSQL each was a round
    trip). Read once per batch, inside the writer's transaction, so no other writer adds a row meanwhile; a pair
    this batch raises is added as it is raised."""

    pairs: set[tuple[str, str]]

    @classmethod
    def of(cls, conn: Connection, patients: Iterable[str]) -> Alerted:
        wanted = list(patients)
        pairs: set[tuple[str, str]] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = conn.execute(
                f"SELECT DISTINCT patient_id, rule_id FROM alerts WHERE patient_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            pairs.update((str(p), str(rule)) for p, rule in rows)
        return cls(pairs)

    def add(self, patient_id: str, rule_id: str) -> None:
        self.pairs.add((patient_id, rule_id))

    def calm(self, conn: Connection, patient_id: str, rule_id: str, effective: str) -> None:
        if (patient_id, rule_id) in self.pairs:
            calm(conn, patient_id, rule_id, effective)


# The NEWS2 vitals a kiosk measures, each in the unit its bands are written in.
NEWS2_UNITS = {news2.RESPIRATION: "/min", news2.SPO2: "%", news2.SYSTOLIC: "mm[Hg]", news2.PULSE: "/min",
               news2.TEMPERATURE: "Cel"}  # fmt: skip


def _news2(conn: Connection, r: Reading, config: TriageConfig, vitals: Mapping[str, tuple[float, str]], *,
           alerted: Alerted, now: float) -> int:  # fmt: skip
    """The NEWS2 of the full set of vitals measured around `r` (`vitals`: each code's nearest value and unit)."""
    settings = config.news2
    values: dict[str, float] = {}
    for code, unit in NEWS2_UNITS.items():
        row = vitals.get(code)
        if row is not None and (v := in_unit(row[0], row[1], unit)) is not None:
            values[code] = v
    result = news2.score(values)
    if result is None:
        return 0
    changed = 0
    if result.total >= settings.medium_at:
        severity = "high" if result.total >= settings.high_at else "medium"
        outcome = raise_alert(
            conn, clinic_id=r.clinic_id, patient_id=r.patient_id, rule_id="news2",
            title=f"NEWS2 {result.total} ({severity} risk; {news2.ASSUMPTIONS})", severity=severity,
            value=float(result.total), unit="{score}", effective=r.effective, now=now,
        )  # fmt: skip
        alerted.add(r.patient_id, "news2")
        changed += outcome in ("opened", "reopened")
    else:
        alerted.calm(conn, r.patient_id, "news2", r.effective)
    if settings.single_three and result.any_single_three:
        outcome = raise_alert(
            conn, clinic_id=r.clinic_id, patient_id=r.patient_id, rule_id="news2-single",
            title="NEWS2: one vital scores 3 (low-medium risk)", severity="medium",
            value=float(result.total), unit="{score}", effective=r.effective, now=now,
        )  # fmt: skip
        alerted.add(r.patient_id, "news2-single")
        changed += outcome in ("opened", "reopened")
    else:
        alerted.calm(conn, r.patient_id, "news2-single", r.effective)
    return changed


@dataclass(frozen=True)
class Window:
    """Where to look for a patient's vitals around one time; every time in observations.measured_ms's terms.

    `split` is the reading's own time: the latest candidate at or before it and the earliest at or after it
    are the two the nearest is chosen from. `at` is what distance is measured from (the same time, for a
    reading). Equal windows are one look-up: the vitals of one sitting share their time and patient.
    """

    clinic_id: str
    patient_id: str
    lo: int
    split: int
    hi: int
    at: int


def window(r: Reading, *, lo: str, hi: str, at: datetime) -> Window:
    """A reading's window from its ISO bounds, converted exactly as the look-up always has."""

    def ms(iso: str) -> int:
        return _ms(datetime.fromisoformat(iso))

    return Window(r.clinic_id, r.patient_id, lo=ms(lo), split=ms(r.effective), hi=ms(hi), at=_ms(at))


def news2_window(r: Reading, window_minutes: int) -> Window:
    """The vitals that form one set with `r`: measured within `window_minutes` of it, on the hub's clock.

    The bounds go through ISO text (milliseconds) as they always did, so that a window ends where it ended.
    """
    at = datetime.fromisoformat(r.effective)
    span = timedelta(minutes=window_minutes)
    return window(r, lo=utc_iso(at - span), hi=utc_iso(at + span), at=at)


def _intervals(windows: Iterable[Window]) -> list[tuple[str, str, int, int]]:
    """The windows of each patient merged where they overlap: (patient, clinic, lo, hi), disjoint, so no reading
    is read twice. A batch is the undecided readings of a few kiosks in the order they were sent (message ids are
    UUIDv7), so this is about the batch's time span plus a window on either side, per patient."""
    spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for w in windows:
        spans.setdefault((w.patient_id, w.clinic_id), []).append((w.lo, w.hi))
    out: list[tuple[str, str, int, int]] = []
    for (patient_id, clinic_id), found in spans.items():
        found.sort()
        lo, hi = found[0]
        for next_lo, next_hi in found[1:]:
            if next_lo > hi:
                out.append((patient_id, clinic_id, lo, hi))
                lo = next_lo
            hi = max(hi, next_hi)
        out.append((patient_id, clinic_id, lo, hi))
    return out


# Intervals per statement (SQLite compounds at most 500 SELECTs; each is 4 + the codes parameters).
INTERVALS_PER_STATEMENT = 100


@functools.lru_cache(maxsize=64)
def _candidates_sql(intervals: int, codes: int) -> str:
    """Every reading of the codes in each interval, with its primary key (the tie-break within one millisecond).

    A UNION ALL of one plain range query per interval: one statement, one round trip, and each part planned as that
    query alone would be, an index range bounded by the interval (observations_patient_code; PostgreSQL without
    statistics may take observations_clinic_measured and a filter, still bounded by the interval). Tried before:
    a join with a VALUES list, which PostgreSQL may plan as a hash of the whole index; and the LIMIT 1 seeks as
    correlated subqueries, for which PostgreSQL without statistics takes observations_clinic_measured and walks the
    clinic's readings of the window once per seek and vital (as the one-statement-per-seek look-up did too).
    """
    one = (
        "SELECT patient_id, clinic_id, code, measured_ms, message_id, idx, value, unit "
        "FROM observations INDEXED BY observations_patient_code WHERE patient_id = ? AND clinic_id = ? "
        f"AND attribution = 'attributed' AND code IN ({','.join('?' * codes)}) AND measured_ms BETWEEN ? AND ?"
    )
    return " UNION ALL ".join([one] * intervals)


_Candidate = tuple[int, str, int, float, str]  # measured_ms, message_id, idx, value, unit: sorted, in index order


def nearest_vitals(
    conn: Connection, windows: Iterable[Window], codes: Sequence[str]
) -> dict[Window, dict[str, tuple[float, str]]]:
    """Each window's reading of each code measured nearest `at` within [lo, hi], the earlier on a tie: by window,
    code -> (value, unit); a code with no reading in the window is absent.

    Set-based for a batch of readings, where a look-up per reading and code cost two round trips on PostgreSQL:
    the readings of the codes in the union of the windows, one statement per INTERVALS_PER_STATEMENT intervals,
    then the choice here. It is the two-seek look-up's, exactly: of the latest candidate at or before `split` and
    the earliest at or after it, the first unless the second is strictly nearer `at`; of readings measured in
    the same millisecond, the last in observations_patient_code's order (its entries end in the primary key) on
    the before side and the first on the after side, as SQLite's descending and ascending index scans returned
    them. Sorting by (measured_ms, message_id, idx) is that order: Python compares text by code point, as SQLite
    does (PostgreSQL's order among equal keys depended on the plan, and its text order on the collation).
    """
    unique = list(dict.fromkeys(windows))
    intervals = _intervals(unique)
    readings: dict[tuple[str, str, str], list[_Candidate]] = {}
    for start in range(0, len(intervals), INTERVALS_PER_STATEMENT):
        chunk = intervals[start : start + INTERVALS_PER_STATEMENT]
        params = [x for patient_id, clinic_id, lo, hi in chunk for x in (patient_id, clinic_id, *codes, lo, hi)]
        rows = conn.execute(_candidates_sql(len(chunk), len(codes)), params).fetchall()
        for patient_id, clinic_id, code, measured_ms, message_id, idx, value, unit in rows:
            readings.setdefault((patient_id, clinic_id, code), []).append((measured_ms, message_id, idx, value, unit))
    times: dict[tuple[str, str, str], list[int]] = {}
    for key, found in readings.items():
        found.sort(key=lambda c: (c[0], c[1], c[2]))
        times[key] = [c[0] for c in found]
    out: dict[Window, dict[str, tuple[float, str]]] = {}
    for w in unique:
        for code in codes:
            key = (w.patient_id, w.clinic_id, code)
            if key not in readings:
                continue
            found, at = readings[key], times[key]
            i = bisect.bisect_right(at, w.split) - 1  # the latest at or before split; of one time, the last
            before = found[i] if i >= 0 and at[i] >= w.lo else None
            j = bisect.bisect_left(at, w.split)  # the earliest at or after split; of one time, the first
            after = found[j] if j < len(at) and at[j] <= w.hi else None
            if before is not None and (after is None or abs(before[0] - w.at) <= abs(after[0] - w.at)):
                out.setdefault(w, {})[code] = (before[3], before[4])
            elif after is not None:
                out.setdefault(w, {})[code] = (after[3], after[4])
    return out


def nearest_reading(
    conn: Connection, r: Reading, code: str, *, lo: str, hi: str, at: datetime
) -> tuple[float, str] | None:
    """The patient's reading of `code` measured nearest `at` within [lo, hi] (the earlier on a tie).

    All four times are measurement times on the hub's clock (observations.measured_ms), as `r.effective` is.
    One reading's look-up through `nearest_vitals`, the batch's: one rule, one implementation.
    """
    w = window(r, lo=lo, hi=hi, at=at)
    return nearest_vitals(conn, [w], [code]).get(w, {}).get(code)


def check_silence(conn: Connection, now: float) -> int:
    """`no_reading_days` rules: patients who have sent readings before but none for that long.

    `last_reading_at` is when the patient's newest reading was measured on the hub's clock (hub.attribution
    keeps it from observations.measured_ms), so it compares with `now` whatever a kiosk's clock said.
    """
    changed = 0
    at = utc_iso(datetime.fromtimestamp(now, UTC))
    rows = conn.execute(
        "SELECT clinic_id, id, last_reading_at FROM patients WHERE reading_count > 0 ORDER BY clinic_id, id"
    ).fetchall()
    clinics: dict[str, TriageConfig] = {}
    for clinic_id, patient_id, last in rows:
        last_s = datetime.fromisoformat(last).timestamp() if last else None
        base = clinics.get(clinic_id) or clinics.setdefault(clinic_id, clinic_config(conn, clinic_id))
        for rule in patient_config(conn, clinic_id, patient_id, base=base).rules:
            silent = silent_for(rule, last_s, now)
            if silent is None:
                continue
            if silent:
                outcome = raise_alert(
                    conn, clinic_id=clinic_id, patient_id=patient_id, rule_id=rule.id, title=rule.title,
                    severity=rule.severity, value=None, unit=None, effective=last or at, now=now,
                )  # fmt: skip
                changed += outcome == "opened"
            else:
                calm(conn, patient_id, rule.id, last or at)
    return changed


def escalate(conn: Connection, now: float) -> list[int]:
    """Alerts nobody acknowledged within the clinic's time for their severity: marked escalated, once per opening."""
    escalated = []
    configs: dict[str, TriageConfig] = {}
    for alert_id, clinic_id, severity, opened_at in conn.execute(
        "SELECT id, clinic_id, severity, opened_at FROM alerts WHERE state = 'open' AND escalated_at IS NULL "
        "ORDER BY id"
    ).fetchall():
        config = configs.get(clinic_id) or configs.setdefault(clinic_id, clinic_config(conn, clinic_id))
        if now - opened_at >= config.escalation.minutes(severity) * 60:
            conn.execute("UPDATE alerts SET escalated_at = ? WHERE id = ?", (now, alert_id))
            _event(conn, alert_id, now, "escalated")
            escalated.append(alert_id)
    return escalated


# -- what staff do -------------------------------------------------------------------------------


def _mine(conn: Connection, clinic_id: str, alert_id: int) -> tuple[str, str]:
    row = conn.execute("SELECT state, patient_id FROM alerts WHERE id = ? AND clinic_id = ?", (alert_id, clinic_id))
    found = row.fetchone()
    if found is None:
        raise LookupError("no such alert at this clinic")
    return str(found[0]), str(found[1])


def acknowledge(conn: Connection, clinic_id: str, alert_id: int, user_id: int, now: float) -> str:
    state, patient_id = _mine(conn, clinic_id, alert_id)
    if state != "open":
        raise AlertError(f"the alert is {state}, not open")
    conn.execute(
        "UPDATE alerts SET state = 'acknowledged', acknowledged_by = ?, acknowledged_at = ? WHERE id = ?",
        (user_id, now, alert_id),
    )
    _event(conn, alert_id, now, "acknowledged", user_id=user_id)
    return patient_id


def assign(conn: Connection, clinic_id: str, alert_id: int, *, assignee: int, user_id: int, now: float) -> str:
    _, patient_id = _mine(conn, clinic_id, alert_id)
    ok = conn.execute(
        "SELECT 1 FROM users WHERE id = ? AND clinic_id = ? AND disabled_at IS NULL", (assignee, clinic_id)
    )
    if ok.fetchone() is None:
        raise AlertError("assign to someone of this clinic")
    conn.execute("UPDATE alerts SET assigned_to = ? WHERE id = ?", (assignee, alert_id))
    _event(conn, alert_id, now, "assigned", user_id=user_id, note=str(assignee))
    return patient_id


def add_note(conn: Connection, clinic_id: str, alert_id: int, *, text: str, user_id: int, now: float) -> str:
    _, patient_id = _mine(conn, clinic_id, alert_id)
    if not text.strip():
        raise AlertError("the note is empty")
    _event(conn, alert_id, now, "note", user_id=user_id, note=text.strip()[:2000])
    return patient_id


def resolve(conn: Connection, clinic_id: str, alert_id: int, user_id: int, now: float) -> str:
    state, patient_id = _mine(conn, clinic_id, alert_id)
    if state == "resolved":
        raise AlertError("the alert is resolved already")
    conn.execute(
        "UPDATE alerts SET state = 'resolved', resolved_by = ?, resolved_at = ? WHERE id = ?", (user_id, now, alert_id)
    )
    _event(conn, alert_id, now, "resolved", user_id=user_id)
    return patient_id


ALERT_COLUMNS = [
    "id", "patient_id", "rule_id", "title", "severity", "state", "condition_active", "trigger_count",
    "triggered_at", "last_value", "last_unit", "opened_at", "reopened", "acknowledged_at", "assigned_to",
    "escalated_at",
]  # fmt: skip


def _alerts(conn: Connection, clinic_id: str, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cols = ", ".join(f"a.{c}" for c in ALERT_COLUMNS)
    rows = conn.execute(
        f"SELECT {cols}, p.name, p.code, u.name FROM alerts a JOIN patients p ON p.id = a.patient_id "
        f"LEFT JOIN users u ON u.id = a.assigned_to WHERE a.clinic_id = ? AND {where} ORDER BY a.id",
        (clinic_id, *params),
    ).fetchall()
    return [
        {**dict(zip(ALERT_COLUMNS, r[: len(ALERT_COLUMNS)], strict=True)), "patient_name": r[-3],
         "patient_code": r[-2], "assignee": r[-1]}
        for r in rows
    ]  # fmt: skip


def queue(conn: Connection, clinic_id: str) -> list[dict[str, Any]]:
    """The clinic's alerts waiting for a person, by urgency: escalated first, then severity, then the oldest."""
    out = _alerts(conn, clinic_id, "a.state IN ('open', 'acknowledged')", ())
    out.sort(key=lambda a: (a["escalated_at"] is None, SEVERITY_RANK[a["severity"]], a["opened_at"]))
    return out


def get(conn: Connection, clinic_id: str, alert_id: int) -> dict[str, Any] | None:
    """One alert of the clinic, whatever its state."""
    found = _alerts(conn, clinic_id, "a.id = ?", (alert_id,))
    return found[0] if found else None


def events(conn: Connection, clinic_id: str, alert_id: int) -> list[dict[str, Any]]:
    _mine(conn, clinic_id, alert_id)
    rows = conn.execute(
        "SELECT e.at, e.event, u.name, e.note FROM alert_events e LEFT JOIN users u ON u.id = e.user_id "
        "WHERE e.alert_id = ? ORDER BY e.id",
        (alert_id,),
    )
    return [{"at": r[0], "event": r[1], "by": r[2], "note": r[3]} for r in rows]
