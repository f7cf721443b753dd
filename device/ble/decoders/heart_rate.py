"""Heart Rate Service (HRS 1.0): Heart Rate Measurement (0x2A37) and Body Sensor Location (0x2A38).

Straps notify a measurement every second or so; the flags choose an 8- or 16-bit heart rate
and announce energy expended and RR-intervals. RR-intervals fill the rest of the value, so
a strap that saved several beats since the last notification sends several; all are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import (
    Field,
    Layout,
    announced,
    at_most_attribute_size,
    check,
    cut,
    finish,
    flags_text,
    length_error,
    total,
)
from device.ble.errors import DecodeError
from device.ble.reader import Reader
from device.ble.readings import Reading

HEART_RATE_MEASUREMENT = 0x2A37
BODY_SENSOR_LOCATION = 0x2A38

HEART_RATE_UINT16 = 0x01
SENSOR_CONTACT_DETECTED = 0x02
SENSOR_CONTACT_SUPPORTED = 0x04
ENERGY_EXPENDED_PRESENT = 0x08
RR_INTERVALS_PRESENT = 0x10

RR_INTERVAL_UNITS_PER_SECOND = 1024

# HRS 1.0: the fields before the RR-intervals, whose sizes the flags fix (bit 0 picks uint8 or uint16).
_HEART_RATE_UINT8 = Field("heart rate (uint8)", 1)
_HEART_RATE_UINT16 = Field("heart rate (uint16)", 2)
_ENERGY_EXPENDED = Field("energy expended", 2, ENERGY_EXPENDED_PRESENT)
_RR_INTERVAL = Field("RR-interval", 2)
BODY_SENSOR_LOCATION_LAYOUT: Layout = (Field("body sensor location", 1),)


class SensorContact(StrEnum):
    """Flags bits 1-2: values 0 and 1 both mean the strap cannot tell."""

    NOT_SUPPORTED = "not_supported"
    NOT_DETECTED = "not_detected"
    DETECTED = "detected"


@dataclass(frozen=True)
class HeartRateMeasurement:
    flags: int  # as sent, RFU bits 5-7 included
    heart_rate: int  # beats per minute
    sensor_contact: SensorContact
    energy_expended_kj: int | None  # cumulative since the last reset; 0xFFFF means "65535 or more"
    rr_intervals: tuple[int, ...] | None  # each in 1/1024 s, oldest first

    @property
    def rr_intervals_s(self) -> tuple[float, ...]:
        """RR-intervals in seconds, for people; the raw 1/1024 s counts stay exact in `rr_intervals`."""
        return tuple(rr / RR_INTERVAL_UNITS_PER_SECOND for rr in self.rr_intervals or ())


def _sensor_contact(flags: int) -> SensorContact:
    if not flags & SENSOR_CONTACT_SUPPORTED:
        return SensorContact.NOT_SUPPORTED
    return SensorContact.DETECTED if flags & SENSOR_CONTACT_DETECTED else SensorContact.NOT_DETECTED


def _check_length(data: bytes) -> None:
    """Exact for the fields before the RR-intervals; the RR-interval list is open-ended but whole uint16s."""
    what = "Heart Rate Measurement"
    at_most_attribute_size(data, what)
    if not data:
        raise DecodeError(f"{what}: expected at least 2 byte(s), got 0 (too short: {cut((Field('flags', 1),), 0)})")
    flags = data[0]
    fixed = (
        Field("flags", 1),
        _HEART_RATE_UINT16 if flags & HEART_RATE_UINT16 else _HEART_RATE_UINT8,
        *announced((_ENERGY_EXPENDED,), flags),
    )
    if not flags & RR_INTERVALS_PRESENT:
        if len(data) != total(fixed):
            raise length_error(what, fixed, len(data), flags_text(flags, 1))
        return
    # HRS 1.0, 3.1.1.5: the RR-Interval field holds one or more uint16 values and fills the rest of the
    # value (as many as fit), so any length of at least one interval is allowed, in whole intervals.
    minimum = (*fixed, _RR_INTERVAL)
    extra = len(data) - total(fixed)
    if extra < _RR_INTERVAL.size or extra % _RR_INTERVAL.size:
        short = f"too short: {cut(minimum, len(data))}" if extra < _RR_INTERVAL.size else "half an RR-interval left"
        raise DecodeError(
            f"{what}: expected {total(minimum)} byte(s) or more in whole 2-byte RR-intervals "
            f"{flags_text(flags, 1)}, got {len(data)} ({short})"
        )


def _rr_intervals(reader: Reader) -> tuple[int, ...]:
    """The flag promises at least one interval; `_check_length` made sure the rest is whole intervals."""
    intervals = [reader.u16("RR-interval")]
    while reader.remaining:
        intervals.append(reader.u16("RR-interval"))
    return tuple(intervals)


def decode_heart_rate_measurement(data: bytes) -> HeartRateMeasurement:
    _check_length(data)
    reader = Reader(data, "Heart Rate Measurement")
    flags = reader.u8("flags")
    heart_rate = reader.u16("heart rate (uint16)") if flags & HEART_RATE_UINT16 else reader.u8("heart rate (uint8)")
    energy = reader.u16("energy expended") if flags & ENERGY_EXPENDED_PRESENT else None
    rr_intervals = _rr_intervals(reader) if flags & RR_INTERVALS_PRESENT else None
    finish(reader)
    return HeartRateMeasurement(flags, heart_rate, _sensor_contact(flags), energy, rr_intervals)


def heart_rate_readings(measurement: HeartRateMeasurement) -> list[Reading]:
    """One heart rate; a strap that says it has lost skin contact still sends a number, so the flag travels with it."""
    flags = ("sensor_contact_not_detected",) if measurement.sensor_contact is SensorContact.NOT_DETECTED else ()
    return [Reading(code="8867-4", value=float(measurement.heart_rate), unit="/min", flags=flags, decimals=0)]


class SensorLocation(IntEnum):
    OTHER = 0
    CHEST = 1
    WRIST = 2
    FINGER = 3
    HAND = 4
    EAR_LOBE = 5
    FOOT = 6


@dataclass(frozen=True)
class BodySensorLocationValue:
    raw: int
    location: SensorLocation | None  # None: a value the spec reserves for future use


def decode_body_sensor_location(data: bytes) -> BodySensorLocationValue:
    check(data, "Body Sensor Location", BODY_SENSOR_LOCATION_LAYOUT)
    raw = Reader(data, "Body Sensor Location").u8("body sensor location")
    try:
        location: SensorLocation | None = SensorLocation(raw)
    except ValueError:  # reserved for future use: kept raw, not refused
        location = None
    return BodySensorLocationValue(raw, location)


register(
    Characteristic(HEART_RATE_MEASUREMENT, "Heart Rate Measurement", decode_heart_rate_measurement, heart_rate_readings)
)
register(Characteristic(BODY_SENSOR_LOCATION, "Body Sensor Location", decode_body_sensor_location))
