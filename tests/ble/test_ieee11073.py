"""IEEE 11073-20601 SFLOAT and FLOAT, pinned against hand-worked values.

Expected values are worked by hand from the layout IEEE 11073-20601 defines and the Bluetooth
GATT Specification Supplement restates (data types medfloat16 and medfloat32): SFLOAT = 4-bit
two's-complement exponent
(high nibble) and 12-bit two's-complement mantissa; FLOAT = 8-bit exponent (high octet) and
24-bit mantissa; value = mantissa * 10**exponent; five reserved mantissas are special values
whatever the exponent.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.ieee11073 import Number, Special, float32, sfloat

SFLOAT_SPECIALS = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.POSITIVE_INFINITY,
    0x0802: Special.NEGATIVE_INFINITY,
    0x0801: Special.RESERVED,
}
FLOAT_SPECIALS = {
    0x7FFFFF: Special.NAN,
    0x800000: Special.NRES,
    0x7FFFFE: Special.POSITIVE_INFINITY,
    0x800002: Special.NEGATIVE_INFINITY,
    0x800001: Special.RESERVED,
}


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw >= 1 << (bits - 1) else raw


@pytest.mark.parametrize(
    ("raw", "value", "exponent"),
    [
        (0xF178, 37.6, -1),  # exponent 0xF = -1, mantissa 0x178 = 376: a body temperature
        (0x0072, 114.0, 0),  # exponent 0, mantissa 0x072 = 114: a systolic pressure in mmHg
        (0xF0BD, 18.9, -1),  # 189e-1 kPa (Nordic Android-BLE-Common-Library BloodPressureMeasurementDataCallbackTest)
        (0x0000, 0.0, 0),
        (0x0FFF, -1.0, 0),  # mantissa 0xFFF = -1
        (0xFC18, -100.0, -1),  # mantissa 0xC18 = 3096 - 4096 = -1000, exponent -1
        (0x8001, 1e-8, -8),  # the most negative exponent
        (0x77FD, 2045e7, 7),  # the largest finite mantissa (0x7FD) and exponent
        (0x0803, -2045.0, 0),  # the most negative finite mantissa: 0x803 = 2051 - 4096
        (0x1001, 10.0, 1),  # positive exponent
    ],
)
def test_sfloat_values(raw: int, value: float, exponent: int) -> None:
    assert sfloat(raw) == Number(value, exponent)


@pytest.mark.parametrize(
    ("raw", "value", "exponent"),
    [
        (0xFF000176, 37.4, -1),  # exponent 0xFF = -1, mantissa 0x000176 = 374
        (0xFE000EB0, 37.6, -2),  # 3760e-2 (Nordic TemperatureMeasurementDataCallbackTest: B0 0E 00 FE)
        (0x00FFFFFF, -1.0, 0),  # mantissa 0xFFFFFF = -1
        (0xFEFFFF9C, -1.0, -2),  # mantissa -100, exponent -2
        (0x80000001, 1e-128, -128),  # the most negative exponent
        (0x7F000001, 1e127, 127),  # the largest exponent
        (0x00000000, 0.0, 0),
    ],
)
def test_float32_values(raw: int, value: float, exponent: int) -> None:
    assert float32(raw) == Number(value, exponent)


@pytest.mark.parametrize("exponent", [0x0, 0x1, 0x7, 0x8, 0xF])
@pytest.mark.parametrize(("mantissa", "special"), SFLOAT_SPECIALS.items())
def test_sfloat_specials_whatever_the_exponent(mantissa: int, special: Special, exponent: int) -> None:
    assert sfloat(exponent << 12 | mantissa) is special


@pytest.mark.parametrize("exponent", [0x00, 0x01, 0x7F, 0x80, 0xFF])
@pytest.mark.parametrize(("mantissa", "special"), FLOAT_SPECIALS.items())
def test_float32_specials_whatever_the_exponent(mantissa: int, special: Special, exponent: int) -> None:
    assert float32(exponent << 24 | mantissa) is special


def test_every_sfloat_is_the_float_nearest_its_decimal() -> None:
    """All 65536 codes: a special exactly for the reserved mantissas, else the correctly rounded decimal."""
    for raw in range(0x10000):
        result = sfloat(raw)
        if raw & 0xFFF in SFLOAT_SPECIALS:
            assert result is SFLOAT_SPECIALS[raw & 0xFFF]
            continue
        mantissa, exponent = _signed(raw & 0xFFF, 12), _signed(raw >> 12, 4)
        assert result == Number(float(mantissa * Fraction(10) ** exponent), exponent), hex(raw)


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_float32_is_the_float_nearest_its_decimal(raw: int) -> None:
    result = float32(raw)
    if raw & 0xFFFFFF in FLOAT_SPECIALS:
        assert result is FLOAT_SPECIALS[raw & 0xFFFFFF]
        return
    mantissa, exponent = _signed(raw & 0xFFFFFF, 24), _signed(raw >> 24, 8)
    assert result == Number(float(mantissa * Fraction(10) ** exponent), exponent)


@pytest.mark.parametrize(("exponent", "decimals"), [(-3, 3), (-1, 1), (0, 0), (2, 0)])
def test_decimals_follow_the_exponent(exponent: int, decimals: int) -> None:
    assert Number(1.0, exponent).decimals == decimals


@pytest.mark.parametrize("raw", [-1, 0x10000])
def test_sfloat_refuses_a_value_wider_than_16_bits(raw: int) -> None:
    with pytest.raises(ValueError, match="16 bits"):
        sfloat(raw)


@pytest.mark.parametrize("raw", [-1, 0x1_0000_0000])
def test_float32_refuses_a_value_wider_than_32_bits(raw: int) -> None:
    with pytest.raises(ValueError, match="32 bits"):
        float32(raw)
