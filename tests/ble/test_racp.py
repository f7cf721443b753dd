"""Record Access Control Point 0x2A52: requests laid out by hand from the GLS 1.0 op code, operator
and filter type tables; responses from Nordic's Android-BLE-Common-Library
(ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/RecordAccessControlPointDataCallbackTest.java)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.ble.decoders import REGISTRY
from device.ble.decoders.racp import (
    FilterType,
    OpCode,
    Operator,
    RacpNumberOfRecords,
    RacpRequest,
    RacpResponseCode,
    ResponseCode,
    abort,
    count_all,
    count_from,
    decode,
    decode_request,
    decode_response,
    delete_all,
    encode_request,
    report_all,
    report_from,
)
from device.ble.errors import DecodeError

# --- encoding: op code, operator, [filter type, operand] ---------------------------------------


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (report_all(), "0101"),  # report stored records, all records
        (report_from(12), "0103010c00"),  # report, >=, filter 0x01 (sequence number), 12
        (report_from(0x1234), "0103013412"),  # operand little-endian
        (count_all(), "0401"),  # report number of stored records, all
        (count_from(0x0102), "0403010201"),  # number of records with sequence >= 258
        (delete_all(), "0201"),  # delete stored records, all
        (abort(), "0300"),  # abort operation, Null operator, no operand
        (encode_request(OpCode.REPORT_STORED_RECORDS, Operator.LESS_THAN_OR_EQUAL, maximum=41), "0102012900"),
        (
            encode_request(OpCode.REPORT_STORED_RECORDS, Operator.WITHIN_RANGE, minimum=12, maximum=412),
            "0104010c009c01",  # minimum first, then maximum (412 = 0x019C)
        ),
        (encode_request(OpCode.REPORT_STORED_RECORDS, Operator.FIRST_RECORD), "0105"),
        (encode_request(OpCode.REPORT_STORED_RECORDS, Operator.LAST_RECORD), "0106"),
        (encode_request(OpCode.DELETE_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL, minimum=0), "0203010000"),
    ],
)
def test_encode(encoded: bytes, expected: str) -> None:
    assert encoded.hex() == expected


def test_spec_values() -> None:
    # GLS 1.0 Record Access Control Point tables.
    assert [op.value for op in OpCode] == [1, 2, 3, 4, 5, 6]
    assert [op.value for op in Operator] == [0, 1, 2, 3, 4, 5, 6]
    assert (FilterType.SEQUENCE_NUMBER, FilterType.USER_FACING_TIME) == (1, 2)
    assert [c.name for c in ResponseCode] == [
        "SUCCESS",
        "OP_CODE_NOT_SUPPORTED",
        "INVALID_OPERATOR",
        "OPERATOR_NOT_SUPPORTED",
        "INVALID_OPERAND",
        "NO_RECORDS_FOUND",
        "ABORT_UNSUCCESSFUL",
        "PROCEDURE_NOT_COMPLETED",
        "OPERAND_NOT_SUPPORTED",
    ]
    assert [c.value for c in ResponseCode] == list(range(1, 10))


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_request(OpCode.ABORT_OPERATION, Operator.ALL_RECORDS),
        lambda: encode_request(OpCode.ABORT_OPERATION, minimum=1),
        lambda: encode_request(OpCode.REPORT_STORED_RECORDS),  # Null operator
        lambda: encode_request(OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS, minimum=3),
        lambda: encode_request(OpCode.REPORT_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL),
        lambda: encode_request(OpCode.REPORT_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL, maximum=3),
        lambda: encode_request(OpCode.REPORT_STORED_RECORDS, Operator.LESS_THAN_OR_EQUAL, minimum=3),
        lambda: encode_request(OpCode.REPORT_STORED_RECORDS, Operator.WITHIN_RANGE, minimum=3),
        lambda: encode_request(OpCode.REPORT_STORED_RECORDS, Operator.WITHIN_RANGE, minimum=5, maximum=4),
        lambda: encode_request(OpCode.RESPONSE_CODE, Operator.NULL),
        lambda: encode_request(OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, Operator.ALL_RECORDS),
        lambda: report_from(0x10000),
        lambda: report_from(-1),
    ],
)
def test_encode_refuses_requests_the_spec_does_not_allow(call: Callable[[], bytes]) -> None:
    with pytest.raises(ValueError, match=r"."):
        call()


# --- round trips ---------------------------------------------------------------------------------

ROUND_TRIPS = [
    (report_all(), RacpRequest(1, 1)),
    (report_from(12), RacpRequest(1, 3, FilterType.SEQUENCE_NUMBER, minimum=12)),
    (count_all(), RacpRequest(4, 1)),
    (count_from(7), RacpRequest(4, 3, 1, minimum=7)),
    (delete_all(), RacpRequest(2, 1)),
    (abort(), RacpRequest(3, 0)),
    (
        encode_request(OpCode.DELETE_STORED_RECORDS, Operator.LESS_THAN_OR_EQUAL, maximum=9),
        RacpRequest(2, 2, 1, None, 9),
    ),
    (
        encode_request(OpCode.REPORT_STORED_RECORDS, Operator.WITHIN_RANGE, minimum=1, maximum=2),
        RacpRequest(1, 4, 1, 1, 2),
    ),
    (encode_request(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.LAST_RECORD), RacpRequest(4, 6)),
]


@pytest.mark.parametrize(("encoded", "request_"), ROUND_TRIPS)
def test_request_round_trip(encoded: bytes, request_: RacpRequest) -> None:
    assert decode_request(encoded) == request_
    assert decode(encoded) == request_


@given(
    op_code=st.sampled_from(
        [OpCode.REPORT_STORED_RECORDS, OpCode.DELETE_STORED_RECORDS, OpCode.REPORT_NUMBER_OF_STORED_RECORDS]
    ),
    operator=st.sampled_from(list(Operator)[1:]),
    low=st.integers(0, 0xFFFF),
    high=st.integers(0, 0xFFFF),
)
def test_request_round_trip_property(op_code: OpCode, operator: Operator, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    minimum = low if operator in (Operator.GREATER_THAN_OR_EQUAL, Operator.WITHIN_RANGE) else None
    maximum = high if operator in (Operator.LESS_THAN_OR_EQUAL, Operator.WITHIN_RANGE) else None
    encoded = encode_request(op_code, operator, minimum=minimum, maximum=maximum)
    filter_type = FilterType.SEQUENCE_NUMBER if minimum is not None or maximum is not None else None
    assert decode_request(encoded) == RacpRequest(op_code, operator, filter_type, minimum, maximum)


# --- decoding requests ----------------------------------------------------------------------------


def test_user_facing_time_operand_is_kept_raw_once_its_length_is_checked() -> None:
    # Filter type 0x02 (User Facing Time) takes a 7-octet Date Time per bound; the collector never sends it.
    data = bytes.fromhex("010302e307021b0b0a1e")
    assert decode_request(data) == RacpRequest(1, 3, 2, operand=bytes.fromhex("e307021b0b0a1e"))
    both = bytes.fromhex("010402" + "e307021b0b0a1e" * 2)
    assert decode_request(both) == RacpRequest(1, 4, 2, operand=both[3:])
    for bad in (data[:-1], data + b"\x00", both[:-7]):
        with pytest.raises(DecodeError, match="user facing time"):
            decode_request(bad)


def test_operands_the_spec_does_not_define_are_kept() -> None:
    # An RFU op code, operator or filter type has no operand length to check against.
    assert decode_request(bytes.fromhex("07010203")) == RacpRequest(7, 1, trailing=b"\x02\x03")
    assert decode_request(bytes.fromhex("0107aabb")) == RacpRequest(1, 7, trailing=b"\xaa\xbb")
    assert decode_request(bytes.fromhex("0100ff")) == RacpRequest(1, 0, trailing=b"\xff")  # Null: no operand defined
    assert decode_request(bytes.fromhex("010309aabbcc")) == RacpRequest(1, 3, 9, operand=b"\xaa\xbb\xcc")


@pytest.mark.parametrize(
    ("hexed", "expected", "received"),
    [
        ("0103010c00ff", 5, 6),  # >= sequence number, one octet past the uint16 bound
        ("0104010c009c01ff", 7, 8),  # range: two bounds, then one octet too many
        ("0102012900ffff", 5, 7),
        ("010100", 2, 3),  # all records take no operand
        ("040500", 2, 3),  # first record
        ("02060000", 2, 4),  # last record
        ("030000", 2, 3),  # abort takes no operand
    ],
)
def test_bytes_past_a_fixed_operand_are_refused(hexed: str, expected: int, received: int) -> None:
    with pytest.raises(DecodeError, match=rf"request: expected {expected} byte\(s\) .*got {received}"):
        decode_request(bytes.fromhex(hexed))


@pytest.mark.parametrize("hexed", ["", "01", "0103", "010301", "0103010c", "0104010c0001", "06000101", "0500"])
def test_malformed_requests_are_refused(hexed: str) -> None:
    with pytest.raises(DecodeError):
        decode_request(bytes.fromhex(hexed))


# --- responses (Nordic vectors) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "request_op_code", "code"),
    [
        (bytes([6, 0, 1, 1]), 1, ResponseCode.SUCCESS),
        (bytes([6, 0, 12, 2]), 12, ResponseCode.OP_CODE_NOT_SUPPORTED),
        (bytes([6, 0, 1, 3]), 1, ResponseCode.INVALID_OPERATOR),
        (bytes([6, 0, 2, 4]), 2, ResponseCode.OPERATOR_NOT_SUPPORTED),
        (bytes([6, 0, 1, 5]), 1, ResponseCode.INVALID_OPERAND),
        (bytes([6, 0, 1, 6]), 1, ResponseCode.NO_RECORDS_FOUND),
        (bytes([6, 0, 3, 7]), 3, ResponseCode.ABORT_UNSUCCESSFUL),
        (bytes([6, 0, 2, 8]), 2, ResponseCode.PROCEDURE_NOT_COMPLETED),
        (bytes([6, 0, 2, 9]), 2, ResponseCode.OPERAND_NOT_SUPPORTED),
        (bytes([6, 0, 1, 10]), 1, 10),  # RFU response code: kept as sent
    ],
)
def test_response_codes(data: bytes, request_op_code: int, code: int) -> None:
    response = decode_response(data)
    assert response == RacpResponseCode(0, request_op_code, code)
    assert decode(data) == response
    assert response.succeeded == (code in (1, 6))


def test_number_of_stored_records() -> None:
    # Nordic onNumberOfRecordsReceived_uint16: 5, 0, 0x02, 0x01 -> 258.
    assert decode_response(bytes([5, 0, 2, 1])) == RacpNumberOfRecords(0, 258)
    assert decode(bytes([5, 0, 0xFF, 0xFF])) == RacpNumberOfRecords(0, 0xFFFF)


@pytest.mark.parametrize(
    "data",
    [
        bytes([5, 0, 1, 2, 3]),  # issue 19: a 3-octet operand is not a count plus a trailing octet
        bytes([5, 0, 4, 3, 2, 1]),  # Nordic also accepts a uint32 count (16909060); GLS and CGMS define uint16
    ],
)
def test_number_of_stored_records_is_exactly_a_uint16(data: bytes) -> None:
    with pytest.raises(
        DecodeError,
        match=rf"Record Access Control Point response: expected 4 byte\(s\) for op code 0x05 .*got {len(data)}",
    ):
        decode_response(data)
    with pytest.raises(DecodeError, match="expected 4 byte"):
        decode(data)


def test_response_code_operand_is_exactly_two_octets() -> None:
    with pytest.raises(DecodeError, match=r"expected 4 byte\(s\) for op code 0x06 .*got 5 \(1 byte\(s\) too many"):
        decode_response(bytes([6, 0, 1, 1, 0]))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes([6]),
        bytes([6, 0, 1]),  # Nordic onInvalidDataReceived_invalidOperator: too short
        bytes([5, 0, 1]),  # Nordic accepts a uint8 count; GLS defines uint16
        bytes([5, 0]),
        bytes([1, 1]),  # a request, not a response
        bytes([1, 3, 1, 2, 0]),  # Nordic onInvalidDataReceived_wrongOpCode
    ],
)
def test_malformed_responses_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_response(data)


def test_decode_tells_directions_apart() -> None:
    assert isinstance(decode(bytes([6, 0, 1, 1])), RacpResponseCode)
    assert isinstance(decode(bytes([5, 0, 1, 0])), RacpNumberOfRecords)
    assert isinstance(decode(bytes([1, 1])), RacpRequest)
    with pytest.raises(DecodeError):
        decode(b"")


def test_registered() -> None:
    assert REGISTRY[0x2A52].decode is decode
    assert REGISTRY[0x2A52].readings(decode(report_all())) == []


@given(st.binary(max_size=64))
def test_arbitrary_bytes(data: bytes) -> None:
    for decoder in (decode, decode_request, decode_response):
        with contextlib.suppress(DecodeError):
            decoder(data)
