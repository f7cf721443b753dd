"""PLX Spot-Check / Continuous / Features: vectors from Stanford Spezi's SpeziBluetooth
(Tests/SpeziBluetoothServicesTests/PLXTests.swift), each decoded by hand below against PLXS 1.0
and the GATT Specification Supplement, plus hand-built vectors for every flag and status bit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders import REGISTRY
from device.ble.decoders.pulse_oximeter import (
    DEVICE_SENSOR_STATUS_FLAGS,
    FEATURE_NAMES,
    MEASUREMENT_STATUS_FLAGS,
    Continuous,
    SpotCheck,
    continuous_readings,
    decode_continuous,
    decode_features,
    decode_spot_check,
    spot_check_readings,
)
from device.ble.errors import DecodeError
from device.ble.ieee11073 import Number, Special
from device.ble.reader import DateTime
from device.ble.readings import Reading
from device.protocol.vitals import VITALS
from tests.ble.protocol_checks import FLAG, accepted_by_protocol

SPECIALS = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.POSITIVE_INFINITY,
    0x0802: Special.NEGATIVE_INFINITY,
    0x0801: Special.RESERVED,
}

# --- Spezi vectors ---------------------------------------------------------------------------------


def test_spezi_spot_check() -> None:
    # flags 15: timestamp, measurement status, device and sensor status, PAI.
    # SpO2 0xF3AC: exponent -1, mantissa 0x3AC = 940 -> 94.0 %; PR 0xF5BE: 0x5BE = 1470 -> 147.0 /min.
    # 0x07E8 = 2024-11-29 23:08:57; status 0x4020 = bits 5 (ongoing) and 14 (questionable);
    # device status 0x000022 = bits 1 (equipment malfunction) and 5 (low perfusion);
    # PAI 0xE366: exponent -2, mantissa 0x366 = 870 -> 8.70 %.
    data = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    m = decode_spot_check(data)
    assert m == SpotCheck(
        flags=15,
        spo2_pct=Number(94.0, -1),
        pulse_rate_bpm=Number(147.0, -1),
        timestamp=DateTime(2024, 11, 29, 23, 8, 57),
        measurement_status=0x4020,
        device_sensor_status=0x000022,
        pulse_amplitude_index_pct=Number(8.7, -2),
    )
    flags = ("measurement_ongoing", "questionable_measurement", "equipment_malfunction", "low_perfusion")
    assert spot_check_readings(m) == [
        Reading("59408-5", 94.0, "%", flags, device_time=DateTime(2024, 11, 29, 23, 8, 57), decimals=1),
        Reading("8867-4", 147.0, "/min", flags, device_time=DateTime(2024, 11, 29, 23, 8, 57), decimals=1),
    ]


def test_spezi_continuous_very_simple() -> None:
    # flags 0; SpO2 0xF3E8 = 1000e-1 = 100.0; PR 0xF384 = 900e-1 = 90.0.
    m = decode_continuous(bytes([0, 232, 243, 132, 243]))
    assert (m.spo2_pct, m.pulse_rate_bpm) == (Number(100.0, -1), Number(90.0, -1))
    # The same values with exponent 0: 0x0064 = 100, 0x005A = 90.
    m = decode_continuous(bytes([0, 100, 0, 90, 0]))
    assert (m.spo2_pct, m.pulse_rate_bpm) == (Number(100.0, 0), Number(90.0, 0))
    assert continuous_readings(m) == [
        Reading("59408-5", 100.0, "%", decimals=0),
        Reading("8867-4", 90.0, "/min", decimals=0),
    ]


def test_spezi_continuous_simple() -> None:
    # flags 28 = bits 2, 3, 4: measurement status 0x0020 (ongoing), device status 0, PAI 0xF057 = 87e-1.
    m = decode_continuous(bytes([28, 95, 0, 90, 0, 32, 0, 0, 0, 0, 87, 240]))
    assert m == Continuous(28, Number(95.0, 0), Number(90.0, 0), None, None, None, None, 0x0020, 0, Number(8.7, -1))


def test_spezi_continuous_full() -> None:
    # flags 31: fast, slow, status, device status, PAI. Normal 0xF3DE = 99.0, 0xF3CA = 97.0;
    # fast 0xF3CA = 97.0, 0xF55A = 1370e-1 = 137.0; slow 0xF3D4 = 98.0, 0xF2B2 = 690e-1 = 69.0;
    # status 0x0120 = bits 5 (ongoing) and 8 (fully qualified); PAI 0xE37A = 890e-2 = 8.9.
    data = bytes([31, 222, 243, 202, 243, 202, 243, 90, 245, 212, 243, 178, 242, 32, 1, 0, 0, 0, 122, 227])
    m = decode_continuous(data)
    assert m == Continuous(
        flags=31,
        spo2_pct=Number(99.0, -1),
        pulse_rate_bpm=Number(97.0, -1),
        spo2_fast_pct=Number(97.0, -1),
        pulse_rate_fast_bpm=Number(137.0, -1),
        spo2_slow_pct=Number(98.0, -1),
        pulse_rate_slow_bpm=Number(69.0, -1),
        measurement_status=0x0120,
        device_sensor_status=0,
        pulse_amplitude_index_pct=Number(8.9, -2),
    )
    # Only the Normal pair becomes readings.
    readings = continuous_readings(m)
    assert [(r.code, r.value) for r in readings] == [("59408-5", 99.0), ("8867-4", 97.0)]
    assert readings[0].flags == ("measurement_ongoing", "fully_qualified_data")


def test_spezi_features() -> None:
    # 0x00A3 = bits 0, 1, 5, 7; measurement status support 0x1040 = bits 6 (early estimate), 12 (calibration);
    # device and sensor status support 0x000180 = bits 7 (nonpulsatile), 8 (questionable pulse).
    f = decode_features(bytes([163, 0, 64, 16, 128, 1, 0]))
    assert (f.supported_features, f.measurement_status_support, f.device_sensor_status_support) == (
        0x00A3,
        0x1040,
        0x000180,
    )
    assert f.supported == ("measurement_status", "device_and_sensor_status", "spo2pr_slow", "multiple_bonds")


# --- every flag combination --------------------------------------------------------------------------

SPO2_PR = b"\x61\x00\x48\x00"  # 0x0061 = 97 %, 0x0048 = 72 /min
TIMESTAMP = bytes.fromhex("e8070b1d170839")  # 2024-11-29 23:08:57
STATUS = b"\x80\x00"  # bit 7: validated data
DEVICE = b"\x20\x00\x00"  # bit 5: low perfusion
PAI = b"\x57\xf0"  # 87e-1


def spot(
    flags: int,
    *,
    spo2_pr: bytes = SPO2_PR,
    timestamp: bytes = TIMESTAMP,
    status: bytes = STATUS,
    device: bytes = DEVICE,
) -> bytes:
    """Fields in PLXS order, each only when its flag says so (bit 4, clock not set, adds none)."""
    chunks = ((0x01, timestamp), (0x02, status), (0x04, device), (0x08, PAI))
    return bytes([flags]) + spo2_pr + b"".join(chunk for bit, chunk in chunks if flags & bit)


def continuous(flags: int, *, status: bytes = STATUS, device: bytes = DEVICE) -> bytes:
    fast, slow = b"\x60\x00\x49\x00", b"\x62\x00\x47\x00"  # 96/73 and 98/71
    chunks = ((0x01, fast), (0x02, slow), (0x04, status), (0x08, device), (0x10, PAI))
    return bytes([flags]) + SPO2_PR + b"".join(chunk for bit, chunk in chunks if flags & bit)


@pytest.mark.parametrize("flags", range(0x20))
def test_spot_check_every_flag_combination(flags: int) -> None:
    m = decode_spot_check(spot(flags))
    assert (m.flags, m.spo2_pct, m.pulse_rate_bpm) == (flags, Number(97.0, 0), Number(72.0, 0))
    assert m.timestamp == (DateTime(2024, 11, 29, 23, 8, 57) if flags & 0x01 else None)
    assert m.measurement_status == (0x0080 if flags & 0x02 else None)
    assert m.device_sensor_status == (0x000020 if flags & 0x04 else None)
    assert m.pulse_amplitude_index_pct == (Number(8.7, -1) if flags & 0x08 else None)
    assert m.device_clock_not_set == bool(flags & 0x10)
    readings = spot_check_readings(m)
    assert [r.code for r in readings] == ["59408-5", "8867-4"]
    assert ("device_clock_not_set" in readings[0].flags) == bool(flags & 0x10)
    assert ("validated_data" in readings[0].flags) == bool(flags & 0x02)
    assert ("low_perfusion" in readings[1].flags) == bool(flags & 0x04)
    with pytest.raises(DecodeError):
        decode_spot_check(spot(flags)[:-1])


@pytest.mark.parametrize("flags", range(0x20))
def test_continuous_every_flag_combination(flags: int) -> None:
    m = decode_continuous(continuous(flags))
    assert (m.spo2_pct, m.pulse_rate_bpm) == (Number(97.0, 0), Number(72.0, 0))
    fast = (Number(96.0, 0), Number(73.0, 0)) if flags & 0x01 else (None, None)
    slow = (Number(98.0, 0), Number(71.0, 0)) if flags & 0x02 else (None, None)
    assert (m.spo2_fast_pct, m.pulse_rate_fast_bpm) == fast
    assert (m.spo2_slow_pct, m.pulse_rate_slow_bpm) == slow
    assert m.measurement_status == (0x0080 if flags & 0x04 else None)
    assert m.device_sensor_status == (0x000020 if flags & 0x08 else None)
    assert m.pulse_amplitude_index_pct == (Number(8.7, -1) if flags & 0x10 else None)
    assert [r.value for r in continuous_readings(m)] == [97.0, 72.0]
    with pytest.raises(DecodeError):
        decode_continuous(continuous(flags)[:-1])


@pytest.mark.parametrize("features", [0x0000, 0x0001, 0x0002, 0x0003, 0x00FC, 0xFF03])
def test_features_every_combination(features: int) -> None:
    data = features.to_bytes(2, "little")
    if features & 0x01:
        data += b"\xe0\xff"  # every defined measurement status bit (5..15)
    if features & 0x02:
        data += b"\xff\xff\x00"  # every defined device and sensor status bit (0..15)
    f = decode_features(data)
    assert f.supported_features == features
    assert f.measurement_status_support == (0xFFE0 if features & 0x01 else None)
    assert f.device_sensor_status_support == (0x00FFFF if features & 0x02 else None)
    if features & 0x03:
        with pytest.raises(DecodeError):
            decode_features(data[:-1])


@pytest.mark.parametrize(("bit", "name"), FEATURE_NAMES)
def test_features_each_bit(bit: int, name: str) -> None:
    support = {0: b"\x00\x00", 1: b"\x00\x00\x00"}.get(bit, b"")
    assert decode_features((1 << bit).to_bytes(2, "little") + support).supported == (name,)


# --- RFU, lengths, truncation ------------------------------------------------------------------------


def test_rfu_flags_are_kept_and_bytes_after_the_last_field_refused() -> None:
    assert decode_spot_check(spot(0xE0)).flags == 0xE0
    assert decode_continuous(continuous(0xE0)).flags == 0xE0
    with pytest.raises(DecodeError, match=r"PLX Spot-Check Measurement: expected 5 byte\(s\) for flags 0xe0, got 7"):
        decode_spot_check(spot(0xE0) + b"\x01\x02")
    with pytest.raises(DecodeError, match=r"PLX Continuous Measurement: expected 5 byte\(s\) for flags 0xe0, got 6"):
        decode_continuous(continuous(0xE0) + b"\x03")
    with pytest.raises(DecodeError, match=r"PLX Features: expected 2 byte\(s\) for flags 0x0000, got 3"):
        decode_features(b"\x00\x00\x09")


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x61\x00", b"\x00\x61\x00\x48"])
def test_short_values_are_refused(data: bytes) -> None:
    for decoder in (decode_spot_check, decode_continuous):
        with pytest.raises(DecodeError):
            decoder(data)
    with pytest.raises(DecodeError):
        decode_features(data[:1])


def test_unknown_year_timestamp() -> None:
    m = decode_spot_check(spot(0x01, timestamp=bytes.fromhex("00000b1d170839")))
    assert m.timestamp == DateTime(None, 11, 29, 23, 8, 57)
    assert spot_check_readings(m)[0].device_time == m.timestamp


def test_impossible_timestamp_is_refused() -> None:
    with pytest.raises(DecodeError, match="timestamp"):
        decode_spot_check(spot(0x01, timestamp=bytes.fromhex("e8070b1d173c00")))  # minute 60


def test_clock_not_set_keeps_the_timestamp_and_flags_it() -> None:
    (spo2, _pulse) = spot_check_readings(decode_spot_check(spot(0x11)))
    assert spo2.device_time == DateTime(2024, 11, 29, 23, 8, 57)
    assert spo2.flags == ("device_clock_not_set",)


# --- status bits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bit", "flag"), MEASUREMENT_STATUS_FLAGS)
def test_each_measurement_status_bit(bit: int, flag: str) -> None:
    status = (1 << bit).to_bytes(2, "little")
    spot_readings = spot_check_readings(decode_spot_check(spot(0x02, status=status)))
    continuous_ = continuous_readings(decode_continuous(continuous(0x04, status=status)))
    if flag in ("data_for_demonstration", "data_for_testing"):
        # Not the patient's blood: the oximeter is in a demonstration or test mode.
        assert spot_readings == continuous_ == []
    else:
        assert [r.flags for r in spot_readings] == [(flag,), (flag,)]
        assert [r.flags for r in continuous_] == [(flag,), (flag,)]


@pytest.mark.parametrize("bit", range(5))
def test_rfu_measurement_status_bits_give_no_flag(bit: int) -> None:
    m = decode_spot_check(spot(0x02, status=(1 << bit).to_bytes(2, "little")))
    assert m.measurement_status == 1 << bit
    assert [r.flags for r in spot_check_readings(m)] == [(), ()]


@pytest.mark.parametrize(("bit", "flag"), DEVICE_SENSOR_STATUS_FLAGS)
def test_each_device_and_sensor_status_bit(bit: int, flag: str) -> None:
    device = (1 << bit).to_bytes(3, "little")
    assert [r.flags for r in spot_check_readings(decode_spot_check(spot(0x04, device=device)))] == [(flag,)] * 2
    assert [r.flags for r in continuous_readings(decode_continuous(continuous(0x08, device=device)))] == [(flag,)] * 2


@pytest.mark.parametrize("bit", range(16, 24))
def test_rfu_device_status_bits_are_kept_without_a_flag(bit: int) -> None:
    m = decode_spot_check(spot(0x04, device=(1 << bit).to_bytes(3, "little")))
    assert m.device_sensor_status == 1 << bit
    assert [r.flags for r in spot_check_readings(m)] == [(), ()]


def test_status_names_match_spec_order() -> None:
    assert [b for b, _ in MEASUREMENT_STATUS_FLAGS] == list(range(5, 16))
    assert [b for b, _ in DEVICE_SENSOR_STATUS_FLAGS] == list(range(16))
    names = [n for _, n in MEASUREMENT_STATUS_FLAGS + DEVICE_SENSOR_STATUS_FLAGS] + ["device_clock_not_set"]
    assert all(FLAG.match(n) for n in names)
    assert len(set(names)) == len(names)


# --- special values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "special"), SPECIALS.items())
def test_special_spo2_drops_only_spo2(raw: int, special: Special) -> None:
    m = decode_spot_check(spot(0x00, spo2_pr=raw.to_bytes(2, "little") + b"\x48\x00"))
    assert m.spo2_pct is special
    assert [(r.code, r.value) for r in spot_check_readings(m)] == [("8867-4", 72.0)]


@pytest.mark.parametrize(("raw", "special"), SPECIALS.items())
def test_special_pulse_rate_drops_only_pulse_rate(raw: int, special: Special) -> None:
    m = decode_continuous(b"\x00\x61\x00" + raw.to_bytes(2, "little"))
    assert m.pulse_rate_bpm is special
    assert [(r.code, r.value) for r in continuous_readings(m)] == [("59408-5", 97.0)]


@pytest.mark.parametrize(("raw", "special"), SPECIALS.items())
def test_special_values_everywhere_are_kept(raw: int, special: Special) -> None:
    sf = raw.to_bytes(2, "little")
    m = decode_continuous(b"\x13" + sf * 7)  # normal, fast, slow, PAI
    assert {m.spo2_pct, m.pulse_rate_bpm, m.spo2_fast_pct, m.pulse_rate_slow_bpm, m.pulse_amplitude_index_pct} == {
        special
    }
    assert continuous_readings(m) == []


def test_readings_fit_the_protocol() -> None:
    spezi_spot_check = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    readings = spot_check_readings(decode_spot_check(spot(0x1F)))
    readings += spot_check_readings(decode_spot_check(spezi_spot_check))
    readings += continuous_readings(decode_continuous(continuous(0x1F)))
    assert len(readings) == 6
    for reading in readings:
        accepted_by_protocol(reading)


def test_every_status_bit_at_once_is_capped_to_the_protocol_flag_limit() -> None:
    # 11 measurement status bits (less demonstration and testing, which drop the reading) + 16 device
    # status bits + clock not set: more than the 16 an Observation carries.
    m = decode_spot_check(spot(0x16, status=b"\xe0\xf3", device=b"\xff\xff\xff"))
    for reading in spot_check_readings(m):
        assert len(reading.flags) == 16
        assert reading.flags[0] == "device_clock_not_set"
        assert reading.flags[-1] == "flags_truncated"
        accepted_by_protocol(reading)


def test_registered() -> None:
    assert REGISTRY[0x2A5E].decode is decode_spot_check
    assert REGISTRY[0x2A5E].readings is spot_check_readings
    assert REGISTRY[0x2A5F].decode is decode_continuous
    assert REGISTRY[0x2A5F].readings is continuous_readings
    assert REGISTRY[0x2A60].decode is decode_features


# --- properties ------------------------------------------------------------------------------------------


def _sane(readings: list[Reading]) -> None:
    for reading in readings:
        assert all(FLAG.match(flag) for flag in reading.flags)
        assert len(reading.flags) <= 16
        assert reading.unit in VITALS[reading.code].units


@given(st.binary(max_size=64))
def test_spot_check_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_spot_check(data)
    except DecodeError:
        return
    _sane(spot_check_readings(decoded))


@given(st.binary(max_size=64))
def test_continuous_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_continuous(data)
    except DecodeError:
        return
    _sane(continuous_readings(decoded))


@given(st.binary(max_size=64))
def test_features_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_features(data)
    except DecodeError:
        return
    assert all(FLAG.match(name) for name in decoded.supported)
