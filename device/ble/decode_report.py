"""What `kiosk ble decode` prints: every decoded field and the observations, as plain JSON.

For people who debug devices: paste the hex a sniffer or nRF Connect shows, see what the
kiosk makes of it. Bytes print as hex, enums by name, IEEE 11073 numbers as their value
(special values by name), device times as their parts.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from device.ble.decoders import lookup
from device.ble.errors import DecodeError
from device.ble.ieee11073 import Number, Special
from device.ble.reader import DateTime
from device.ble.readings import Reading


def parse_hex(text: str) -> bytes:
    """'0x16 78 00', '167800', '16:78:00' -> bytes; DecodeError says what is wrong."""
    cleaned = text.strip().lower().removeprefix("0x")
    for sep in (" ", ":", "-", ","):
        cleaned = cleaned.replace(sep, "")
    if len(cleaned) % 2:
        raise DecodeError(f"hex payload {text!r} has an odd number of digits")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise DecodeError(f"hex payload {text!r} is not hexadecimal") from None


def jsonable(value: Any) -> Any:  # noqa: PLR0911 - one return per kind of value
    """Plain JSON values for any decoded field."""
    if isinstance(value, Number):
        return value.value
    if isinstance(value, Special):
        return value.value
    if isinstance(value, DateTime):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Flag):
        return [m.name.lower() for m in type(value) if m.value and m in value]  # type: ignore[union-attr]
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def observation_json(reading: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {"loinc": reading.code, "value": reading.value, "unit": reading.unit}
    if reading.flags:
        out["flags"] = list(reading.flags)
    if reading.device_time is not None:
        out["device_time"] = jsonable(reading.device_time)
    for name in ("time_offset_min", "user", "sequence", "decimals"):
        if getattr(reading, name) is not None:
            out[name] = getattr(reading, name)
    return out


def decode_report(characteristic: str, hex_payload: str) -> dict[str, Any]:
    """Decode one characteristic value; raises DecodeError (one line, no traceback needed) on bad input."""
    spec = lookup(characteristic)
    decoded = spec.decode(parse_hex(hex_payload))
    return {
        "characteristic": {"uuid": f"0x{spec.uuid:04x}", "name": spec.name},
        "fields": jsonable(decoded),
        "observations": [observation_json(r) for r in spec.readings(decoded)],
    }
