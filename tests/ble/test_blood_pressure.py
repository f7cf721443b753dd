"""Blood Pressure Measurement (0x2A35), Intermediate Cuff Pressure (0x2A36), Blood Pressure Feature (0x2A49).

Layout (Blood Pressure Service 1.1 and the GATT Specification Supplement "Blood Pressure Measurement"):
  flags u8: bit0 kPa (else mmHg), bit1 Time Stamp, bit2 Pulse Rate, bit3 User ID,
            bit4 Measurement Status, bits5-7 RFU
  systolic SFLOAT | diastolic SFLOAT | MAP SFLOAT | [Date Time 7] | [pulse SFLOAT] | [user u8] | [status u16]
  status: bit0 body movement, bit1 cuff too loose, bit2 irregular pulse,
          bits3-4 pulse rate range (0 within, 1 above upper, 2 below lower, 3 RFU),
          bit5 improper measurement position, bits6-15 RFU
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    IntermediateCuffPressure,
    MeasurementStatus,
    PressureUnit,
    PulseRateRange,
    blood_pressure_readings,
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
    intermediate_cuff_pressure_readings,
    status_flags,
)
from device.ble.errors import DecodeError
from device.ble.ieee11073 import Number, Special
from device.ble.reader import DateTime
from device.ble.readings import Reading
from tests.ble.protocol_checks import FLAG, accepted_by_protocol

SPECIALS = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.POSITIVE_INFINITY,
    0x0802: Special.NEGATIVE_INFINITY,
    0x0801: Special.RESERVED,
}


def _le16(value: int) -> bytes:
    return value.to_bytes(2, "little")


APRIL_17 = bytes.fromhex("0000 04 11 14 29 3B".replace(" ", ""))  # year unknown, 4-17 20:41:59

# --- Vectors from NordicSemiconductor/Android-BLE-Common-Library,
# ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/bps/BloodPressureMeasurementDataCallbackTest.java
# and .../bps/IntermediateCuffPressureDataCallbackTest.java (expected values re-worked by hand).


def test_nordic_full() -> None:
    # 1E = mmHg, time stamp, pulse, user, status | 8A 00 = 138 | 58 00 = 88 | 78 00 = 120
    # | 0000 04 11 14 29 3B = ????-04-17 20:41:59 | 3C 00 = 60 | 01 | 27 00 = 0b100111
    data = bytes.fromhex("1E 8A00 5800 7800".replace(" ", "")) + APRIL_17 + bytes.fromhex("3C00 01 2700")
    m = decode_blood_pressure_measurement(data)
    assert m == BloodPressureMeasurement(
        flags=0x1E,
        unit=PressureUnit.MMHG,
        systolic=Number(138.0, 0),
        diastolic=Number(88.0, 0),
        mean_arterial_pressure=Number(120.0, 0),
        time_stamp=DateTime(None, 4, 17, 20, 41, 59),
        pulse_rate=Number(60.0, 0),
        user_id=1,
        status=MeasurementStatus(0x27, True, True, True, PulseRateRange.WITHIN, True),
    )


def test_nordic_some_in_kpa() -> None:
    # 15 = kPa, pulse, status | BD F0 = 189e-1 | 0B 00 = 11 | 9F F0 = 159e-1 | 3C 00 = 60 | 12 00
    m = decode_blood_pressure_measurement(bytes.fromhex("15BDF00B009FF03C001200"))
    assert m.unit is PressureUnit.KPA
    assert (m.systolic, m.diastolic, m.mean_arterial_pressure) == (Number(18.9, -1), Number(11.0, 0), Number(15.9, -1))
    assert (m.time_stamp, m.user_id) == (None, None)
    # 0x12: cuff too loose, pulse rate range 2 = below lower limit
    assert m.status == MeasurementStatus(0x12, False, True, False, PulseRateRange.BELOW_LOWER_LIMIT, False)


def test_nordic_minimal() -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("00BDF00B009FF0"))
    assert (m.unit, m.pulse_rate, m.user_id, m.status, m.time_stamp) == (PressureUnit.MMHG, None, None, None, None)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (bytes([1, 2, 3, 4, 5, 6]), "mean arterial pressure"),  # Nordic onInvalidDataReceived_toShort
        (bytes([3, 2, 3, 4, 5, 6, 7]), "time stamp"),  # Nordic onInvalidDataReceived_noTimestamp
        (b"", "flags"),
        (bytes.fromhex("04BDF00B009FF0"), "pulse rate"),
        (bytes.fromhex("08BDF00B009FF0"), "user id"),
        (bytes.fromhex("10BDF00B009FF012"), "measurement status"),
    ],
)
def test_truncated_values_name_the_missing_field(data: bytes, field: str) -> None:
    with pytest.raises(DecodeError, match=field):
        decode_blood_pressure_measurement(data)


def test_nordic_intermediate_cuff_pressure_full() -> None:
    data = bytes.fromhex("1E 0400 0000 0000".replace(" ", "")) + APRIL_17 + bytes.fromhex("3C00 01 2700")
    icp = decode_intermediate_cuff_pressure(data)
    assert icp == IntermediateCuffPressure(
        flags=0x1E,
        unit=PressureUnit.MMHG,
        current_cuff_pressure=Number(4.0, 0),
        unused_diastolic=Number(0.0, 0),
        unused_mean_arterial_pressure=Number(0.0, 0),
        time_stamp=DateTime(None, 4, 17, 20, 41, 59),
        pulse_rate=Number(60.0, 0),
        user_id=1,
        status=MeasurementStatus(0x27, True, True, True, PulseRateRange.WITHIN, True),
    )


def test_nordic_intermediate_cuff_pressure_some_and_minimal() -> None:
    some = decode_intermediate_cuff_pressure(bytes.fromhex("156FF000000000 3C00 1200".replace(" ", "")))
    assert (some.unit, some.current_cuff_pressure) == (PressureUnit.KPA, Number(11.1, -1))
    minimal = decode_intermediate_cuff_pressure(bytes.fromhex("00D7F000000000"))
    assert minimal.current_cuff_pressure == Number(21.5, -1)


def test_intermediate_cuff_pressure_with_spec_nan_fields_yields_no_readings() -> None:
    # BLS: diastolic and MAP are unused in Intermediate Cuff Pressure and sent as NaN (FF 07)
    icp = decode_intermediate_cuff_pressure(bytes.fromhex("04 5A00 FF07 FF07 4800".replace(" ", "")))
    assert icp.unused_diastolic is Special.NAN
    assert icp.unused_mean_arterial_pressure is Special.NAN
    assert intermediate_cuff_pressure_readings(icp) == []


# --- Every combination of the defined flag bits, with and without RFU bits.


@pytest.mark.parametrize("rfu", [0x00, 0xE0])
@pytest.mark.parametrize("defined", range(0x20))
def test_every_flag_combination(defined: int, rfu: int) -> None:
    flags = defined | rfu
    # 120 / 80 / 93 as SFLOAT with exponent 0: 78 00 | 50 00 | 5D 00
    data = bytes([flags]) + _le16(120) + _le16(80) + _le16(93)
    stamp = DateTime(2024, 2, 29, 8, 30, 5)
    if flags & 0x02:
        data += _le16(2024) + bytes([2, 29, 8, 30, 5])
    if flags & 0x04:
        data += _le16(0xF000 | 725)  # 725e-1 = 72.5
    if flags & 0x08:
        data += bytes([3])
    if flags & 0x10:
        data += _le16(0x0001)
    m = decode_blood_pressure_measurement(data)
    assert m.flags == flags
    assert m.unit is (PressureUnit.KPA if flags & 0x01 else PressureUnit.MMHG)
    assert (m.systolic, m.diastolic, m.mean_arterial_pressure) == (Number(120.0, 0), Number(80.0, 0), Number(93.0, 0))
    assert m.time_stamp == (stamp if flags & 0x02 else None)
    assert m.pulse_rate == (Number(72.5, -1) if flags & 0x04 else None)
    assert m.user_id == (3 if flags & 0x08 else None)
    assert m.status == (
        MeasurementStatus(1, True, False, False, PulseRateRange.WITHIN, False) if flags & 0x10 else None
    )

    readings = blood_pressure_readings(m)
    unit = "kPa" if flags & 0x01 else "mm[Hg]"
    expected_codes = [("8480-6", unit), ("8462-4", unit), ("8478-0", unit)]
    if flags & 0x04:
        expected_codes.append(("8867-4", "/min"))
    assert [(r.code, r.unit) for r in readings] == expected_codes
    for reading in readings:
        assert reading.device_time == m.time_stamp
        assert reading.user == m.user_id
        assert reading.flags == (("body_movement",) if flags & 0x10 else ())


@pytest.mark.parametrize(
    ("raw", "flag"),
    [
        (0x0001, "body_movement"),
        (0x0002, "cuff_too_loose"),
        (0x0004, "irregular_pulse"),
        (0x0008, "pulse_rate_exceeds_upper_limit"),
        (0x0010, "pulse_rate_below_lower_limit"),
        (0x0020, "improper_measurement_position"),
    ],
)
def test_each_status_bit_becomes_its_flag(raw: int, flag: str) -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("10 7800 5000 5D00".replace(" ", "")) + _le16(raw))
    assert [r.flags for r in blood_pressure_readings(m)] == [(flag,)] * 3
    assert m.status is not None
    assert m.status.raw == raw


@pytest.mark.parametrize(
    ("bits", "expected"),
    [
        (0, PulseRateRange.WITHIN),
        (1, PulseRateRange.EXCEEDS_UPPER_LIMIT),
        (2, PulseRateRange.BELOW_LOWER_LIMIT),
        (3, PulseRateRange.RESERVED),
    ],
)
def test_pulse_rate_range_is_two_bits(bits: int, expected: PulseRateRange) -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("10 7800 5000 5D00".replace(" ", "")) + _le16(bits << 3))
    assert m.status is not None
    assert m.status.pulse_rate_range is expected


def test_reserved_pulse_range_and_rfu_status_bits_are_kept_but_add_no_flag() -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("10 7800 5000 5D00".replace(" ", "")) + _le16(0xFFC0 | 0x18))
    assert m.status is not None
    assert m.status.raw == 0xFFD8
    assert m.status.pulse_rate_range is PulseRateRange.RESERVED
    assert status_flags(m.status) == ()


def test_all_status_bits_together() -> None:
    status = MeasurementStatus(0x2F, True, True, True, PulseRateRange.EXCEEDS_UPPER_LIMIT, True)
    assert status_flags(status) == (
        "body_movement",
        "cuff_too_loose",
        "irregular_pulse",
        "pulse_rate_exceeds_upper_limit",
        "improper_measurement_position",
    )


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (bytes.fromhex("0000 00 00 0A 00 00".replace(" ", "")), DateTime(None, None, None, 10, 0, 0)),
        (bytes.fromhex("E807 00 0F 0A 00 00".replace(" ", "")), DateTime(2024, None, 15, 10, 0, 0)),
        (bytes.fromhex("E807 06 00 0A 00 00".replace(" ", "")), DateTime(2024, 6, None, 10, 0, 0)),
    ],
)
def test_time_stamp_with_unknown_parts(stamp: bytes, expected: DateTime) -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("02 7800 5000 5D00".replace(" ", "")) + stamp)
    assert m.time_stamp == expected
    assert all(r.device_time == expected for r in blood_pressure_readings(m))


def test_time_stamp_out_of_range_is_refused() -> None:
    with pytest.raises(DecodeError, match="month 13"):
        decode_blood_pressure_measurement(bytes.fromhex("02 7800 5000 5D00 E807 0D 01 00 00 00".replace(" ", "")))


@pytest.mark.parametrize("user", [0, 1, 0xFE, 0xFF])
def test_user_ids_including_unknown_user(user: int) -> None:
    m = decode_blood_pressure_measurement(bytes.fromhex("08 7800 5000 5D00".replace(" ", "")) + bytes([user]))
    assert m.user_id == user
    assert {r.user for r in blood_pressure_readings(m)} == {user}


@pytest.mark.parametrize("position", [0, 1, 2, 3])
@pytest.mark.parametrize(("mantissa", "special"), SPECIALS.items())
def test_a_special_value_yields_no_reading_for_that_quantity_only(
    mantissa: int, special: Special, position: int
) -> None:
    values = [_le16(120), _le16(80), _le16(93), _le16(72)]
    values[position] = _le16(mantissa)
    m = decode_blood_pressure_measurement(bytes([0x04]) + b"".join(values))
    decoded = (m.systolic, m.diastolic, m.mean_arterial_pressure, m.pulse_rate)
    assert decoded[position] is special
    codes = ["8480-6", "8462-4", "8478-0", "8867-4"]
    del codes[position]
    assert [r.code for r in blood_pressure_readings(m)] == codes


def test_readings_carry_decimals_and_pass_the_protocol() -> None:
    # 00 | 8A 00 = 138 | 58 00 = 88 | 78 00 = 120 mmHg; 15 | BD F0 18.9 | 0B 00 11 | 9F F0 15.9 kPa + pulse
    for data in (bytes.fromhex("008A0058007800"), bytes.fromhex("15BDF00B009FF03C001200")):
        for reading in blood_pressure_readings(decode_blood_pressure_measurement(data)):
            accepted_by_protocol(reading)
    [systolic, *_] = blood_pressure_readings(decode_blood_pressure_measurement(bytes.fromhex("01BDF00B009FF0")))
    assert systolic == Reading(code="8480-6", value=18.9, unit="kPa", decimals=1)


def test_bytes_after_the_last_field_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"expected 7 byte\(s\) for flags 0x00, got 9 \(2 byte\(s\) too many"):
        decode_blood_pressure_measurement(bytes.fromhex("00780050005D00EEFF"))


# --- Blood Pressure Feature: u16, bits 0-8 defined, 9-15 RFU.

FEATURE_FIELDS = [
    "body_movement_detection",
    "cuff_fit_detection",
    "irregular_pulse_detection",
    "pulse_rate_range_detection",
    "measurement_position_detection",
    "multiple_bonds",
    "e2e_crc",
    "user_data_service",
    "user_facing_time",
]


@pytest.mark.parametrize(("bit", "field"), list(enumerate(FEATURE_FIELDS)))
def test_each_feature_bit(bit: int, field: str) -> None:
    feature = decode_blood_pressure_feature(_le16(1 << bit))
    assert [name for name in FEATURE_FIELDS if getattr(feature, name)] == [field]


def test_feature_keeps_rfu_bits_and_refuses_other_lengths() -> None:
    feature = decode_blood_pressure_feature(bytes.fromhex("FFFF"))
    assert feature.raw == 0xFFFF
    assert all(getattr(feature, name) for name in FEATURE_FIELDS)
    assert isinstance(feature, BloodPressureFeature)
    with pytest.raises(DecodeError, match="blood pressure feature"):
        decode_blood_pressure_feature(b"\x01")
    with pytest.raises(DecodeError, match=r"expected 2 byte\(s\), got 3"):
        decode_blood_pressure_feature(bytes.fromhex("FFFF00"))


# --- Arbitrary bytes: a dataclass or DecodeError, nothing else; readings never raise.


@given(st.binary(max_size=64))
def test_blood_pressure_measurement_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_blood_pressure_measurement(data)
    except DecodeError:
        return
    assert isinstance(decoded, BloodPressureMeasurement)
    for reading in blood_pressure_readings(decoded):
        assert all(FLAG.match(flag) for flag in reading.flags)


@given(st.binary(max_size=64))
def test_intermediate_cuff_pressure_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_intermediate_cuff_pressure(data)
    except DecodeError:
        return
    assert isinstance(decoded, IntermediateCuffPressure)
    assert intermediate_cuff_pressure_readings(decoded) == []


@given(st.binary(max_size=64))
def test_blood_pressure_feature_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_blood_pressure_feature(data)
    except DecodeError:
        return
    assert isinstance(decoded, BloodPressureFeature)
