"""Continuous Glucose Monitoring Service (CGMS 1.0.1): CGM Measurement 0x2AA7, CGM Feature 0x2AA8
and CGM Session Start Time 0x2AAA.

A CGM sensor reports interstitial glucose in mg/dL every few minutes, each record stamped
with minutes since the session started (the CGM Session Start Time characteristic, 0x2AAA,
says when that was: the collector reads it and adds the offset). One notification may
carry several records back to back, each led by its own Size octet.

E2E-CRC. A sensor whose CGM Feature sets "E2E-CRC supported" (bit 12) appends a CRC to
every record and to the feature value itself; a record that fails it is a DecodeError,
never a reading. The parameters, checked against the CGMS 1.0.1 CRC calculation example
(3E 01 02 03 04 05 06 07 08 09 gives 0x2F01, which the document prints octet-swapped as
0x012F, as Nordic's Android-BLE-Common-Library CRC16Test.java notes) and against that
library's CGM measurement and feature test vectors:
CRC-CCITT polynomial x^16+x^12+x^5+1 (0x1021, "210041 octal"), seed 0xFFFF, processed
least significant bit first (reflected, i.e. 0x8408 right-shifting), no final XOR, sent
little-endian like every other field. This is the catalogued CRC-16/MCRF4XX ("123456789"
gives 0x6F91). Not CRC-16/CCITT-FALSE (MSB first, 0x29B1), which is what "CCITT" often means.

CRC presence. The record's Size field counts every octet including the CRC, so
`decode_measurement(data, crc_present=None)` tells from the size: exactly two octets after
the announced fields are the CRC (and must match), none means no CRC, anything else is a
DecodeError. A collector that has read the CGM Feature passes True or False, and a record
that does not match is then a DecodeError too (a stripped CRC is not silently accepted). The Session Start Time has no
Size field; see `decode_session_start_time` for how its length tells the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from device.ble.decoders import Characteristic, register
from device.ble.decoders.current_time import (
    DST_OFFSET_MINUTES,
    DST_OFFSET_UNKNOWN,
    TIME_ZONE_STEP_MIN,
    TIME_ZONE_UNKNOWN,
)
from device.ble.decoders.glucose import bit_names, capped, sample_flags, split_nibbles
from device.ble.decoders.lengths import (
    Field,
    Layout,
    announced,
    at_most_attribute_size,
    check,
    finish,
    flags_text,
    length_error,
    total,
)
from device.ble.errors import DecodeError
from device.ble.ieee11073 import Measured, Number
from device.ble.reader import DateTime, Reader
from device.ble.readings import Reading

# Interstitial glucose: LOINC 99504-3 "Glucose [Mass/volume] in Interstitial fluid", the code
# the HL7 FHIR CGM IG (hl7.fhir.uv.cgm, CGM Sensor Reading (Mass)) uses for each sensor reading.
# CGMS sends mg/dL only, so the molar code is never needed.
CGM_GLUCOSE_LOINC = "99504-3"

# Sensor Status Annunciation as one 24-bit value: Status octet (bits 0-7), Cal/Temp octet
# (8-15), Warning octet (16-23). Bits 6, 7, 14, 15 are RFU and give no flag.
ANNUNCIATION_FLAGS: tuple[tuple[int, str], ...] = (
    (0, "session_stopped"),
    (1, "device_battery_low"),
    (2, "sensor_type_incorrect"),
    (3, "sensor_malfunction"),
    (4, "device_specific_alert"),
    (5, "general_device_fault"),
    (8, "time_synchronization_required"),
    (9, "calibration_not_allowed"),
    (10, "calibration_recommended"),
    (11, "calibration_required"),
    (12, "sensor_temperature_too_high"),
    (13, "sensor_temperature_too_low"),
    (16, "below_patient_low_level"),
    (17, "above_patient_high_level"),
    (18, "below_hypo_level"),
    (19, "above_hyper_level"),
    (20, "rate_of_decrease_exceeded"),
    (21, "rate_of_increase_exceeded"),
    (22, "result_below_device_range"),
    (23, "result_above_device_range"),
)

FEATURE_NAMES: tuple[tuple[int, str], ...] = (
    (0, "calibration"),
    (1, "patient_high_low_alerts"),
    (2, "hypo_alerts"),
    (3, "hyper_alerts"),
    (4, "rate_of_increase_decrease_alerts"),
    (5, "device_specific_alert"),
    (6, "sensor_malfunction_detection"),
    (7, "sensor_temperature_high_low_detection"),
    (8, "sensor_result_high_low_detection"),
    (9, "low_battery_detection"),
    (10, "sensor_type_error_detection"),
    (11, "general_device_fault"),
    (12, "e2e_crc"),
    (13, "multiple_bond"),
    (14, "multiple_sessions"),
    (15, "cgm_trend_information"),
    (16, "cgm_quality"),
)

_TREND_PRESENT = 0x01
_QUALITY_PRESENT = 0x02
_WARNING_OCTET = 0x20
_CAL_TEMP_OCTET = 0x40
_STATUS_OCTET = 0x80

_FEATURE_E2E_CRC = 1 << 12
CRC_NOT_SUPPORTED = 0xFFFF  # what the Feature's CRC field holds when bit 12 is clear
_MIN_RECORD_SIZE = 6  # size, flags, concentration, time offset
_CRC_SIZE = 2
_E2E_CRC = Field("E2E-CRC", _CRC_SIZE)

# One record; the Size field must equal the fields its flags announce, plus the E2E-CRC when sent.
RECORD_LAYOUT: Layout = (
    Field("size", 1),
    Field("flags", 1),
    Field("glucose concentration", 2),
    Field("time offset", 2),
    Field("status octet", 1, _STATUS_OCTET),
    Field("cal/temp octet", 1, _CAL_TEMP_OCTET),
    Field("warning octet", 1, _WARNING_OCTET),
    Field("trend", 2, _TREND_PRESENT),
    Field("quality", 2, _QUALITY_PRESENT),
)
FEATURE_LAYOUT: Layout = (Field("features", 3), Field("type-sample location", 1), _E2E_CRC)


def e2e_crc(data: bytes) -> int:
    """CRC-16/MCRF4XX: poly 0x1021 reflected (0x8408), seed 0xFFFF, LSB first, no final XOR."""
    crc = 0xFFFF
    for octet in data:
        crc ^= octet
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


@dataclass(frozen=True)
class CgmRecord:
    size: int
    flags: int  # RFU bits 2-4 kept
    glucose_mg_dl: Measured
    time_offset_min: int  # minutes since the session start time
    status_octet: int | None
    cal_temp_octet: int | None
    warning_octet: int | None
    trend_mg_dl_min: Measured | None
    quality_pct: Measured | None
    e2e_crc: int | None  # present only when it matched

    @property
    def annunciation(self) -> int:
        """The three octets as one 24-bit value (absent octets are 0), as CGM Status lays them out."""
        return (self.status_octet or 0) | (self.cal_temp_octet or 0) << 8 | (self.warning_octet or 0) << 16

    @property
    def status_flags(self) -> tuple[str, ...]:
        return bit_names(self.annunciation, ANNUNCIATION_FLAGS)


@dataclass(frozen=True)
class CgmMeasurement:
    """Every record of one notification, in the order sent."""

    records: tuple[CgmRecord, ...]


def decode_measurement(data: bytes, crc_present: bool | None = None) -> CgmMeasurement:
    """All records; `crc_present` is the CGM Feature's E2E-CRC bit, or None to tell from each Size."""
    data = bytes(data)
    # CGMS 1.0.1: a notification may hold several records back to back, each sized by its own Size field.
    at_most_attribute_size(data, "CGM Measurement")
    if not data:
        raise DecodeError(f"CGM Measurement: expected at least {_MIN_RECORD_SIZE} byte(s) (one record), got 0")
    records = []
    position = 0
    while position < len(data):
        size = data[position]
        if size < _MIN_RECORD_SIZE:
            raise DecodeError(f"CGM Measurement: record at offset {position} has size {size}, below the minimum 6")
        if position + size > len(data):
            raise DecodeError(
                f"CGM Measurement: record at offset {position} has size {size}, "
                f"but only {len(data) - position} byte(s) remain"
            )
        records.append(_record(data[position : position + size], position, crc_present))
        position += size
    return CgmMeasurement(tuple(records))


