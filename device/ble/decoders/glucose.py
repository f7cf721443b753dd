"""Glucose Service (GLS 1.0): Glucose Measurement 0x2A18, Glucose Measurement Context 0x2A34, Glucose Feature 0x2A51.

A glucose meter keeps numbered records and the kiosk downloads them through the Record
Access Control Point (see `racp`), so a measurement's sequence number is what lets the
collector skip records it already has. The concentration comes in SI units (kg/L or mol/L),
which nobody reads: the mapping converts to mg/dL or mmol/L on the SFLOAT's own mantissa
and exponent, so 0.000120 kg/L becomes exactly 120 mg/dL rather than 119.99999999999999.

Layouts: Glucose Service 1.0, section 3 (the characteristics), as restated in the GATT
Specification Supplement under each characteristic's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import Field, Layout, check, finish
from device.ble.ieee11073 import Measured, Number
from device.ble.reader import DateTime, Reader
from device.ble.readings import Reading

# LOINC codes the HL7 FHIR PHD IG uses for a glucometer result, one per unit.
GLUCOSE_MASS_LOINC = "41653-7"  # Glucose [Mass/volume] in Capillary blood by Glucometer
GLUCOSE_MOLAR_LOINC = "14743-9"  # Glucose [Moles/volume] in Capillary blood by Glucometer


class GlucoseUnit(StrEnum):
    KG_PER_L = "kg/L"
    MOL_PER_L = "mol/L"


class SampleType(IntEnum):
    """Low nibble of the Type-Sample Location octet (shared with CGMS)."""

    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class SampleLocation(IntEnum):
    """High nibble of the Type-Sample Location octet; 5 is defined by CGMS only, 15 means "not available"."""

    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    SUBCUTANEOUS_TISSUE = 5
    NOT_AVAILABLE = 15


SAMPLE_TYPE_FLAGS: dict[int, str] = {t.value: f"sample_type_{t.name.lower()}" for t in SampleType}
SAMPLE_LOCATION_FLAGS: dict[int, str] = {
    SampleLocation.FINGER: "sample_location_finger",
    SampleLocation.ALTERNATE_SITE_TEST: "sample_location_alternate_site",
    SampleLocation.EARLOBE: "sample_location_earlobe",
    SampleLocation.CONTROL_SOLUTION: "sample_location_control_solution",
    SampleLocation.SUBCUTANEOUS_TISSUE: "sample_location_subcutaneous_tissue",
}

# Sensor Status Annunciation (16 bits); bits 12-15 are RFU and give no flag.
SENSOR_STATUS_FLAGS: tuple[tuple[int, str], ...] = (
    (0, "device_battery_low"),
    (1, "sensor_malfunction"),
    (2, "sample_size_insufficient"),
    (3, "strip_insertion_error"),
    (4, "strip_type_incorrect"),
    (5, "result_above_device_range"),
    (6, "result_below_device_range"),
    (7, "sensor_temperature_too_high"),
    (8, "sensor_temperature_too_low"),
    (9, "strip_pulled_too_soon"),
    (10, "general_device_fault"),
    (11, "time_fault"),
)

FEATURE_NAMES: tuple[tuple[int, str], ...] = (
    (0, "low_battery_detection"),
    (1, "sensor_malfunction_detection"),
    (2, "sensor_sample_size"),
    (3, "sensor_strip_insertion_error_detection"),
    (4, "sensor_strip_type_error_detection"),
    (5, "sensor_result_high_low_detection"),
    (6, "sensor_temperature_high_low_detection"),
    (7, "sensor_read_interrupt_detection"),
    (8, "general_device_fault"),
    (9, "time_fault"),
    (10, "multiple_bond"),
)

_TIME_OFFSET_PRESENT = 0x01
_CONCENTRATION_PRESENT = 0x02
_UNIT_MOL_PER_L = 0x04
_STATUS_PRESENT = 0x08
_CONTEXT_FOLLOWS = 0x10

MEASUREMENT_LAYOUT: Layout = (
    Field("flags", 1),
    Field("sequence number", 2),
    Field("base time", 7),
    Field("time offset", 2, _TIME_OFFSET_PRESENT),
    Field("glucose concentration", 2, _CONCENTRATION_PRESENT),
    Field("type-sample location", 1, _CONCENTRATION_PRESENT),
    Field("sensor status annunciation", 2, _STATUS_PRESENT),
)


def bit_names(value: int, table: tuple[tuple[int, str], ...]) -> tuple[str, ...]:
    """Names of the set bits a table knows, in bit order; bits it does not know (RFU) give none."""
    return tuple(name for bit, name in table if value >> bit & 1)


# The protocol's Observation carries at most 16 flags; a reading with more would be refused whole.
MAX_FLAGS = 16
FLAGS_TRUNCATED = "flags_truncated"


def capped(flags: tuple[str, ...]) -> tuple[str, ...]:
    """At most MAX_FLAGS, the last one saying some were dropped: better than losing the reading.

    Only a faulty device sets that many status bits at once (PLX and CGM define more than 16).
    """
    if len(flags) <= MAX_FLAGS:
        return flags
    return (*flags[: MAX_FLAGS - 1], FLAGS_TRUNCATED)


def split_nibbles(octet: int) -> tuple[int, int]:
    """(low, high): the SIG packs Type in the low nibble and Sample Location in the high one."""
    return octet & 0x0F, octet >> 4


@dataclass(frozen=True)
class GlucoseMeasurement:
    flags: int
    sequence_number: int
    base_time: DateTime
    time_offset_min: int | None  # sint16, minutes to add to base_time
    concentration: Measured | None  # in `unit`
    unit: GlucoseUnit | None  # set when the concentration is present
    sample_type: int | None  # SampleType value, or an RFU nibble kept as sent
    sample_location: int | None  # SampleLocation value, or an RFU nibble kept as sent
    sensor_status: int | None  # 16-bit annunciation, RFU bits included

    @property
    def context_follows(self) -> bool:
        """A Glucose Measurement Context with the same sequence number comes next."""
        return bool(self.flags & _CONTEXT_FOLLOWS)

    @property
    def status_flags(self) -> tuple[str, ...]:
        return bit_names(self.sensor_status or 0, SENSOR_STATUS_FLAGS)


def decode_measurement(data: bytes) -> GlucoseMeasurement:
    check(data, "Glucose Measurement", MEASUREMENT_LAYOUT, flags_at=0)
    r = Reader(data, "Glucose Measurement")
    flags = r.u8("flags")
    sequence = r.u16("sequence number")
    base_time = r.date_time("base time")
    offset = r.s16("time offset") if flags & _TIME_OFFSET_PRESENT else None
    concentration: Measured | None = None
    unit: GlucoseUnit | None = None
    sample_type: int | None = None
    location: int | None = None
    if flags & _CONCENTRATION_PRESENT:
        concentration = r.sfloat("glucose concentration")
        unit = GlucoseUnit.MOL_PER_L if flags & _UNIT_MOL_PER_L else GlucoseUnit.KG_PER_L
        sample_type, location = split_nibbles(r.u8("type-sample location"))
    status = r.u16("sensor status annunciation") if flags & _STATUS_PRESENT else None
    finish(r)
    return GlucoseMeasurement(flags, sequence, base_time, offset, concentration, unit, sample_type, location, status)


def scaled(number: Number, places: int) -> Number:
    """number * 10**places, done on the decimal mantissa so no binary float noise creeps in.

    SFLOAT mantissas have at most 4 digits, so rounding value·10^-exponent recovers the
    mantissa exactly; the result is then the float nearest mantissa·10^(exponent+places).
    """
    if number.exponent < 0:
        mantissa = round(number.value * 10**-number.exponent)
    else:
        mantissa = round(number.value / 10**number.exponent)
    exponent = number.exponent + places
    value = mantissa / 10**-exponent if exponent < 0 else float(mantissa * 10**exponent)
    return Number(value, exponent)


# kg/L -> mg/dL: 1 kg/L = 10^6 mg per 10 dL = 10^5 mg/dL. mol/L -> mmol/L: 10^3.
_CONVERSION: dict[GlucoseUnit, tuple[str, str, int]] = {
    GlucoseUnit.KG_PER_L: (GLUCOSE_MASS_LOINC, "mg/dL", 5),
    GlucoseUnit.MOL_PER_L: (GLUCOSE_MOLAR_LOINC, "mmol/L", 3),
}


def is_control_solution(sample_type: int | None, sample_location: int | None) -> bool:
    """A control-solution test checks the meter, not the patient: it must never become a patient vital."""
    return sample_type == SampleType.CONTROL_SOLUTION or sample_location == SampleLocation.CONTROL_SOLUTION


def sample_flags(sample_type: int | None, sample_location: int | None) -> tuple[str, ...]:
    """Reading has no specimen field, so the specimen travels as flags (RFU and "not available" give none)."""
    found = (SAMPLE_TYPE_FLAGS.get(sample_type or 0), SAMPLE_LOCATION_FLAGS.get(sample_location or 0))
    return tuple(flag for flag in found if flag is not None)


def measurement_readings(decoded: GlucoseMeasurement) -> list[Reading]:
    """One glucose reading, or none: no concentration sent, a special value, or a control-solution test.

    The LOINC codes are the glucometer ones whatever the sample type; the sample type and
    location travel as flags (e.g. sample_type_venous_plasma) so a reviewer can tell them apart.
    """
    concentration = decoded.concentration
    if not isinstance(concentration, Number) or decoded.unit is None:
        return []
    if is_control_solution(decoded.sample_type, decoded.sample_location):
        return []
    code, unit, places = _CONVERSION[decoded.unit]
    value = scaled(concentration, places)
    return [
        Reading(
            code=code,
            value=value.value,
            unit=unit,
            flags=capped(decoded.status_flags + sample_flags(decoded.sample_type, decoded.sample_location)),
            device_time=decoded.base_time,
            time_offset_min=decoded.time_offset_min,
            sequence=decoded.sequence_number,
            decimals=value.decimals,
        )
    ]


# --- Glucose Measurement Context -------------------------------------------------------------


class MedicationUnit(StrEnum):
    KILOGRAM = "kg"
    LITRE = "L"


CARBOHYDRATE_NAMES = {1: "breakfast", 2: "lunch", 3: "dinner", 4: "snack", 5: "drink", 6: "supper", 7: "brunch"}
MEAL_NAMES = {1: "preprandial", 2: "postprandial", 3: "fasting", 4: "casual", 5: "bedtime"}
TESTER_NAMES = {1: "self", 2: "health_care_professional", 3: "lab_test"}  # 15: not available
HEALTH_NAMES = {1: "minor_issues", 2: "major_issues", 3: "during_menses", 4: "under_stress", 5: "no_issues"}
MEDICATION_NAMES = {
    1: "rapid_acting_insulin",
    2: "short_acting_insulin",
    3: "intermediate_acting_insulin",
    4: "long_acting_insulin",
    5: "pre_mixed_insulin",
}

_CARBOHYDRATE_PRESENT = 0x01
_MEAL_PRESENT = 0x02
_TESTER_HEALTH_PRESENT = 0x04
_EXERCISE_PRESENT = 0x08
_MEDICATION_PRESENT = 0x10
_MEDICATION_LITRES = 0x20
_HBA1C_PRESENT = 0x40
_EXTENDED_FLAGS_PRESENT = 0x80

EXERCISE_DURATION_OVERRUN = 0xFFFF

CONTEXT_LAYOUT: Layout = (
    Field("flags", 1),
    Field("sequence number", 2),
    Field("extended flags", 1, _EXTENDED_FLAGS_PRESENT),
    Field("carbohydrate id", 1, _CARBOHYDRATE_PRESENT),
    Field("carbohydrate", 2, _CARBOHYDRATE_PRESENT),
    Field("meal", 1, _MEAL_PRESENT),
    Field("tester-health", 1, _TESTER_HEALTH_PRESENT),
    Field("exercise duration", 2, _EXERCISE_PRESENT),
    Field("exercise intensity", 1, _EXERCISE_PRESENT),
    Field("medication id", 1, _MEDICATION_PRESENT),
    Field("medication", 2, _MEDICATION_PRESENT),
    Field("HbA1c", 2, _HBA1C_PRESENT),
)


@dataclass(frozen=True)
class GlucoseContext:
    flags: int
    sequence_number: int  # the Glucose Measurement this context belongs to
    extended_flags: int | None  # all bits RFU in GLS 1.0
    carbohydrate_id: int | None
    carbohydrate_kg: Measured | None
    meal: int | None
    tester: int | None  # low nibble
    health: int | None  # high nibble
    exercise_duration_s: int | None  # 0xFFFF: overrun
    exercise_intensity_pct: int | None
    medication_id: int | None
    medication: Measured | None  # in medication_unit
    medication_unit: MedicationUnit | None
    hba1c_pct: Measured | None


def decode_context(data: bytes) -> GlucoseContext:
    check(data, "Glucose Measurement Context", CONTEXT_LAYOUT, flags_at=0)
    r = Reader(data, "Glucose Measurement Context")
    flags = r.u8("flags")
    sequence = r.u16("sequence number")
    extended = r.u8("extended flags") if flags & _EXTENDED_FLAGS_PRESENT else None
    carb_id = carb = None
    if flags & _CARBOHYDRATE_PRESENT:
        carb_id, carb = r.u8("carbohydrate id"), r.sfloat("carbohydrate")
    meal = r.u8("meal") if flags & _MEAL_PRESENT else None
    tester = health = None
    if flags & _TESTER_HEALTH_PRESENT:
        tester, health = split_nibbles(r.u8("tester-health"))
    duration = intensity = None
    if flags & _EXERCISE_PRESENT:
        duration, intensity = r.u16("exercise duration"), r.u8("exercise intensity")
    med_id = medication = med_unit = None
    if flags & _MEDICATION_PRESENT:
        med_id, medication = r.u8("medication id"), r.sfloat("medication")
        med_unit = MedicationUnit.LITRE if flags & _MEDICATION_LITRES else MedicationUnit.KILOGRAM
    hba1c = r.sfloat("HbA1c") if flags & _HBA1C_PRESENT else None
    finish(r)
    return GlucoseContext(
        flags,
        sequence,
        extended,
        carb_id,
        carb,
        meal,
        tester,
        health,
        duration,
        intensity,
        med_id,
        medication,
        med_unit,
        hba1c,
    )


def context_flags(context: GlucoseContext) -> tuple[str, ...]:
    """Meal, tester and health as flags, for the collector to add to the reading with the same sequence number.

    The context arrives as its own notification after the measurement, so it cannot be
    folded into `measurement_readings`; fasting vs after-meal is what a reviewer needs most.
    """
    found = (
        _named("meal", MEAL_NAMES, context.meal),
        _named("tester", TESTER_NAMES, context.tester),
        _named("health", HEALTH_NAMES, context.health),
    )
    return tuple(flag for flag in found if flag is not None)


def _named(prefix: str, names: dict[int, str], value: int | None) -> str | None:
    name = names.get(value) if value is not None else None
    return f"{prefix}_{name}" if name is not None else None


def context_readings(_decoded: GlucoseContext) -> list[Reading]:
    """No vitals of its own: carbohydrates, exercise and medication are patient-entered diary data,
    and HbA1c from a meter's context is not a lab result. Use `context_flags` for the meal context."""
    return []


# --- Glucose Feature -------------------------------------------------------------------------


@dataclass(frozen=True)
class GlucoseFeature:
    features: int  # 16 bits, RFU bits kept

    @property
    def supported(self) -> tuple[str, ...]:
        return bit_names(self.features, FEATURE_NAMES)


FEATURE_LAYOUT: Layout = (Field("features", 2),)


def decode_feature(data: bytes) -> GlucoseFeature:
    check(data, "Glucose Feature", FEATURE_LAYOUT)
    return GlucoseFeature(Reader(data, "Glucose Feature").u16("features"))


register(Characteristic(0x2A18, "Glucose Measurement", decode_measurement, measurement_readings))
register(Characteristic(0x2A34, "Glucose Measurement Context", decode_context, context_readings))
register(Characteristic(0x2A51, "Glucose Feature", decode_feature))
