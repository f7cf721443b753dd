"""The kiosk's Bluetooth stack: bleak over BlueZ, as thin as it can be.

All the GATT logic lives in the collector and is tested over bumble's real GATT stack; this
adapter only translates. It cannot run on machines without BlueZ and a radio (the build and
test machines), so its tests are marked `hardware` and run on a Pi (`pytest -m hardware`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from device.ble.decoders import full_uuid
from device.ble.transport import Advertisement, BleError, Disconnected, InsufficientSecurity

_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
# What BlueZ says when a characteristic needs an encrypted (bonded) link, lower-cased, spaces and dots removed
# ("Insufficient Authentication", "org.bluez.Error.NotAuthorized", "org.bluez.Error.NotPermitted").
_SECURITY_HINTS = ("insufficientauthentication", "insufficientencryption", "notauthorized", "notpermitted")


def _short(uuid: str) -> int | None:
    """'00002a35-0000-1000-8000-00805f9b34fb' -> 0x2A35; None for vendor (non-SIG) UUIDs."""
    uuid = uuid.lower()
    if uuid.startswith("0000") and uuid.endswith(_BASE_SUFFIX):
        return int(uuid[4:8], 16)
    return None


def _error(address: str, what: str, exc: Exception) -> BleError:
    text = str(exc)
    squashed = text.lower().replace(".", "").replace(" ", "")
    if any(hint in squashed for hint in _SECURITY_HINTS):
        return InsufficientSecurity(f"{address}: {what} needs a bonded link ({text})")
    return BleError(f"{address}: {what} failed: {text}")


class BleakConnection:
    def __init__(self, client: BleakClient, address: str) -> None:
        self._client = client
        self._address = address
        self._on_disconnect: list[Callable[[], None]] = []

    @property
    def address(self) -> str:
        return self._address

    @property
    def is_connected(self) -> bool:
        return bool(self._client.is_connected)

    def _disconnected(self, _client: BleakClient) -> None:
        for callback in self._on_disconnect:
            callback()

    async def discover(self) -> dict[int, frozenset[int]]:
        services: dict[int, frozenset[int]] = {}
        for service in self._client.services:
            number = _short(service.uuid)
            if number is not None:
                chars = (_short(c.uuid) for c in service.characteristics)
                services[number] = frozenset(c for c in chars if c is not None)
        return services

    async def read(self, characteristic: int) -> bytes:
        try:
            return bytes(await self._client.read_gatt_char(full_uuid(characteristic)))
        except (BleakError, OSError) as exc:
            raise self._failure(f"read {characteristic:#06x}", exc) from exc

    async def write(self, characteristic: int, data: bytes, *, with_response: bool = True) -> None:
        try:
            await self._client.write_gatt_char(full_uuid(characteristic), data, response=with_response)
        except (BleakError, OSError) as exc:
            raise self._failure(f"write {characteristic:#06x}", exc) from exc

    async def subscribe(self, characteristic: int, on_value: Callable[[bytes], None]) -> None:
        def forward(_char: Any, data: bytearray) -> None:
            on_value(bytes(data))

        try:
            await self._client.start_notify(full_uuid(characteristic), forward)
        except (BleakError, OSError) as exc:
            raise self._failure(f"subscribe {characteristic:#06x}", exc) from exc

    async def pair(self) -> None:
        try:
            await self._client.pair()
        except (BleakError, OSError) as exc:
            raise self._failure("pairing", exc) from exc

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self._on_disconnect.append(callback)

    async def disconnect(self) -> None:
        try:
            await self._client.disconnect()
        except (BleakError, OSError) as exc:
            raise self._failure("disconnect", exc) from exc

    def _failure(self, what: str, exc: Exception) -> BleError:
        if not self._client.is_connected:
            return Disconnected(f"{self._address}: link lost during {what}")
        return _error(self._address, what, exc)


class BleakRadio:
    """BlueZ through bleak. Pairing on a headless Pi needs a registered agent (see firmware_configs/README.md)."""

    async def scan(self, seconds: float) -> list[Advertisement]:
        try:
            found = await BleakScanner.discover(timeout=seconds, return_adv=True)
        except FileNotFoundError as exc:  # no D-Bus system bus: bleak's only hint is a bare path
            raise BleError("no Bluetooth stack: BlueZ (bluetoothd) and the D-Bus system bus are needed") from exc
        except (BleakError, OSError) as exc:
            raise BleError(f"scan failed: {exc}") from exc
        ads = []
        for device, adv in found.values():
            services = (_short(u) for u in adv.service_uuids)
            ads.append(
                Advertisement(
                    address=device.address,
                    name=adv.local_name or device.name,
                    service_uuids=frozenset(s for s in services if s is not None),
                    rssi=adv.rssi,
                )
            )
        return ads

    async def connect(self, address: str, *, timeout: float = 10.0) -> BleakConnection:
        connection: BleakConnection | None = None

        def dropped(client: BleakClient) -> None:
            if connection is not None:
                connection._disconnected(client)

        client = BleakClient(address, disconnected_callback=dropped, timeout=timeout)
        connection = BleakConnection(client, address)
        try:
            await asyncio.wait_for(client.connect(), timeout)
        except (BleakError, OSError, TimeoutError) as exc:
            raise BleError(f"{address}: connect failed: {exc or 'timed out'}") from exc
        return connection
