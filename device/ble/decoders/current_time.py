"""Current Time Service (CTS 1.1): Current Time (0x2A2B) and Local Time Information (0x2A0F).

Cuffs and scales stamp measurements with their own clock, which drifts and forgets the year
after a battery change. The collector reads Current Time to estimate the device clock's
offset, and writes it (`encode_current_time`) to set the clock right.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, IntFlag

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import Field, Layout, check, finish
from device.ble.reader import DateTime, Reader

LOCAL_TIME_INFORMATION = 0x2A0F
CURRENT_TIME = 0x2A2B

TIME_ZONE_UNKNOWN = -128
TIME_ZONE_STEP_MIN = 15
DST_OFFSET_UNKNOWN = 255
DST_OFFSET_MINUTES = {0: 0, 2: 30, 4: 60, 8: 120}  # standard, half-hour, daylight, double daylight

# CTS 1.1: Exact Time 256 (Day Date Time and Fractions256) and Adjust Reason, 10 octets.
CURRENT_TIME_LAYOUT: Layout = (
    Field("exact time", 7),
    Field("day of week", 1),
    Field("fractions256", 1),
    Field("adjust reason", 1),
)
LOCAL_TIME_INFORMATION_LAYOUT: Layout = (Field("time zone", 1), Field("DST offset", 1))


class AdjustReason(IntFlag):
    """Why the clock last changed. Unknown (RFU) bits are kept: IntFlag holds them as they are."""

    MANUAL_TIME_UPDATE = 0x01
    EXTERNAL_REFERENCE_TIME_UPDATE = 0x02
    CHANGE_OF_TIME_ZONE = 0x04
    CHANGE_OF_DST = 0x08


class DayOfWeek(IntEnum):
    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7


@dataclass(frozen=True)
class CurrentTime:
    """Exact Time 256 (a Day Date Time plus 1/256 s fractions) and the adjust reason."""

    date_time: DateTime
    day_of_week: int  # raw: 0 unknown, 1 Monday .. 7 Sunday, 8-255 reserved; see `weekday`
    fractions256: int  # 1/256 s
    adjust_reason: AdjustReason

    @property
    def weekday(self) -> DayOfWeek | None:
        try:
            return DayOfWeek(self.day_of_week)
        except ValueError:
            return None

    @property
    def microseconds(self) -> int:
        return self.fractions256 * 1_000_000 // 256


def decode_current_time(data: bytes) -> CurrentTime:
    check(data, "Current Time", CURRENT_TIME_LAYOUT)
    reader = Reader(data, "Current Time")
    date_time = reader.date_time("exact time")
    day_of_week = reader.u8("day of week")
    fractions = reader.u8("fractions256")
    reason = AdjustReason(reader.u8("adjust reason"))
    finish(reader)
    return CurrentTime(date_time, day_of_week, fractions, reason)


def encode_current_time(when: datetime, adjust_reason: AdjustReason | int = 0) -> bytes:
    """The 10-octet Current Time value for `when`, as the device's wall clock should show it.

    Devices keep local wall time and no zone, so `when` is written field by field as given;
    pass the local time the device should display (an aware datetime is not converted).
    Raises ValueError for a year Date Time cannot carry or an adjust reason wider than 8 bits.
    """
    if not 1582 <= when.year <= 9999:
        raise ValueError(f"Date Time carries years 1582..9999, not {when.year}")
    if not 0 <= int(adjust_reason) <= 0xFF:
        raise ValueError(f"adjust reason must fit 8 bits, got {int(adjust_reason):#x}")
    # nearest 1/256 s (not floor), so that encoding what `CurrentTime.microseconds` decoded gives the same octet
    fractions = min(0xFF, (when.microsecond * 256 + 500_000) // 1_000_000)
    return (
        when.year.to_bytes(2, "little")
        + bytes((when.month, when.day, when.hour, when.minute, when.second, when.isoweekday(), fractions))
        + bytes((int(adjust_reason),))
    )


@dataclass(frozen=True)
class LocalTimeInformation:
    time_zone: int  # raw, signed, 15-minute steps from UTC (-48..56); -128 unknown; others reserved
    dst_offset: int  # raw: 0, 2, 4, 8 (see DST_OFFSET_MINUTES); 255 unknown; others reserved

    @property
    def utc_offset_min(self) -> int | None:
        """Standard-time offset from UTC in minutes, or None when unknown or reserved."""
        if not -48 <= self.time_zone <= 56:
            return None
        return self.time_zone * TIME_ZONE_STEP_MIN

    @property
    def dst_min(self) -> int | None:
        """Daylight saving offset in minutes, or None when unknown or reserved."""
        return DST_OFFSET_MINUTES.get(self.dst_offset)


def decode_local_time_information(data: bytes) -> LocalTimeInformation:
    check(data, "Local Time Information", LOCAL_TIME_INFORMATION_LAYOUT)
    reader = Reader(data, "Local Time Information")
    time_zone = reader.sint(1, "time zone")
    dst_offset = reader.u8("DST offset")
    finish(reader)
    return LocalTimeInformation(time_zone, dst_offset)


register(Characteristic(CURRENT_TIME, "Current Time", decode_current_time))
register(Characteristic(LOCAL_TIME_INFORMATION, "Local Time Information", decode_local_time_information))
