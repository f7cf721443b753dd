"""Weight Scale Service (WSS 1.0): Weight Measurement (0x2A9D) and Weight Scale Feature (0x2A9E).

Weight and height are fixed-point integers whose step depends on the units flag: SI sends kg
in 0.005 steps and m in 0.001 steps, Imperial sends lb in 0.01 and inches in 0.1 steps (the
two are not a unit conversion of each other). A weight of 0xFFFF means the weighing failed;
WSS then requires every optional field but Time Stamp and User ID to be left out, so a BMI
or height sent beside a failed weighing is decoded but not reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import Field, Layout, check, finish
from device.ble.reader import DateTime, Reader
from device.ble.readings import Reading

WEIGHT_MEASUREMENT = 0x2A9D
WEIGHT_SCALE_FEATURE = 0x2A9E

UNITS_IMPERIAL = 0x01
TIME_STAMP_PRESENT = 0x02
USER_ID_PRESENT = 0x04
BMI_AND_HEIGHT_PRESENT = 0x08

MEASUREMENT_UNSUCCESSFUL = 0xFFFF
UNKNOWN_USER = 0xFF

MEASUREMENT_LAYOUT: Layout = (
    Field("flags", 1),
    Field("weight", 2),
    Field("time stamp", 7, TIME_STAMP_PRESENT),
    Field("user id", 1, USER_ID_PRESENT),
    Field("BMI", 2, BMI_AND_HEIGHT_PRESENT),
    Field("height", 2, BMI_AND_HEIGHT_PRESENT),
)
FEATURE_LAYOUT: Layout = (Field("weight scale feature", 4),)


# Each value is raw * step; the step is an integer over a power of ten so that dividing gives
# the float nearest the decimal the scale meant (0.005 * 14001 would not).
def kilograms(raw: int) -> float:
    return raw * 5 / 1000


def pounds(raw: int) -> float:
    return raw / 100


def metres(raw: int) -> float:
    return raw / 1000


def inches(raw: int) -> float:
    return raw / 10


@dataclass(frozen=True)
class WeightMeasurement:
    flags: int  # as sent, RFU bits 4-7 included
    imperial: bool  # lb and inches; else kg and metres
    weight: float | None  # None when the scale reports "measurement unsuccessful"
    measurement_unsuccessful: bool
    time_stamp: DateTime | None
    user_id: int | None  # 0xFF: unknown user
    bmi: float | None  # kg/m2
    height: float | None  # metres or inches, per `imperial`


def decode_weight_measurement(data: bytes) -> WeightMeasurement:
    check(data, "Weight Measurement", MEASUREMENT_LAYOUT, flags_at=0)
    reader = Reader(data, "Weight Measurement")
    flags = reader.u8("flags")
    imperial = bool(flags & UNITS_IMPERIAL)
    raw_weight = reader.u16("weight")
    time_stamp = reader.date_time("time stamp") if flags & TIME_STAMP_PRESENT else None
    user_id = reader.u8("user id") if flags & USER_ID_PRESENT else None
    bmi = height = None
    if flags & BMI_AND_HEIGHT_PRESENT:
        bmi = reader.u16("BMI") / 10
        raw_height = reader.u16("height")
        height = inches(raw_height) if imperial else metres(raw_height)
    finish(reader)
    unsuccessful = raw_weight == MEASUREMENT_UNSUCCESSFUL
    weight = None if unsuccessful else (pounds(raw_weight) if imperial else kilograms(raw_weight))
    return WeightMeasurement(flags, imperial, weight, unsuccessful, time_stamp, user_id, bmi, height)


def weight_readings(m: WeightMeasurement) -> list[Reading]:
    if m.weight is None:
        return []
    mass_unit, mass_decimals = ("[lb_av]", 2) if m.imperial else ("kg", 3)
    length_unit, length_decimals = ("[in_i]", 1) if m.imperial else ("m", 3)

    def reading(code: str, value: float, unit: str, decimals: int) -> Reading:
        return Reading(code=code, value=value, unit=unit, device_time=m.time_stamp, user=m.user_id, decimals=decimals)

    readings = [reading("29463-7", m.weight, mass_unit, mass_decimals)]
    if m.bmi is not None:
        readings.append(reading("39156-5", m.bmi, "kg/m2", 1))
    if m.height is not None:
        readings.append(reading("8302-2", m.height, length_unit, length_decimals))
    return readings


# Weight Scale Feature resolution codes -> (SI step, Imperial step); other codes are reserved.
WEIGHT_RESOLUTIONS = {
    1: (0.5, 1.0),
    2: (0.2, 0.5),
    3: (0.1, 0.2),
    4: (0.05, 0.1),
    5: (0.02, 0.05),
    6: (0.01, 0.02),
    7: (0.005, 0.01),
}
HEIGHT_RESOLUTIONS = {1: (0.01, 1.0), 2: (0.005, 0.5), 3: (0.001, 0.1)}


@dataclass(frozen=True)
class WeightScaleFeature:
    raw: int  # as sent, RFU bits 10-31 included
    time_stamp: bool
    multiple_users: bool
    bmi: bool
    weight_resolution: int  # 0: not specified; see WEIGHT_RESOLUTIONS
    height_resolution: int  # 0: not specified; see HEIGHT_RESOLUTIONS

    @property
    def weight_step(self) -> tuple[float, float] | None:
        """(kg, lb) the scale resolves, or None when not specified or reserved."""
        return WEIGHT_RESOLUTIONS.get(self.weight_resolution)

    @property
    def height_step(self) -> tuple[float, float] | None:
        """(m, in) the scale resolves, or None when not specified or reserved."""
        return HEIGHT_RESOLUTIONS.get(self.height_resolution)


def decode_weight_scale_feature(data: bytes) -> WeightScaleFeature:
    check(data, "Weight Scale Feature", FEATURE_LAYOUT)
    raw = Reader(data, "Weight Scale Feature").u32("weight scale feature")
    return WeightScaleFeature(
        raw=raw,
        time_stamp=bool(raw & 0x01),
        multiple_users=bool(raw & 0x02),
        bmi=bool(raw & 0x04),
        weight_resolution=(raw >> 3) & 0x0F,
        height_resolution=(raw >> 7) & 0x07,
    )


register(Characteristic(WEIGHT_MEASUREMENT, "Weight Measurement", decode_weight_measurement, weight_readings))
register(Characteristic(WEIGHT_SCALE_FEATURE, "Weight Scale Feature", decode_weight_scale_feature))
