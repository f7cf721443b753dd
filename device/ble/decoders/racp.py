"""Record Access Control Point 0x2A52: how the kiosk downloads a meter's stored records.

The collector writes a request (report all records, or those from sequence number N on,
or how many there are) and the meter answers by notifying the records, then indicating
a response on this characteristic. Requests are encoded here as well as decoded, because
the collector writes them and the virtual device (and the tests) read them back.

Values follow the Glucose Service 1.0 (its Record Access Control Point procedures) and
the characteristic's definition in the GATT Specification Supplement:
op code, operator, operand; for the operators that compare, the operand starts with a
filter type, 0x01 being the sequence number in GLS (and the time offset in CGMS, which
has the same uint16 layout).

Lengths. Each op code and operator the specification defines fixes the operand: none for
All/First/Last records and for Abort; filter type and one bound for ≤ and ≥, two for a
range (a bound is a uint16 sequence number, or a 7-octet Date Time for GLS's User Facing
Time); the Number of Stored Records response is a uint16 and the Response Code operand is
the request op code and the response code value. A value of any other length is a
DecodeError. Only where the specification defines no operand (an RFU op code, operator or
filter type) is the rest kept as sent, since there is no length to hold it to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from device.ble.decoders import Characteristic, register
from device.ble.decoders.lengths import Field, Layout, at_most_attribute_size, check, finish, length_error
from device.ble.errors import DecodeError
from device.ble.reader import Reader


class OpCode(IntEnum):
    REPORT_STORED_RECORDS = 0x01
    DELETE_STORED_RECORDS = 0x02
    ABORT_OPERATION = 0x03
    REPORT_NUMBER_OF_STORED_RECORDS = 0x04
    NUMBER_OF_STORED_RECORDS_RESPONSE = 0x05
    RESPONSE_CODE = 0x06


class Operator(IntEnum):
    NULL = 0x00
    ALL_RECORDS = 0x01
    LESS_THAN_OR_EQUAL = 0x02
    GREATER_THAN_OR_EQUAL = 0x03
    WITHIN_RANGE = 0x04  # inclusive
    FIRST_RECORD = 0x05  # oldest
    LAST_RECORD = 0x06  # most recent


class FilterType(IntEnum):
    SEQUENCE_NUMBER = 0x01  # GLS; CGMS uses 0x01 for Time Offset, same uint16 layout
    USER_FACING_TIME = 0x02  # GLS: a Date Time (base time + offset), not used by the collector


class ResponseCode(IntEnum):
    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_OPERATOR = 0x03
    OPERATOR_NOT_SUPPORTED = 0x04
    INVALID_OPERAND = 0x05
    NO_RECORDS_FOUND = 0x06
    ABORT_UNSUCCESSFUL = 0x07
    PROCEDURE_NOT_COMPLETED = 0x08
    OPERAND_NOT_SUPPORTED = 0x09


_REQUEST_OP_CODES = frozenset(
    {OpCode.REPORT_STORED_RECORDS, OpCode.DELETE_STORED_RECORDS, OpCode.REPORT_NUMBER_OF_STORED_RECORDS}
)
_FILTERED_OPERATORS = frozenset({Operator.LESS_THAN_OR_EQUAL, Operator.GREATER_THAN_OR_EQUAL, Operator.WITHIN_RANGE})
_UNFILTERED_OPERATORS = frozenset({Operator.ALL_RECORDS, Operator.FIRST_RECORD, Operator.LAST_RECORD})

_OP_CODE = Field("op code", 1)
_OPERATOR = Field("operator", 1)
_FILTER_TYPE = Field("filter type", 1)
# GLS 1.0: the Date Time a User Facing Time bound is given as.
_USER_FACING_TIME_SIZE = 7
NUMBER_OF_RECORDS_LAYOUT: Layout = (_OP_CODE, _OPERATOR, Field("number of records (uint16)", 2))
RESPONSE_CODE_LAYOUT: Layout = (_OP_CODE, _OPERATOR, Field("request op code", 1), Field("response code value", 1))
# The bounds each comparing operator takes, in wire order; a range takes both.
_BOUND_NAMES = {Operator.LESS_THAN_OR_EQUAL: ("maximum",), Operator.GREATER_THAN_OR_EQUAL: ("minimum",)}


@dataclass(frozen=True)
class RacpRequest:
    """A request as written to the control point.

    For a sequence-number filter the bounds are decoded: `minimum` for ≥, `maximum` for ≤,
    both for a range. Any other filter type's operand is kept raw in `operand` (a User Facing
    Time's after its length was checked). `trailing` holds what follows the operator of an
    op code or operator the specification does not define for a request (RFU, or Null with
    a request op code): there is no operand length to check it against.
    """

    op_code: int
    operator: int
    filter_type: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    operand: bytes = b""
    trailing: bytes = b""


@dataclass(frozen=True)
class RacpResponseCode:
    """Op code 0x06: how the request with `request_op_code` ended."""

    operator: int  # Null (0) per spec, kept as sent
    request_op_code: int
    response_code: int  # a ResponseCode value, or an RFU value kept as sent

    @property
    def succeeded(self) -> bool:
        """A download that found no records has succeeded too: there was nothing new."""
        return self.response_code in (ResponseCode.SUCCESS, ResponseCode.NO_RECORDS_FOUND)


@dataclass(frozen=True)
class RacpNumberOfRecords:
    """Op code 0x05: the answer to Report Number of Stored Records."""

    operator: int
    count: int  # uint16 in GLS, CGMS and PLXS


RacpValue = RacpRequest | RacpResponseCode | RacpNumberOfRecords


def encode_request(
    op_code: OpCode, operator: Operator = Operator.NULL, *, minimum: int | None = None, maximum: int | None = None
) -> bytes:
    """The bytes to write for a request; bounds are sequence numbers (filter type 0x01).

    Raises ValueError for a request the spec does not allow (a programming error, not a
    device's): e.g. ≥ without a minimum, a bound given with All records, an Abort with an operator.
    """
    if op_code == OpCode.ABORT_OPERATION:
        if operator != Operator.NULL or minimum is not None or maximum is not None:
            raise ValueError("Abort operation takes the Null operator and no operand")
        return bytes((op_code, operator))
    if op_code not in _REQUEST_OP_CODES:
        raise ValueError(f"{op_code!r} is not a request a collector writes")
    if operator in _UNFILTERED_OPERATORS:
        if minimum is not None or maximum is not None:
            raise ValueError(f"{operator.name} takes no operand")
        return bytes((op_code, operator))
    if operator not in _FILTERED_OPERATORS:
        raise ValueError(f"{op_code.name} needs an operator other than {operator.name}")
    bounds = _bounds(operator, minimum, maximum)
    return bytes((op_code, operator, FilterType.SEQUENCE_NUMBER)) + b"".join(_u16(b) for b in bounds)


def _bounds(operator: Operator, minimum: int | None, maximum: int | None) -> tuple[int, ...]:
    """The operand's bounds in wire order (minimum first), checked against what the operator takes."""
    if operator == Operator.LESS_THAN_OR_EQUAL:
        if maximum is None or minimum is not None:
            raise ValueError("LESS_THAN_OR_EQUAL takes a maximum and no minimum")
        return (maximum,)
    if operator == Operator.GREATER_THAN_OR_EQUAL:
        if minimum is None or maximum is not None:
            raise ValueError("GREATER_THAN_OR_EQUAL takes a minimum and no maximum")
        return (minimum,)
    if minimum is None or maximum is None:
        raise ValueError("WITHIN_RANGE takes a minimum and a maximum")
    if minimum > maximum:
        raise ValueError(f"range {minimum}..{maximum} is empty")
    return (minimum, maximum)


def _u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"sequence number {value} does not fit in 16 bits")
    return value.to_bytes(2, "little")


