"""Checks every decoder test shares: what a decoder's reading must satisfy to be accepted by the hub."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from device.ble.readings import Reading
from device.protocol.envelope import DeviceRef, Observation

FLAG = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def accepted_by_protocol(reading: Reading) -> None:
    """The hub's own model must take the reading as it is (code, unit, range, flag pattern and count)."""
    Observation(
        code=reading.code,
        value=reading.value,
        unit=reading.unit,
        effective=datetime(2025, 1, 1, tzinfo=UTC),
        device=DeviceRef(id="test", type="ble"),
        flags=list(reading.flags),
    )
