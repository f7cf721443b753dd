"""Continuous Glucose Monitoring Service (CGMS 1.0.1): CGM Measurement 0x2AA7 and CGM Feature 0x2AA8.

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
that does not match is then a DecodeError too (a stripped CRC is not silently accepted).
"""

from __future__ import annotations

from dataclasses import dataclass

from device.ble.decoders import Characteristic, register
from device.ble.decoders.glucose import bit_names, capped, sample_flags, split_nibbles
from device.ble.errors import DecodeError
from device.ble.ieee11073 import Measured, Number
from device.ble.reader import Reader
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
    if not data:
        raise DecodeError("CGM Measurement: empty value, expected at least one record")
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
    r = Reader(record, what)
    size, flags = r.u8("size"), r.u8("flags")
    glucose, time_offset = r.sfloat("glucose concentration"), r.u16("time offset")
    status = r.u8("status octet") if flags & _STATUS_OCTET else None
    cal_temp = r.u8("cal/temp octet") if flags & _CAL_TEMP_OCTET else None
    warning = r.u8("warning octet") if flags & _WARNING_OCTET else None
    trend = r.sfloat("trend") if flags & _TREND_PRESENT else None
    quality = r.sfloat("quality") if flags & _QUALITY_PRESENT else None
    left = r.remaining
    expected = {True: (_CRC_SIZE,), False: (0,), None: (0, _CRC_SIZE)}[crc_present]
    if left not in expected:
        raise DecodeError(
            f"{what}: size {size} leaves {left} octet(s) after the fields its flags announce; "
            f"expected {' or '.join(map(str, expected))} (E2E-CRC {_crc_expectation(crc_present)})"
        )
    crc = None
    if left == _CRC_SIZE:
        crc = r.u16("E2E-CRC")
        computed = e2e_crc(record[:-_CRC_SIZE])
        if crc != computed:
            raise DecodeError(f"{what}: E2E-CRC {crc:#06x} does not match the computed {computed:#06x}")
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
    trailing: bytes = b""

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
    r = Reader(data, "CGM Feature")
    features = r.u24("features")
    sample_type, location = split_nibbles(r.u8("type-sample location"))
    crc = r.u16("E2E-CRC")
    feature = CgmFeature(features, sample_type, location, crc, r.trailing())
    if feature.e2e_crc_supported:
        computed = e2e_crc(bytes(data[:4]))
        if crc != computed:
            raise DecodeError(f"CGM Feature: E2E-CRC {crc:#06x} does not match the computed {computed:#06x}")
    return feature


register(Characteristic(0x2AA7, "CGM Measurement", decode_measurement, measurement_readings))
register(Characteristic(0x2AA8, "CGM Feature", decode_feature))
