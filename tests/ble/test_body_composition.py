"""Body Composition Measurement (0x2A9C) and Body Composition Feature (0x2A9B).

Layout (Body Composition Service 1.0 §3.2 and the GATT Specification Supplement):
  flags u16: bit0 Imperial, bit1 Time Stamp, bit2 User ID, bit3 Basal Metabolism, bit4 Muscle %,
             bit5 Muscle Mass, bit6 Fat Free Mass, bit7 Soft Lean Mass, bit8 Body Water Mass,
             bit9 Impedance, bit10 Weight, bit11 Height, bit12 Multiple Packet, bits13-15 RFU
  body fat u16 (0.1 %; 0xFFFF unsuccessful) | [Date Time 7] | [user u8] | [basal u16 kJ]
  | [muscle % u16 0.1 %] | [muscle mass] [fat free mass] [soft lean mass] [body water mass]
  | [impedance u16 0.1 ohm] | [weight] | [height]; masses u16 in 0.005 kg or 0.01 lb, height 0.001 m or 0.1 in
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders.body_composition import (
    BodyCompositionFeature,
    BodyCompositionMeasurement,
    body_composition_readings,
    decode_body_composition_feature,
    decode_body_composition_measurement,
)
from device.ble.errors import DecodeError
from device.ble.reader import DateTime
from device.ble.readings import Reading
from tests.ble.protocol_checks import accepted_by_protocol

FEB_6 = DateTime(2023, 2, 6, 18, 28, 0)


def _le16(value: int) -> bytes:
    return value.to_bytes(2, "little")


# --- Vectors from eisaev/blevalueparser, tests/bodycompositionmeasurementtest.cpp
# (expected values re-worked by hand: raw * step, e.g. 0x6745 = 26437 * 0.005 = 132.185 kg).
EISAEV_ALL_FIELDS = bytes.fromhex(
    "1234"  # body fat 0x3412 = 13330 -> 1333.0 % (a test pattern, not a plausible body)
    "E707 02 06 12 1C 00"  # 2023-02-06 18:28:00
    "2A"  # user 42
    "2345 3456 4567 5678 6789 789A 89AB 9ABC ABCD".replace(" ", "")
)


def test_eisaev_all_fields_si_with_odd_rfu_bits() -> None:
    # flags FE AF = 0xAFFE: SI, bits 1-11 set, no multiple packet, RFU bits 13 and 15 set
    m = decode_body_composition_measurement(bytes.fromhex("FEAF") + EISAEV_ALL_FIELDS)
    assert m == BodyCompositionMeasurement(
        flags=0xAFFE,
        imperial=False,
        body_fat_percent=1333.0,
        measurement_unsuccessful=False,
        time_stamp=FEB_6,
        user_id=42,
        basal_metabolism_kj=17699,
        muscle_percent=2206.8,
        muscle_mass=132.185,
        fat_free_mass=154.03,
        soft_lean_mass=175.875,
        body_water_mass=197.72,
        impedance_ohm=4391.3,
        weight=241.41,
        height=52.651,
        multiple_packet=False,
    )


def test_eisaev_all_fields_imperial() -> None:
    # flags FF AF = 0xAFFF: as above, in lb and inches
    m = decode_body_composition_measurement(bytes.fromhex("FFAF") + EISAEV_ALL_FIELDS)
    assert m.imperial
    masses = (m.muscle_mass, m.fat_free_mass, m.soft_lean_mass, m.body_water_mass, m.weight)
    assert masses == (264.37, 308.06, 351.75, 395.44, 482.82)
    assert (m.height, m.impedance_ohm, m.basal_metabolism_kj) == (5265.1, 4391.3, 17699)


def test_eisaev_no_optional_fields_multiple_packet() -> None:
    # flags 00 50 = 0x5000: multiple packet, RFU bit 14
    m = decode_body_composition_measurement(bytes.fromhex("00501234"))
    assert (m.multiple_packet, m.body_fat_percent, m.weight, m.time_stamp) == (True, 1333.0, None, None)


def test_eisaev_odd_fields_reserved_all() -> None:
    # flags AA EA = 0xEAAA: time stamp, basal metabolism, muscle mass, soft lean mass, impedance, height
    data = bytes.fromhex("AAEA 1234 E70702061 21C00 2345 4567 6789 89AB ABCD".replace(" ", ""))
    m = decode_body_composition_measurement(data)
    assert (m.time_stamp, m.basal_metabolism_kj, m.muscle_mass) == (FEB_6, 17699, 132.185)
    assert (m.soft_lean_mass, m.impedance_ohm, m.height) == (175.875, 4391.3, 52.651)
    assert (m.user_id, m.muscle_percent, m.fat_free_mass, m.body_water_mass, m.weight) == (None,) * 5


def test_eisaev_even_fields_multiple_packet() -> None:
    # flags 54 15 = 0x1554: user, muscle %, fat free mass, body water mass, weight, multiple packet
    m = decode_body_composition_measurement(bytes.fromhex("5415 1234 2A 3456 5678 789A 9ABC".replace(" ", "")))
    assert (m.user_id, m.muscle_percent, m.fat_free_mass, m.body_water_mass, m.weight) == (
        42,
        2206.8,
        154.03,
        197.72,
        241.41,
    )
    assert m.multiple_packet


def test_eisaev_measurement_unsuccessful() -> None:
    m = decode_body_composition_measurement(bytes.fromhex("0000FFFF"))
    assert (m.body_fat_percent, m.measurement_unsuccessful) == (None, True)
    assert body_composition_readings(m) == []


# --- Every combination of the defined flag bits.

FIELDS = [
    # (flag bit, attribute, raw, SI value, Imperial value)
    (0x0008, "basal_metabolism_kj", 6000, 6000, 6000),
    (0x0010, "muscle_percent", 405, 40.5, 40.5),
    (0x0020, "muscle_mass", 6000, 30.0, 60.0),
    (0x0040, "fat_free_mass", 11000, 55.0, 110.0),
    (0x0080, "soft_lean_mass", 10000, 50.0, 100.0),
    (0x0100, "body_water_mass", 8000, 40.0, 80.0),
    (0x0200, "impedance_ohm", 5000, 500.0, 500.0),
    (0x0400, "weight", 14000, 70.0, 140.0),
    (0x0800, "height", 1750, 1.75, 175.0),
]


def _check_flag_combination(flags: int) -> None:
    imperial = bool(flags & 0x0001)
    data = _le16(flags) + _le16(215)  # body fat 21.5 %
    if flags & 0x0002:
        data += bytes.fromhex("E7070206121C00")
    if flags & 0x0004:
        data += b"\x03"
    for bit, _, raw, _, _ in FIELDS:
        if flags & bit:
            data += _le16(raw)
    m = decode_body_composition_measurement(data)
    assert (m.flags, m.imperial, m.body_fat_percent) == (flags, imperial, 21.5)
    assert m.time_stamp == (FEB_6 if flags & 0x0002 else None)
    assert m.user_id == (3 if flags & 0x0004 else None)
    for bit, name, _, si, imp in FIELDS:
        assert getattr(m, name) == ((imp if imperial else si) if flags & bit else None), name
    assert m.multiple_packet is bool(flags & 0x1000)
    codes = {r.code for r in body_composition_readings(m)}
    assert "41982-0" in codes
    assert ("29463-7" in codes) is bool(flags & 0x0400)
    assert ("73964-9" in codes) is bool(flags & 0x0020)


@pytest.mark.parametrize("rfu", [0x0000, 0xE000])
def test_every_flag_combination(rfu: int) -> None:
    """All 8192 combinations of the 13 defined bits, in one loop (a test each would cost more than it tells)."""
    for defined in range(0x2000):
        try:
            _check_flag_combination(defined | rfu)
        except AssertionError as exc:
            raise AssertionError(f"flags {defined | rfu:#06x}: {exc}") from exc


def test_readings_si_pass_the_protocol() -> None:
    flags = 0x0002 | 0x0004 | 0x0008 | 0x0010 | 0x0020 | 0x0040 | 0x0080 | 0x0100 | 0x0200 | 0x0400 | 0x0800
    data = _le16(flags) + _le16(215) + bytes.fromhex("E7070206121C00") + b"\x03"
    data += b"".join(_le16(raw) for _, _, raw, _, _ in FIELDS)
    readings = body_composition_readings(decode_body_composition_measurement(data))

    def expected(code: str, value: float, unit: str, decimals: int) -> Reading:
        return Reading(code=code, value=value, unit=unit, device_time=FEB_6, user=3, decimals=decimals)

    assert readings == [
        expected("41982-0", 21.5, "%", 1),
        expected("73965-6", 40.5, "%", 1),
        expected("73964-9", 30.0, "kg", 3),
        expected("101683-1", 40.0, "kg", 3),
        expected("29463-7", 70.0, "kg", 3),
        expected("8302-2", 1.75, "m", 3),
    ]
    for reading in readings:
        accepted_by_protocol(reading)


def test_readings_imperial_pass_the_protocol() -> None:
    data = _le16(0x0001 | 0x0020 | 0x0100 | 0x0400 | 0x0800) + _le16(215)
    data += _le16(6000) + _le16(8000) + _le16(14000) + _le16(690)
    readings = body_composition_readings(decode_body_composition_measurement(data))
    assert [(r.code, r.value, r.unit, r.decimals) for r in readings] == [
        ("41982-0", 21.5, "%", 1),
        ("73964-9", 60.0, "[lb_av]", 2),
        ("101683-1", 80.0, "[lb_av]", 2),
        ("29463-7", 140.0, "[lb_av]", 2),
        ("8302-2", 69.0, "[in_i]", 1),
    ]
    for reading in readings:
        accepted_by_protocol(reading)


def test_unsuccessful_measurement_reports_nothing_even_with_fields() -> None:
    # 0x0404: user, weight | FF FF | FF unknown user | B0 36 = 70 kg
    m = decode_body_composition_measurement(bytes.fromhex("0404FFFFFFB036"))
    assert (m.measurement_unsuccessful, m.user_id, m.weight) == (True, 0xFF, 70.0)
    assert body_composition_readings(m) == []


@pytest.mark.parametrize("user", [0, 9, 0xFF])
def test_user_ids_including_unknown_user(user: int) -> None:
    m = decode_body_composition_measurement(bytes.fromhex("0400D700") + bytes([user]))
    assert m.user_id == user
    assert [r.user for r in body_composition_readings(m)] == [user]


def test_time_stamp_with_unknown_date() -> None:
    m = decode_body_composition_measurement(bytes.fromhex("0200D700 0000 00 00 06 00 00".replace(" ", "")))
    assert m.time_stamp == DateTime(None, None, None, 6, 0, 0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("", "flags"),
        ("00", "flags"),
        ("0000D7", "body fat percentage"),
        ("0200D700E707", "time stamp"),
        ("0400D700", "user id"),
        ("0800D700", "basal metabolism"),
        ("1000D700", "muscle percentage"),
        ("2000D700", "muscle mass"),
        ("4000D700", "fat free mass"),
        ("8000D700", "soft lean mass"),
        ("0001D700", "body water mass"),
        ("0002D700", "impedance"),
        ("0004D700", "weight"),
        ("0008D700B0", "height"),
    ],
)
def test_truncated_values_name_the_missing_field(data: str, field: str) -> None:
    with pytest.raises(DecodeError, match=field):
        decode_body_composition_measurement(bytes.fromhex(data))


def test_bytes_after_the_last_field_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"expected 4 byte\(s\) for flags 0x0000, got 5 \(1 byte\(s\) too many"):
        decode_body_composition_measurement(bytes.fromhex("0000D70001"))


# --- Body Composition Feature, vectors from eisaev/blevalueparser, tests/bodycompositionfeaturetest.cpp.
# u32: bits 0-10 supported fields, bits 11-14 mass resolution, bits 15-17 height resolution, 18-31 RFU.

SUPPORTED = [
    "time_stamp",
    "multiple_users",
    "basal_metabolism",
    "muscle_percentage",
    "muscle_mass",
    "fat_free_mass",
    "soft_lean_mass",
    "body_water_mass",
    "impedance",
    "weight",
    "height",
]


@pytest.mark.parametrize(
    ("raw", "supported", "mass_step", "height_step"),
    [
        (0xAAA807FF, SUPPORTED, None, None),  # FeaturesAll_WeightResNotSpec_HeightResNotSpec
        (0x55548800, [], (0.5, 1.0), (0.01, 1.0)),  # FeaturesNone_WeightRes0500_HeightRes0010
        (0xFFFD12AA, SUPPORTED[1::2], (0.2, 0.5), (0.005, 0.5)),  # FeaturesEven_WeightRes0200_HeightRes0005
        (0x00019D55, SUPPORTED[0::2], (0.1, 0.2), (0.001, 0.1)),  # FeaturesOdd_WeightRes0100_HeightRes0001
        (0x0000B96E, [SUPPORTED[i] for i in (1, 2, 3, 5, 6, 8)], (0.005, 0.01), (0.01, 1.0)),  # Pat4
        (0xAAAA26DB, [SUPPORTED[i] for i in (0, 1, 3, 4, 6, 7, 9, 10)], (0.05, 0.1), None),  # Pat1: height reserved
        (0xAAA84199, [SUPPORTED[i] for i in (0, 3, 4, 7, 8)], None, None),  # Pat5: mass code 8 reserved
    ],
)
def test_eisaev_features(
    raw: int,
    supported: list[str],
    mass_step: tuple[float, float] | None,
    height_step: tuple[float, float] | None,
) -> None:
    feature = decode_body_composition_feature(raw.to_bytes(4, "little"))
    assert feature.raw == raw
    assert [name for name in SUPPORTED if getattr(feature, name)] == supported
    assert (feature.mass_step, feature.height_step) == (mass_step, height_step)


def test_feature_short_and_too_long() -> None:
    with pytest.raises(DecodeError, match="body composition feature"):
        decode_body_composition_feature(b"\x00\x00\x00")
    with pytest.raises(DecodeError, match=r"Body Composition Feature: expected 4 byte\(s\), got 5"):
        decode_body_composition_feature(b"\x00\x00\x00\x00\x05")


# --- Arbitrary bytes: a dataclass or DecodeError, nothing else; readings never raise.


@given(st.binary(max_size=64))
def test_body_composition_measurement_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_body_composition_measurement(data)
    except DecodeError:
        return
    assert isinstance(decoded, BodyCompositionMeasurement)
    body_composition_readings(decoded)


@given(st.binary(max_size=64))
def test_body_composition_feature_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_body_composition_feature(data)
    except DecodeError:
        return
    assert isinstance(decoded, BodyCompositionFeature)
