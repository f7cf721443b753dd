"""Jinja2 with autoescaping, and the few filters the pages share (times in UTC, device labels)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates

from hub.web.units import UNIT_LABELS, unit_label

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _utc(value: float | str | None) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value).timestamp()
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: float | None, now: float) -> str:
    if value is None:
        return "never"
    s = max(0, int(now - value))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def _device(device: dict[str, Any]) -> str:
    parts = [device.get("manufacturer"), device.get("model")]
    label = " ".join(p for p in parts if p) or device.get("type", "device")
    serial = device.get("serial")
    return f"{label} (serial {serial})" if serial else f"{label} ({device.get('id', '?')})"


utc_label = _utc
ago = _ago
TEMPLATES.env.filters["utc"] = _utc
TEMPLATES.env.filters["device_label"] = _device
TEMPLATES.env.filters["unit"] = unit_label  # UCUM in the data, mmHg and °C on the page (hub/web/units.py)
TEMPLATES.env.globals["unit_labels"] = UNIT_LABELS
TEMPLATES.env.globals["ago"] = _ago
