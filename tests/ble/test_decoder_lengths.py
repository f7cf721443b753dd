"""Issue 19, point 11: where a specification fixes a value's length (given its flags), any other length
is a DecodeError naming the characteristic, the length expected and the length received.

Every registered decoder is fed a value one field too long and one too short, through the registry as
the collector and `kiosk ble decode` use it; then each flags-driven layout is checked for every flags
value against its decoder, and arbitrary values are checked for octets left unread.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders import REGISTRY, blood_pressure, body_composition, glucose, pulse_oximeter, thermometer
from device.ble.decoders import weight_scale as weight
from device.ble.decoders.cgm import RECORD_LAYOUT, decode_measurement
from device.ble.decoders.lengths import MAX_ATTRIBUTE_SIZE, Layout, announced, total
from device.ble.decoders.racp import FilterType, OpCode, Operator, RacpRequest
from device.ble.errors import DecodeError

DATE = "e8070b1d170839"  # 2024-11-29 23:08:57
LONG_STRING = "41" * (MAX_ATTRIBUTE_SIZE + 1)

# (characteristic, value hex, expected length, received length). Too long, then too short, per characteristic.
CASES = [
    # Record Access Control Point: the 3-octet "number of stored records" operand comes first.
    (0x2A52, "0500010203", 4, 5),
    (0x2A52, "050001", 4, 3),
    (0x2A52, "06000101ff", 4, 5),  # Response Code: request op code and response code value only
    (0x2A52, "060001", 4, 3),
    (0x2A52, "0103010c00ff", 5, 6),  # >= sequence number 12, then one octet
    (0x2A52, "0103010c", 5, 4),
    (0x2A52, "0101ff", 2, 3),  # all records: no operand
    (0x2A52, "01", 2, 1),
    (0x2A35, "00780050005d00ee", 7, 8),  # Blood Pressure Measurement
    (0x2A35, "1e780050005d00", 19, 7),  # every field announced, only the compound value sent
    (0x2A36, "0004000000000000", 7, 8),  # Intermediate Cuff Pressure
    (0x2A36, "00040000", 7, 4),
    (0x2A49, "ffff00", 2, 3),  # Blood Pressure Feature
    (0x2A49, "01", 2, 1),
    (0x2A37, "0048ab", 2, 3),  # Heart Rate Measurement: no RR-intervals announced
    (0x2A37, "1048200307", 4, 5),  # RR-intervals announced: an odd octet is not half an interval
    (0x2A37, "0148", 3, 2),  # uint16 heart rate announced, one octet sent
    (0x2A38, "0200", 1, 2),  # Body Sensor Location
    (0x2A38, "", 1, 0),
    (0x2A18, "000100e307021b0b0a1eaa", 10, 11),  # Glucose Measurement
    (0x2A18, "020100e307021b0b0a1e0cc0", 13, 12),  # concentration announced, type-sample location missing
    (0x2A34, "00000011", 3, 4),  # Glucose Measurement Context
    (0x2A34, "400700", 5, 3),  # HbA1c announced, missing
    (0x2A51, "000001", 2, 3),  # Glucose Feature
    (0x2A51, "00", 2, 1),
    (0x2AA7, "07000c100600ff", 6, 7),  # CGM Measurement: size 7 for a 6-octet record without CRC
    (0x2AA7, "", 6, 0),
    (0x2AA8, "0000fe00ffff42", 6, 7),  # CGM Feature
    (0x2AA8, "0000fe00ff", 6, 5),
    (0x2AAA, "e807070409" + "1e00" + "0000" + "424344", 9, 12),  # CGM Session Start Time
    (0x2AAA, "e8070704091e0000", 9, 8),
    (0x2A5E, "006100480001", 5, 6),  # PLX Spot-Check Measurement
    (0x2A5E, "00610048", 5, 4),
    (0x2A5F, "006100480001", 5, 6),  # PLX Continuous Measurement
    (0x2A5F, "0161004800600049", 9, 8),  # fast announced, its pulse rate cut
    (0x2A60, "000009", 2, 3),  # PLX Features
    (0x2A60, "010000", 4, 3),  # measurement status support announced, cut
    (0x2A1C, "00760100ff99", 5, 6),  # Temperature Measurement
    (0x2A1C, "02760100ff" + DATE[:-2], 12, 11),
    (0x2A1E, "00760100ff99", 5, 6),  # Intermediate Temperature
    (0x2A1E, "00760100", 5, 4),
    (0x2A1D, "0201", 1, 2),  # Temperature Type
    (0x2A1D, "", 1, 0),
    (0x2A9D, "00b036aa", 3, 4),  # Weight Measurement
    (0x2A9D, "08b036e500", 7, 5),  # BMI and height announced, height missing
    (0x2A9E, "000cffff01", 4, 5),  # Weight Scale Feature
    (0x2A9E, "bf0100", 4, 3),
    (0x2A9C, "0000d70001", 4, 5),  # Body Composition Measurement
    (0x2A9C, "0004d700", 6, 4),  # weight announced, missing
    (0x2A9B, "0000000005", 4, 5),  # Body Composition Feature
    (0x2A9B, "000000", 4, 3),
    (0x2A2B, "e70701041416070380" + "0808", 10, 11),  # Current Time
    (0x2A2B, "e70701041416070380", 10, 9),
    (0x2A0F, "000001", 2, 3),  # Local Time Information
    (0x2A0F, "00", 2, 1),
    (0x2A23, "debc9afeff56341200", 8, 9),  # System ID
    (0x2A23, "debc9afeff5634", 8, 7),
    (0x2A50, "0112002301bcaa08", 7, 8),  # PnP ID
    (0x2A50, "011200230101", 7, 6),
    # Strings and the regulatory list have no length of their own: an attribute value's limit still holds.
    *((uuid, LONG_STRING, MAX_ATTRIBUTE_SIZE, MAX_ATTRIBUTE_SIZE + 1) for uuid in range(0x2A24, 0x2A2B)),
    (0x2A37, "10" + "48" + "00" * MAX_ATTRIBUTE_SIZE, MAX_ATTRIBUTE_SIZE, MAX_ATTRIBUTE_SIZE + 2),
]

# Open-ended values: the specification gives no minimum (a string may be empty; the regulatory list is opaque).
NO_MINIMUM = {0x2A24, 0x2A25, 0x2A26, 0x2A27, 0x2A28, 0x2A29, 0x2A2A}


@pytest.mark.parametrize(
    ("uuid", "hexed", "expected", "received"),
    [pytest.param(*case, id=f"{case[0]:04x}-{'long' if case[3] > case[2] else 'short'}-{case[3]}") for case in CASES],
)
def test_a_value_of_the_wrong_length_is_refused_naming_both_lengths(
    uuid: int, hexed: str, expected: int, received: int
) -> None:
    characteristic = REGISTRY[uuid]
    data = bytes.fromhex(hexed)
    assert len(data) == received
    with pytest.raises(DecodeError) as raised:
        characteristic.decode(data)
    message = str(raised.value)
    assert message.startswith(characteristic.name), message
    assert re.search(rf"expected (?:at least |at most |size )?{expected}\b", message), message
    assert re.search(rf"got (?:size )?{received}\b", message), message


def test_every_decoder_has_a_too_long_and_a_too_short_case() -> None:
    too_long = {uuid for uuid, _, expected, received in CASES if received > expected}
    too_short = {uuid for uuid, _, expected, received in CASES if received < expected}
    assert set(REGISTRY) - too_long == set()
    assert set(REGISTRY) - too_short == NO_MINIMUM


# --- Each flags-driven layout against its decoder, for every flags value: the exact length decodes
# (so the decoder reads every field the layout counts, no more and no fewer), one octet more or less does not.

FLAGGED: list[tuple[str, Any, Layout, range | list[int]]] = [
    ("Blood Pressure Measurement", REGISTRY[0x2A35].decode, blood_pressure.MEASUREMENT_LAYOUT, range(0x100)),
    ("Intermediate Cuff Pressure", REGISTRY[0x2A36].decode, blood_pressure.MEASUREMENT_LAYOUT, range(0x100)),
    ("Glucose Measurement", glucose.decode_measurement, glucose.MEASUREMENT_LAYOUT, range(0x100)),
    ("Glucose Measurement Context", glucose.decode_context, glucose.CONTEXT_LAYOUT, range(0x100)),
    ("PLX Spot-Check Measurement", pulse_oximeter.decode_spot_check, pulse_oximeter.SPOT_CHECK_LAYOUT, range(0x100)),
    ("PLX Continuous Measurement", pulse_oximeter.decode_continuous, pulse_oximeter.CONTINUOUS_LAYOUT, range(0x100)),
    ("PLX Features", pulse_oximeter.decode_features, pulse_oximeter.FEATURES_LAYOUT, [*range(0x100), 0xFF00, 0xFFFF]),
    (
        "Temperature Measurement",
        thermometer.decode_temperature_measurement,
        thermometer.MEASUREMENT_LAYOUT,
        range(0x100),
    ),
    (
        "Intermediate Temperature",
        thermometer.decode_intermediate_temperature,
        thermometer.MEASUREMENT_LAYOUT,
        range(0x100),
    ),
    ("Weight Measurement", weight.decode_weight_measurement, weight.MEASUREMENT_LAYOUT, range(0x100)),
    (
        "Body Composition Measurement",
        body_composition.decode_body_composition_measurement,
        body_composition.MEASUREMENT_LAYOUT,
        [*range(0x2000), 0xE000, 0xFFFF],
    ),
]


@pytest.mark.parametrize(("name", "decode", "layout", "all_flags"), FLAGGED, ids=[f[0] for f in FLAGGED])
def test_layout_and_decoder_agree_for_every_flags_value(
    name: str, decode: Any, layout: Layout, all_flags: range | list[int]
) -> None:
    flags_size = layout[0].size
    for flags in all_flags:
        length = total(announced(layout, flags))
        value = flags.to_bytes(flags_size, "little") + bytes(length - flags_size)  # zeros: valid in every field
        decoded = decode(value)
        assert (decoded.supported_features if isinstance(decoded, pulse_oximeter.Features) else decoded.flags) == flags
        for wrong in (value + b"\x00", value[:-1]):
            if len(wrong) < flags_size:
                continue
            with pytest.raises(DecodeError, match=rf"^{name}: expected {length} byte\(s\) for flags"):
                decode(wrong)


def test_cgm_record_layout_and_decoder_agree_for_every_flags_value() -> None:
    for flags in range(0x100):
        size = total(announced(RECORD_LAYOUT, flags))
        record = bytes([size, flags]) + bytes(size - 2)
        (decoded,) = decode_measurement(record, crc_present=False).records
        assert (decoded.size, decoded.flags) == (size, flags)
        for wrong in (size - 1, size + 1):
            if wrong < 6:
                continue
            with pytest.raises(DecodeError, match=rf"expected size {size} for flags {flags:#04x}"):
                decode_measurement(bytes([wrong, flags]) + bytes(wrong - 2), crc_present=False)


# --- Arbitrary values: once one is accepted, the same value with one more octet must not be.

OPEN_ENDED = NO_MINIMUM  # a string may end in NUL padding; the regulatory list is opaque


def _defines_no_operand(decoded: Any) -> bool:
    """RACP requests the specification gives no operand length for (RFU op code, operator or filter type)."""
    if not isinstance(decoded, RacpRequest):
        return False
    requests = (OpCode.REPORT_STORED_RECORDS, OpCode.DELETE_STORED_RECORDS, OpCode.REPORT_NUMBER_OF_STORED_RECORDS)
    defined_operator = decoded.op_code == OpCode.ABORT_OPERATION or (
        decoded.op_code in requests and decoded.operator in set(Operator) - {Operator.NULL}
    )
    return not defined_operator or decoded.filter_type not in (None, *FilterType)


@given(st.sampled_from(sorted(set(REGISTRY) - OPEN_ENDED)), st.binary(max_size=40), st.integers(0, 255))
def test_an_accepted_value_with_one_more_octet_is_refused(uuid: int, data: bytes, extra: int) -> None:
    decode = REGISTRY[uuid].decode
    try:
        decoded = decode(data)
    except DecodeError:
        return
    if _defines_no_operand(decoded):
        return
    with pytest.raises(DecodeError):
        decode(data + bytes([extra]))
