"""Pulse Oximeter Service (PLXS 1.0): PLX Spot-Check 0x2A5E, PLX Continuous 0x2A5F, PLX Features 0x2A60.

A finger oximeter at the kiosk either indicates one spot-check result (optionally time
stamped, optionally from its storage) or notifies a stream of continuous measurements.
Both carry SpO2 (%) and pulse rate (/min) as SFLOAT, and the same status words, whose
set bits become reading flags so a reviewer sees "low_perfusion" next to a low SpO2.

Layouts: Pulse Oximeter Service 1.0, section 3 (the characteristics), as restated in the
GATT Specification Supplement under each characteristic's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.ble.decoders import Characteristic, register
from device.ble.decoders.glucose import bit_names, capped
from device.ble.decoders.lengths import Field, Layout, check, finish
from device.ble.ieee11073 import Measured, Number
from device.ble.reader import DateTime, Reader
from device.ble.readings import Reading

SPO2_LOINC = "59408-5"  # Oxygen saturation in Arterial blood by Pulse oximetry
PULSE_RATE_LOINC = "8867-4"  # Heart rate (the PHD IG's code for an oximeter's pulse rate)

# Measurement Status (16 bits); bits 0-4 are RFU.
MEASUREMENT_STATUS_FLAGS: tuple[tuple[int, str], ...] = (
    (5, "measurement_ongoing"),
    (6, "early_estimated_data"),
    (7, "validated_data"),
    (8, "fully_qualified_data"),
    (9, "data_from_measurement_storage"),
    (10, "data_for_demonstration"),
    (11, "data_for_testing"),
    (12, "calibration_ongoing"),
    (13, "measurement_unavailable"),
    (14, "questionable_measurement"),
    (15, "invalid_measurement"),
)

# Device and Sensor Status (24 bits); bits 16-23 are RFU.
DEVICE_SENSOR_STATUS_FLAGS: tuple[tuple[int, str], ...] = (
    (0, "extended_display_update_ongoing"),
    (1, "equipment_malfunction"),
    (2, "signal_processing_irregularity"),
    (3, "inadequate_signal"),
    (4, "poor_signal"),
    (5, "low_perfusion"),
    (6, "erratic_signal"),
    (7, "nonpulsatile_signal"),
    (8, "questionable_pulse"),
    (9, "signal_analysis_ongoing"),
    (10, "sensor_interference"),
    (11, "sensor_unconnected_to_user"),
    (12, "unknown_sensor_connected"),
    (13, "sensor_displaced"),
    (14, "sensor_malfunctioning"),
    (15, "sensor_disconnected"),
)

FEATURE_NAMES: tuple[tuple[int, str], ...] = (
    (0, "measurement_status"),
    (1, "device_and_sensor_status"),
    (2, "spot_check_measurement_storage"),
    (3, "spot_check_timestamp"),
    (4, "spo2pr_fast"),
    (5, "spo2pr_slow"),
    (6, "pulse_amplitude_index"),
    (7, "multiple_bonds"),
)

# Demonstration and test data do not come from the patient on the finger: no vitals from them.
_NOT_PATIENT_DATA = (1 << 10) | (1 << 11)

_SPOT_TIMESTAMP = 0x01
_SPOT_MEASUREMENT_STATUS = 0x02
_SPOT_DEVICE_STATUS = 0x04
_SPOT_PAI = 0x08
_SPOT_CLOCK_NOT_SET = 0x10

_CONT_FAST = 0x01
_CONT_SLOW = 0x02
_CONT_MEASUREMENT_STATUS = 0x04
_CONT_DEVICE_STATUS = 0x08
_CONT_PAI = 0x10

_FEATURE_MEASUREMENT_STATUS = 0x01
_FEATURE_DEVICE_STATUS = 0x02

SPOT_CHECK_LAYOUT: Layout = (
    Field("flags", 1),
    Field("SpO2", 2),
    Field("pulse rate", 2),
    Field("timestamp", 7, _SPOT_TIMESTAMP),
    Field("measurement status", 2, _SPOT_MEASUREMENT_STATUS),
    Field("device and sensor status", 3, _SPOT_DEVICE_STATUS),
    Field("pulse amplitude index", 2, _SPOT_PAI),
)
CONTINUOUS_LAYOUT: Layout = (
    Field("flags", 1),
    Field("SpO2 (normal)", 2),
    Field("pulse rate (normal)", 2),
    Field("SpO2 (fast)", 2, _CONT_FAST),
    Field("pulse rate (fast)", 2, _CONT_FAST),
    Field("SpO2 (slow)", 2, _CONT_SLOW),
    Field("pulse rate (slow)", 2, _CONT_SLOW),
    Field("measurement status", 2, _CONT_MEASUREMENT_STATUS),
    Field("device and sensor status", 3, _CONT_DEVICE_STATUS),
    Field("pulse amplitude index", 2, _CONT_PAI),
)
# The supported features field acts as the flags: bits 0 and 1 announce the two support fields.
FEATURES_LAYOUT: Layout = (
    Field("supported features", 2),
    Field("measurement status support", 2, _FEATURE_MEASUREMENT_STATUS),
    Field("device and sensor status support", 3, _FEATURE_DEVICE_STATUS),
)


@dataclass(frozen=True)
class SpotCheck:
    flags: int
    spo2_pct: Measured
    pulse_rate_bpm: Measured
    timestamp: DateTime | None
    measurement_status: int | None  # 16 bits, RFU kept
    device_sensor_status: int | None  # 24 bits, RFU kept
    pulse_amplitude_index_pct: Measured | None

    @property
    def device_clock_not_set(self) -> bool:
        """The timestamp counts from whenever the oximeter powered up, not from a real date."""
        return bool(self.flags & _SPOT_CLOCK_NOT_SET)


@dataclass(frozen=True)
class Continuous:
    flags: int
    spo2_pct: Measured  # SpO2PR-Normal
    pulse_rate_bpm: Measured
    spo2_fast_pct: Measured | None
    pulse_rate_fast_bpm: Measured | None
    spo2_slow_pct: Measured | None
    pulse_rate_slow_bpm: Measured | None
    measurement_status: int | None
    device_sensor_status: int | None
    pulse_amplitude_index_pct: Measured | None


@dataclass(frozen=True)
class Features:
    supported_features: int  # 16 bits
    measurement_status_support: int | None
    device_sensor_status_support: int | None

    @property
    def supported(self) -> tuple[str, ...]:
        return bit_names(self.supported_features, FEATURE_NAMES)


def decode_spot_check(data: bytes) -> SpotCheck:
    check(data, "PLX Spot-Check Measurement", SPOT_CHECK_LAYOUT, flags_at=0)
    r = Reader(data, "PLX Spot-Check Measurement")
    flags = r.u8("flags")
    spo2, pulse = r.sfloat("SpO2"), r.sfloat("pulse rate")
    timestamp = r.date_time("timestamp") if flags & _SPOT_TIMESTAMP else None
    status = r.u16("measurement status") if flags & _SPOT_MEASUREMENT_STATUS else None
    device = r.u24("device and sensor status") if flags & _SPOT_DEVICE_STATUS else None
    pai = r.sfloat("pulse amplitude index") if flags & _SPOT_PAI else None
    finish(r)
    return SpotCheck(flags, spo2, pulse, timestamp, status, device, pai)


def decode_continuous(data: bytes) -> Continuous:
    check(data, "PLX Continuous Measurement", CONTINUOUS_LAYOUT, flags_at=0)
    r = Reader(data, "PLX Continuous Measurement")
    flags = r.u8("flags")
    spo2, pulse = r.sfloat("SpO2 (normal)"), r.sfloat("pulse rate (normal)")
    spo2_fast = pulse_fast = spo2_slow = pulse_slow = None
    if flags & _CONT_FAST:
        spo2_fast, pulse_fast = r.sfloat("SpO2 (fast)"), r.sfloat("pulse rate (fast)")
    if flags & _CONT_SLOW:
        spo2_slow, pulse_slow = r.sfloat("SpO2 (slow)"), r.sfloat("pulse rate (slow)")
    status = r.u16("measurement status") if flags & _CONT_MEASUREMENT_STATUS else None
    device = r.u24("device and sensor status") if flags & _CONT_DEVICE_STATUS else None
    pai = r.sfloat("pulse amplitude index") if flags & _CONT_PAI else None
    finish(r)
    return Continuous(flags, spo2, pulse, spo2_fast, pulse_fast, spo2_slow, pulse_slow, status, device, pai)


def decode_features(data: bytes) -> Features:
    check(data, "PLX Features", FEATURES_LAYOUT, flags_at=0)
    r = Reader(data, "PLX Features")
    features = r.u16("supported features")
    status = r.u16("measurement status support") if features & _FEATURE_MEASUREMENT_STATUS else None
    device = r.u24("device and sensor status support") if features & _FEATURE_DEVICE_STATUS else None
    finish(r)
    return Features(features, status, device)


def status_flags(measurement_status: int | None, device_sensor_status: int | None) -> tuple[str, ...]:
    return bit_names(measurement_status or 0, MEASUREMENT_STATUS_FLAGS) + bit_names(
        device_sensor_status or 0, DEVICE_SENSOR_STATUS_FLAGS
    )


def _pair(spo2: Measured, pulse: Measured, flags: tuple[str, ...], device_time: DateTime | None) -> list[Reading]:
    """SpO2 and pulse rate as readings; each special value (NaN while the finger settles) drops only its own."""
    found = ((SPO2_LOINC, "%", spo2), (PULSE_RATE_LOINC, "/min", pulse))
    return [
        Reading(code, value.value, unit, capped(flags), device_time=device_time, decimals=value.decimals)
        for code, unit, value in found
        if isinstance(value, Number)
    ]


def spot_check_readings(decoded: SpotCheck) -> list[Reading]:
    """SpO2 and pulse rate at the timestamp, if sent; "device_clock_not_set" warns the collector off it."""
    if (decoded.measurement_status or 0) & _NOT_PATIENT_DATA:
        return []
    flags = status_flags(decoded.measurement_status, decoded.device_sensor_status)
    if decoded.device_clock_not_set:  # first, so the 16-flag cap never drops it
        flags = ("device_clock_not_set", *flags)
    return _pair(decoded.spo2_pct, decoded.pulse_rate_bpm, flags, decoded.timestamp)


def continuous_readings(decoded: Continuous) -> list[Reading]:
    """The Normal averaging only: Fast and Slow are the same quantities averaged differently, not
    further observations, and the pulse amplitude index has no code in the known vitals."""
    if (decoded.measurement_status or 0) & _NOT_PATIENT_DATA:
        return []
    flags = status_flags(decoded.measurement_status, decoded.device_sensor_status)
    return _pair(decoded.spo2_pct, decoded.pulse_rate_bpm, flags, None)


register(Characteristic(0x2A5E, "PLX Spot-Check Measurement", decode_spot_check, spot_check_readings))
register(Characteristic(0x2A5F, "PLX Continuous Measurement", decode_continuous, continuous_readings))
register(Characteristic(0x2A60, "PLX Features", decode_features))
