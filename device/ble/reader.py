"""A little-endian cursor over a characteristic value: every read checks there are enough bytes left.

Decoders read fields in the order the flags say they are present; a value that ends early
raises DecodeError naming the field. A value longer than its flags announce is refused before
any field is read (`device/ble/decoders/lengths.py`): where the specification fixes a length,
another length is a DecodeError, never a field plus ignored bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from device.ble.errors import DecodeError
from device.ble.ieee11073 import Measured, float32, sfloat


@dataclass(frozen=True)
class DateTime:
    """The SIG Date Time (0x2A08) layout. Zero means "not known" for year, month and day.

    Kept as its parts, because a cuff with an unset year still tells the time of day, and
    the collector decides (with the kiosk clock) what the full time must have been.
    """

    year: int | None
    month: int | None
    day: int | None
    hours: int
    minutes: int
    seconds: int

    @property
    def complete(self) -> bool:
        return None not in (self.year, self.month, self.day)

    def naive(self) -> datetime:
        """The device-local time it names; DecodeError unless year, month and day are all known."""
        if self.year is None or self.month is None or self.day is None:
            raise DecodeError("date is incomplete (year, month or day not known)")
        try:
            return datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds)
        except ValueError as exc:  # e.g. 31 April: each part was in range, the date is not
            raise DecodeError(f"{self.year:04d}-{self.month:02d}-{self.day:02d} is not a date: {exc}") from None


class Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)
        self._pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, n: int, field: str) -> bytes:
        if self.remaining < n:
            raise DecodeError(
                f"{self.what}: {field} needs {n} byte(s) at offset {self._pos}, but only {self.remaining} "
                f"remain (the value is {len(self._data)} byte(s) long; truncated?)"
            )
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint(self, n: int, field: str) -> int:
        return int.from_bytes(self._take(n, field), "little")

    def sint(self, n: int, field: str) -> int:
        return int.from_bytes(self._take(n, field), "little", signed=True)

    def u8(self, field: str) -> int:
        return self.uint(1, field)

    def u16(self, field: str) -> int:
        return self.uint(2, field)

    def u24(self, field: str) -> int:
        return self.uint(3, field)

    def u32(self, field: str) -> int:
        return self.uint(4, field)

    def s16(self, field: str) -> int:
        return self.sint(2, field)

    def sfloat(self, field: str) -> Measured:
        return sfloat(self.u16(field))

    def float32(self, field: str) -> Measured:
        return float32(self.u32(field))

    def raw(self, n: int, field: str) -> bytes:
        return self._take(n, field)

    def rest(self) -> bytes:
        chunk = self._data[self._pos :]
        self._pos = len(self._data)
        return chunk

    def date_time(self, field: str) -> DateTime:
        year, month, day = self.u16(field), self.u8(field), self.u8(field)
        hours, minutes, seconds = self.u8(field), self.u8(field), self.u8(field)
        if year != 0 and not 1582 <= year <= 9999:
            raise DecodeError(f"{self.what}: {field} year {year} is outside 1582..9999")
        if not 0 <= month <= 12:
            raise DecodeError(f"{self.what}: {field} month {month} is outside 1..12")
        if not 0 <= day <= 31:
            raise DecodeError(f"{self.what}: {field} day {day} is outside 1..31")
        if hours > 23 or minutes > 59 or seconds > 59:
            raise DecodeError(f"{self.what}: {field} time {hours:02d}:{minutes:02d}:{seconds:02d} is not a valid time")
        return DateTime(year or None, month or None, day or None, hours, minutes, seconds)
