"""Remote patient monitoring time: per patient and calendar month (UTC), days with device readings and minutes
of provider interaction, against the thresholds clinics bill by.

- **Days**: distinct UTC days with at least one reading a measuring device sent (Bluetooth devices; camera
  estimates and manual entries do not count). Thresholds: 16 days, and the 2-to-15-day tier.
- **Minutes**: provider interaction with the patient's data, measured from the audit log (a person's actions
  on the patient: views, case handling, alert work; actions less than `EPISODE_GAP_S` apart form one
  episode, lasting from its first to its last action plus one minute), plus live video consults (interactive
  communication: from the provider's join to the end of a call held with the patient, whether someone pressed
  End or the line dropped; a call that never connected does not count), plus time logged by hand (phone
  calls, coordination). Thresholds: 20 minutes, and the 10-minute tier. Nothing is counted twice: the part
  of an audit episode that falls inside the same person's call is the call's time already.

Everything counted is listed as evidence (each day, each episode with its actions, each logged entry) and
exportable, because a claim must be backed by what it counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from device.protocol.envelope import utc_iso
from hub.consults import store as consults
from hub.db import Connection

EPISODE_GAP_S = 10 * 60
DAYS_FULL, DAYS_TIER = 16, 2
MINUTES_FULL, MINUTES_TIER = 20, 10
# Audit actions that are provider work on one patient's data.
WORK_ACTIONS = (
    "view_patient", "view_trends", "export_readings", "view_case", "view_case_photo", "review_case",
    "answer_case", "close_case", "view_alert", "acknowledge_alert", "assign_alert", "note_alert", "resolve_alert",
    "assign_readings", "unmap_device_slot", "view_consult",
)  # fmt: skip


class RpmError(ValueError):
    pass


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise RpmError(f"month {month!r} is not YYYY-MM") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


@dataclass(frozen=True)
class Episode:
    user: str
    start: float
    end: float
    actions: tuple[str, ...]
    in_call_s: float = 0.0  # the part of [start, end + 1 min] this person spent in a call with the patient

    @property
    def minutes(self) -> float:
        return max(0.0, (self.end - self.start) / 60 + 1 - self.in_call_s / 60)


@dataclass(frozen=True)
class Call:
    """A live video consult a provider held with the patient: interactive communication, timed join to end."""

    user: str
    start: float
    end: float
    consult: str
    reason: str  # finished (someone pressed End) or peer_gone (the line dropped)

    @property
    def minutes(self) -> float:
        return (self.end - self.start) / 60


def episodes(events: list[tuple[float, str, str]], gap_s: float = EPISODE_GAP_S) -> list[Episode]:
    """Group (time, person, action) events into episodes per person: pure, tested by hand."""
    out: list[Episode] = []
    by_user: dict[str, list[tuple[float, str]]] = {}
    for at, user, action in sorted(events):
        by_user.setdefault(user, []).append((at, action))
    for user, items in sorted(by_user.items()):
        start = prev = items[0][0]
        actions = [items[0][1]]
        for at, action in items[1:]:
            if at - prev > gap_s:
                out.append(Episode(user, start, prev, tuple(actions)))
                start, actions = at, []
            actions.append(action)
            prev = at
        out.append(Episode(user, start, prev, tuple(actions)))
    return sorted(out, key=lambda e: e.start)


def outside_calls(found: list[Episode], calls: list[Call]) -> list[Episode]:
    """Each episode with the time its person was in a call with the patient marked, so it counts once (pure)."""
    out = []
    for e in found:
        lo, hi = e.start, e.end + 60
        spans = sorted((max(lo, c.start), min(hi, c.end)) for c in calls if c.user == e.user)
        in_call, reached = 0.0, lo
        for a, b in spans:  # union of the overlaps: calls of one person do not overlap, but never count twice
            since = max(a, reached)
            if b > since:
                in_call += b - since
                reached = b
        out.append(replace(e, in_call_s=in_call))
    return out


@dataclass
class Month:
    patient_id: str
    month: str
    days: list[date] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    logged: list[dict[str, object]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    @property
    def minutes(self) -> float:
        return round(
            sum(e.minutes for e in self.episodes)
            + sum(c.minutes for c in self.calls)
            + sum(float(str(t["minutes"])) for t in self.logged),
            1,
        )

    @property
    def days_status(self) -> str:
        n = len(self.days)
        return "met (16+ days)" if n >= DAYS_FULL else ("2-15 day tier" if n >= DAYS_TIER else "not met")

    @property
    def minutes_status(self) -> str:
        m = self.minutes
        return "met (20+ min)" if m >= MINUTES_FULL else ("10-minute tier" if m >= MINUTES_TIER else "not met")


def month_for(conn: Connection, clinic_id: str, patient_id: str, month: str) -> Month:
    start, end = month_bounds(month)
    lo, hi = utc_iso(start), utc_iso(end)
    result = Month(patient_id, month)
    # Each day with the devices that measured on it (a few per day): which of them count is read from the
    # device's JSON here, the same on both engines, rather than in SQL (json_extract is SQLite's alone).
    rows = conn.execute(
        "SELECT DISTINCT substr(effective, 1, 10), device FROM observations INDEXED BY observations_patient "
        "WHERE patient_id = ? AND clinic_id = ? AND attribution = 'attributed' AND effective >= ? AND effective < ?",
        (patient_id, clinic_id, lo, hi),
    ).fetchall()
    counted: dict[str, bool] = {}
    days: set[str] = set()
    for day, device in rows:
        if device not in counted:
            described = json.loads(device)
            kind = described.get("type") if isinstance(described, dict) else None
            counted[device] = kind is not None and kind not in ("camera", "manual")
        if counted[device]:
            days.add(day)
    result.days = [date.fromisoformat(d) for d in sorted(days)]
    marks = ",".join("?" * len(WORK_ACTIONS))
    events = conn.execute(
        f"SELECT at, actor, action FROM audit WHERE patient_id = ? AND clinic_id = ? AND at >= ? AND at < ? "
        f"AND actor_user IS NOT NULL AND outcome = 'ok' AND action IN ({marks})",
        (patient_id, clinic_id, start.timestamp(), end.timestamp(), *WORK_ACTIONS),
    ).fetchall()
    result.calls = [
        Call(str(c["user"]), float(c["start"]), float(c["end"]), str(c["consult"]), str(c["reason"]))
        for c in consults.calls_for_patient(conn, clinic_id, patient_id, start.timestamp(), end.timestamp())
    ]
    result.episodes = outside_calls(episodes([(float(a), str(u), str(x)) for a, u, x in events]), result.calls)
    result.logged = [
        {"at": r[0], "user": r[1], "minutes": r[2], "activity": r[3]}
        for r in conn.execute(
            "SELECT t.at, u.email, t.minutes, t.activity FROM rpm_time t JOIN users u ON u.id = t.user_id "
            "WHERE t.patient_id = ? AND t.clinic_id = ? AND t.at >= ? AND t.at < ? ORDER BY t.at",
            (patient_id, clinic_id, start.timestamp(), end.timestamp()),
        )
    ]
    return result


def log_time(
    conn: Connection, clinic_id: str, patient_id: str, *, user_id: int, minutes: float, activity: str,
    at: float,
) -> None:  # fmt: skip
    if not 0 < minutes <= 240:
        raise RpmError("minutes must be between 1 and 240")
    if not activity.strip():
        raise RpmError("say what the time was spent on")
    conn.execute(
        "INSERT INTO rpm_time (clinic_id, patient_id, user_id, at, minutes, activity) VALUES (?,?,?,?,?,?)",
        (clinic_id, patient_id, user_id, at, minutes, activity.strip()[:500]),
    )
