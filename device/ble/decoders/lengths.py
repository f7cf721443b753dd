"""The lengths the specifications fix: a value of any other length is a DecodeError.

Where a characteristic's specification fixes its length (given its flags), a value that is
longer is as malformed as one that is shorter: the decoders neither read past the end nor
leave octets unread (issue 19: a Record Access Control Point count with a 3-octet operand used
to decode as a count plus a "trailing" octet). Each service module restates its
characteristic's field table as a `Layout`, fields in wire order with the flags bit that
announces each optional one; `check` compares the value's length with what that table and
the flags give before a single field is read, so the error names the characteristic, the
length expected and the length received. `finish` then makes sure the decoder read exactly
that much, so the table and the decoder cannot drift apart unnoticed.

Values the specifications leave open (strings, RR-interval lists, CGM record sequences, op
codes a later version may define) are bounded only by ATT's 512-octet attribute value limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from device.ble.errors import DecodeError
from device.ble.reader import Reader

# Core Specification, Vol 3, Part F, 3.2.9: an attribute value is at most 512 octets long.
MAX_ATTRIBUTE_SIZE = 512


@dataclass(frozen=True)
class Field:
    name: str
    size: int  # octets
    flag: int = 0  # the flags bit that announces the field; 0: always present


Layout = tuple[Field, ...]


def announced(layout: Layout, flags: int) -> Layout:
    """The fields present with these flags, in wire order."""
    return tuple(f for f in layout if not f.flag or flags & f.flag)


def total(fields: Sequence[Field]) -> int:
    return sum(f.size for f in fields)


def flags_text(flags: int, size: int) -> str:
    """'for flags 0x1e' (one octet) or 'for flags 0x0400' (two): the context of a flags-driven length."""
    return f"for flags {flags:#0{2 + 2 * size}x}"


def length_error(what: str, fields: Sequence[Field], received: int, context: str = "") -> DecodeError:
    """The error for a value of `received` octets where `fields` fix the length.

    `context` says what chose those fields, e.g. "for flags 0x1e"."""
    expected = total(fields)
    head = f"{what}: expected {expected} byte(s){f' {context}' if context else ''}, got {received}"
    if received > expected:
        after = f" after the {fields[-1].name}" if fields else ""
        return DecodeError(f"{head} ({received - expected} byte(s) too many{after})")
    return DecodeError(f"{head} (too short: {cut(fields, received)})")


def cut(fields: Sequence[Field], received: int) -> str:
    """Which field a value of `received` octets ends before or inside."""
    offset = 0
    for field in fields:
        if offset + field.size > received:
            return (
                f"the {field.name} needs {field.size} byte(s) at offset {offset}, but only {received - offset} remain"
            )
        offset += field.size
    return "no field is cut"  # not reached for a value shorter than the fields


def check(data: bytes, what: str, layout: Layout, *, flags_at: int | None = None, context: str = "") -> None:
    """DecodeError unless `data` is exactly as long as `layout` says.

    `flags_at` is the index, in `layout`, of the flags field whose bits announce the optional
    fields (every field before it must be mandatory); None for a layout without flags, whose
    error then names `context` (e.g. "for op code 0x05"), if given.
    """
    received = len(data)
    if flags_at is None:
        if received != total(layout):
            raise length_error(what, layout, received, context)
        return
    head = layout[: flags_at + 1]
    if received < total(head):
        minimum = total(announced(layout, 0))
        raise DecodeError(
            f"{what}: expected at least {minimum} byte(s), got {received} (too short: {cut(head, received)})"
        )
    offset, size = total(layout[:flags_at]), layout[flags_at].size
    flags = int.from_bytes(data[offset : offset + size], "little")
    fields = announced(layout, flags)
    if received != total(fields):
        raise length_error(what, fields, received, flags_text(flags, size))


def at_most_attribute_size(data: bytes, what: str) -> None:
    """For values whose length the specification leaves open: nothing longer than an attribute value can be."""
    if len(data) > MAX_ATTRIBUTE_SIZE:
        raise DecodeError(
            f"{what}: expected at most {MAX_ATTRIBUTE_SIZE} byte(s) (an attribute value's limit), got {len(data)}"
        )


def finish(reader: Reader) -> None:
    """After the last field: `check` already fixed the length, so octets left over mean the decoder and its
    layout disagree; refused rather than ignored."""
    if reader.remaining:
        raise DecodeError(f"{reader.what}: {reader.remaining} byte(s) left after the last field")