def _record(record: bytes, offset: int, crc_present: bool | None) -> CgmRecord:
    what = f"CGM Measurement record at offset {offset}"
    size, flags = record[0], record[1]  # the caller made sure of at least _MIN_RECORD_SIZE octets
    fields = announced(RECORD_LAYOUT, flags)
    allowed = {True: (_CRC_SIZE,), False: (0,), None: (0, _CRC_SIZE)}[crc_present]
    if size - total(fields) not in allowed:
        sizes = " or ".join(str(total(fields) + extra) for extra in allowed)
        raise DecodeError(
            f"{what}: expected size {sizes} {flags_text(flags, 1)} (E2E-CRC {_crc_expectation(crc_present)}), "
            f"got size {size} ({size - total(fields)} octet(s) after the fields the flags announce)"
        )
    r = Reader(record, what)
    r.raw(2, "size and flags")  # read above
    glucose, time_offset = r.sfloat("glucose concentration"), r.u16("time offset")
    status = r.u8("status octet") if flags & _STATUS_OCTET else None
    cal_temp = r.u8("cal/temp octet") if flags & _CAL_TEMP_OCTET else None
    warning = r.u8("warning octet") if flags & _WARNING_OCTET else None
    trend = r.sfloat("trend") if flags & _TREND_PRESENT else None
    quality = r.sfloat("quality") if flags & _QUALITY_PRESENT else None
    crc = None
    if r.remaining == _CRC_SIZE:
        crc = r.u16("E2E-CRC")
        computed = e2e_crc(record[:-_CRC_SIZE])
        if crc != computed:
            raise DecodeError(f"{what}: E2E-CRC {crc:#06x} does not match the computed {computed:#06x}")
    finish(r)
    return CgmRecord(size, flags, glucose, time_offset, status, cal_temp, warning, trend, quality, crc)


