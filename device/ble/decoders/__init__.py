"""One module per Bluetooth SIG health service; each registers its characteristics here.

A decoder is a pure function ``bytes -> dataclass``: no I/O, no clock, no framework
imports, so it is tested byte for byte and reused by the collector and `kiosk ble decode`.
It raises only `DecodeError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.ble.errors import DecodeError
from device.ble.readings import Reading

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def _no_readings(_decoded: Any) -> list[Reading]:
    return []


@dataclass(frozen=True)
class Characteristic:
    """A characteristic we decode: its 16-bit SIG number, name, decoder and clinical mapping."""

    uuid: int
    name: str
    decode: Callable[[bytes], Any]  # bytes -> a frozen dataclass of every field; raises DecodeError only
    readings: Callable[[Any], list[Reading]] = _no_readings  # decoded -> observations (none for e.g. features)


REGISTRY: dict[int, Characteristic] = {}


def register(characteristic: Characteristic) -> Characteristic:
    """Called once per characteristic at the bottom of its service module."""
    if characteristic.uuid in REGISTRY:
        raise RuntimeError(f"characteristic {characteristic.uuid:#06x} registered twice")
    REGISTRY[characteristic.uuid] = characteristic
    return characteristic


_SHORT = re.compile(r"^(?:0x)?([0-9a-f]{4})$")
_FULL = re.compile(r"^0000([0-9a-f]{4})" + re.escape(BASE_UUID_SUFFIX) + "$")


def uuid16(text: str) -> int:
    """'2a35', '0x2A35' or '00002a35-0000-1000-8000-00805f9b34fb' -> 0x2A35."""
    value = text.strip().lower()
    match = _SHORT.match(value) or _FULL.match(value)
    if match is None:
        raise DecodeError(
            f"{text!r} is not a Bluetooth SIG characteristic UUID: "
            "give 4 hex digits (2a35, 0x2A35) or the full form 00002a35-0000-1000-8000-00805f9b34fb"
        )
    return int(match.group(1), 16)


def full_uuid(number: int) -> str:
    return f"0000{number:04x}{BASE_UUID_SUFFIX}"


def lookup(text: str) -> Characteristic:
    number = uuid16(text)
    found = REGISTRY.get(number)
    if found is None:
        raise DecodeError(f"no decoder for characteristic {number:#06x}; known: {known()}")
    return found


def known() -> str:
    return ", ".join(f"{c.uuid:04x} {c.name}" for c in sorted(REGISTRY.values(), key=lambda c: c.uuid))


# Importing a service module registers its characteristics (each ends with register(...) calls).
from device.ble.decoders import (  # noqa: E402
    blood_pressure,
    body_composition,
    cgm,
    current_time,
    device_information,
    glucose,
    heart_rate,
    pulse_oximeter,
    racp,
    thermometer,
    weight_scale,
)

__all__ = [
    "REGISTRY",
    "Characteristic",
    "blood_pressure",
    "body_composition",
    "cgm",
    "current_time",
    "device_information",
    "glucose",
    "heart_rate",
    "known",
    "lookup",
    "pulse_oximeter",
    "racp",
    "register",
    "thermometer",
    "uuid16",
    "weight_scale",
]
