"""What a decoded measurement means clinically: LOINC code, value, UCUM unit, flags, device time.

Decoders give the fields as the device sent them; a service's `readings` function turns
them into these, following the HL7 FHIR Personal Health Device IG where it speaks. A
special value (NaN, NRes, ±INF, reserved, weight 0xFFFF) yields no Reading for that
quantity, never a number. The collector adds the device identity and turns the device
time into a corrected UTC time before the reading becomes a protocol Observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.ble.reader import DateTime


@dataclass(frozen=True)
class Reading:
    code: str  # LOINC, e.g. 8867-4
    value: float
    unit: str  # UCUM case-sensitive, e.g. /min, mm[Hg], Cel
    flags: tuple[str, ...] = ()  # measurement status, each matching ^[a-z][a-z0-9_]{0,63}$
    device_time: DateTime | None = None  # the measurement's own time stamp, by the device clock
    time_offset_min: int | None = None  # minutes to add to device_time (glucose Time Offset), when sent
    user: int | None = None  # user index on a shared cuff or scale (0xFF: unknown user)
    sequence: int | None = None  # the device's record number, for stored-record downloads
    decimals: int | None = None  # digits after the point the device meant, when it said
