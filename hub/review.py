"""What a provider reviews: a patient's readings as trend series and as raw rows, with normal ranges.

Times shown are the reading's `effective` time corrected by the kiosk's clock offset when
the hub measured one (the raw rows show both, and the device-clock correction the kiosk
applied). Readings from the camera (`device.type == "camera"`) are kept apart from
Bluetooth devices' readings, because they are estimates with a different error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from device.protocol.vitals import VITALS
from hub.db import Connection


@dataclass(frozen=True)
class NormalRange:
    low: float
    high: float
    source: str


# Adult resting reference ranges, shaded behind the trend (context for the eye, not alert rules:
# those are per clinic and come with triage).
NORMAL_RANGES: dict[tuple[str, str], NormalRange] = {
    ("8867-4", "/min"): NormalRange(60, 100, "AHA adult resting heart rate"),
    ("9279-1", "/min"): NormalRange(12, 20, "adult resting respiratory rate"),
    ("8480-6", "mm[Hg]"): NormalRange(90, 120, "AHA 2017: normal systolic < 120"),
    ("8462-4", "mm[Hg]"): NormalRange(60, 80, "AHA 2017: normal diastolic < 80"),
    ("8310-5", "Cel"): NormalRange(36.1, 37.2, "adult oral temperature"),
    ("8310-5", "[degF]"): NormalRange(97.0, 99.0, "adult oral temperature"),
    ("59408-5", "%"): NormalRange(95, 100, "SpO2 at sea level"),
    ("41653-7", "mg/dL"): NormalRange(70, 140, "ADA: fasting 70-99, 2 h after a meal < 140"),
    ("14743-9", "mmol/L"): NormalRange(3.9, 7.8, "ADA: fasting 3.9-5.5, 2 h after a meal < 7.8"),
    ("99504-3", "mg/dL"): NormalRange(70, 180, "ATTD 2019 CGM time-in-range"),
}

# Order on the page: the vitals a provider looks at first.
_ORDER = ["8480-6", "8462-4", "8867-4", "59408-5", "9279-1", "8310-5", "29463-7", "41653-7", "14743-9", "99504-3"]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def corrected_seconds(effective: str, clock_offset_ms: float | None) -> float:
    t = parse_time(effective).timestamp()
    return t + (clock_offset_ms or 0.0) / 1000.0


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TimeRange:
    since: datetime
    until: datetime

    @classmethod
    def last(cls, days: float, now: datetime) -> TimeRange:
        return cls(now - timedelta(days=days), now)

    @property
    def query(self) -> tuple[str, str]:
        """Bounds on the stored `effective` strings (ISO-8601 UTC sorts as text).

        The range selects by the reading's own time; the kiosk-clock correction (milliseconds
        to seconds) only moves where a point is drawn, so chart and table always agree.
        """
        return _iso(self.since), _iso(self.until)


def trends(conn: Connection, clinic_id: str, patient_id: str, rng: TimeRange) -> dict[str, Any]:
    """The JSON the trend charts draw (contract in hub/web/static/trends.js)."""
    lo, hi = rng.query
    rows = conn.execute(
        "SELECT code, unit, value, effective, clock_offset_ms, device "
        "FROM observations INDEXED BY observations_patient "
        "WHERE patient_id = ? AND clinic_id = ? AND attribution = 'attributed' AND effective >= ? AND effective < ? "
        "ORDER BY code, effective",
        (patient_id, clinic_id, lo, hi),
    ).fetchall()
    charts: dict[tuple[str, str], dict[str, Any]] = {}
    types: dict[str, Any] = {}  # the device's type, read once per distinct device description
    for code, unit, value, effective, offset_ms, device in rows:
        if device not in types:
            described = json.loads(device)
            types[device] = described.get("type") if isinstance(described, dict) else None
        device_type = types[device]
        t = corrected_seconds(effective, offset_ms)
        chart = charts.get((code, unit))
        if chart is None:
            spec = VITALS.get(code)
            normal = NORMAL_RANGES.get((code, unit))
            chart = charts[(code, unit)] = {
                "code": code,
                "title": spec.name if spec else code,
                "unit": unit,
                "normal": [normal.low, normal.high] if normal else None,
                "points": [],
            }
        chart["points"].append({"t": t, "v": value, "source": "camera" if device_type == "camera" else "device"})
    ordered = sorted(charts.values(), key=lambda c: (_rank(c["code"]), c["code"], c["unit"]))
    for chart in ordered:
        chart["points"].sort(key=lambda p: p["t"])
    return {"charts": ordered, "since": rng.since.timestamp(), "until": rng.until.timestamp()}


def _rank(code: str) -> int:
    return _ORDER.index(code) if code in _ORDER else len(_ORDER)


READING_COLUMNS = [
    "message_id", "idx", "kiosk", "code", "value", "unit", "effective", "clock_offset_ms", "device",
    "device_user", "device_sequence", "device_clock_offset_s", "method", "quality", "flags", "attribution_how",
]  # fmt: skip


def readings(
    conn: Connection,
    clinic_id: str,
    patient_id: str,
    rng: TimeRange | None = None,
    *,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Raw readings, newest first, with the device's identity and both clock corrections."""
    where = "patient_id = ? AND clinic_id = ? AND attribution = 'attributed'"
    params: list[Any] = [patient_id, clinic_id]
    if rng is not None:
        lo, hi = rng.query
        where += " AND effective >= ? AND effective < ?"
        params += [lo, hi]
    cur = conn.execute(
        f"SELECT {', '.join(READING_COLUMNS)} FROM observations INDEXED BY observations_patient WHERE {where} "
        "ORDER BY effective DESC, message_id, idx LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    out = []
    for row in cur:
        r = dict(zip(READING_COLUMNS, row, strict=True))
        r["device"] = json.loads(r["device"])
        r["flags"] = json.loads(r["flags"])
        r["name"] = VITALS[r["code"]].name if r["code"] in VITALS else r["code"]
        r["corrected"] = _iso(datetime.fromtimestamp(corrected_seconds(r["effective"], r["clock_offset_ms"]), UTC))
        out.append(r)
    return out