def _crc_expectation(crc_present: bool | None) -> str:
    return {True: "required by the feature", False: "not supported by the feature", None: "optional"}[crc_present]


def measurement_readings(decoded: CgmMeasurement) -> list[Reading]:
    """One interstitial glucose reading per record with a finite concentration.

    device_time stays None: the offset counts from the session start time, which comes from
    another characteristic. sequence stays None too: CGMS keys stored records by time offset
    (its RACP filter type 0x01), which is already in time_offset_min. Trend and quality give
    no reading: the protocol has no code for a glucose rate of change or a sensor quality,
    and neither is a vital sign on its own.
    """
    return [
        Reading(
            code=CGM_GLUCOSE_LOINC,
            value=record.glucose_mg_dl.value,
            unit="mg/dL",
            flags=capped(record.status_flags),
            time_offset_min=record.time_offset_min,
            decimals=record.glucose_mg_dl.decimals,
        )
        for record in decoded.records
        if isinstance(record.glucose_mg_dl, Number)
    ]


@dataclass(frozen=True)
class CgmFeature:
    features: int  # 24 bits, RFU kept
    sample_type: int  # glucose SampleType value (9 = interstitial fluid, for a CGM)
    sample_location: int  # glucose SampleLocation value (5 = subcutaneous tissue)
    e2e_crc: int  # checked when e2e_crc_supported; otherwise kept as sent (0xFFFF per spec)

    @property
    def e2e_crc_supported(self) -> bool:
        """Pass this as `crc_present` when decoding this sensor's measurements."""
        return bool(self.features & _FEATURE_E2E_CRC)

    @property
    def supported(self) -> tuple[str, ...]:
        return bit_names(self.features, FEATURE_NAMES)

    @property
    def sample_flags(self) -> tuple[str, ...]:
        return sample_flags(self.sample_type, self.sample_location)


