"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit), as the Bluetooth health services send numbers.

SFLOAT: 4-bit signed exponent (high nibble), 12-bit signed mantissa; value = mantissa * 10**exponent.
FLOAT: 8-bit signed exponent (high byte), 24-bit signed mantissa. Reserved mantissas mark special
values, whatever the exponent: NaN, NRes (not at this resolution), +INF, -INF and one reserved code.
A public parser got the exponent's sign extension wrong and read 37.6 °C as 3.76e129; the tests
here pin the arithmetic against hand-worked spec examples.

Values are computed by dividing by an exact power of ten, so 376e-1 gives the float nearest 37.6,
and the number of decimals the device meant is kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Special(StrEnum):
    NAN = "nan"
    NRES = "nres"  # not at this resolution
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"
    RESERVED = "reserved"


@dataclass(frozen=True)
class Number:
    """A finite IEEE 11073 number: the float nearest mantissa·10^exponent, and the exponent it came with."""

    value: float
    exponent: int

    @property
    def decimals(self) -> int:
        """Digits after the decimal point the device meant (0 for a non-negative exponent)."""
        return max(0, -self.exponent)


Measured = Number | Special

_SFLOAT_SPECIAL = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.POSITIVE_INFINITY,
    0x0802: Special.NEGATIVE_INFINITY,
    0x0801: Special.RESERVED,
}
_FLOAT_SPECIAL = {
    0x7FFFFF: Special.NAN,
    0x800000: Special.NRES,
    0x7FFFFE: Special.POSITIVE_INFINITY,
    0x800002: Special.NEGATIVE_INFINITY,
    0x800001: Special.RESERVED,
}


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def _scale(mantissa: int, exponent: int) -> Number:
    value = mantissa / 10**-exponent if exponent < 0 else float(mantissa * 10**exponent)
    return Number(value, exponent)


def sfloat(raw: int) -> Measured:
    """Decode a 16-bit SFLOAT given as an unsigned integer (already read little-endian)."""
    if not 0 <= raw <= 0xFFFF:
        raise ValueError(f"SFLOAT must be 16 bits, got {raw:#x}")
    mantissa_bits = raw & 0x0FFF
    special = _SFLOAT_SPECIAL.get(mantissa_bits)
    if special is not None:
        return special
    return _scale(_signed(mantissa_bits, 12), _signed(raw >> 12, 4))


def float32(raw: int) -> Measured:
    """Decode a 32-bit IEEE 11073 FLOAT given as an unsigned integer (already read little-endian)."""
    if not 0 <= raw <= 0xFFFFFFFF:
        raise ValueError(f"FLOAT must be 32 bits, got {raw:#x}")
    mantissa_bits = raw & 0xFFFFFF
    special = _FLOAT_SPECIAL.get(mantissa_bits)
    if special is not None:
        return special
    return _scale(_signed(mantissa_bits, 24), _signed(raw >> 24, 8))