def report_all() -> bytes:
    return encode_request(OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS)


def report_from(sequence_number: int) -> bytes:
    """Records with a sequence number ≥ N: the incremental download after the last record the kiosk has + 1."""
    return encode_request(OpCode.REPORT_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL, minimum=sequence_number)


def count_all() -> bytes:
    return encode_request(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.ALL_RECORDS)


def count_from(sequence_number: int) -> bytes:
    return encode_request(
        OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL, minimum=sequence_number
    )


def delete_all() -> bytes:
    return encode_request(OpCode.DELETE_STORED_RECORDS, Operator.ALL_RECORDS)


def abort() -> bytes:
    return encode_request(OpCode.ABORT_OPERATION)


def decode_request(data: bytes) -> RacpRequest:
    """A request as a meter (or the virtual device) receives it; responses raise DecodeError."""
    what = "Record Access Control Point request"
    at_most_attribute_size(data, what)
    if len(data) < 2:
        raise DecodeError(f"{what}: expected at least 2 byte(s) (op code and operator), got {len(data)}")
    op_code, operator = data[0], data[1]
    if op_code in (OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, OpCode.RESPONSE_CODE):
        raise DecodeError(f"Record Access Control Point: op code {op_code:#04x} is a response, not a request")
    context = f"for op code {op_code:#04x} and operator {operator:#04x}"
    if op_code == OpCode.ABORT_OPERATION or (op_code in _REQUEST_OP_CODES and operator in _UNFILTERED_OPERATORS):
        check(data, what, (_OP_CODE, _OPERATOR), context=f"{context}, which take no operand")
        return RacpRequest(op_code, operator)
    if op_code not in _REQUEST_OP_CODES or operator not in _FILTERED_OPERATORS:
        return RacpRequest(op_code, operator, trailing=bytes(data[2:]))  # RFU: no operand defined to check
    if len(data) < 3:
        raise length_error(what, (_OP_CODE, _OPERATOR, _FILTER_TYPE), len(data), context)
    filter_type = data[2]
    bounds = _BOUND_NAMES.get(Operator(operator), ("minimum", "maximum"))
    if filter_type == FilterType.USER_FACING_TIME:
        times = tuple(Field(f"{name} (user facing time)", _USER_FACING_TIME_SIZE) for name in bounds)
        check(data, what, (_OP_CODE, _OPERATOR, _FILTER_TYPE, *times), context=f"{context} with filter type 0x02")
        return RacpRequest(op_code, operator, filter_type, operand=bytes(data[3:]))
    if filter_type != FilterType.SEQUENCE_NUMBER:
        return RacpRequest(op_code, operator, filter_type, operand=bytes(data[3:]))  # RFU: no operand defined
    numbers = tuple(Field(f"{name} (sequence number)", 2) for name in bounds)
    check(data, what, (_OP_CODE, _OPERATOR, _FILTER_TYPE, *numbers), context=f"{context} with filter type 0x01")
    r = Reader(data, what)
    r.raw(3, "op code, operator and filter type")  # read above
    minimum = r.u16("minimum") if "minimum" in bounds else None
    maximum = r.u16("maximum") if "maximum" in bounds else None
    finish(r)
    return RacpRequest(op_code, operator, filter_type, minimum, maximum)


def decode_response(data: bytes) -> RacpResponseCode | RacpNumberOfRecords:
    """What a meter indicates back; a request op code raises DecodeError."""
    what = "Record Access Control Point response"
    if not data:
        raise length_error(what, RESPONSE_CODE_LAYOUT, 0, "(a response code or a number of stored records)")
    op_code = data[0]
    if op_code == OpCode.RESPONSE_CODE:
        check(data, what, RESPONSE_CODE_LAYOUT, context="for op code 0x06 (Response Code)")
        return RacpResponseCode(data[1], data[2], data[3])
    if op_code == OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        check(data, what, NUMBER_OF_RECORDS_LAYOUT, context="for op code 0x05 (Number of Stored Records Response)")
        return RacpNumberOfRecords(data[1], int.from_bytes(data[2:4], "little"))
    raise DecodeError(f"Record Access Control Point: op code {op_code:#04x} is not a response")


def decode(data: bytes) -> RacpValue:
    """Either direction, told apart by the op code: what `kiosk ble decode` and a sniffer log need."""
    if data[:1] in (bytes((OpCode.RESPONSE_CODE,)), bytes((OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE,))):
        return decode_response(data)
    return decode_request(data)


register(Characteristic(0x2A52, "Record Access Control Point", decode))
