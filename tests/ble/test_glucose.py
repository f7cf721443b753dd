"""Glucose Measurement / Context / Feature: byte vectors checked by hand against GLS 1.0 and the
GATT Specification Supplement, plus Nordic's Android-BLE-Common-Library test vectors
(ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/glucose/*Test.java)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders import REGISTRY
from device.ble.decoders.glucose import (
    FEATURE_NAMES,
    SENSOR_STATUS_FLAGS,
    GlucoseUnit,
    MedicationUnit,
    SampleLocation,
    SampleType,
    context_flags,
    context_readings,
    decode_context,
    decode_feature,
    decode_measurement,
    measurement_readings,
    scaled,
)
from device.ble.errors import DecodeError
from device.ble.ieee11073 import Number, Special
from device.ble.reader import DateTime
from device.ble.readings import Reading
from device.protocol.vitals import VITALS
from tests.ble.protocol_checks import FLAG, accepted_by_protocol

# Base Time 2019-02-27 11:10:30: year 0x07E3 little-endian, month 2, day 27, 11, 10, 30.
BASE_TIME = bytes.fromhex("e307021b0b0a1e")
BASE = DateTime(2019, 2, 27, 11, 10, 30)

SPECIALS = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.POSITIVE_INFINITY,
    0x0802: Special.NEGATIVE_INFINITY,
    0x0801: Special.RESERVED,
}


def measurement(
    flags: int,
    *,
    offset: bytes = b"\xfb\xff",  # -5 min
    concentration: bytes = b"\x0c\xc0",  # 0xC00C = 12e-4: 0.0012 kg/L = 120 mg/dL
    tsl: int = 0x11,  # capillary whole blood, finger
    status: bytes = b"\x05\x01",  # 0x0105: bits 0, 2, 8
    sequence: bytes = b"\x01\x00",
    base: bytes = BASE_TIME,
) -> bytes:
    """Fields in GLS order, each only when its flag bit says so (bits 2 and 4 add no field)."""
    value = bytes([flags]) + sequence + base
    if flags & 0x01:
        value += offset
    if flags & 0x02:
        value += concentration + bytes([tsl])
    if flags & 0x08:
        value += status
    return value


# --- Glucose Measurement: published vector --------------------------------------------------


def test_nordic_vector_all_fields_kg_per_litre() -> None:
    # GlucoseMeasurementDataCallbackTest.onGlucoseMeasurementReceived: flags 0b011011 = time offset,
    # concentration+type+location, kg/L, status annunciation, context follows. Seq 1, 2019-02-27 11:10:30,
    # offset 0xFFFB = -5 min, concentration 0x001E = 30 (exponent 0) kg/L, 0x12 = type 2 (capillary plasma)
    # in the low nibble, location 1 (finger) in the high one; status 0x0105 = bits 0, 2, 8.
    data = bytes([0b011011, 1, 0, 0xE3, 0x07, 2, 27, 11, 10, 30, 0xFB, 0xFF, 30, 0, 0x12, 0b101, 0b1])
    m = decode_measurement(data)
    assert m.flags == 0x1B
    assert m.sequence_number == 1
    assert m.base_time == BASE
    assert m.time_offset_min == -5
    assert m.concentration == Number(30.0, 0)
    assert m.unit is GlucoseUnit.KG_PER_L
    assert m.sample_type == SampleType.CAPILLARY_PLASMA
    assert m.sample_location == SampleLocation.FINGER
    assert m.sensor_status == 0x0105
    assert m.status_flags == ("device_battery_low", "sample_size_insufficient", "sensor_temperature_too_low")
    assert m.context_follows
    # Nordic asserts the minute of base time + offset: 11:10:30 - 5 min = 11:05:30.
    assert (m.base_time.naive() + timedelta(minutes=m.time_offset_min)).minute == 5
    # 30 kg/L is the vector's arbitrary number: 30 * 10^5 mg/dL, exactly.
    (reading,) = measurement_readings(m)
    assert reading.value == 3_000_000.0


def test_nordic_vector_time_offset_missing_is_refused() -> None:
    # GlucoseMeasurementDataCallbackTest.onInvalidDataReceived: flags announce a time offset, the
    # value lacks it, so the status annunciation runs out of bytes.
    data = bytes([0b011011, 0, 0, 0xE2, 0x07, 4, 26, 11, 9, 30, 30, 0, 0x12, 0b101, 0b1])
    with pytest.raises(DecodeError, match="sensor status annunciation"):
        decode_measurement(data)


# --- Glucose Measurement: every flag combination ---------------------------------------------


@pytest.mark.parametrize("flags", range(0x20))
def test_every_flag_combination(flags: int) -> None:
    m = decode_measurement(measurement(flags))
    assert m.flags == flags
    assert m.sequence_number == 1
    assert m.base_time == BASE
    assert m.time_offset_min == (-5 if flags & 0x01 else None)
    if flags & 0x02:
        assert m.concentration == Number(0.0012, -4)  # 0xC00C: mantissa 12, exponent -4
        assert m.unit is (GlucoseUnit.MOL_PER_L if flags & 0x04 else GlucoseUnit.KG_PER_L)
        assert (m.sample_type, m.sample_location) == (1, 1)
    else:
        assert (m.concentration, m.unit, m.sample_type, m.sample_location) == (None, None, None, None)
    assert m.sensor_status == (0x0105 if flags & 0x08 else None)
    assert m.context_follows == bool(flags & 0x10)


@pytest.mark.parametrize("flags", range(0x20))
def test_every_flag_combination_truncated_by_one_byte_is_refused(flags: int) -> None:
    with pytest.raises(DecodeError):
        decode_measurement(measurement(flags)[:-1])


@pytest.mark.parametrize("rfu", [0x20, 0x40, 0x80, 0xE0])
def test_rfu_flag_bits_are_kept_not_refused(rfu: int) -> None:
    m = decode_measurement(measurement(0x0B | rfu))
    assert m.flags == 0x0B | rfu
    assert m.time_offset_min == -5
    assert m.sensor_status == 0x0105


def test_bytes_after_the_last_field_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"expected 17 byte\(s\) for flags 0x0b, got 19 \(2 byte\(s\) too many"):
        decode_measurement(measurement(0x0B) + b"\xaa\xbb")


def test_empty_and_short_values_are_refused() -> None:
    for data in (b"", b"\x00", b"\x00\x01\x00", b"\x00\x01\x00" + BASE_TIME[:-1]):
        with pytest.raises(DecodeError):
            decode_measurement(data)


# --- time -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "minutes"),
    [
        (b"\x00\x00", 0),
        (b"\x3c\x00", 60),
        (b"\xfb\xff", -5),  # two's complement of 5
        (b"\x88\xff", -120),
        (b"\xff\x7f", 32767),
        (b"\x00\x80", -32768),
    ],
)
def test_time_offset_is_signed_minutes(raw: bytes, minutes: int) -> None:
    m = decode_measurement(measurement(0x01, offset=raw))
    assert m.time_offset_min == minutes


def test_negative_time_offset_travels_to_the_reading() -> None:
    (reading,) = measurement_readings(decode_measurement(measurement(0x03, offset=b"\x88\xff")))
    assert reading.device_time == BASE
    assert reading.time_offset_min == -120


def test_unknown_year_month_day() -> None:
    # Year 0, month 0, day 0 mean "not known" (Date Time characteristic); the time of day stays.
    m = decode_measurement(measurement(0x02, base=bytes.fromhex("000000000b0a1e")))
    assert m.base_time == DateTime(None, None, None, 11, 10, 30)
    assert not m.base_time.complete
    (reading,) = measurement_readings(m)
    assert reading.device_time == m.base_time


def test_unknown_year_only() -> None:
    m = decode_measurement(measurement(0x00, base=bytes.fromhex("0000021b0b0a1e")))
    assert m.base_time == DateTime(None, 2, 27, 11, 10, 30)


@pytest.mark.parametrize(
    "base",
    [
        bytes.fromhex("e3070d1b0b0a1e"),  # month 13
        bytes.fromhex("e3070220010000"),  # day 32
        bytes.fromhex("e307021b180000"),  # hour 24
        bytes.fromhex("0106021b0b0a1e"),  # year 1537, before 1582
    ],
)
def test_impossible_base_time_is_refused(base: bytes) -> None:
    with pytest.raises(DecodeError, match="base time"):
        decode_measurement(measurement(0x00, base=base))


# --- concentration and units -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "raw", "code", "unit", "value", "decimals"),
    [
        # 0xC00C = 12e-4 kg/L = 0.0012 kg/L = 120 mg/dL; 0.0012 * 1e5 in floats is 119.99999999999999.
        (0x02, b"\x0c\xc0", "41653-7", "mg/dL", 120.0, 0),
        # 0xB078 = 120e-5 kg/L = 120 mg/dL.
        (0x02, b"\x78\xb0", "41653-7", "mg/dL", 120.0, 0),
        # 0xA04D = 77e-6 kg/L = 7.7 mg/dL (one decimal kept).
        (0x02, b"\x4d\xa0", "41653-7", "mg/dL", 7.7, 1),
        # 0xC047 = 71e-4 mol/L = 7.1 mmol/L; 0.0071 * 1000 in floats is 7.1000000000000005.
        (0x06, b"\x47\xc0", "14743-9", "mmol/L", 7.1, 1),
        # 0xB22B = 555e-5 mol/L = 5.55 mmol/L.
        (0x06, b"\x2b\xb2", "14743-9", "mmol/L", 5.55, 2),
        # 0xD006 = 6e-3 mol/L = 6 mmol/L, no decimals.
        (0x06, b"\x06\xd0", "14743-9", "mmol/L", 6.0, 0),
    ],
)
def test_units_convert_on_the_mantissa(
    *, flags: int, raw: bytes, code: str, unit: str, value: float, decimals: int
) -> None:
    (reading,) = measurement_readings(decode_measurement(measurement(flags, concentration=raw)))
    assert (reading.code, reading.unit, reading.value, reading.decimals) == (code, unit, value, decimals)
    accepted_by_protocol(reading)


def test_full_reading() -> None:
    (reading,) = measurement_readings(decode_measurement(measurement(0x0B)))
    assert reading == Reading(
        code="41653-7",
        value=120.0,
        unit="mg/dL",
        flags=(
            "device_battery_low",
            "sample_size_insufficient",
            "sensor_temperature_too_low",
            "sample_type_capillary_whole_blood",
            "sample_location_finger",
        ),
        device_time=BASE,
        time_offset_min=-5,
        sequence=1,
        decimals=0,
    )
    accepted_by_protocol(reading)


def test_every_annunciation_bit_at_once_still_fits_the_protocol() -> None:
    (reading,) = measurement_readings(decode_measurement(measurement(0x0A, status=b"\xff\xff")))
    assert len(reading.flags) == 12 + 2  # 12 defined bits, sample type and location: no truncation
    assert "flags_truncated" not in reading.flags
    accepted_by_protocol(reading)


def test_sequence_number_is_the_reading_sequence() -> None:
    (reading,) = measurement_readings(decode_measurement(measurement(0x02, sequence=b"\x34\x12")))
    assert reading.sequence == 0x1234


@pytest.mark.parametrize(("raw", "special"), SPECIALS.items())
def test_special_concentration_gives_no_reading(raw: int, special: Special) -> None:
    m = decode_measurement(measurement(0x0A, concentration=raw.to_bytes(2, "little")))
    assert m.concentration is special
    assert measurement_readings(m) == []


def test_no_concentration_gives_no_reading() -> None:
    assert measurement_readings(decode_measurement(measurement(0x19))) == []


@pytest.mark.parametrize("exponent_nibble", range(16))
def test_scaled_matches_exact_decimal_arithmetic(exponent_nibble: int) -> None:
    from decimal import Decimal

    from device.ble.ieee11073 import sfloat

    number = sfloat(exponent_nibble << 12 | 0x07D3)  # mantissa 2003
    assert isinstance(number, Number)
    for places in (3, 5):
        expected = Decimal(2003).scaleb(number.exponent + places)
        assert scaled(number, places).value == float(expected)


# --- sample type and location ----------------------------------------------------------------


@pytest.mark.parametrize("sample_type", [t for t in SampleType if t != SampleType.CONTROL_SOLUTION])
def test_each_sample_type_is_a_flag(sample_type: SampleType) -> None:
    m = decode_measurement(measurement(0x02, tsl=0xF0 | sample_type))
    assert m.sample_type == sample_type
    assert m.sample_location == SampleLocation.NOT_AVAILABLE
    (reading,) = measurement_readings(m)
    assert reading.flags == (f"sample_type_{sample_type.name.lower()}",)


@pytest.mark.parametrize(
    ("location", "flag"),
    [(1, "sample_location_finger"), (2, "sample_location_alternate_site"), (3, "sample_location_earlobe")],
)
def test_each_sample_location_is_a_flag(location: int, flag: str) -> None:
    (reading,) = measurement_readings(decode_measurement(measurement(0x02, tsl=location << 4 | 2)))
    assert reading.flags == ("sample_type_capillary_plasma", flag)


@pytest.mark.parametrize("tsl", [0x0A, 0x4A, 0x41, 0x42])
def test_control_solution_is_never_a_patient_reading(tsl: int) -> None:
    # Type 10 (control solution) in the low nibble, or location 4 (control solution) in the high one.
    m = decode_measurement(measurement(0x02, tsl=tsl))
    assert m.concentration == Number(0.0012, -4)
    assert measurement_readings(m) == []


@pytest.mark.parametrize("tsl", [0x00, 0x0B, 0x0F, 0x60, 0xE1])
def test_reserved_type_and_location_are_kept_without_a_flag(tsl: int) -> None:
    m = decode_measurement(measurement(0x02, tsl=tsl))
    assert (m.sample_type, m.sample_location) == (tsl & 0x0F, tsl >> 4)
    (reading,) = measurement_readings(m)
    assert all(not f.startswith("sample_location") for f in reading.flags)
    assert reading.flags in ((), ("sample_type_capillary_whole_blood",))


# --- sensor status annunciation ---------------------------------------------------------------


@pytest.mark.parametrize(("bit", "flag"), SENSOR_STATUS_FLAGS)
def test_each_annunciation_bit(bit: int, flag: str) -> None:
    m = decode_measurement(measurement(0x0A, status=(1 << bit).to_bytes(2, "little"), tsl=0xF0))
    assert m.status_flags == (flag,)
    (reading,) = measurement_readings(m)
    assert reading.flags == (flag,)


def test_annunciation_names_match_spec_order() -> None:
    # GLS Sensor Status Annunciation, bits 0..11 in order.
    assert [name for _, name in SENSOR_STATUS_FLAGS] == [
        "device_battery_low",
        "sensor_malfunction",
        "sample_size_insufficient",
        "strip_insertion_error",
        "strip_type_incorrect",
        "result_above_device_range",
        "result_below_device_range",
        "sensor_temperature_too_high",
        "sensor_temperature_too_low",
        "strip_pulled_too_soon",
        "general_device_fault",
        "time_fault",
    ]


@pytest.mark.parametrize("bit", range(12, 16))
def test_rfu_annunciation_bits_are_kept_without_a_flag(bit: int) -> None:
    m = decode_measurement(measurement(0x0A, status=(1 << bit).to_bytes(2, "little"), tsl=0xF0))
    assert m.sensor_status == 1 << bit
    assert m.status_flags == ()


def test_all_flag_names_are_valid() -> None:
    from device.ble.decoders.glucose import SAMPLE_LOCATION_FLAGS, SAMPLE_TYPE_FLAGS

    names = [n for _, n in SENSOR_STATUS_FLAGS] + list(SAMPLE_TYPE_FLAGS.values())
    names += list(SAMPLE_LOCATION_FLAGS.values())
    assert all(FLAG.match(n) for n in names)
    assert len(set(names)) == len(names)


# --- Glucose Measurement Context -------------------------------------------------------------

# Per-flag fields, in GLS order (extended flags come right after the sequence number).
CONTEXT_FIELDS: list[tuple[int, bytes]] = [
    (0x80, b"\xb3"),  # extended flags, all RFU
    (0x01, b"\x01\x64\xd0"),  # carbohydrate id 1 (breakfast), 0xD064 = 100e-3 kg
    (0x02, b"\x03"),  # meal 3 (fasting)
    (0x04, b"\x51"),  # tester 1 (self) low nibble, health 5 (no issues) high nibble
    (0x08, b"\x08\x07\x32"),  # exercise 0x0708 = 1800 s, intensity 0x32 = 50 %
    (0x10, b"\x01\x7b\xc0"),  # medication id 1 (rapid acting insulin), 0xC07B = 123e-4 (kg or L, bit 5)
    (0x40, b"\x41\xf0"),  # HbA1c 0xF041 = 65e-1 = 6.5 %
]


def context(flags: int) -> bytes:
    return bytes([flags]) + b"\x07\x00" + b"".join(chunk for bit, chunk in CONTEXT_FIELDS if flags & bit)


@pytest.mark.parametrize("flags", range(0x100))
def test_context_every_flag_combination(flags: int) -> None:
    c = decode_context(context(flags))
    assert c.flags == flags
    assert c.sequence_number == 7
    assert c.extended_flags == (0xB3 if flags & 0x80 else None)
    assert (c.carbohydrate_id, c.carbohydrate_kg) == ((1, Number(0.1, -3)) if flags & 0x01 else (None, None))
    assert c.meal == (3 if flags & 0x02 else None)
    assert (c.tester, c.health) == ((1, 5) if flags & 0x04 else (None, None))
    assert (c.exercise_duration_s, c.exercise_intensity_pct) == ((1800, 50) if flags & 0x08 else (None, None))
    if flags & 0x10:
        assert (c.medication_id, c.medication) == (1, Number(0.0123, -4))
        assert c.medication_unit is (MedicationUnit.LITRE if flags & 0x20 else MedicationUnit.KILOGRAM)
    else:
        assert (c.medication_id, c.medication, c.medication_unit) == (None, None, None)
    assert c.hba1c_pct == (Number(6.5, -1) if flags & 0x40 else None)
    assert context_readings(c) == []
    if flags & ~0x20:  # at least one field announced (bit 5 alone announces none)
        with pytest.raises(DecodeError):
            decode_context(context(flags)[:-1])


def test_context_nordic_layout_full() -> None:
    # Field layout of GlucoseMeasurementContextDataCallbackTest.onGlucoseMeasurementContextReceived_full:
    # flags 0xFF, seq 0, extended flags 0xB3, carbohydrate 3 (dinner), meal 4 (casual), tester-health
    # 0x12 (health care professional, minor issues), 60 s at 50 %, medication 4 (long acting insulin),
    # 17 octets in all. The SFLOATs are written by hand here: 0xD064 = 100 g, 0xC4D2 = 1234e-4 L,
    # 0xF159 = 345e-1 = 34.5 %.
    data = bytes.fromhex("ff0000b30364d004123c003204d2c459f1")
    assert len(data) == 17
    c = decode_context(data)
    assert (c.sequence_number, c.extended_flags, c.carbohydrate_id, c.meal) == (0, 0xB3, 3, 4)
    assert (c.tester, c.health) == (2, 1)
    assert (c.exercise_duration_s, c.exercise_intensity_pct) == (60, 50)
    assert (c.medication_id, c.medication, c.medication_unit) == (4, Number(0.1234, -4), MedicationUnit.LITRE)
    assert c.hba1c_pct == Number(34.5, -1)
    assert context_flags(c) == ("meal_casual", "tester_health_care_professional", "health_minor_issues")


def test_context_nordic_invalid() -> None:
    # onInvalidDataReceived: flags 0xFF but only 5 octets, the carbohydrate SFLOAT is cut.
    with pytest.raises(DecodeError, match="carbohydrate"):
        decode_context(bytes([0xFF, 0, 0, 0xB3, 3]))


def test_context_exercise_overrun_is_kept() -> None:
    c = decode_context(bytes.fromhex("080100ffff64"))
    assert (c.exercise_duration_s, c.exercise_intensity_pct) == (0xFFFF, 100)


@pytest.mark.parametrize(("raw", "special"), SPECIALS.items())
def test_context_special_values_are_kept(raw: int, special: Special) -> None:
    sf = raw.to_bytes(2, "little")
    c = decode_context(bytes([0x51, 0, 0, 1]) + sf + bytes([1]) + sf + sf)
    assert (c.carbohydrate_kg, c.medication, c.hba1c_pct) == (special, special, special)


def test_context_flags_skip_unknown_values() -> None:
    c = decode_context(bytes.fromhex("060000") + bytes([9, 0xFF]))  # meal 9 (RFU), tester/health 15 (n/a)
    assert (c.meal, c.tester, c.health) == (9, 15, 15)
    assert context_flags(c) == ()
    with pytest.raises(DecodeError, match=r"Glucose Measurement Context: expected 3 byte\(s\) for flags 0x00, got 5"):
        decode_context(bytes.fromhex("0000001122"))


# --- Glucose Feature ---------------------------------------------------------------------------


def test_feature_nordic_vector() -> None:
    # GlucoseFeatureDataCallbackTest: 0b11110000, 0b00000011 -> 0x03F0 = bits 4..9.
    f = decode_feature(bytes([0b11110000, 0b00000011]))
    assert f.features == 0x03F0
    assert f.supported == (
        "sensor_strip_type_error_detection",
        "sensor_result_high_low_detection",
        "sensor_temperature_high_low_detection",
        "sensor_read_interrupt_detection",
        "general_device_fault",
        "time_fault",
    )


@pytest.mark.parametrize(("bit", "name"), FEATURE_NAMES)
def test_feature_each_bit(bit: int, name: str) -> None:
    assert decode_feature((1 << bit).to_bytes(2, "little")).supported == (name,)


def test_feature_rfu_is_kept_and_other_lengths_refused() -> None:
    f = decode_feature(b"\x00\xf8")
    assert (f.features, f.supported) == (0xF800, ())
    for data in (b"", b"\x01", b"\x00\xf8\x01"):
        with pytest.raises(DecodeError):
            decode_feature(data)


def test_registered() -> None:
    assert REGISTRY[0x2A18].decode is decode_measurement
    assert REGISTRY[0x2A18].readings is measurement_readings
    assert REGISTRY[0x2A34].decode is decode_context
    assert REGISTRY[0x2A51].decode is decode_feature
    assert REGISTRY[0x2A51].readings(decode_feature(b"\x00\x00")) == []


# --- properties --------------------------------------------------------------------------------


def _readings_are_sane(readings: list[Reading]) -> None:
    for reading in readings:
        assert all(FLAG.match(flag) for flag in reading.flags)
        assert len(reading.flags) <= 16
        assert reading.unit in VITALS[reading.code].units


@given(st.binary(max_size=64))
def test_measurement_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_measurement(data)
    except DecodeError:
        return
    _readings_are_sane(measurement_readings(decoded))


@given(st.binary(max_size=64))
def test_context_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode_context(data)
    except DecodeError:
        return
    assert context_readings(decoded) == []
    assert all(FLAG.match(flag) for flag in context_flags(decoded))


@given(st.binary(max_size=64))
def test_feature_arbitrary_bytes(data: bytes) -> None:
    try:
        decode_feature(data)
    except DecodeError:
        return


@given(
    flags=st.integers(0, 0xFF),
    sequence=st.integers(0, 0xFFFF),
    offset=st.integers(-0x8000, 0x7FFF),
    concentration=st.integers(0, 0xFFFF),
    tsl=st.integers(0, 0xFF),
    status=st.integers(0, 0xFFFF),
)
def test_measurement_fields_round_trip(
    *, flags: int, sequence: int, offset: int, concentration: int, tsl: int, status: int
) -> None:
    data = measurement(
        flags,
        sequence=sequence.to_bytes(2, "little"),
        offset=offset.to_bytes(2, "little", signed=True),
        concentration=concentration.to_bytes(2, "little"),
        tsl=tsl,
        status=status.to_bytes(2, "little"),
    )
    m = decode_measurement(data)
    assert m.sequence_number == sequence
    assert m.time_offset_min == (offset if flags & 0x01 else None)
    assert m.sample_type == (tsl & 0x0F if flags & 0x02 else None)
    assert m.sensor_status == (status if flags & 0x08 else None)
    readings = measurement_readings(m)
    _readings_are_sane(readings)
    for reading in readings:
        assert reading.sequence == sequence
