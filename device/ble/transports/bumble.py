"""device.ble.transport on top of Google's bumble, acting as the central.

Tests put a bumble `Device` on an in-process `LocalLink` next to virtual peripherals, so the
collector runs over a real GATT stack (ATT errors, CCCDs, indications and their
confirmations, SMP pairing) without a radio; `BumbleRadio.open("usb:0")` runs the same
adapter on a real HCI controller. bumble's API moves between releases: pyproject pins it.

bumble behaviours this adapter hides (see the comments where each is handled):
- a link drop cancels the pending ATT request, so the caller sees a bare CancelledError;
- `gatt_client.subscribe` registers the callback before writing the CCCD and leaves it
  registered when the write fails, so a retry after pairing would deliver every value twice;
- `connect` with a string that does not parse as an address silently scans for a device of
  that *name* instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from bumble import att, core, hci
from bumble.controller import Controller
from bumble.device import Advertisement as BumbleAdvertisement
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic
from bumble.gatt_client import CharacteristicProxy
from bumble.host import Host
from bumble.keys import KeyStore
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

from device.ble.transport import Advertisement, BleError, Disconnected, GattConnection, InsufficientSecurity, Radio

log = logging.getLogger(__name__)

T = TypeVar("T")

# ATT errors that mean "encrypt (pair) first": what a bonded-only cuff answers before pairing.
_SECURITY_ERRORS = frozenset({att.ErrorCode.INSUFFICIENT_AUTHENTICATION, att.ErrorCode.INSUFFICIENT_ENCRYPTION})
_AD_UUID16_LISTS = frozenset(
    {
        core.AdvertisingData.Type.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        core.AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    }
)
_COMPLETE_NAME = core.AdvertisingData.Type.COMPLETE_LOCAL_NAME
_SHORT_NAME = core.AdvertisingData.Type.SHORTENED_LOCAL_NAME
_SIG_BASE = core.UUID.BASE_UUID  # the 96 low bits of every SIG-assigned 128-bit UUID, little-endian
# A larger ATT MTU, as BlueZ negotiates by itself: bumble's server silently truncates a
# notification to MTU-3 (20 octets at the default MTU), and a full glucose record or cuff
# measurement with every optional field is close to that.
_PREFERRED_MTU = 247


def uuid16(uuid: core.UUID) -> int | None:
    """The 16-bit SIG number of a UUID, or None for a vendor 128-bit UUID (which the collector never uses)."""
    raw = uuid.to_bytes(force_128=True)
    if raw[:12] != _SIG_BASE or raw[14:] != b"\x00\x00":
        return None
    return int.from_bytes(raw[12:14], "little")


def local_device(link: LocalLink, name: str, address: str) -> Device:
    """A bumble Device on its own virtual controller on `link` (call inside a running event loop).

    The virtual peripherals in the tests are built the same way, so central and peripherals
    sit on one in-process link.
    """
    controller = Controller(name, link=link)
    return Device(name=name, address=hci.Address(address), host=Host(controller, AsyncPipeSink(controller)))


def just_works(_connection: Connection) -> PairingConfig:
    """Just Works with bonding: a kiosk has no keyboard or display to confirm a passkey.

    MITM protection is not requested because NoInputNoOutput cannot give it; asking for it
    would make some peripherals refuse instead of falling back.
    """
    delegate = PairingDelegate(io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT)
    return PairingConfig(sc=True, mitm=False, bonding=True, delegate=delegate)


def _merge(previous: Advertisement | None, report: BumbleAdvertisement) -> Advertisement:
    """Fold one advertising report into what we already heard from that address.

    Real peripherals often put the name in the scan response and the service UUIDs in the
    advertisement (bumble's virtual controller even repeats the advertising data in its scan
    response), so a report without a name keeps the name heard before, and UUIDs accumulate.
    """
    name: str | None = None
    uuids: set[int] = set()
    for ad_type, data in report.data.ad_structures:
        if ad_type == _COMPLETE_NAME or (ad_type == _SHORT_NAME and name is None):
            name = data.decode("utf-8", errors="replace")
        elif ad_type in _AD_UUID16_LISTS:
            uuids.update(int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data) - 1, 2))
    rssi = None if report.rssi == BumbleAdvertisement.RSSI_NOT_AVAILABLE else report.rssi
    if previous is not None:
        name = name or previous.name
        uuids |= previous.service_uuids
        rssi = rssi if rssi is not None else previous.rssi
    return Advertisement(address=report.address.to_string(), name=name, service_uuids=frozenset(uuids), rssi=rssi)


class BumbleRadio:
    """`Radio` on a bumble Device acting as central.

    Takes a Device that may not be powered yet (the first scan or connect powers it on), so
    tests can build it on a LocalLink with `BumbleRadio.on_link`, and hardware can use
    `BumbleRadio.open`. Connects are serialised: bumble (like a real controller) allows one
    pending LE connection at a time and raises on a second.
    """

    def __init__(self, device: Device, *, transport: Transport | None = None) -> None:
        self.device = device
        self._transport = transport
        self._connect_lock = asyncio.Lock()
        device.pairing_config_factory = just_works

    @classmethod
    def on_link(cls, link: LocalLink, *, address: str = "C0:C0:C0:C0:C0:01", name: str = "kiosk") -> BumbleRadio:
        """A central on an in-process LocalLink (tests); call inside a running event loop."""
        return cls(local_device(link, name, address))

    @classmethod
    async def open(
        cls, spec: str, *, address: str = "C0:C0:C0:C0:C0:01", name: str = "kiosk", keystore: KeyStore | None = None
    ) -> BumbleRadio:
        """A central on a real HCI controller, from a bumble transport spec ("usb:0", "serial:/dev/ttyUSB0", ...).

        Pass a persistent `keystore` (e.g. bumble.keys.JsonKeyStore) on hardware so bonds
        survive a restart; without one bumble keeps them in memory.
        """
        try:
            transport = await open_transport(spec)
        except Exception as error:
            raise BleError(f"cannot open Bluetooth transport {spec!r}: {error}") from error
        device = Device.with_hci(name, hci.Address(address), transport.source, transport.sink)
        device.keystore = keystore
        radio = cls(device, transport=transport)
        await radio.power_on()
        return radio

    async def power_on(self) -> None:
        if not self.device.powered_on:
            try:
                await self.device.power_on()
            except Exception as error:
                raise BleError(f"cannot power on the Bluetooth controller: {error}") from error

    async def close(self) -> None:
        """Power off and close the HCI transport (if this radio opened it)."""
        try:
            if self.device.powered_on:
                await self.device.power_off()
        finally:
            if self._transport is not None:
                await self._transport.close()
                self._transport = None

    async def scan(self, seconds: float) -> list[Advertisement]:
        await self.power_on()
        heard: dict[str, Advertisement] = {}

        def on_advertisement(report: BumbleAdvertisement) -> None:
            address = report.address.to_string()
            heard[address] = _merge(heard.get(address), report)

        self.device.on(Device.EVENT_ADVERTISEMENT, on_advertisement)
        try:
            # Active scan without duplicate filtering: a cuff that advertises only briefly
            # after a measurement must not be lost to a filter state left from earlier.
            await self.device.start_scanning(active=True, filter_duplicates=False)
            try:
                await asyncio.sleep(seconds)  # the scan window itself, not a wait for something
            finally:
                await self.device.stop_scanning()
        except (core.BaseBumbleError, OSError) as error:
            raise BleError(f"scan failed: {error}") from error
        finally:
            self.device.remove_listener(Device.EVENT_ADVERTISEMENT, on_advertisement)
        return list(heard.values())

    async def connect(self, address: str, *, timeout: float = 10.0) -> BumbleConnection:
        await self.power_on()
        try:
            # Parse here: bumble treats a string it cannot parse as a device *name* and scans for it.
            peer_address = hci.Address(address)
        except (ValueError, core.InvalidArgumentError) as error:
            raise BleError(f"{address!r} is not a Bluetooth address") from error
        async with self._connect_lock:
            if self.device.find_connection_by_bd_addr(peer_address, transport=core.PhysicalTransport.LE):
                raise BleError(f"{address}: already connected")
            connection = await self._connect(peer_address, address, timeout)
        gatt = BumbleConnection(connection, address=peer_address.to_string())
        try:
            await gatt.exchange_mtu(_PREFERRED_MTU)
        except Disconnected:
            raise
        except BleError as error:
            # Some peripherals refuse the exchange; the default MTU still works, values just get shorter.
            log.info("%s: keeping the default ATT MTU (%s)", address, error)
        return gatt

    async def _connect(self, peer_address: hci.Address, address: str, timeout: float) -> Connection:
        """bumble's connect with our own timeout.

        bumble's `timeout` sends LE Create Connection Cancel and then waits for the
        controller's Connection Complete; bumble's virtual controller never sends one, so
        that wait never ends. Here the attempt is abandoned on time, cancelled at the
        controller, and a link that completed in the same instant is dropped, not leaked.
        """
        try:
            return await asyncio.wait_for(
                self.device.connect(peer_address, transport=core.PhysicalTransport.LE, timeout=None), timeout
            )
        except TimeoutError:
            try:
                await self.device.send_sync_command(hci.HCI_LE_Create_Connection_Cancel_Command())
            except core.BaseBumbleError as error:
                log.debug("%s: connection cancel refused (%s)", address, error)
            stray = self.device.find_connection_by_bd_addr(peer_address, transport=core.PhysicalTransport.LE)
            if stray is not None:
                try:
                    await stray.disconnect()
                except core.BaseBumbleError as error:
                    log.warning("%s: could not drop a connection that completed after the timeout: %s", address, error)
            raise BleError(f"{address}: no connection within {timeout:g} s (not advertising?)") from None
        except (core.BaseBumbleError, OSError) as error:
            raise BleError(f"{address}: connect failed: {error}") from error


class BumbleConnection:
    """`GattConnection` over one bumble LE connection (this side is the central)."""

    def __init__(self, connection: Connection, *, address: str) -> None:
        self._connection = connection
        self._peer = Peer(connection)
        self._address = address
        self._connected = True
        self._on_disconnect: list[Callable[[], None]] = []
        self._characteristics: dict[int, CharacteristicProxy[bytes]] = {}
        self._services: dict[int, frozenset[int]] | None = None
        connection.on(Connection.EVENT_DISCONNECTION, self._disconnected)

    @property
    def address(self) -> str:
        return self._address

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def is_encrypted(self) -> bool:
        return self._connected and self._connection.is_encrypted

    def _disconnected(self, reason: int) -> None:
        if not self._connected:
            return
        self._connected = False
        log.info("%s: link dropped (HCI reason %#04x)", self._address, reason)
        callbacks, self._on_disconnect = self._on_disconnect, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # One listener's bug must not keep the others from learning the link is gone.
                log.exception("%s: on_disconnect callback failed", self._address)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback` once when the link drops; soon, if it already has (a late registration still hears of it)."""
        if self._connected:
            self._on_disconnect.append(callback)
        else:
            asyncio.get_running_loop().call_soon(callback)

    async def _run(self, what: str, operation: Awaitable[T]) -> T:
        """Await a bumble operation, turning its failures into the transport's errors.

        A link drop makes bumble cancel the pending ATT request, so the CancelledError that
        comes out is ours to translate unless this task itself is being cancelled.
        """
        if not self._connected:
            if asyncio.iscoroutine(operation):
                operation.close()  # never awaited: close it, or Python warns at garbage collection
            raise Disconnected(f"{what} on {self._address}: not connected")
        try:
            return await operation
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._connected and (task is None or task.cancelling() == 0):
                raise Disconnected(f"{what} on {self._address}: link dropped") from None
            raise
        except att.ATT_Error as error:
            raise self._att_error(what, error) from error
        except (core.TimeoutError, TimeoutError) as error:
            raise BleError(f"{what} on {self._address}: no answer in time") from error
        except (core.BaseBumbleError, OSError) as error:
            if not self._connected:
                raise Disconnected(f"{what} on {self._address}: link dropped ({error})") from error
            raise BleError(f"{what} on {self._address} failed: {error}") from error

    def _att_error(self, what: str, error: att.ATT_Error) -> BleError:
        # str(ATT_Error) embeds a colourised dump of the PDU: build our own message.
        code = error.error_code
        if code in _SECURITY_ERRORS:
            if self._connection.is_encrypted:
                # Pairing again will not help: the peripheral wants MITM-protected (passkey) keys,
                # which Just Works cannot give. (bumble itself marks Just Works keys authenticated.)
                hint = "already encrypted; it needs passkey pairing, which this kiosk cannot do"
            else:
                hint = "pair first"
            return InsufficientSecurity(f"{what} on {self._address}: {error.error_name} ({code:#04x}); {hint}")
        return BleError(f"{what} on {self._address}: ATT error {error.error_name} ({code:#04x})")

    async def exchange_mtu(self, mtu: int) -> int:
        return await self._run("MTU exchange", self._peer.request_mtu(mtu))

    async def discover(self) -> dict[int, frozenset[int]]:
        """All primary services and their characteristics (vendor 128-bit UUIDs are left out)."""
        services = await self._run("service discovery", self._peer.discover_services())
        found: dict[int, frozenset[int]] = {}
        characteristics: dict[int, CharacteristicProxy[bytes]] = {}
        for service in services:
            proxies = await self._run("characteristic discovery", self._peer.discover_characteristics(service=service))
            numbers: set[int] = set()
            for proxy in proxies:
                number = uuid16(proxy.uuid)
                if number is not None:
                    numbers.add(number)
                    characteristics.setdefault(number, proxy)  # the first service wins a duplicate
            service_number = uuid16(service.uuid)
            if service_number is not None:
                found[service_number] = found.get(service_number, frozenset()) | numbers
        self._characteristics = characteristics
        self._services = found
        return found

    async def _characteristic(self, uuid: int) -> CharacteristicProxy[bytes]:
        if self._services is None:
            await self.discover()
        proxy = self._characteristics.get(uuid)
        if proxy is None:
            raise BleError(f"{self._address} has no characteristic {uuid:#06x}")
        return proxy

    async def read(self, characteristic: int) -> bytes:
        proxy = await self._characteristic(characteristic)
        value = await self._run(f"read {characteristic:#06x}", self._peer.read_value(proxy))
        return bytes(value)

    async def write(self, characteristic: int, data: bytes, *, with_response: bool = True) -> None:
        proxy = await self._characteristic(characteristic)
        await self._run(
            f"write {characteristic:#06x}", self._peer.write_value(proxy, bytes(data), with_response=with_response)
        )

    async def subscribe(self, characteristic: int, on_value: Callable[[bytes], None]) -> None:
        proxy = await self._characteristic(characteristic)
        if not proxy.properties & (Characteristic.Properties.INDICATE | Characteristic.Properties.NOTIFY):
            raise BleError(f"{self._address}: characteristic {characteristic:#06x} neither indicates nor notifies")
        address = self._address

        def deliver(value: bytes) -> None:
            # Runs inside bumble's PDU handler: an exception here would also skip the
            # confirmation of an indication, and the peripheral would stall for 30 s.
            try:
                on_value(bytes(value))
            except Exception:
                log.exception("%s: subscriber of %#06x failed", address, characteristic)

        try:
            await self._run(
                f"subscribe {characteristic:#06x}", self._peer.subscribe(proxy, deliver, prefer_notify=False)
            )
        except BaseException:
            # bumble registered `deliver` before writing the CCCD and keeps it when the write fails.
            client = self._connection.gatt_client
            for table in (client.indication_subscribers, client.notification_subscribers):
                table.get(proxy.handle, set()).discard(deliver)
            raise

    async def pair(self) -> None:
        """Encrypt the link: with the stored bond when there is one, else by pairing (Just Works, bonding)."""
        if self.is_encrypted:
            return
        device = self._connection.device
        keys = None
        if device.keystore is not None:
            keys = await device.keystore.get(str(self._connection.peer_address))
        if keys is not None:
            try:
                await self._run("encryption with the stored bond", self._connection.encrypt())
            except Disconnected:
                raise
            except BleError as error:
                # The peripheral forgot us (reset, bonded elsewhere): pair again.
                log.warning("%s: %s; pairing again", self._address, error)
            else:
                return
        await self._run("pairing", self._connection.pair())
        if not self._connection.is_encrypted:
            raise InsufficientSecurity(f"pairing with {self._address} finished but the link is not encrypted")

    async def disconnect(self) -> None:
        if not self._connected:
            return
        try:
            await self._connection.disconnect()
        except (core.BaseBumbleError, OSError) as error:
            if self._connected:
                raise BleError(f"disconnect from {self._address} failed: {error}") from error


if TYPE_CHECKING:

    def _conforms(radio: BumbleRadio, connection: BumbleConnection) -> tuple[Radio, GattConnection]:
        """Never called: mypy checks here that the adapter satisfies the transport Protocols."""
        return radio, connection