def decode_feature(data: bytes) -> CgmFeature:
    """The CRC field is always there; it is only checked when the feature says CRCs are supported.

    A sensor without E2E-CRC should send 0xFFFF; another value is kept rather than refused,
    since nothing it protects is then at stake (the measurement decoder still refuses
    records whose size disagrees with the CRC setting the collector passes).
    """
    check(data, "CGM Feature", FEATURE_LAYOUT)
    r = Reader(data, "CGM Feature")
    features = r.u24("features")
    sample_type, location = split_nibbles(r.u8("type-sample location"))
    crc = r.u16("E2E-CRC")
    finish(r)
    feature = CgmFeature(features, sample_type, location, crc)
    if feature.e2e_crc_supported:
        computed = e2e_crc(bytes(data[:4]))
        if crc != computed:
            raise DecodeError(f"CGM Feature: E2E-CRC {crc:#06x} does not match the computed {computed:#06x}")
    return feature


# --- CGM Session Start Time (0x2AAA) ---------------------------------------------------------------

CGM_MEASUREMENT = 0x2AA7
CGM_FEATURE = 0x2AA8
SESSION_START_TIME = 0x2AAA
SST_LAYOUT: Layout = (Field("session start time", 7), Field("time zone", 1), Field("DST offset", 1))
_SST_FIELDS_SIZE = total(SST_LAYOUT)  # 9
TIME_ZONE_MIN, TIME_ZONE_MAX = -48, 56  # quarter hours: UTC-12:00 .. UTC+14:00


@dataclass(frozen=True)
class CgmSessionStartTime:
    """When the session started, by the sensor's wall clock, and the zone that clock was in.

    `start` is local wall time (Date Time, seconds resolution; year, month or day may be
    unknown). `time_zone_quarter_hours` is the standard-time offset from UTC in 15-minute
    steps (None: the sensor sent -128, unknown); `dst_offset_min` is the daylight saving
    offset in minutes, 0, 30, 60 or 120 (None: 255, unknown). `crc` is the E2E-CRC, present
    only when it matched.
    """

    start: DateTime
    time_zone_quarter_hours: int | None
    dst_offset_min: int | None
    crc: int | None

    def utc_offset(self) -> timedelta | None:
        """Time zone plus DST: wall time minus this is UTC. None when either is unknown."""
        if self.time_zone_quarter_hours is None or self.dst_offset_min is None:
            return None
        return timedelta(minutes=self.time_zone_quarter_hours * TIME_ZONE_STEP_MIN + self.dst_offset_min)

    def aware_start(self) -> datetime | None:
        """The start as an aware datetime (in the sensor's own UTC offset), or None.

        None unless year, month and day are all known and `utc_offset()` is known: without
        them the start cannot be placed on the timeline, and the collector has to fall back
        on its own clock. The date itself was checked when decoding, so this never raises.
        """
        offset = self.utc_offset()
        if offset is None or not self.start.complete:
            return None
        return self.start.naive().replace(tzinfo=timezone(offset))


