"""Turning a device's own time stamp into a UTC time the hub can trust, and saying how.

Health devices keep local wall-clock time, often unset (year 0, or the 2000-01-01 a cuff
boots with) and drifting by minutes. When the device has Current Time, the collector
reads it at connect and knows the offset (device minus kiosk); a stored reading's stamp
is then corrected by that offset. Without a readable clock the stamp is used as it is if
it is plausible (not in the future, not years old) and otherwise replaced by the time
the kiosk received the reading, with a flag that says so. Pure functions: the kiosk's
clock and time zone are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from device.ble.errors import DecodeError
from device.ble.reader import DateTime

# A device stamp further ahead of the kiosk than this (after correction) is not believed.
FUTURE_TOLERANCE = timedelta(minutes=5)
# Stored readings older than this are not believed either (a cuff with a reset clock).
MAX_AGE = timedelta(days=365)


@dataclass(frozen=True)
class DeviceClock:
    """What the kiosk knows of one connected device's clock."""

    offset_s: float | None  # device minus kiosk, from Current Time at connect; None when unreadable
    tz: tzinfo  # the zone the device's wall clock is in (the kiosk's, unless the profile says UTC)


@dataclass(frozen=True)
class Timed:
    effective: datetime  # UTC
    offset_s: float | None  # the correction applied, to record beside the reading
    flags: tuple[str, ...]


def measure_offset(device_now: DateTime, kiosk_now: datetime, tz: tzinfo) -> float | None:
    """Device minus kiosk in seconds, from a Current Time read; None when the device's date is not set."""
    if not device_now.complete:
        return None
    try:
        device_wall = device_now.naive().replace(tzinfo=tz)
    except DecodeError:
        return None
    return (device_wall - kiosk_now).total_seconds()


def complete_date(stamp: DateTime, reference: datetime) -> datetime | None:
    """Fill an unknown year (or month/day) with the latest value not after `reference` (naive, device wall time).

    A cuff that lost its year still knows the day: the reading was taken on or before now.
    """
    if stamp.complete:
        return stamp.naive()
    if stamp.month is None or stamp.day is None:
        return None
    for year in (reference.year, reference.year - 1):
        try:
            candidate = datetime(year, stamp.month, stamp.day, stamp.hours, stamp.minutes, stamp.seconds)
        except ValueError:
            continue
        if candidate <= reference + FUTURE_TOLERANCE:
            return candidate
    return None


def effective_time(
    stamp: DateTime | None,
    received: datetime,
    clock: DeviceClock,
    *,
    time_offset_min: int | None = None,
    max_drift_s: float = 120.0,
) -> Timed:
    """The UTC time a reading was taken, the correction applied, and flags explaining any doubt.

    `received` is the kiosk's UTC clock when the value arrived.
    """
    if stamp is None:
        return Timed(received, None, ())
    reference = (received.astimezone(clock.tz) + timedelta(seconds=clock.offset_s or 0.0)).replace(tzinfo=None)
    wall = complete_date(stamp, reference)
    if wall is None:
        return Timed(received, clock.offset_s, ("device_time_unknown",))
    if time_offset_min:
        wall += timedelta(minutes=time_offset_min)
    flags: list[str] = [] if stamp.complete else ["device_year_assumed"]
    device_time = wall.replace(tzinfo=clock.tz).astimezone(UTC)
    if clock.offset_s is not None:
        corrected = device_time - timedelta(seconds=clock.offset_s)
        if abs(clock.offset_s) > max_drift_s:
            flags.append("device_clock_corrected")
    else:
        corrected = device_time
        flags.append("device_clock_unverified")
    if corrected > received + FUTURE_TOLERANCE or corrected < received - MAX_AGE:
        return Timed(received, clock.offset_s, (*flags, "device_time_implausible"))
    return Timed(corrected, clock.offset_s, tuple(flags))
