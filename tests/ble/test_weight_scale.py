"""Weight Measurement (0x2A9D) and Weight Scale Feature (0x2A9E).

Layout (Weight Scale Service 1.0 and the GATT Specification Supplement "Weight Measurement"):
  flags u8: bit0 Imperial (else SI), bit1 Time Stamp, bit2 User ID, bit3 BMI and Height, bits4-7 RFU
  weight u16 (kg * 200, i.e. 0.005 kg steps; or lb * 100) | [Date Time 7] | [user u8]
  | [BMI u16, 0.1 kg/m2] [height u16 (m * 1000; or in * 10)]
  weight 0xFFFF = "Measurement Unsuccessful" (WSS, Weight field: then only Time Stamp and User ID may follow)
Vectors are hand-built; each shows its byte layout.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders.weight_scale import (
    WeightMeasurement,
    WeightScaleFeature,
    decode_weight_measurement,
    decode_weight_scale_feature,
    weight_readings,
)
from device.ble.errors import DecodeError
from device.ble.reader import DateTime
from device.ble.readings import Reading
from tests.ble.protocol_checks import accepted_by_protocol

NEW_YEARS_EVE = DateTime(2025, 12, 31, 23, 59, 58)


@pytest.mark.parametrize(
    ("data", "weight"),
    [
        ("00 B036", 70.0),  # 14000 * 0.005 kg
        ("00 B136", 70.005),  # 14001 * 0.005 kg: the float nearest 70.005, not 70.00500000000001
        ("00 0100", 0.005),
        ("00 FEFF", 327.67),  # 65534 * 0.005, the heaviest weight the field can carry
        ("01 483C", 154.32),  # 15432 * 0.01 lb
        ("01 1E56", 220.46),  # 22046 * 0.01 lb
    ],
)
def test_weight_resolution_depends_on_units(data: str, weight: float) -> None:
    assert decode_weight_measurement(bytes.fromhex(data.replace(" ", ""))).weight == weight


def test_all_fields_si() -> None:
    # 0E = SI, time stamp, user, BMI+height | C8 32 = 13000 -> 65.0 kg | E9 07 0C 1F 17 3B 3A = 2025-12-31 23:59:58
    # | 02 | D4 00 = 212 -> 21.2 | DB 06 = 1755 -> 1.755 m
    m = decode_weight_measurement(bytes.fromhex("0EC832E9070C1F173B3A02D400DB06"))
    assert m == WeightMeasurement(
        flags=0x0E,
        imperial=False,
        weight=65.0,
        measurement_unsuccessful=False,
        time_stamp=NEW_YEARS_EVE,
        user_id=2,
        bmi=21.2,
        height=1.755,
    )
    assert weight_readings(m) == [
        Reading(code="29463-7", value=65.0, unit="kg", device_time=NEW_YEARS_EVE, user=2, decimals=3),
        Reading(code="39156-5", value=21.2, unit="kg/m2", device_time=NEW_YEARS_EVE, user=2, decimals=1),
        Reading(code="8302-2", value=1.755, unit="m", device_time=NEW_YEARS_EVE, user=2, decimals=3),
    ]
    for reading in weight_readings(m):
        accepted_by_protocol(reading)


def test_bmi_and_height_imperial() -> None:
    # 09 = Imperial, BMI+height | 48 3C = 154.32 lb | E5 00 = 22.9 | B2 02 = 690 -> 69.0 in
    m = decode_weight_measurement(bytes.fromhex("09483CE500B202"))
    assert (m.imperial, m.weight, m.bmi, m.height) == (True, 154.32, 22.9, 69.0)
    readings = weight_readings(m)
    assert [(r.code, r.value, r.unit, r.decimals) for r in readings] == [
        ("29463-7", 154.32, "[lb_av]", 2),
        ("39156-5", 22.9, "kg/m2", 1),
        ("8302-2", 69.0, "[in_i]", 1),
    ]
    for reading in readings:
        accepted_by_protocol(reading)


@pytest.mark.parametrize("rfu", [0x00, 0xF0])
@pytest.mark.parametrize("defined", range(0x10))
def test_every_flag_combination(defined: int, rfu: int) -> None:
    flags = defined | rfu
    data = bytes([flags]) + (14000).to_bytes(2, "little")
    if flags & 0x02:
        data += bytes.fromhex("E9070C1F173B3A")
    if flags & 0x04:
        data += b"\x05"
    if flags & 0x08:
        data += (229).to_bytes(2, "little") + (1750).to_bytes(2, "little")
    m = decode_weight_measurement(data)
    imperial = bool(flags & 0x01)
    assert m.flags == flags
    assert m.imperial is imperial
    assert m.weight == (140.0 if imperial else 70.0)
    assert m.time_stamp == (NEW_YEARS_EVE if flags & 0x02 else None)
    assert m.user_id == (5 if flags & 0x04 else None)
    assert (m.bmi, m.height) == ((22.9, 175.0 if imperial else 1.75) if flags & 0x08 else (None, None))
    codes = [r.code for r in weight_readings(m)]
    assert codes == (["29463-7", "39156-5", "8302-2"] if flags & 0x08 else ["29463-7"])
    assert all(r.user == m.user_id and r.device_time == m.time_stamp for r in weight_readings(m))


@pytest.mark.parametrize("units", [0x00, 0x01])
def test_measurement_unsuccessful_yields_no_reading(units: int) -> None:
    m = decode_weight_measurement(bytes([0x06 | units]) + bytes.fromhex("FFFF E9070C1F173B3A 01".replace(" ", "")))
    assert (m.weight, m.measurement_unsuccessful) == (None, True)
    assert (m.time_stamp, m.user_id) == (NEW_YEARS_EVE, 1)
    assert weight_readings(m) == []


def test_bmi_and_height_beside_a_failed_weighing_are_decoded_but_not_reported() -> None:
    # WSS forbids them there; a scale that sends them anyway is not trusted for them either
    m = decode_weight_measurement(bytes.fromhex("08FFFFE500D606"))
    assert (m.bmi, m.height) == (22.9, 1.75)
    assert weight_readings(m) == []


@pytest.mark.parametrize("user", [0, 7, 0xFF])
def test_user_ids_including_unknown_user(user: int) -> None:
    m = decode_weight_measurement(bytes.fromhex("04B036") + bytes([user]))
    assert m.user_id == user
    assert [r.user for r in weight_readings(m)] == [user]


def test_time_stamp_with_unknown_date() -> None:
    m = decode_weight_measurement(bytes.fromhex("02B036 0000 00 00 07 05 00".replace(" ", "")))
    assert m.time_stamp == DateTime(None, None, None, 7, 5, 0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("", "flags"),
        ("00B0", "weight"),
        ("02B036EA07", "time stamp"),
        ("04B036", "user id"),
        ("08B036E5", "BMI"),
        ("08B036E500D6", "height"),
    ],
)
def test_truncated_values_name_the_missing_field(data: str, field: str) -> None:
    with pytest.raises(DecodeError, match=field):
        decode_weight_measurement(bytes.fromhex(data))


def test_bytes_after_the_last_field_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"expected 3 byte\(s\) for flags 0x00, got 4 \(1 byte\(s\) too many"):
        decode_weight_measurement(bytes.fromhex("00B036AA"))


# --- Weight Scale Feature: u32. bit0 time stamp, bit1 multiple users, bit2 BMI,
# bits3-6 weight resolution, bits7-9 height resolution, bits10-31 RFU.


def test_feature_everything_at_finest_resolution() -> None:
    # 0b111 | 7 << 3 | 3 << 7 = 0x01BF
    feature = decode_weight_scale_feature(bytes.fromhex("BF010000"))
    assert feature == WeightScaleFeature(0x01BF, True, True, True, 7, 3)
    assert (feature.weight_step, feature.height_step) == ((0.005, 0.01), (0.001, 0.1))


@pytest.mark.parametrize(
    ("code", "step"),
    [
        (0, None),
        (1, (0.5, 1.0)),
        (2, (0.2, 0.5)),
        (3, (0.1, 0.2)),
        (4, (0.05, 0.1)),
        (5, (0.02, 0.05)),
        (6, (0.01, 0.02)),
        (7, (0.005, 0.01)),
        (8, None),
        (15, None),
    ],
)
def test_weight_resolutions(code: int, step: tuple[float, float] | None) -> None:
    feature = decode_weight_scale_feature((code << 3).to_bytes(4, "little"))
    assert (feature.weight_resolution, feature.weight_step) == (code, step)


@pytest.mark.parametrize(
    ("code", "step"), [(0, None), (1, (0.01, 1.0)), (2, (0.005, 0.5)), (3, (0.001, 0.1)), (4, None), (7, None)]
)
def test_height_resolutions(code: int, step: tuple[float, float] | None) -> None:
    feature = decode_weight_scale_feature((code << 7).to_bytes(4, "little"))
    assert (feature.height_resolution, feature.height_step) == (code, step)


def test_feature_keeps_rfu_bits_and_refuses_other_lengths() -> None:
    assert decode_weight_scale_feature(bytes.fromhex("000CFFFF")) == WeightScaleFeature(
        0xFFFF0C00, False, False, False, 0, 0
    )
    with pytest.raises(DecodeError, match="weight scale feature"):
        decode_weight_scale_feature(bytes.fromhex("BF0100"))
    with pytest.raises(DecodeError, match=r"Weight Scale Feature: expected 4 byte\(s\), got 5"):
        decode_weight_scale_feature(bytes.fromhex("000CFFFF01"))


# --- Arbitrary bytes: a dataclass or DecodeError, nothing else; readings never raise.


@given(st.binary(max_size=64))
def test_weight_measurement_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_weight_measurement(data)
    except DecodeError:
        return
    assert isinstance(decoded, WeightMeasurement)
    weight_readings(decoded)


@given(st.binary(max_size=64))
def test_weight_scale_feature_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_weight_scale_feature(data)
    except DecodeError:
        return
    assert isinstance(decoded, WeightScaleFeature)
