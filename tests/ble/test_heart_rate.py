"""Heart Rate Measurement (0x2A37) and Body Sensor Location (0x2A38).

Layout (Heart Rate Service 1.0 and the GATT Specification Supplement "Heart Rate Measurement"):
  flags u8: bit0 HR is uint16, bit1 contact detected, bit2 contact feature supported,
            bit3 Energy Expended present, bit4 RR-Interval present, bits5-7 RFU
  heart rate u8 or u16 | [energy expended u16 kJ] | [RR-interval u16 in 1/1024 s]...
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders.heart_rate import (
    BodySensorLocationValue,
    HeartRateMeasurement,
    SensorContact,
    SensorLocation,
    decode_body_sensor_location,
    decode_heart_rate_measurement,
    heart_rate_readings,
)
from device.ble.errors import DecodeError
from device.ble.readings import Reading
from tests.ble.protocol_checks import FLAG, accepted_by_protocol

# --- Vectors from NordicSemiconductor/Android-BLE-Common-Library,
# ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/hr/HeartRateMeasurementDataCallbackTest.java
# (expected values re-worked by hand from the layout above).


def test_nordic_simple() -> None:
    # 00 = uint8 HR, no contact feature | 55 = 85 bpm
    m = decode_heart_rate_measurement(bytes([0x00, 85]))
    assert m == HeartRateMeasurement(0x00, 85, SensorContact.NOT_SUPPORTED, None, None)


def test_nordic_no_contact() -> None:
    # 04 = contact feature supported, contact not detected | FF = 255 bpm
    m = decode_heart_rate_measurement(bytes([0x04, 0xFF]))
    assert (m.heart_rate, m.sensor_contact) == (255, SensorContact.NOT_DETECTED)


def test_nordic_uint8_with_everything() -> None:
    # 1E = contact supported+detected, EE, RR | 55 = 85 | 32 00 = 50 kJ | 21 00 = 33/1024 s
    m = decode_heart_rate_measurement(bytes([0b11110, 85, 50, 0, 33, 0]))
    assert m == HeartRateMeasurement(0x1E, 85, SensorContact.DETECTED, 50, (33,))


def test_nordic_uint16_with_three_rr_intervals() -> None:
    # 1F | 01 01 = 257 | 32 01 = 306 kJ | 01 00, 02 01, FF FF = 1, 258, 65535
    m = decode_heart_rate_measurement(bytes([0b11111, 1, 1, 50, 1, 1, 0, 2, 1, 0xFF, 0xFF]))
    assert m == HeartRateMeasurement(0x1F, 257, SensorContact.DETECTED, 306, (1, 258, 65535))
    assert m.rr_intervals_s == (1 / 1024, 258 / 1024, 65535 / 1024)


def test_nordic_invalid_rr_announced_but_missing() -> None:
    # 17 = uint16 HR, contact, RR present | 01 01 = 257 | the RR-interval the flags announce is missing
    with pytest.raises(DecodeError, match="RR-interval"):
        decode_heart_rate_measurement(bytes([0b10111, 1, 1]))


# --- Vectors from eisaev/blevalueparser, tests/heartratemeasurementtest.cpp.


def test_eisaev_hr8_ee() -> None:
    # 08 | AA = 170 | BB 01 = 443 kJ
    m = decode_heart_rate_measurement(bytes([0x08, 0xAA, 0xBB, 0x01]))
    assert (m.heart_rate, m.energy_expended_kj, m.rr_intervals) == (170, 443, None)


def test_eisaev_hr16() -> None:
    # 01 | AA 01 = 426
    assert decode_heart_rate_measurement(bytes([0x01, 0xAA, 0x01])).heart_rate == 426


def test_eisaev_nine_rr_intervals_all_kept() -> None:
    data = bytes.fromhex("10 AA 0000 0100 0200 0300 F303 FCFF FDFF FEFF FFFF".replace(" ", ""))
    m = decode_heart_rate_measurement(data)
    assert m.rr_intervals == (0, 1, 2, 3, 0x03F3, 0xFFFC, 0xFFFD, 0xFFFE, 0xFFFF)


# --- Every combination of the defined flag bits, with and without RFU bits.


@pytest.mark.parametrize("rfu", [0x00, 0xE0])
@pytest.mark.parametrize("defined", range(0x20))
def test_every_flag_combination(defined: int, rfu: int) -> None:
    flags = defined | rfu
    data = bytes([flags])
    data += (300).to_bytes(2, "little") if flags & 0x01 else bytes([72])
    if flags & 0x08:
        data += (1234).to_bytes(2, "little")
    if flags & 0x10:
        data += (800).to_bytes(2, "little") + (1024).to_bytes(2, "little")
    m = decode_heart_rate_measurement(data)
    assert m.flags == flags
    assert m.heart_rate == (300 if flags & 0x01 else 72)
    assert m.energy_expended_kj == (1234 if flags & 0x08 else None)
    assert m.rr_intervals == ((800, 1024) if flags & 0x10 else None)
    expected_contact = {
        0: SensorContact.NOT_SUPPORTED,
        1: SensorContact.NOT_SUPPORTED,
        2: SensorContact.NOT_DETECTED,
        3: SensorContact.DETECTED,
    }[(flags >> 1) & 0x03]
    assert m.sensor_contact is expected_contact


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "flags"),
        (bytes([0x00]), "heart rate"),
        (bytes([0x01, 0x48]), "heart rate"),  # uint16 announced, one octet sent
        (bytes([0x08, 0x48, 0x01]), "energy expended"),
        (bytes([0x10, 0x48]), "RR-interval"),
        (bytes([0x10, 0x48, 0x01]), "RR-interval"),
    ],
)
def test_truncated_values_name_the_missing_field(data: bytes, field: str) -> None:
    with pytest.raises(DecodeError, match=field):
        decode_heart_rate_measurement(data)


def test_bytes_after_the_last_field_are_refused_without_rr_intervals() -> None:
    with pytest.raises(DecodeError, match=r"expected 2 byte\(s\) for flags 0x00, got 4 \(2 byte\(s\) too many"):
        decode_heart_rate_measurement(bytes([0x00, 72, 0xAB, 0xCD]))


def test_an_odd_octet_after_rr_intervals_is_refused_not_half_an_interval() -> None:
    # 10 | 48 | 20 03 = 800 | 07 (left over): RR-intervals are whole uint16s
    with pytest.raises(DecodeError, match=r"expected 4 byte\(s\) or more in whole 2-byte RR-intervals.*got 5"):
        decode_heart_rate_measurement(bytes([0x10, 0x48, 0x20, 0x03, 0x07]))


@pytest.mark.parametrize("count", [1, 2, 5, 255])
def test_any_number_of_whole_rr_intervals_is_accepted(count: int) -> None:
    # HRS 1.0: the RR-Interval field fills the rest of the value, as many as fit.
    m = decode_heart_rate_measurement(bytes([0x10, 72]) + bytes(2 * count))
    assert m.rr_intervals == (0,) * count


def test_a_value_longer_than_an_attribute_can_be_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"expected at most 512 byte\(s\).*got 514"):
        decode_heart_rate_measurement(bytes([0x10, 72]) + bytes(512))


# --- Readings.


def test_reading_is_heart_rate_per_minute() -> None:
    [reading] = heart_rate_readings(decode_heart_rate_measurement(bytes([0x06, 72])))
    assert reading == Reading(code="8867-4", value=72.0, unit="/min", decimals=0)
    accepted_by_protocol(reading)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(0x00, ()), (0x02, ()), (0x04, ("sensor_contact_not_detected",)), (0x06, ())],
)
def test_lost_contact_travels_as_a_flag(flags: int, expected: tuple[str, ...]) -> None:
    [reading] = heart_rate_readings(decode_heart_rate_measurement(bytes([flags, 72])))
    assert reading.flags == expected


# --- Body Sensor Location: u8, 0 Other .. 6 Foot, 7-255 RFU.


@pytest.mark.parametrize("raw", range(7))
def test_body_sensor_locations(raw: int) -> None:
    assert decode_body_sensor_location(bytes([raw])) == BodySensorLocationValue(raw, SensorLocation(raw))


def test_eisaev_body_sensor_location_chest() -> None:
    # eisaev/blevalueparser tests/bodysensorlocationtest.cpp: 01 = Chest
    assert decode_body_sensor_location(b"\x01").location is SensorLocation.CHEST


@pytest.mark.parametrize("raw", [7, 0x80, 0xFF])
def test_reserved_body_sensor_locations_are_kept_raw(raw: int) -> None:
    assert decode_body_sensor_location(bytes([raw])) == BodySensorLocationValue(raw, None)


def test_body_sensor_location_empty_and_too_long() -> None:
    with pytest.raises(DecodeError, match="body sensor location"):
        decode_body_sensor_location(b"")
    with pytest.raises(DecodeError, match=r"Body Sensor Location: expected 1 byte\(s\), got 2"):
        decode_body_sensor_location(b"\x02\x00")


# --- Arbitrary bytes: a dataclass or DecodeError, nothing else; readings never raise.


@given(st.binary(max_size=64))
def test_heart_rate_measurement_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_heart_rate_measurement(data)
    except DecodeError:
        return
    assert isinstance(decoded, HeartRateMeasurement)
    for reading in heart_rate_readings(decoded):
        assert all(FLAG.match(flag) for flag in reading.flags)


@given(st.binary(max_size=64))
def test_body_sensor_location_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_body_sensor_location(data)
    except DecodeError:
        return
    assert isinstance(decoded, BodySensorLocationValue)
