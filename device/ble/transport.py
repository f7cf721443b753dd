"""The narrow interface between the collector's GATT logic and a Bluetooth stack.

Production uses bleak (BlueZ on the Pi); tests use bumble's virtual controllers on an
in-process link, so the collector is exercised over a real GATT stack without a radio.
Everything here speaks in 16-bit SIG UUIDs: the health services and characteristics we
use are all SIG-assigned, and adapters convert to and from 128-bit forms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class BleError(Exception):
    """A transport failure (connect, read, write, subscribe); the message says what and with which device."""


class InsufficientSecurity(BleError):
    """The peripheral refused until the link is encrypted (ATT 0x05/0x0F): pair, then try again."""


class Disconnected(BleError):
    """The link dropped while an operation was pending."""


@dataclass(frozen=True)
class Advertisement:
    address: str
    name: str | None
    service_uuids: frozenset[int] = field(default_factory=frozenset)  # 16-bit SIG service UUIDs advertised
    rssi: int | None = None


class GattConnection(Protocol):
    """One connected peripheral."""

    @property
    def address(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    async def discover(self) -> dict[int, frozenset[int]]:
        """Services on the peripheral: 16-bit service UUID -> its 16-bit characteristic UUIDs."""
        ...

    async def read(self, characteristic: int) -> bytes: ...

    async def write(self, characteristic: int, data: bytes, *, with_response: bool = True) -> None: ...

    async def subscribe(self, characteristic: int, on_value: Callable[[bytes], None]) -> None:
        """Enable indications or notifications (whichever the characteristic offers, indications first)."""
        ...

    async def pair(self) -> None:
        """Pair and bond (Just Works: a kiosk has no keyboard for a passkey); no-op when already encrypted."""
        ...

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback` once when the link drops (either side)."""
        ...

    async def disconnect(self) -> None: ...


class Radio(Protocol):
    """The local adapter: find peripherals and connect to them."""

    async def scan(self, seconds: float) -> list[Advertisement]:
        """Advertisements heard within `seconds`, one per address (the latest)."""
        ...

    async def connect(self, address: str, *, timeout: float = 10.0) -> GattConnection: ...