def decode_session_start_time(data: bytes, crc_present: bool | None = None) -> CgmSessionStartTime:
    """Date Time (7 octets), Time Zone (sint8), DST Offset (uint8), then the E2E-CRC if supported.

    `crc_present` is the CGM Feature's E2E-CRC bit. The CRC is the last field and covers
    every octet before it. With True the value must be exactly 11 octets and the last two
    must match; a value without the CRC is a DecodeError (a stripped CRC is not silently
    accepted). With False it must be exactly 9 octets. With None the length tells, as the
    Size field does for measurements: 9 octets is no CRC, 11 is a CRC that must match,
    anything else is a DecodeError.

    A complete date that does not exist (31 April), a time zone outside -48..56 other than
    -128, and a DST Offset other than 0, 2, 4, 8 or 255 are DecodeErrors too: this value
    anchors every record's time offset, so a reserved or impossible one is not guessed at.
    """
    data = bytes(data)
    what = "CGM Session Start Time"
    size = len(data)
    if crc_present is None and size not in (_SST_FIELDS_SIZE, _SST_FIELDS_SIZE + _CRC_SIZE):
        raise DecodeError(
            f"{what}: expected {_SST_FIELDS_SIZE} byte(s) (no E2E-CRC) or {_SST_FIELDS_SIZE + _CRC_SIZE} "
            f"(with E2E-CRC) when the CGM Feature's E2E-CRC setting is not given, got {size}"
        )
    has_crc = crc_present is True or (crc_present is None and size == _SST_FIELDS_SIZE + _CRC_SIZE)
    layout = (*SST_LAYOUT, _E2E_CRC) if has_crc else SST_LAYOUT
    if size != total(layout):
        raise length_error(what, layout, size, f"with E2E-CRC {_crc_expectation(crc_present)}")
    crc = None
    if has_crc:
        crc = int.from_bytes(data[-_CRC_SIZE:], "little")
        computed = e2e_crc(data[:-_CRC_SIZE])
        if crc != computed:
            raise DecodeError(f"{what}: E2E-CRC {crc:#06x} does not match the computed {computed:#06x}")
        data = data[:-_CRC_SIZE]
    r = Reader(data, what)
    start = r.date_time("session start time")
    if start.complete:
        start.naive()  # DecodeError for a date that does not exist
    zone = r.sint(1, "time zone")
    if zone != TIME_ZONE_UNKNOWN and not TIME_ZONE_MIN <= zone <= TIME_ZONE_MAX:
        raise DecodeError(
            f"{what}: time zone {zone} is outside {TIME_ZONE_MIN}..{TIME_ZONE_MAX} "
            f"(15-minute steps) and is not {TIME_ZONE_UNKNOWN} (unknown)"
        )
    dst = r.u8("DST offset")
    if dst != DST_OFFSET_UNKNOWN and dst not in DST_OFFSET_MINUTES:
        raise DecodeError(
            f"{what}: DST offset {dst} is reserved; expected one of "
            f"{', '.join(map(str, DST_OFFSET_MINUTES))} or {DST_OFFSET_UNKNOWN} (unknown)"
        )
    finish(r)
    return CgmSessionStartTime(
        start,
        None if zone == TIME_ZONE_UNKNOWN else zone,
        DST_OFFSET_MINUTES.get(dst),
        crc,
    )


def encode_session_start_time(when: datetime, *, crc: bool = False) -> bytes:
    """The CGM Session Start Time value for an aware `when`; `crc` appends the E2E-CRC.

    Written as `when`'s own wall time (Date Time, seconds; the microseconds are dropped),
    its whole UTC offset as the Time Zone in quarter hours, and DST Offset 0 (standard
    time): any daylight saving is folded into the Time Zone, so zone + DST, the UTC offset
    `utc_offset()` gives back, is exact whatever the tzinfo (a fixed-offset zone has no
    `dst()` to split off). Pass `crc=True` when the CGM Feature says E2E-CRC is supported.

    A collector writing this to a sensor should pass its current time, not a guessed start:
    a sensor takes the written value as "now" and subtracts how long the session has run
    to store the start (what Nordic's nRF5 SDK sensor does, cgms_sst.c calc_sst, with the
    session's current time offset). Reading the characteristic back gives the stored start.
    A sensor with E2E-CRC answers a write without one with the CGMS error Missing CRC (0x80).
    Raises ValueError for a naive `when`, a year Date Time cannot carry, or a UTC offset
    that is not a whole number of quarter hours within -12:00..+14:00.
    """
    offset = when.utcoffset()
    if offset is None:
        raise ValueError("the session start time needs an aware datetime: its UTC offset is written")
    if not 1582 <= when.year <= 9999:
        raise ValueError(f"Date Time carries years 1582..9999, not {when.year}")
    quarters, remainder = divmod(offset, timedelta(minutes=TIME_ZONE_STEP_MIN))
    if remainder or not TIME_ZONE_MIN <= quarters <= TIME_ZONE_MAX:
        raise ValueError(
            f"UTC offset {offset} is not a whole number of quarter hours within -12:00..+14:00 "
            "(the Time Zone field cannot carry it)"
        )
    value = (
        when.year.to_bytes(2, "little")
        + bytes((when.month, when.day, when.hour, when.minute, when.second))
        + quarters.to_bytes(1, "little", signed=True)
        + bytes((0,))  # DST Offset: standard time, see above
    )
    return value + e2e_crc(value).to_bytes(2, "little") if crc else value


register(Characteristic(CGM_MEASUREMENT, "CGM Measurement", decode_measurement, measurement_readings))
register(Characteristic(CGM_FEATURE, "CGM Feature", decode_feature))
register(Characteristic(SESSION_START_TIME, "CGM Session Start Time", decode_session_start_time))
