"""Blood Pressure Service (BLS 1.1): Blood Pressure Measurement (0x2A35), Intermediate Cuff Pressure (0x2A36)
and Blood Pressure Feature (0x2A49).

Both measurement characteristics share one layout. A cuff indicates the final result once;
while it inflates it may notify Intermediate Cuff Pressure, whose first SFLOAT is the current
cuff pressure and whose other two are unused (NaN). The measurement status bits are the cuff's
own quality judgement (movement, loose cuff, irregular pulse, ...) and travel with every
reading of that measurement, because a provider must see them next to the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import Field, Layout, check, finish
from device.ble.ieee11073 import Measured, Number
from device.ble.reader import DateTime, Reader
from device.ble.readings import Reading

BLOOD_PRESSURE_MEASUREMENT = 0x2A35
INTERMEDIATE_CUFF_PRESSURE = 0x2A36
BLOOD_PRESSURE_FEATURE = 0x2A49

UNITS_KPA = 0x01
TIME_STAMP_PRESENT = 0x02
PULSE_RATE_PRESENT = 0x04
USER_ID_PRESENT = 0x08
MEASUREMENT_STATUS_PRESENT = 0x10

UNKNOWN_USER = 0xFF

# BLS 1.1 / GATT Specification Supplement: every field's size, so the flags fix the value's length.
MEASUREMENT_LAYOUT: Layout = (
    Field("flags", 1),
    Field("compound value (systolic or cuff pressure)", 2),
    Field("compound value (diastolic)", 2),
    Field("compound value (mean arterial pressure)", 2),
    Field("time stamp", 7, TIME_STAMP_PRESENT),
    Field("pulse rate", 2, PULSE_RATE_PRESENT),
    Field("user id", 1, USER_ID_PRESENT),
    Field("measurement status", 2, MEASUREMENT_STATUS_PRESENT),
)
FEATURE_LAYOUT: Layout = (Field("blood pressure feature", 2),)


class PressureUnit(StrEnum):
    """Values are the UCUM codes the readings carry."""

    MMHG = "mm[Hg]"
    KPA = "kPa"


class PulseRateRange(IntEnum):
    WITHIN = 0
    EXCEEDS_UPPER_LIMIT = 1
    BELOW_LOWER_LIMIT = 2
    RESERVED = 3


@dataclass(frozen=True)
class MeasurementStatus:
    raw: int  # as sent, RFU bits 6-15 included
    body_movement: bool
    cuff_too_loose: bool
    irregular_pulse: bool
    pulse_rate_range: PulseRateRange
    improper_measurement_position: bool


def measurement_status(raw: int) -> MeasurementStatus:
    return MeasurementStatus(
        raw=raw,
        body_movement=bool(raw & 0x01),
        cuff_too_loose=bool(raw & 0x02),
        irregular_pulse=bool(raw & 0x04),
        pulse_rate_range=PulseRateRange((raw >> 3) & 0x03),
        improper_measurement_position=bool(raw & 0x20),
    )


@dataclass(frozen=True)
class BloodPressureMeasurement:
    flags: int  # as sent, RFU bits 5-7 included
    unit: PressureUnit
    systolic: Measured
    diastolic: Measured
    mean_arterial_pressure: Measured
    time_stamp: DateTime | None
    pulse_rate: Measured | None  # beats per minute
    user_id: int | None  # 0xFF: unknown user
    status: MeasurementStatus | None


@dataclass(frozen=True)
class IntermediateCuffPressure:
    flags: int
    unit: PressureUnit
    current_cuff_pressure: Measured
    unused_diastolic: Measured  # the spec has the cuff send NaN here
    unused_mean_arterial_pressure: Measured  # and here
    time_stamp: DateTime | None
    pulse_rate: Measured | None
    user_id: int | None
    status: MeasurementStatus | None


def _decode(data: bytes, what: str) -> BloodPressureMeasurement:
    check(data, what, MEASUREMENT_LAYOUT, flags_at=0)
    reader = Reader(data, what)
    flags = reader.u8("flags")
    unit = PressureUnit.KPA if flags & UNITS_KPA else PressureUnit.MMHG
    first = reader.sfloat("compound value (systolic or cuff pressure)")
    second = reader.sfloat("compound value (diastolic)")
    third = reader.sfloat("compound value (mean arterial pressure)")
    time_stamp = reader.date_time("time stamp") if flags & TIME_STAMP_PRESENT else None
    pulse_rate = reader.sfloat("pulse rate") if flags & PULSE_RATE_PRESENT else None
    user_id = reader.u8("user id") if flags & USER_ID_PRESENT else None
    status = measurement_status(reader.u16("measurement status")) if flags & MEASUREMENT_STATUS_PRESENT else None
    finish(reader)
    return BloodPressureMeasurement(flags, unit, first, second, third, time_stamp, pulse_rate, user_id, status)


def decode_blood_pressure_measurement(data: bytes) -> BloodPressureMeasurement:
    return _decode(data, "Blood Pressure Measurement")


def decode_intermediate_cuff_pressure(data: bytes) -> IntermediateCuffPressure:
    m = _decode(data, "Intermediate Cuff Pressure")
    return IntermediateCuffPressure(
        m.flags,
        m.unit,
        m.systolic,
        m.diastolic,
        m.mean_arterial_pressure,
        m.time_stamp,
        m.pulse_rate,
        m.user_id,
        m.status,
    )


_STATUS_FLAGS = {
    PulseRateRange.EXCEEDS_UPPER_LIMIT: "pulse_rate_exceeds_upper_limit",
    PulseRateRange.BELOW_LOWER_LIMIT: "pulse_rate_below_lower_limit",
}


def status_flags(status: MeasurementStatus | None) -> tuple[str, ...]:
    """Only what the cuff reported as wrong; a reserved pulse-range code says nothing, so it adds no flag."""
    if status is None:
        return ()
    flags = [
        name
        for name, on in (
            ("body_movement", status.body_movement),
            ("cuff_too_loose", status.cuff_too_loose),
            ("irregular_pulse", status.irregular_pulse),
        )
        if on
    ]
    if status.pulse_rate_range in _STATUS_FLAGS:
        flags.append(_STATUS_FLAGS[status.pulse_rate_range])
    if status.improper_measurement_position:
        flags.append("improper_measurement_position")
    return tuple(flags)


def _reading(
    code: str, measured: Measured | None, unit: str, flags: tuple[str, ...], m: BloodPressureMeasurement
) -> list[Reading]:
    if not isinstance(measured, Number):  # absent, or NaN/NRes/±INF/reserved: no number to report
        return []
    return [
        Reading(
            code=code,
            value=measured.value,
            unit=unit,
            flags=flags,
            device_time=m.time_stamp,
            user=m.user_id,
            decimals=measured.decimals,
        )
    ]


def blood_pressure_readings(m: BloodPressureMeasurement) -> list[Reading]:
    flags = status_flags(m.status)
    unit = m.unit.value
    return [
        *_reading("8480-6", m.systolic, unit, flags, m),
        *_reading("8462-4", m.diastolic, unit, flags, m),
        *_reading("8478-0", m.mean_arterial_pressure, unit, flags, m),
        *_reading("8867-4", m.pulse_rate, "/min", flags, m),
    ]


def intermediate_cuff_pressure_readings(_pressure: IntermediateCuffPressure) -> list[Reading]:
    """None: a cuff pressure on the way up is progress for the screen, not a blood pressure to record."""
    return []


@dataclass(frozen=True)
class BloodPressureFeature:
    raw: int  # as sent, RFU bits 9-15 included
    body_movement_detection: bool
    cuff_fit_detection: bool
    irregular_pulse_detection: bool
    pulse_rate_range_detection: bool
    measurement_position_detection: bool
    multiple_bonds: bool
    e2e_crc: bool
    user_data_service: bool
    user_facing_time: bool


def decode_blood_pressure_feature(data: bytes) -> BloodPressureFeature:
    check(data, "Blood Pressure Feature", FEATURE_LAYOUT)
    raw = Reader(data, "Blood Pressure Feature").u16("blood pressure feature")
    return BloodPressureFeature(
        raw=raw,
        body_movement_detection=bool(raw & 0x0001),
        cuff_fit_detection=bool(raw & 0x0002),
        irregular_pulse_detection=bool(raw & 0x0004),
        pulse_rate_range_detection=bool(raw & 0x0008),
        measurement_position_detection=bool(raw & 0x0010),
        multiple_bonds=bool(raw & 0x0020),
        e2e_crc=bool(raw & 0x0040),
        user_data_service=bool(raw & 0x0080),
        user_facing_time=bool(raw & 0x0100),
    )


register(
    Characteristic(
        BLOOD_PRESSURE_MEASUREMENT,
        "Blood Pressure Measurement",
        decode_blood_pressure_measurement,
        blood_pressure_readings,
    )
)
register(
    Characteristic(
        INTERMEDIATE_CUFF_PRESSURE,
        "Intermediate Cuff Pressure",
        decode_intermediate_cuff_pressure,
        intermediate_cuff_pressure_readings,
    )
)
register(Characteristic(BLOOD_PRESSURE_FEATURE, "Blood Pressure Feature", decode_blood_pressure_feature))
