"""Current Time (0x2A2B) and Local Time Information (0x2A0F), and writing the device clock.

Layouts (Current Time Service 1.1 and the GATT Specification Supplement):
  Current Time: Exact Time 256 = Date Time (year u16, month, day, hours, minutes, seconds)
                + Day of Week u8 (0 unknown, 1 Monday .. 7 Sunday) + Fractions256 u8; then Adjust Reason u8
                (bit0 manual update, bit1 external reference, bit2 time zone change, bit3 DST change, 4-7 RFU)
  Local Time Information: Time Zone s8 (15-minute steps, -48..56, -128 unknown), DST Offset u8
                (0 standard, 2 +0.5 h, 4 +1 h, 8 +2 h, 255 unknown)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders import REGISTRY
from device.ble.decoders.current_time import (
    AdjustReason,
    CurrentTime,
    DayOfWeek,
    LocalTimeInformation,
    decode_current_time,
    decode_local_time_information,
    encode_current_time,
)
from device.ble.errors import DecodeError
from device.ble.reader import DateTime

# --- Vectors from eisaev/blevalueparser, tests/currenttimetest.cpp (expected values re-worked by hand).


@pytest.mark.parametrize(
    ("data", "date_time", "weekday", "fractions", "reason"),
    [
        # E7 07 = 2023 | 01 02 | 14 16 07 = 20:22:07 | 01 Monday | FF | 01 manual
        (
            "E707010214160701FF01",
            DateTime(2023, 1, 2, 20, 22, 7),
            DayOfWeek.MONDAY,
            255,
            AdjustReason.MANUAL_TIME_UPDATE,
        ),
        (
            "E707 01 03 14 16 07 02 00 02",
            DateTime(2023, 1, 3, 20, 22, 7),
            DayOfWeek.TUESDAY,
            0,
            AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE,
        ),
        (
            "E707 01 04 14 16 07 03 01 04",
            DateTime(2023, 1, 4, 20, 22, 7),
            DayOfWeek.WEDNESDAY,
            1,
            AdjustReason.CHANGE_OF_TIME_ZONE,
        ),
        (
            "E707 01 05 14 16 07 04 80 08",
            DateTime(2023, 1, 5, 20, 22, 7),
            DayOfWeek.THURSDAY,
            128,
            AdjustReason.CHANGE_OF_DST,
        ),
        (
            "E6070C1D173B3B05FF01",
            DateTime(2022, 12, 29, 23, 59, 59),
            DayOfWeek.FRIDAY,
            255,
            AdjustReason.MANUAL_TIME_UPDATE,
        ),
        (
            "E6070C1E173B3B06FF01",
            DateTime(2022, 12, 30, 23, 59, 59),
            DayOfWeek.SATURDAY,
            255,
            AdjustReason.MANUAL_TIME_UPDATE,
        ),
        (
            "E6070C1F173B3B07FF01",
            DateTime(2022, 12, 31, 23, 59, 59),
            DayOfWeek.SUNDAY,
            255,
            AdjustReason.MANUAL_TIME_UPDATE,
        ),
        (
            "E70702060E2F2A000000",
            DateTime(2023, 2, 6, 14, 47, 42),
            None,
            0,
            AdjustReason(0),
        ),  # NoReason: weekday unknown
    ],
)
def test_eisaev_current_time(
    data: str, date_time: DateTime, weekday: DayOfWeek | None, fractions: int, reason: AdjustReason
) -> None:
    ct = decode_current_time(bytes.fromhex(data.replace(" ", "")))
    assert (ct.date_time, ct.weekday, ct.fractions256, ct.adjust_reason) == (date_time, weekday, fractions, reason)


def test_fractions_are_1_256_of_a_second() -> None:
    assert [
        decode_current_time(bytes.fromhex(f"E7070102141607 01 {f:02X} 00".replace(" ", ""))).microseconds
        for f in (0, 1, 128, 255)
    ] == [0, 3906, 500000, 996093]


def test_reserved_day_of_week_is_kept_raw() -> None:
    # eisaev UnknownDayOfWeek: AA is reserved
    ct = decode_current_time(bytes.fromhex("E6070C1F173B3BAAFF01"))
    assert (ct.day_of_week, ct.weekday) == (0xAA, None)


def test_every_adjust_reason_bit_and_rfu_bits() -> None:
    ct = decode_current_time(bytes.fromhex("E6070C1F173B3B07FFFF"))
    assert int(ct.adjust_reason) == 0xFF
    assert AdjustReason.MANUAL_TIME_UPDATE in ct.adjust_reason
    assert AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE in ct.adjust_reason
    assert AdjustReason.CHANGE_OF_TIME_ZONE in ct.adjust_reason
    assert AdjustReason.CHANGE_OF_DST in ct.adjust_reason


def test_unknown_date_parts() -> None:
    ct = decode_current_time(bytes.fromhex("0000 00 00 08 00 00 00 00 00".replace(" ", "")))
    assert ct.date_time == DateTime(None, None, None, 8, 0, 0)
    assert ct.weekday is None


def test_too_short_and_too_long_are_refused() -> None:
    with pytest.raises(DecodeError, match="adjust reason"):
        decode_current_time(bytes.fromhex("E70701041416070380"))  # eisaev TooShort
    # eisaev TooLong: CTS fixes Current Time at 10 octets, so an 11th is refused, not ignored
    with pytest.raises(DecodeError, match=r"Current Time: expected 10 byte\(s\), got 11"):
        decode_current_time(bytes.fromhex("E707 01 04 14 16 07 03 80 08 08".replace(" ", "")))


def test_invalid_time_is_refused() -> None:
    with pytest.raises(DecodeError, match="exact time"):
        decode_current_time(bytes.fromhex("E7070104180000030000"))  # 24:00:00


# --- Writing the device clock.


def test_encode_matches_the_eisaev_monday_vector() -> None:
    when = datetime(2023, 1, 2, 20, 22, 7, 996_094)
    assert encode_current_time(when, AdjustReason.MANUAL_TIME_UPDATE) == bytes.fromhex("E707010214160701FF01")


def test_encode_round_trips_every_fraction() -> None:
    for fractions in range(256):
        original = decode_current_time(bytes.fromhex("E80702") + bytes([29, 12, 0, 0, 4, fractions, 0]))
        assert original.date_time.naive().isoweekday() == 4  # 2024-02-29 was a Thursday
        when = original.date_time.naive().replace(microsecond=original.microseconds)
        assert decode_current_time(encode_current_time(when)) == original


@given(
    st.datetimes(min_value=datetime(1582, 10, 15), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999)),
    st.sampled_from([*AdjustReason, AdjustReason(0), AdjustReason(0x0F)]),
)
def test_encode_then_decode(when: datetime, reason: AdjustReason) -> None:
    decoded = decode_current_time(encode_current_time(when, reason))
    assert decoded.date_time.naive() == when.replace(microsecond=0)
    assert decoded.weekday == DayOfWeek(when.isoweekday())
    assert abs(decoded.microseconds - when.microsecond) <= 1_000_000 // 256
    assert decoded.adjust_reason == reason


def test_encode_writes_wall_time_fields_as_given() -> None:
    aware = datetime(2025, 6, 1, 9, 30, 0, tzinfo=timezone(timedelta(hours=2)))
    assert encode_current_time(aware)[:7] == bytes.fromhex("E907 06 01 09 1E 00".replace(" ", ""))
    assert encode_current_time(aware.astimezone(UTC))[4] == 7  # the caller chooses the wall clock


@pytest.mark.parametrize(
    ("when", "reason", "message"),
    [
        (datetime(1500, 1, 1), 0, "1582..9999"),
        (datetime(2025, 1, 1), 0x100, "8 bits"),
        (datetime(2025, 1, 1), -1, "8 bits"),
    ],
)
def test_encode_refuses_what_the_characteristic_cannot_carry(when: datetime, reason: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_current_time(when, reason)


# --- Local Time Information, vectors from eisaev/blevalueparser, tests/localtimeinformationtest.cpp.


@pytest.mark.parametrize(
    ("data", "time_zone", "dst", "utc_offset_min", "dst_min"),
    [
        ("80FF", -128, 255, None, None),  # TZUnknown_DSTUnknown
        ("392A", 57, 42, None, None),  # TZUnreal_DSTUnreal: reserved values, kept raw
        ("0004", 0, 4, 0, 60),  # TZPlus0_DST1h
        ("D002", -48, 2, -720, 30),  # TZMinus48_DST0_5h
        ("3800", 56, 0, 840, 0),  # TZPlus56_DST0
        ("D608", -42, 8, -630, 120),  # ToString: -42 * 15 min, double daylight time
    ],
)
def test_eisaev_local_time_information(
    data: str, time_zone: int, dst: int, utc_offset_min: int | None, dst_min: int | None
) -> None:
    info = decode_local_time_information(bytes.fromhex(data))
    assert info == LocalTimeInformation(time_zone, dst)
    assert (info.utc_offset_min, info.dst_min) == (utc_offset_min, dst_min)


def test_local_time_information_short_and_too_long() -> None:
    with pytest.raises(DecodeError, match="DST offset"):
        decode_local_time_information(b"\x00")
    with pytest.raises(DecodeError, match=r"Local Time Information: expected 2 byte\(s\), got 3"):
        decode_local_time_information(b"\x00\x00\x01")


def test_both_characteristics_are_registered() -> None:
    assert REGISTRY[0x2A2B].decode is decode_current_time
    assert REGISTRY[0x2A0F].decode is decode_local_time_information


# --- Arbitrary bytes: a dataclass or DecodeError, nothing else.


@given(st.binary(max_size=64))
def test_current_time_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_current_time(data)
    except DecodeError:
        return
    assert isinstance(decoded, CurrentTime)


@given(st.binary(max_size=64))
def test_local_time_information_on_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_local_time_information(data)
    except DecodeError:
        return
    assert isinstance(decoded, LocalTimeInformation)
