"""Temperature Measurement (0x2A1C), Intermediate Temperature (0x2A1E), Temperature Type (0x2A1D).

Layout (Health Thermometer Service 1.0 and the GATT Specification Supplement "Temperature Measurement"):
  flags u8: bit0 Fahrenheit (else Celsius), bit1 Time Stamp, bit2 Temperature Type, bits3-7 RFU
  temperature FLOAT (32-bit) | [Date Time 7] | [temperature type u8]
  temperature type: 1 armpit, 2 body, 3 ear, 4 finger, 5 GI tract, 6 mouth, 7 rectum, 8 toe,
                    9 tympanum; 0 and 10-255 RFU
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders.thermometer import (
    IntermediateTemperature,
    TemperatureMeasurement,
    TemperatureType,
    TemperatureTypeValue,
    TemperatureUnit,
    decode_intermediate_temperature,
    decode_temperature_measurement,
    decode_temperature_type,
    intermediate_temperature_readings,
    temperature_readings,
)
from device.ble.errors import DecodeError
from device.ble.ieee11073 import Number, Special
from device.ble.reader import DateTime
from device.ble.readings import Reading
from tests.ble.protocol_checks import accepted_by_protocol

# 37.4 as FLOAT: exponent FF (-1), mantissa 000176 (374), little-endian 76 01 00 FF
T_37_4 = bytes.fromhex("760100FF")
FLOAT_SPECIALS = {
    "FFFF7F00": Special.NAN,
    "00008000": Special.NRES,
    "FEFF7F00": Special.POSITIVE_INFINITY,
    "02008000": Special.NEGATIVE_INFINITY,
    "01008000": Special.RESERVED,
}


# --- Vector from NordicSemiconductor/Android-BLE-Common-Library,
# ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/ht/TemperatureMeasurementDataCallbackTest.java


def test_nordic_temperature_with_time_stamp_and_type() -> None:
    # 06 = Celsius, time stamp, type | B0 0E 00 FE = 3760e-2 | DC 07 0C 05 0B 32 1B = 2012-12-05 11:50:27 | 04 finger
    m = decode_temperature_measurement(bytes.fromhex("06B00E00FEDC070C050B321B04"))
    assert m == TemperatureMeasurement(
        flags=0x06,
        unit=TemperatureUnit.CELSIUS,
        temperature=Number(37.6, -2),
        time_stamp=DateTime(2012, 12, 5, 11, 50, 27),
        temperature_type=4,
    )
    assert m.site is TemperatureType.FINGER
    assert temperature_readings(m) == [
        Reading(code="8310-5", value=37.6, unit="Cel", device_time=DateTime(2012, 12, 5, 11, 50, 27), decimals=2)
    ]


def test_nordic_truncated_type_is_refused() -> None:
    # the same value without its last octet: the flags announce a temperature type that is not there
    with pytest.raises(DecodeError, match="temperature type"):
        decode_temperature_measurement(bytes.fromhex("06B00E00FEDC070C050B321B"))


# --- Every combination of the defined flag bits, with and without RFU bits.


@pytest.mark.parametrize("rfu", [0x00, 0xF8])
@pytest.mark.parametrize("defined", range(0x08))
def test_every_flag_combination(defined: int, rfu: int) -> None:
    flags = defined | rfu
    data = bytes([flags]) + T_37_4
    if flags & 0x02:
        data += (2025).to_bytes(2, "little") + bytes([3, 9, 7, 15, 0])
    if flags & 0x04:
        data += bytes([TemperatureType.MOUTH])
    m = decode_temperature_measurement(data)
    assert m.flags == flags
    assert m.unit is (TemperatureUnit.FAHRENHEIT if flags & 0x01 else TemperatureUnit.CELSIUS)
    assert m.temperature == Number(37.4, -1)
    assert m.time_stamp == (DateTime(2025, 3, 9, 7, 15, 0) if flags & 0x02 else None)
    assert m.temperature_type == (6 if flags & 0x04 else None)
    assert m.site is (TemperatureType.MOUTH if flags & 0x04 else None)
    [reading] = temperature_readings(m)
    assert (reading.code, reading.unit, reading.decimals) == ("8310-5", m.unit.value, 1)
    assert reading.device_time == m.time_stamp


def test_fahrenheit_reading_passes_the_protocol() -> None:
    # 01 | 986e-1 = 98.6 °F: DA 03 00 FF
    [reading] = temperature_readings(decode_temperature_measurement(bytes.fromhex("01DA0300FF")))
    assert (reading.value, reading.unit) == (98.6, "[degF]")
    accepted_by_protocol(reading)
    [celsius] = temperature_readings(decode_temperature_measurement(b"\x00" + T_37_4))
    accepted_by_protocol(celsius)


@pytest.mark.parametrize(("hex_value", "special"), FLOAT_SPECIALS.items())
def test_special_values_are_kept_and_yield_no_reading(hex_value: str, special: Special) -> None:
    m = decode_temperature_measurement(bytes.fromhex("00" + hex_value))
    assert m.temperature is special
    assert temperature_readings(m) == []


def test_negative_temperature_decodes() -> None:
    # FLOAT -5 (mantissa FFFFFB, exponent 0): FB FF FF 00
    assert decode_temperature_measurement(bytes.fromhex("00FBFFFF00")).temperature == Number(-5.0, 0)


@pytest.mark.parametrize("raw", range(1, 10))
def test_every_temperature_type(raw: int) -> None:
    m = decode_temperature_measurement(bytes([0x04]) + T_37_4 + bytes([raw]))
    assert m.site is TemperatureType(raw)
    assert decode_temperature_type(bytes([raw])) == TemperatureTypeValue(raw, TemperatureType(raw))


@pytest.mark.parametrize("raw", [0, 10, 0xFF])
def test_reserved_temperature_types_are_kept_raw(raw: int) -> None:
    m = decode_temperature_measurement(bytes([0x04]) + T_37_4 + bytes([raw]))
    assert (m.temperature_type, m.site) == (raw, None)
    assert decode_temperature_type(bytes([raw])) == TemperatureTypeValue(raw, None)


def test_unknown_date_in_time_stamp() -> None:
    m = decode_temperature_measurement(bytes([0x02]) + T_37_4 + bytes.fromhex("00000000173B3B"))
    assert m.time_stamp == DateTime(None, None, None, 23, 59, 59)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "flags"),
        (bytes.fromhex("00760100"), "temperature"),
        (bytes.fromhex("02760100FFE807"), "time stamp"),
    ],
)
def test_truncated_values_name_the_missing_field(data: bytes, field: str) -> None:
    with pytest.raises(DecodeError, match=field):
        decode_temperature_measurement(data)


def test_bytes_after_the_last_field_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"expected 5 byte\(s\) for flags 0x00, got 6 \(1 byte\(s\) too many"):
        decode_temperature_measurement(b"\x00" + T_37_4 + b"\x99")
    with pytest.raises(DecodeError, match=r"Intermediate Temperature: expected 5 byte\(s\) for flags 0x00, got 6"):
        decode_intermediate_temperature(b"\x00" + T_37_4 + b"\x99")


# --- Intermediate Temperature: same layout, never a reading.


def test_intermediate_temperature_has_the_same_layout_but_no_reading() -> None:
    m = decode_intermediate_temperature(bytes.fromhex("06B00E00FEDC070C050B321B04"))
    assert isinstance(m, IntermediateTemperature)
    assert (m.temperature, m.site) == (Number(37.6, -2), TemperatureType.FINGER)
    assert intermediate_temperature_readings(m) == []
    assert temperature_readings(m) == []  # even through the final-measurement mapping


def test_temperature_type_characteristic_empty_and_too_long() -> None:
    with pytest.raises(DecodeError, match="temperature type"):
        decode_temperature_type(b"")
    with pytest.raises(DecodeError, match=r"Temperature Type: expected 1 byte\(s\), got 2"):
        decode_temperature_type(b"\x02\x01")


# --- Arbitrary bytes: a dataclass or DecodeError, nothing else; readings never raise.


@given(st.binary(max_size=64))
def test_temperature_measurement_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_temperature_measurement(data)
    except DecodeError:
        return
    assert isinstance(decoded, TemperatureMeasurement)
    temperature_readings(decoded)


@given(st.binary(max_size=64))
def test_intermediate_temperature_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_intermediate_temperature(data)
    except DecodeError:
        return
    assert intermediate_temperature_readings(decoded) == []


@given(st.binary(max_size=64))
def test_temperature_type_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_temperature_type(data)
    except DecodeError:
        return
    assert isinstance(decoded, TemperatureTypeValue)
