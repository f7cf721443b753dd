"""Device time stamps to UTC: drift correction, unknown years, unset clocks (hand-worked examples)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from device.ble.device_clock import DeviceClock, effective_time, measure_offset
from device.ble.reader import DateTime

BERLIN_WINTER = timezone(timedelta(hours=1))
RECEIVED = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)  # 10:00 on the kiosk's wall clock in Berlin


def stamp(y: int | None, mo: int | None, d: int | None, h: int, mi: int, s: int = 0) -> DateTime:  # noqa: PLR0917
    return DateTime(y, mo, d, h, mi, s)


def test_offset_is_device_minus_kiosk() -> None:
    # The cuff's wall clock says 10:07:30 when the kiosk's says 10:00:00: 450 s fast.
    assert measure_offset(stamp(2026, 11, 27, 10, 7, 30), RECEIVED, BERLIN_WINTER) == 450.0


def test_unset_device_date_gives_no_offset() -> None:
    assert measure_offset(stamp(None, 1, 1, 0, 3), RECEIVED, BERLIN_WINTER) is None


def test_stored_reading_from_a_fast_clock_is_corrected() -> None:
    # Taken at 09:37:30 device time, clock 450 s fast -> 09:30:00 Berlin = 08:30:00 UTC.
    clock = DeviceClock(offset_s=450.0, tz=BERLIN_WINTER)
    timed = effective_time(stamp(2026, 11, 27, 9, 37, 30), RECEIVED, clock)
    assert timed.effective == datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    assert timed.offset_s == 450.0
    assert timed.flags == ("device_clock_corrected",)


def test_small_drift_is_corrected_without_a_flag() -> None:
    clock = DeviceClock(offset_s=-30.0, tz=BERLIN_WINTER)
    timed = effective_time(stamp(2026, 11, 27, 9, 59, 0), RECEIVED, clock)
    assert timed.effective == datetime(2026, 11, 27, 8, 59, 30, tzinfo=UTC)
    assert timed.flags == ()


def test_unknown_year_takes_the_latest_year_not_in_the_future() -> None:
    clock = DeviceClock(offset_s=None, tz=UTC)
    # 26 November: this year. 28 November: not yet this year, so last year.
    assert effective_time(stamp(None, 11, 26, 7, 0), RECEIVED, clock).effective.year == 2026
    late = effective_time(stamp(None, 11, 28, 7, 0), RECEIVED, clock)
    assert late.effective == datetime(2025, 11, 28, 7, 0, tzinfo=UTC)
    assert "device_year_assumed" in late.flags


def test_without_a_readable_clock_a_plausible_stamp_is_kept_but_flagged() -> None:
    timed = effective_time(stamp(2026, 11, 27, 8, 55), RECEIVED, DeviceClock(None, UTC))
    assert timed.effective == datetime(2026, 11, 27, 8, 55, tzinfo=UTC)
    assert timed.flags == ("device_clock_unverified",)


def test_implausible_stamp_falls_back_to_receive_time() -> None:
    # A cuff that booted into 2000-01-01 with no Current Time: not believed.
    timed = effective_time(stamp(2000, 1, 1, 0, 5), RECEIVED, DeviceClock(None, UTC))
    assert timed.effective == RECEIVED
    assert timed.flags[-1] == "device_time_implausible"
    future = effective_time(stamp(2026, 11, 27, 12, 0), RECEIVED, DeviceClock(None, UTC))
    assert future.effective == RECEIVED and "device_time_implausible" in future.flags


def test_glucose_time_offset_is_added_before_correction() -> None:
    clock = DeviceClock(offset_s=60.0, tz=UTC)
    timed = effective_time(stamp(2026, 11, 27, 8, 0), RECEIVED, clock, time_offset_min=-15)
    assert timed.effective == datetime(2026, 11, 27, 7, 44, tzinfo=UTC)


def test_no_stamp_means_the_time_it_arrived() -> None:
    assert effective_time(None, RECEIVED, DeviceClock(5.0, UTC)).effective == RECEIVED
