"""Body Composition Service (BCS 1.0): Body Composition Measurement (0x2A9C) and Body Composition Feature (0x2A9B).

A 16-bit flags field announces up to eleven optional fields after the mandatory body fat
percentage. Masses share the weight scale's fixed-point steps (kg 0.005, lb 0.01; height
m 0.001, in 0.1). When all announced fields do not fit one ATT payload the analyzer splits
the measurement over two indications, each with its own flags and the Multiple Packet bit
set; each is decoded on its own here and the collector pairs them.

Body fat 0xFFFF means the analysis failed: nothing from such a value is reported, since
the other quantities come from the same failed analysis (the Weight Scale Service states the
rule outright: only Time Stamp and User ID may accompany an unsuccessful measurement).

LOINC mapping beyond the FHIR PHD IG's weight, height and body fat (looked up, see the report):
muscle percentage 73965-6 "Body muscle mass/Body weight Measured"; muscle mass 73964-9
"Body muscle mass Calculated" (LOINC defines it as weight times muscle percentage, which is
how an impedance analyzer derives it); body water mass 101683-1 "Body water mass". Basal
metabolism, fat free mass, soft lean mass and impedance have no LOINC code we could confirm,
so they are decoded but not reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import Field, Layout, check, finish
from device.ble.decoders.weight_scale import HEIGHT_RESOLUTIONS, WEIGHT_RESOLUTIONS, inches, kilograms, metres, pounds
from device.ble.reader import DateTime, Reader
from device.ble.readings import Reading

BODY_COMPOSITION_FEATURE = 0x2A9B
BODY_COMPOSITION_MEASUREMENT = 0x2A9C

UNITS_IMPERIAL = 0x0001
TIME_STAMP_PRESENT = 0x0002
USER_ID_PRESENT = 0x0004
BASAL_METABOLISM_PRESENT = 0x0008
MUSCLE_PERCENTAGE_PRESENT = 0x0010
MUSCLE_MASS_PRESENT = 0x0020
FAT_FREE_MASS_PRESENT = 0x0040
SOFT_LEAN_MASS_PRESENT = 0x0080
BODY_WATER_MASS_PRESENT = 0x0100
IMPEDANCE_PRESENT = 0x0200
WEIGHT_PRESENT = 0x0400
HEIGHT_PRESENT = 0x0800
MULTIPLE_PACKET = 0x1000

MEASUREMENT_UNSUCCESSFUL = 0xFFFF

# Each packet of a split measurement has its own flags, so each is exactly as long as they announce.
MEASUREMENT_LAYOUT: Layout = (
    Field("flags", 2),
    Field("body fat percentage", 2),
    Field("time stamp", 7, TIME_STAMP_PRESENT),
    Field("user id", 1, USER_ID_PRESENT),
    Field("basal metabolism", 2, BASAL_METABOLISM_PRESENT),
    Field("muscle percentage", 2, MUSCLE_PERCENTAGE_PRESENT),
    Field("muscle mass", 2, MUSCLE_MASS_PRESENT),
    Field("fat free mass", 2, FAT_FREE_MASS_PRESENT),
    Field("soft lean mass", 2, SOFT_LEAN_MASS_PRESENT),
    Field("body water mass", 2, BODY_WATER_MASS_PRESENT),
    Field("impedance", 2, IMPEDANCE_PRESENT),
    Field("weight", 2, WEIGHT_PRESENT),
    Field("height", 2, HEIGHT_PRESENT),
)
FEATURE_LAYOUT: Layout = (Field("body composition feature", 4),)


@dataclass(frozen=True)
class BodyCompositionMeasurement:
    flags: int  # as sent, RFU bits 13-15 included
    imperial: bool  # masses in lb and height in inches; else kg and metres
    body_fat_percent: float | None  # None when the analyzer reports "measurement unsuccessful"
    measurement_unsuccessful: bool
    time_stamp: DateTime | None
    user_id: int | None  # 0xFF: unknown user
    basal_metabolism_kj: int | None
    muscle_percent: float | None
    muscle_mass: float | None  # kg or lb
    fat_free_mass: float | None  # kg or lb
    soft_lean_mass: float | None  # kg or lb
    body_water_mass: float | None  # kg or lb
    impedance_ohm: float | None
    weight: float | None  # kg or lb
    height: float | None  # m or in
    multiple_packet: bool


def _tenths(raw: int) -> float:
    return raw / 10


def decode_body_composition_measurement(data: bytes) -> BodyCompositionMeasurement:
    check(data, "Body Composition Measurement", MEASUREMENT_LAYOUT, flags_at=0)
    reader = Reader(data, "Body Composition Measurement")
    flags = reader.u16("flags")
    imperial = bool(flags & UNITS_IMPERIAL)
    mass = pounds if imperial else kilograms
    length = inches if imperial else metres

    def optional(bit: int, field: str) -> int | None:
        return reader.u16(field) if flags & bit else None

    def scaled(bit: int, field: str, scale: Callable[[int], float]) -> float | None:
        raw = optional(bit, field)
        return None if raw is None else scale(raw)

    raw_fat = reader.u16("body fat percentage")
    time_stamp = reader.date_time("time stamp") if flags & TIME_STAMP_PRESENT else None
    user_id = reader.u8("user id") if flags & USER_ID_PRESENT else None
    basal_metabolism = optional(BASAL_METABOLISM_PRESENT, "basal metabolism")
    muscle_percent = scaled(MUSCLE_PERCENTAGE_PRESENT, "muscle percentage", _tenths)
    muscle_mass = scaled(MUSCLE_MASS_PRESENT, "muscle mass", mass)
    fat_free_mass = scaled(FAT_FREE_MASS_PRESENT, "fat free mass", mass)
    soft_lean_mass = scaled(SOFT_LEAN_MASS_PRESENT, "soft lean mass", mass)
    body_water_mass = scaled(BODY_WATER_MASS_PRESENT, "body water mass", mass)
    impedance = scaled(IMPEDANCE_PRESENT, "impedance", _tenths)
    weight = scaled(WEIGHT_PRESENT, "weight", mass)
    height = scaled(HEIGHT_PRESENT, "height", length)
    finish(reader)
    unsuccessful = raw_fat == MEASUREMENT_UNSUCCESSFUL
    return BodyCompositionMeasurement(
        flags=flags,
        imperial=imperial,
        body_fat_percent=None if unsuccessful else _tenths(raw_fat),
        measurement_unsuccessful=unsuccessful,
        time_stamp=time_stamp,
        user_id=user_id,
        basal_metabolism_kj=basal_metabolism,
        muscle_percent=muscle_percent,
        muscle_mass=muscle_mass,
        fat_free_mass=fat_free_mass,
        soft_lean_mass=soft_lean_mass,
        body_water_mass=body_water_mass,
        impedance_ohm=impedance,
        weight=weight,
        height=height,
        multiple_packet=bool(flags & MULTIPLE_PACKET),
    )


def body_composition_readings(m: BodyCompositionMeasurement) -> list[Reading]:
    if m.body_fat_percent is None:
        return []
    mass_unit, mass_decimals = ("[lb_av]", 2) if m.imperial else ("kg", 3)
    length_unit, length_decimals = ("[in_i]", 1) if m.imperial else ("m", 3)
    wanted = (
        ("41982-0", m.body_fat_percent, "%", 1),
        ("73965-6", m.muscle_percent, "%", 1),
        ("73964-9", m.muscle_mass, mass_unit, mass_decimals),
        ("101683-1", m.body_water_mass, mass_unit, mass_decimals),
        ("29463-7", m.weight, mass_unit, mass_decimals),
        ("8302-2", m.height, length_unit, length_decimals),
    )
    return [
        Reading(code=code, value=value, unit=unit, device_time=m.time_stamp, user=m.user_id, decimals=decimals)
        for code, value, unit, decimals in wanted
        if value is not None
    ]


@dataclass(frozen=True)
class BodyCompositionFeature:
    raw: int  # as sent, RFU bits 18-31 included
    time_stamp: bool
    multiple_users: bool
    basal_metabolism: bool
    muscle_percentage: bool
    muscle_mass: bool
    fat_free_mass: bool
    soft_lean_mass: bool
    body_water_mass: bool
    impedance: bool
    weight: bool
    height: bool
    mass_resolution: int  # 0: not specified; same codes as the Weight Scale Feature
    height_resolution: int  # 0: not specified

    @property
    def mass_step(self) -> tuple[float, float] | None:
        """(kg, lb) the analyzer resolves, or None when not specified or reserved."""
        return WEIGHT_RESOLUTIONS.get(self.mass_resolution)

    @property
    def height_step(self) -> tuple[float, float] | None:
        """(m, in) the analyzer resolves, or None when not specified or reserved."""
        return HEIGHT_RESOLUTIONS.get(self.height_resolution)


def decode_body_composition_feature(data: bytes) -> BodyCompositionFeature:
    check(data, "Body Composition Feature", FEATURE_LAYOUT)
    raw = Reader(data, "Body Composition Feature").u32("body composition feature")
    return BodyCompositionFeature(
        raw=raw,
        time_stamp=bool(raw & 0x0001),
        multiple_users=bool(raw & 0x0002),
        basal_metabolism=bool(raw & 0x0004),
        muscle_percentage=bool(raw & 0x0008),
        muscle_mass=bool(raw & 0x0010),
        fat_free_mass=bool(raw & 0x0020),
        soft_lean_mass=bool(raw & 0x0040),
        body_water_mass=bool(raw & 0x0080),
        impedance=bool(raw & 0x0100),
        weight=bool(raw & 0x0200),
        height=bool(raw & 0x0400),
        mass_resolution=(raw >> 11) & 0x0F,
        height_resolution=(raw >> 15) & 0x07,
    )


register(
    Characteristic(
        BODY_COMPOSITION_MEASUREMENT,
        "Body Composition Measurement",
        decode_body_composition_measurement,
        body_composition_readings,
    )
)
register(Characteristic(BODY_COMPOSITION_FEATURE, "Body Composition Feature", decode_body_composition_feature))
