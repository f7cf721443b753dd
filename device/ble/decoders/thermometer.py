"""Health Thermometer Service (HTS 1.0): Temperature Measurement (0x2A1C), Intermediate Temperature (0x2A1E)
and Temperature Type (0x2A1D).

The temperature is a 32-bit IEEE 11073 FLOAT (not the 16-bit SFLOAT the cuffs use). Intermediate
Temperature has the same layout but is only the thermometer showing its progress, so it yields
no reading. The temperature type (body site) is kept on the decoded value; the protocol's
Observation has no body-site field, so it is not part of the reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import Field, Layout, check, finish
from device.ble.ieee11073 import Measured, Number
from device.ble.reader import DateTime, Reader
from device.ble.readings import Reading

TEMPERATURE_MEASUREMENT = 0x2A1C
TEMPERATURE_TYPE = 0x2A1D
INTERMEDIATE_TEMPERATURE = 0x2A1E

UNITS_FAHRENHEIT = 0x01
TIME_STAMP_PRESENT = 0x02
TEMPERATURE_TYPE_PRESENT = 0x04

MEASUREMENT_LAYOUT: Layout = (
    Field("flags", 1),
    Field("temperature", 4),
    Field("time stamp", 7, TIME_STAMP_PRESENT),
    Field("temperature type", 1, TEMPERATURE_TYPE_PRESENT),
)
TEMPERATURE_TYPE_LAYOUT: Layout = (Field("temperature type", 1),)


class TemperatureUnit(StrEnum):
    """Values are the UCUM codes the readings carry."""

    CELSIUS = "Cel"
    FAHRENHEIT = "[degF]"


class TemperatureType(IntEnum):
    ARMPIT = 1
    BODY = 2  # general
    EAR = 3  # usually ear lobe
    FINGER = 4
    GASTROINTESTINAL_TRACT = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9  # ear drum


def temperature_type(raw: int | None) -> TemperatureType | None:
    """None for absent and for the values the spec reserves (0, 10-255), which are kept raw, not refused."""
    try:
        return None if raw is None else TemperatureType(raw)
    except ValueError:
        return None


@dataclass(frozen=True)
class TemperatureMeasurement:
    flags: int  # as sent, RFU bits 3-7 included
    unit: TemperatureUnit
    temperature: Measured
    time_stamp: DateTime | None
    temperature_type: int | None  # raw; see `site`

    @property
    def site(self) -> TemperatureType | None:
        return temperature_type(self.temperature_type)


@dataclass(frozen=True)
class IntermediateTemperature(TemperatureMeasurement):
    """Same fields; a distinct type so nothing mistakes a reading in progress for the final one."""


def _fields(data: bytes, what: str) -> tuple[int, TemperatureUnit, Measured, DateTime | None, int | None]:
    check(data, what, MEASUREMENT_LAYOUT, flags_at=0)
    reader = Reader(data, what)
    flags = reader.u8("flags")
    unit = TemperatureUnit.FAHRENHEIT if flags & UNITS_FAHRENHEIT else TemperatureUnit.CELSIUS
    temperature = reader.float32("temperature")
    time_stamp = reader.date_time("time stamp") if flags & TIME_STAMP_PRESENT else None
    site = reader.u8("temperature type") if flags & TEMPERATURE_TYPE_PRESENT else None
    finish(reader)
    return flags, unit, temperature, time_stamp, site


def decode_temperature_measurement(data: bytes) -> TemperatureMeasurement:
    return TemperatureMeasurement(*_fields(data, "Temperature Measurement"))


def decode_intermediate_temperature(data: bytes) -> IntermediateTemperature:
    return IntermediateTemperature(*_fields(data, "Intermediate Temperature"))


def temperature_readings(measurement: TemperatureMeasurement) -> list[Reading]:
    if isinstance(measurement, IntermediateTemperature) or not isinstance(measurement.temperature, Number):
        return []
    return [
        Reading(
            code="8310-5",
            value=measurement.temperature.value,
            unit=measurement.unit.value,
            device_time=measurement.time_stamp,
            decimals=measurement.temperature.decimals,
        )
    ]


def intermediate_temperature_readings(_measurement: IntermediateTemperature) -> list[Reading]:
    """None: the value is still changing; the thermometer indicates the final one as a Temperature Measurement."""
    return []


@dataclass(frozen=True)
class TemperatureTypeValue:
    raw: int
    site: TemperatureType | None  # None: reserved for future use


def decode_temperature_type(data: bytes) -> TemperatureTypeValue:
    check(data, "Temperature Type", TEMPERATURE_TYPE_LAYOUT)
    raw = Reader(data, "Temperature Type").u8("temperature type")
    return TemperatureTypeValue(raw, temperature_type(raw))


register(
    Characteristic(
        TEMPERATURE_MEASUREMENT, "Temperature Measurement", decode_temperature_measurement, temperature_readings
    )
)
register(Characteristic(TEMPERATURE_TYPE, "Temperature Type", decode_temperature_type))
register(
    Characteristic(
        INTERMEDIATE_TEMPERATURE,
        "Intermediate Temperature",
        decode_intermediate_temperature,
        intermediate_temperature_readings,
    )
)
