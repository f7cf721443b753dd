"""Virtual Bluetooth LE medical peripherals on bumble: for the transport, collector and kiosk tests, and the demo.

Each peripheral is a real bumble GATT server on its own virtual controller on a shared
`LocalLink`, so the code under test meets ATT errors, CCCD writes, indications that wait for
a confirmation, and SMP pairing, exactly as over the air. They behave like the devices the
field notes describe rather than like the spec's happy path:

- every peripheral except the strap and the CGM stamps measurements with its own clock, which
  drifts (`clock_drift`) until a client writes Current Time; the CGM counts minutes since its
  session start, which it reports with its zone and daylight saving;
- the cuff indicates only to an encrypted (bonded) link, and right after a client
  subscribes it sends the readings it stored while nobody listened;
- the glucose meter answers RACP only when the client enabled indications first, one
  procedure at a time, records as notifications then a response indication;
- any peripheral can `go_away()` (drop the link, stop advertising) and `come_back()`.

Measurement bytes are built by the small encoders below, written from the SIG layouts
independently of the decoders under test (so a shared misunderstanding would show up as a
failing round trip, not be copied into both sides).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, TypedDict, TypeVar, Unpack

from bumble import att, gatt
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.link import LocalLink

from device.ble.decoders import racp
from device.ble.decoders.current_time import AdjustReason, decode_current_time, encode_current_time
from device.ble.errors import DecodeError
from device.ble.transports.bumble import BumbleRadio, local_device

log = logging.getLogger(__name__)

P = TypeVar("P", bound="VirtualPeripheral")

NOTIFY = gatt.Characteristic.Properties.NOTIFY
INDICATE = gatt.Characteristic.Properties.INDICATE
READ = gatt.Characteristic.Properties.READ
WRITE = gatt.Characteristic.Properties.WRITE

# Service and characteristic numbers, as the SIG assigns them.
DEVICE_INFORMATION = 0x180A
MANUFACTURER_NAME, MODEL_NUMBER, SERIAL_NUMBER, FIRMWARE_REVISION = 0x2A29, 0x2A24, 0x2A25, 0x2A26
CURRENT_TIME_SERVICE, CURRENT_TIME = 0x1805, 0x2A2B
HEART_RATE, HEART_RATE_MEASUREMENT, BODY_SENSOR_LOCATION = 0x180D, 0x2A37, 0x2A38
BLOOD_PRESSURE, BP_MEASUREMENT, INTERMEDIATE_CUFF_PRESSURE, BP_FEATURE = 0x1810, 0x2A35, 0x2A36, 0x2A49
HEALTH_THERMOMETER, TEMPERATURE_MEASUREMENT, TEMPERATURE_TYPE = 0x1809, 0x2A1C, 0x2A1D
WEIGHT_SCALE, WEIGHT_MEASUREMENT, WEIGHT_SCALE_FEATURE = 0x181D, 0x2A9D, 0x2A9E
GLUCOSE, GLUCOSE_MEASUREMENT, GLUCOSE_CONTEXT, GLUCOSE_FEATURE, RACP = 0x1808, 0x2A18, 0x2A34, 0x2A51, 0x2A52
PULSE_OXIMETER, PLX_SPOT_CHECK, PLX_CONTINUOUS, PLX_FEATURES = 0x1822, 0x2A5E, 0x2A5F, 0x2A60
BODY_COMPOSITION, BODY_COMPOSITION_FEATURE, BODY_COMPOSITION_MEASUREMENT = 0x181B, 0x2A9B, 0x2A9C
CGM, CGM_MEASUREMENT, CGM_FEATURE, CGM_SESSION_START_TIME = 0x181F, 0x2AA7, 0x2AA8, 0x2AAA

# ATT application errors the services define (Core Spec Supplement, Part B).
CTS_DATA_FIELD_IGNORED = 0x80
CCCD_IMPROPERLY_CONFIGURED = 0xFD
PROCEDURE_ALREADY_IN_PROGRESS = 0xFE

_CCCD_NOTIFY = 0x01
_CCCD_INDICATE = 0x02


# --- encoders (SIG layouts) -----------------------------------------------------------------


def sfloat_raw(mantissa: int, exponent: int) -> bytes:
    """IEEE 11073 SFLOAT from its parts; the mantissas ±2046..2047/-2048 are the special values, so refused."""
    if not -2045 <= mantissa <= 2045 or not -8 <= exponent <= 7:
        raise ValueError(f"SFLOAT cannot hold {mantissa}e{exponent}")
    return (((exponent & 0x0F) << 12) | (mantissa & 0x0FFF)).to_bytes(2, "little")


def sfloat(value: float, exponent: int = 0) -> bytes:
    """`value` as an SFLOAT with `exponent` (decimals = -exponent), e.g. sfloat(37.6, -1)."""
    return sfloat_raw(round(value / 10.0**exponent), exponent)


def float32(value: float, exponent: int = -1) -> bytes:
    mantissa = round(value / 10.0**exponent)
    if not -(2**23 - 3) <= mantissa <= 2**23 - 3 or not -128 <= exponent <= 127:
        raise ValueError(f"FLOAT cannot hold {value} with exponent {exponent}")
    return (((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)).to_bytes(4, "little")


def date_time(when: datetime) -> bytes:
    """Date Time (0x2A08): year uint16, month, day, hours, minutes, seconds."""
    return when.year.to_bytes(2, "little") + bytes((when.month, when.day, when.hour, when.minute, when.second))


def heart_rate_measurement(bpm: int, *, rr_intervals: Sequence[int] = ()) -> bytes:
    """HRS: uint8 bpm when it fits (flag bit 0 clear), else uint16; RR intervals in 1/1024 s."""
    flags = 0x01 if bpm > 0xFF else 0x00
    value = bpm.to_bytes(2 if flags else 1, "little")
    if rr_intervals:
        flags |= 0x10
        value += b"".join(rr.to_bytes(2, "little") for rr in rr_intervals)
    return bytes((flags,)) + value


def _pressure(value: float) -> bytes:
    return sfloat(value, 0 if value == int(value) else -1)


def blood_pressure_measurement(
    systolic: float,
    diastolic: float,
    mean_arterial: float,
    *,
    pulse: float | None = None,
    time: datetime | None = None,
    user: int | None = None,
    status: int | None = None,
) -> bytes:
    """BLS 0x2A35 in mmHg: flags, three SFLOATs, then time stamp, pulse rate, user id, status as flagged."""
    flags = 0
    tail = b""
    if time is not None:
        flags |= 0x02
        tail += date_time(time)
    if pulse is not None:
        flags |= 0x04
        tail += _pressure(pulse)
    if user is not None:
        flags |= 0x08
        tail += bytes((user,))
    if status is not None:
        flags |= 0x10
        tail += status.to_bytes(2, "little")
    return bytes((flags,)) + _pressure(systolic) + _pressure(diastolic) + _pressure(mean_arterial) + tail


def intermediate_cuff_pressure(pressure: float) -> bytes:
    """BLS 0x2A36: the current cuff pressure, then NaN for the two unused compound values."""
    nan = (0x07FF).to_bytes(2, "little")
    return b"\x00" + _pressure(pressure) + nan + nan


def temperature_measurement(
    celsius: float, *, time: datetime | None = None, temperature_type: int | None = None
) -> bytes:
    """HTS 0x2A1C: flags, a FLOAT in °C (one decimal), then time stamp and type as flagged."""
    flags = 0
    tail = b""
    if time is not None:
        flags |= 0x02
        tail += date_time(time)
    if temperature_type is not None:
        flags |= 0x04
        tail += bytes((temperature_type,))
    return bytes((flags,)) + float32(celsius, -1) + tail


def weight_measurement(kg: float, *, time: datetime | None = None, user: int | None = None) -> bytes:
    """WSS 0x2A9D in SI units: uint16 in 0.005 kg steps, then time stamp and user id as flagged."""
    flags = 0
    tail = b""
    if time is not None:
        flags |= 0x02
        tail += date_time(time)
    if user is not None:
        flags |= 0x04
        tail += bytes((user,))
    return bytes((flags,)) + round(kg / 0.005).to_bytes(2, "little") + tail


def plx_spot_check(spo2: float, pulse: float, *, time: datetime | None = None) -> bytes:
    """PLXS 0x2A5E: flags, SpO2 % and pulse rate as SFLOATs, then the timestamp when flagged."""
    flags = 0x01 if time is not None else 0x00
    return bytes((flags,)) + sfloat(spo2) + sfloat(pulse) + (date_time(time) if time is not None else b"")


def plx_continuous(spo2: float, pulse: float) -> bytes:
    """PLXS 0x2A5F with only the normal SpO2PR pair."""
    return b"\x00" + sfloat(spo2) + sfloat(pulse)


@dataclass(frozen=True)
class GlucoseRecord:
    """A meter's stored result: base time from the meter's own clock plus a time offset (GLS)."""

    sequence: int
    base_time: datetime
    mg_dl: int
    offset_min: int = 0
    sample_type: int = 0x1  # capillary whole blood
    location: int = 0x1  # finger
    meal: int | None = None  # GLS meal code (1 preprandial, 2 postprandial, 3 fasting...): sends a context too

    def context(self) -> bytes | None:
        """0x2A34 for this record, when it has one: flags (meal present), sequence, meal."""
        if self.meal is None:
            return None
        return bytes((0x02,)) + self.sequence.to_bytes(2, "little") + bytes((self.meal,))

    def encode(self) -> bytes:
        """0x2A18: flags (offset + concentration in kg/L), sequence, base time, offset, SFLOAT, type-location.

        mg/dL is 10^-5 kg/L, so the SFLOAT is mantissa = mg/dL, exponent -5: exact, no float.
        """
        return (
            bytes((0x03 | (0x10 if self.meal is not None else 0),))  # 0x10: a context follows
            + self.sequence.to_bytes(2, "little")
            + date_time(self.base_time)
            + self.offset_min.to_bytes(2, "little", signed=True)
            + sfloat_raw(self.mg_dl, -5)
            + bytes(((self.location << 4) | self.sample_type,))
        )


class BodyComposition(TypedDict, total=False):
    """The optional fields of a Body Composition Measurement, in SI units (see the encoder)."""

    user: int
    basal_metabolism_kj: int
    muscle_pct: float
    muscle_mass_kg: float
    fat_free_mass_kg: float
    soft_lean_mass_kg: float
    body_water_mass_kg: float
    impedance_ohm: float
    weight_kg: float
    height_m: float


BODY_FAT_UNSUCCESSFUL = 0xFFFF  # BCS: "measurement unsuccessful" in the body fat percentage field


def body_composition_measurement(
    body_fat_pct: float | None,
    *,
    time: datetime | None = None,
    user: int | None = None,
    basal_metabolism_kj: int | None = None,
    muscle_pct: float | None = None,
    muscle_mass_kg: float | None = None,
    fat_free_mass_kg: float | None = None,
    soft_lean_mass_kg: float | None = None,
    body_water_mass_kg: float | None = None,
    impedance_ohm: float | None = None,
    weight_kg: float | None = None,
    height_m: float | None = None,
) -> bytes:
    """BCS 0x2A9C in SI units: flags uint16, body fat uint16 in 0.1 %, then the flagged fields in order.

    Flags: bit 0 units (clear: SI), 1 time stamp, 2 user id, 3 basal metabolism (uint16 kJ),
    4 muscle percentage (0.1 %), 5 muscle mass, 6 fat free mass, 7 soft lean mass, 8 body water
    mass (masses uint16 in 0.005 kg), 9 impedance (0.1 ohm), 10 weight (0.005 kg), 11 height
    (0.001 m), 12 multiple packet (never set here: everything fits one indication).
    `body_fat_pct` None sends 0xFFFF, "measurement unsuccessful".
    """
    flags = 0
    tail = b""
    if time is not None:
        flags |= 0x0002
        tail += date_time(time)
    if user is not None:
        flags |= 0x0004
        tail += bytes((user,))
    steps: tuple[tuple[int, float | None, float], ...] = (
        (0x0008, basal_metabolism_kj, 1),
        (0x0010, muscle_pct, 0.1),
        (0x0020, muscle_mass_kg, 0.005),
        (0x0040, fat_free_mass_kg, 0.005),
        (0x0080, soft_lean_mass_kg, 0.005),
        (0x0100, body_water_mass_kg, 0.005),
        (0x0200, impedance_ohm, 0.1),
        (0x0400, weight_kg, 0.005),
        (0x0800, height_m, 0.001),
    )
    for bit, value, step in steps:
        if value is not None:
            flags |= bit
            tail += round(value / step).to_bytes(2, "little")
    fat = BODY_FAT_UNSUCCESSFUL if body_fat_pct is None else round(body_fat_pct * 10)
    return flags.to_bytes(2, "little") + fat.to_bytes(2, "little") + tail


def _reflect(value: int, width: int) -> int:
    return int(f"{value:0{width}b}"[::-1], 2)


def cgm_crc(data: bytes) -> int:
    """The CGMS E2E-CRC, from the spec's parameters rather than from the decoder.

    CRC-CCITT generator x^16 + x^12 + x^5 + 1 (0x1021), seed 0xFFFF, octets fed least significant
    bit first, no final XOR: the textbook MSB-first register fed with bit-reversed octets, the
    result bit-reversed back (the catalogue's CRC-16/MCRF4XX; "123456789" gives 0x6F91).
    """
    crc = 0xFFFF  # symmetric, so the same seed in either bit order
    for octet in data:
        crc ^= _reflect(octet, 8) << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return _reflect(crc, 16)


def _with_crc(value: bytes, crc: bool) -> bytes:
    return value + cgm_crc(value).to_bytes(2, "little") if crc else value


def cgm_measurement(mg_dl: float, minutes_since_start: int, *, crc: bool = False) -> bytes:
    """One CGMS 0x2AA7 record: size (all octets, CRC included), flags 0, SFLOAT mg/dL, uint16 time offset [, CRC]."""
    fields = bytes((0x00,)) + sfloat(mg_dl) + minutes_since_start.to_bytes(2, "little")
    size = 1 + len(fields) + (2 if crc else 0)
    return _with_crc(bytes((size,)) + fields, crc)


_DST_CODES = {0: 0, 30: 2, 60: 4, 120: 8}  # DST offset in minutes -> the field's code (0x2A0D)


def cgm_session_start_time(start: datetime, *, crc: bool = False) -> bytes:
    """CGMS 0x2AAA for an aware `start`: Date Time (its wall time), Time Zone, DST Offset [, CRC].

    The Time Zone (sint8) is the standard-time offset from UTC in quarter hours; the daylight
    saving in force goes in DST Offset (0 standard, 2 +0.5 h, 4 +1 h, 8 +2 h), so zone + DST
    is the UTC offset of the wall time.
    """
    offset = start.utcoffset()
    if offset is None:
        raise ValueError("a session start time needs an aware datetime")
    dst = start.dst() or timedelta(0)
    quarters, rest = divmod(offset - dst, timedelta(minutes=15))
    dst_minutes = dst // timedelta(minutes=1)
    if rest or dst_minutes not in _DST_CODES:
        raise ValueError(f"{start} has an offset CGMS cannot carry")
    value = date_time(start) + quarters.to_bytes(1, "little", signed=True) + bytes((_DST_CODES[dst_minutes],))
    return _with_crc(value, crc)


def cgm_feature(*, crc: bool) -> bytes:
    """CGMS 0x2AA8: features uint24, type (low nibble) and sample location (high), E2E-CRC.

    Bit 12 says E2E-CRC is supported; without it the CRC field is 0xFFFF, as the spec asks.
    Interstitial fluid (type 9) from subcutaneous tissue (location 5).
    """
    features = 0x001000 if crc else 0x000000
    value = features.to_bytes(3, "little") + bytes(((5 << 4) | 9,))
    return _with_crc(value, True) if crc else value + b"\xff\xff"


def racp_response(request_op_code: int, code: racp.ResponseCode) -> bytes:
    return bytes((racp.OpCode.RESPONSE_CODE, racp.Operator.NULL, request_op_code, code))


def racp_count(count: int) -> bytes:
    return bytes((racp.OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, racp.Operator.NULL)) + count.to_bytes(2, "little")


# --- the common part -------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """What the Device Information service reports."""

    manufacturer: str = "Virtual Medical Ltd"
    model: str = "VM-1"
    serial: str = "SN-0001"
    firmware: str = "1.0.0"


class DeviceClock:
    """A peripheral's wall clock: local time plus a drift, set right by a Current Time write.

    Devices keep local wall time with no zone, hence naive local datetimes throughout.
    """

    def __init__(self, drift: timedelta = timedelta(0)) -> None:
        self.drift = drift

    def now(self) -> datetime:
        return datetime.now() + self.drift

    def set(self, to: datetime) -> None:
        self.drift = to - datetime.now()


class Common(TypedDict, total=False):
    """Keyword arguments every peripheral takes."""

    name: str
    address: str
    info: DeviceInfo
    clock_drift: timedelta


@dataclass
class _Characteristic:
    attribute: gatt.Characteristic[bytes]
    subscribers: dict[Connection, int] = field(default_factory=dict)  # connection -> CCCD bits
    stored: list[bytes] = field(default_factory=list)  # measurements nobody was subscribed for


class VirtualPeripheral:
    """A bumble Device on `link` with DIS, Current Time (unless HAS_CLOCK is false) and the subclass's service.

    Call `start()` (or use `Bench.add`) to power it on and advertise. After a central
    disconnects it advertises again, unless it was sent away.
    """

    SERVICE: ClassVar[int]
    DEFAULT_NAME: ClassVar[str]
    HAS_CLOCK: ClassVar[bool] = True

    def __init__(self, link: LocalLink, **common: Unpack[Common]) -> None:
        self.name = common.get("name", self.DEFAULT_NAME)
        self.address = common.get("address") or _next_address()
        self.info = common.get("info", DeviceInfo())
        self.clock = DeviceClock(common.get("clock_drift", timedelta(0))) if self.HAS_CLOCK else None
        self.device = local_device(link, self.name, self.address)
        self.connections: list[Connection] = []
        self.pairings = 0  # completed SMP pairings: a reconnect that reuses the bond adds none
        # Cleared, reads of DIS and Current Time hang (a device that stopped answering mid-request);
        # `stalled` is set once such a read is waiting, so a test knows the request is in flight.
        self.responding = asyncio.Event()
        self.responding.set()
        self.stalled = asyncio.Event()
        self._characteristics: dict[int, _Characteristic] = {}
        self._present = True
        self._tasks: set[asyncio.Task[None]] = set()
        self._advertising = asyncio.Lock()
        self.device.on(Device.EVENT_CONNECTION, self._on_connection)

    # -- building the GATT database

    def services(self) -> list[gatt.Service]:
        """The device's own service(s); subclasses override."""
        return []

    def characteristic(
        self,
        uuid: int,
        properties: gatt.Characteristic.Properties,
        value: bytes = b"",
        *,
        read: Callable[[Connection], Awaitable[bytes]] | None = None,
        write: Callable[[Connection, bytes], None] | None = None,
        encrypted_cccd: bool = False,
    ) -> gatt.Characteristic[bytes]:
        """A characteristic whose subscriptions we track; `encrypted_cccd`: subscribing needs an encrypted link."""
        permissions = att.Attribute.Permissions(0)
        if properties & READ:
            permissions |= att.Attribute.Permissions.READABLE
        if properties & WRITE:
            permissions |= att.Attribute.Permissions.WRITEABLE
        content: bytes | gatt.CharacteristicValue[bytes] = value
        if read is not None or write is not None:
            content = gatt.CharacteristicValue(read=read, write=write)
        attribute: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID.from_16_bits(uuid), properties, permissions, content
        )
        if encrypted_cccd:
            # bumble adds a plain CCCD unless one is given; this one answers 0x0F (insufficient
            # encryption) to an unencrypted write, as a cuff that indicates only to a bonded kiosk.
            attribute.descriptors = [
                gatt.Descriptor(
                    gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                    att.Attribute.Permissions.READABLE
                    | att.Attribute.Permissions.WRITEABLE
                    | att.Attribute.Permissions.WRITE_REQUIRES_ENCRYPTION,
                    self.device.gatt_server.make_descriptor_value(attribute),
                )
            ]
        entry = _Characteristic(attribute)
        self._characteristics[uuid] = entry

        def on_subscription(connection: Connection, notify: bool, indicate: bool) -> None:
            bits = (_CCCD_NOTIFY if notify else 0) | (_CCCD_INDICATE if indicate else 0)
            if bits:
                entry.subscribers[connection] = bits
            else:
                entry.subscribers.pop(connection, None)
            if indicate and entry.stored:
                self.spawn(self._send_stored(connection, entry))

        attribute.on(gatt.Characteristic.EVENT_SUBSCRIPTION, on_subscription)
        return attribute

    async def _answer(self) -> None:
        if not self.responding.is_set():
            self.stalled.set()
            await self.responding.wait()

    def _device_information(self) -> gatt.Service:
        async def constant(value: str) -> bytes:
            await self._answer()
            return value.encode()

        def reader(value: str) -> Callable[[Connection], Awaitable[bytes]]:
            return lambda _connection: constant(value)

        info = self.info
        return gatt.Service(
            UUID.from_16_bits(DEVICE_INFORMATION),
            [
                self.characteristic(uuid, READ, read=reader(text))
                for uuid, text in (
                    (MANUFACTURER_NAME, info.manufacturer),
                    (MODEL_NUMBER, info.model),
                    (SERIAL_NUMBER, info.serial),
                    (FIRMWARE_REVISION, info.firmware),
                )
            ],
        )

    def _current_time_service(self, clock: DeviceClock) -> gatt.Service:
        async def read(_connection: Connection) -> bytes:
            await self._answer()
            return encode_current_time(clock.now())

        def write(_connection: Connection, value: bytes) -> None:
            # CTS: a value the server cannot take is refused with "Data field ignored" (0x80).
            try:
                decoded = decode_current_time(value)
            except DecodeError:
                raise att.ATT_Error(CTS_DATA_FIELD_IGNORED) from None
            day = decoded.date_time
            if day.year is None or day.month is None or day.day is None:
                raise att.ATT_Error(CTS_DATA_FIELD_IGNORED)
            try:
                when = datetime(day.year, day.month, day.day, day.hours, day.minutes, day.seconds, decoded.microseconds)
            except ValueError:
                raise att.ATT_Error(CTS_DATA_FIELD_IGNORED) from None
            clock.set(when)

        return gatt.Service(
            UUID.from_16_bits(CURRENT_TIME_SERVICE),
            [self.characteristic(CURRENT_TIME, READ | WRITE | NOTIFY, read=read, write=write)],
        )

    # -- life cycle

    @property
    def advertised(self) -> tuple[int, ...]:
        """Service UUIDs in the advertisement: the device's own service, as real devices do (not DIS or CTS)."""
        return (self.SERVICE,)

    def advertising_data(self) -> bytes:
        uuids = b"".join(uuid.to_bytes(2, "little") for uuid in self.advertised)
        data = bytes(
            AdvertisingData(
                [
                    (AdvertisingData.Type.FLAGS, bytes((0x06,))),  # LE General Discoverable, BR/EDR not supported
                    (AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, uuids),
                    (AdvertisingData.Type.COMPLETE_LOCAL_NAME, self.name.encode()),
                ]
            )
        )
        if len(data) > 31:
            # bumble's virtual controller sends no separate scan response data: it must all fit here.
            raise ValueError(f"advertising data for {self.name!r} is {len(data)} octets, legacy allows 31")
        return data

    async def start(self) -> None:
        """Build the GATT database, power on and advertise."""
        services = [self._device_information(), *self.services()]
        if self.clock is not None:
            services.append(self._current_time_service(self.clock))
        self.device.add_services(services)
        await self.device.power_on()
        await self._advertise()

    async def _advertise(self) -> None:
        async with self._advertising:
            if self._present and not self.connections:
                # 20 ms so that a scan of a few tenths of a second hears every peripheral several times.
                await self.device.start_advertising(
                    advertising_data=self.advertising_data(), advertising_interval_min=20, advertising_interval_max=20
                )

    def _on_connection(self, connection: Connection) -> None:
        self.connections.append(connection)
        connection.on(Connection.EVENT_DISCONNECTION, lambda _reason: self._on_disconnection(connection))
        connection.on(Connection.EVENT_PAIRING, self._on_pairing)

    def _on_pairing(self, _keys: object) -> None:
        self.pairings += 1

    def _on_disconnection(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        for entry in self._characteristics.values():
            entry.subscribers.pop(connection, None)
        if self._present:
            self.spawn(self._advertise())

    async def go_away(self) -> None:
        """Walk out of range: stop advertising and drop every link (the central sees the link go)."""
        self._present = False
        async with self._advertising:
            await self.device.stop_advertising()
        for connection in list(self.connections):
            await connection.disconnect()

    async def come_back(self) -> None:
        self._present = True
        await self._advertise()

    async def stop(self) -> None:
        await self.go_away()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.device.power_off()

    def spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        """Run `work` in the background, kept until done; a failure is logged, never lost silently."""

        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: background work failed", self.name)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sending values

    def subscribers(self, uuid: int, bits: int) -> list[Connection]:
        """Connections that enabled `bits` (notify 1, indicate 2) on characteristic `uuid`."""
        return [c for c, on in self._characteristics[uuid].subscribers.items() if on & bits]

    async def notify(self, uuid: int, value: bytes) -> None:
        attribute = self._characteristics[uuid].attribute
        for connection in self.subscribers(uuid, _CCCD_NOTIFY):
            await self.device.notify_subscriber(connection, attribute, value)

    async def indicate(self, uuid: int, value: bytes) -> None:
        """Indicate to every subscriber; returns when each has confirmed."""
        attribute = self._characteristics[uuid].attribute
        for connection in self.subscribers(uuid, _CCCD_INDICATE):
            await self.device.indicate_subscriber(connection, attribute, value)

    async def measure(self, uuid: int, value: bytes) -> None:
        """A new measurement: indicated now if someone subscribed, else stored for the next subscriber."""
        entry = self._characteristics[uuid]
        if self.subscribers(uuid, _CCCD_INDICATE) and not entry.stored:
            await self.indicate(uuid, value)
        else:
            entry.stored.append(value)

    async def _send_stored(self, connection: Connection, entry: _Characteristic) -> None:
        """Indicate stored measurements oldest first; each is forgotten once the client has confirmed it."""
        while entry.stored and connection in self.connections:
            await self.device.indicate_subscriber(connection, entry.attribute, entry.stored[0])
            entry.stored.pop(0)

    def stored(self, uuid: int) -> list[bytes]:
        return list(self._characteristics[uuid].stored)

    async def set_clock_drift(self, drift: timedelta) -> None:
        """Change the clock on the device itself (a user at its buttons); Current Time subscribers are notified."""
        if self.clock is None:
            raise ValueError(f"{self.name} has no clock")
        self.clock.drift = drift
        value = encode_current_time(self.clock.now(), AdjustReason.MANUAL_TIME_UPDATE)
        await self.notify(CURRENT_TIME, value)

    def now(self) -> datetime:
        """The device's own idea of the time (drift included)."""
        return self.clock.now() if self.clock is not None else datetime.now()


_addresses = iter(range(1, 0xFFFF))


def _next_address() -> str:
    """Distinct random static addresses (top bits 11), readable in logs: F0:00:00:00:00:01, ..."""
    n = next(_addresses)
    return f"F0:00:00:00:{n >> 8:02X}:{n & 0xFF:02X}"


# --- the peripherals -------------------------------------------------------------------------


class HeartRateStrap(VirtualPeripheral):
    """Notifies Heart Rate Measurement on demand; no clock (a strap stores nothing)."""

    SERVICE = HEART_RATE
    DEFAULT_NAME = "Virtual HR Strap"
    HAS_CLOCK = False

    def services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                UUID.from_16_bits(HEART_RATE),
                [
                    self.characteristic(HEART_RATE_MEASUREMENT, NOTIFY),
                    self.characteristic(BODY_SENSOR_LOCATION, READ, b"\x01"),  # chest
                ],
            )
        ]

    async def send(self, value: bytes) -> None:
        await self.notify(HEART_RATE_MEASUREMENT, value)

    async def send_bpm(self, bpm: int, *, rr_intervals: Sequence[int] = ()) -> bytes:
        value = heart_rate_measurement(bpm, rr_intervals=rr_intervals)
        await self.send(value)
        return value


class BloodPressureCuff(VirtualPeripheral):
    """Indicates measurements only to an encrypted link; sends stored readings when a client subscribes."""

    SERVICE = BLOOD_PRESSURE
    DEFAULT_NAME = "Virtual BP Cuff"

    def __init__(
        self, link: LocalLink, *, stored: Iterable[bytes] = (), features: int = 0x0005, **common: Unpack[Common]
    ) -> None:
        super().__init__(link, **common)
        self._initial = list(stored)
        self.features = features  # body movement + irregular pulse detection by default

    def services(self) -> list[gatt.Service]:
        measurement = self.characteristic(BP_MEASUREMENT, INDICATE, encrypted_cccd=True)
        self._characteristics[BP_MEASUREMENT].stored.extend(self._initial)
        return [
            gatt.Service(
                UUID.from_16_bits(BLOOD_PRESSURE),
                [
                    measurement,
                    self.characteristic(INTERMEDIATE_CUFF_PRESSURE, NOTIFY),
                    self.characteristic(BP_FEATURE, READ, self.features.to_bytes(2, "little")),
                ],
            )
        ]

    async def take_measurement(
        self,
        systolic: float,
        diastolic: float,
        mean_arterial: float,
        pulse: float | None = None,
        *,
        time: datetime | None = None,
        user: int | None = None,
    ) -> bytes:
        """Stamped with the cuff's own (drifting) clock unless `time` is given; returns the bytes sent or stored."""
        value = blood_pressure_measurement(
            systolic, diastolic, mean_arterial, pulse=pulse, time=time or self.now(), user=user
        )
        await self.measure(BP_MEASUREMENT, value)
        return value

    async def inflate_to(self, pressure: float) -> None:
        await self.notify(INTERMEDIATE_CUFF_PRESSURE, intermediate_cuff_pressure(pressure))


class Thermometer(VirtualPeripheral):
    SERVICE = HEALTH_THERMOMETER
    DEFAULT_NAME = "Virtual Thermometer"

    def services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                UUID.from_16_bits(HEALTH_THERMOMETER),
                [
                    self.characteristic(TEMPERATURE_MEASUREMENT, INDICATE),
                    self.characteristic(TEMPERATURE_TYPE, READ, b"\x02"),  # body (general)
                ],
            )
        ]

    async def take_temperature(self, celsius: float, time: datetime | None = None) -> bytes:
        value = temperature_measurement(celsius, time=time or self.now())
        await self.measure(TEMPERATURE_MEASUREMENT, value)
        return value


class WeightScale(VirtualPeripheral):
    """Several users, each with an id, as family scales have; 0xFF is the unknown user."""

    SERVICE = WEIGHT_SCALE
    DEFAULT_NAME = "Virtual Scale"

    def __init__(self, link: LocalLink, *, users: Sequence[int] = (1, 2), **common: Unpack[Common]) -> None:
        super().__init__(link, **common)
        self.users = tuple(users)

    def services(self) -> list[gatt.Service]:
        features = 0x00000003  # time stamp, multiple users; resolutions not specified (0.005 kg)
        return [
            gatt.Service(
                UUID.from_16_bits(WEIGHT_SCALE),
                [
                    self.characteristic(WEIGHT_MEASUREMENT, INDICATE),
                    self.characteristic(WEIGHT_SCALE_FEATURE, READ, features.to_bytes(4, "little")),
                ],
            )
        ]

    async def weigh(self, kg: float, user: int | None = None, time: datetime | None = None) -> bytes:
        if user is not None and user != 0xFF and user not in self.users:
            raise ValueError(f"user {user} is not one of the scale's users {self.users}")
        value = weight_measurement(kg, time=time or self.now(), user=user)
        await self.measure(WEIGHT_MEASUREMENT, value)
        return value


class GlucoseMeter(VirtualPeripheral):
    """Stored records downloaded through the Record Access Control Point.

    Report, count and delete take every GLS operator with a sequence-number filter; abort
    stops a running report. Records are notified, then the outcome is indicated on RACP.
    """

    SERVICE = GLUCOSE
    DEFAULT_NAME = "Virtual Glucometer"

    def __init__(self, link: LocalLink, *, records: Iterable[GlucoseRecord] = (), **common: Unpack[Common]) -> None:
        super().__init__(link, **common)
        self.records: list[GlucoseRecord] = list(records)
        self._procedure: asyncio.Task[None] | None = None
        self.requests: list[bytes] = []  # every RACP write, for tests that check what the collector asked

    def services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                UUID.from_16_bits(GLUCOSE),
                [
                    self.characteristic(GLUCOSE_MEASUREMENT, NOTIFY),
                    self.characteristic(GLUCOSE_CONTEXT, NOTIFY),
                    self.characteristic(GLUCOSE_FEATURE, READ, (0x0009).to_bytes(2, "little")),
                    self.characteristic(RACP, WRITE | INDICATE, write=self._racp_write),
                ],
            )
        ]

    def add_record(self, mg_dl: int, *, when: datetime | None = None, offset_min: int = 0) -> GlucoseRecord:
        """A new result, numbered after the last one and stamped with the meter's clock."""
        sequence = self.records[-1].sequence + 1 if self.records else 1
        record = GlucoseRecord(sequence, when or self.now(), mg_dl, offset_min)
        self.records.append(record)
        return record

    def _racp_write(self, connection: Connection, value: bytes) -> None:
        """ATT-level checks happen here (they are the write's answer); the procedure runs after the write response."""
        self.requests.append(bytes(value))
        if connection not in self.subscribers(RACP, _CCCD_INDICATE):
            raise att.ATT_Error(CCCD_IMPROPERLY_CONFIGURED)
        if value[:1] == bytes((racp.OpCode.ABORT_OPERATION,)):
            if self._procedure is not None:
                self._procedure.cancel()
            self.spawn(self._respond(connection, racp.OpCode.ABORT_OPERATION, racp.ResponseCode.SUCCESS))
            return
        if self._procedure is not None and not self._procedure.done():
            raise att.ATT_Error(PROCEDURE_ALREADY_IN_PROGRESS)
        self._procedure = self.spawn(self._run(connection, bytes(value)))

    async def _respond(self, connection: Connection, op_code: int, code: racp.ResponseCode) -> None:
        await self.device.indicate_subscriber(
            connection, self._characteristics[RACP].attribute, racp_response(op_code, code)
        )

    async def _run(self, connection: Connection, value: bytes) -> None:
        op_code = value[0] if value else 0
        try:
            request = racp.decode_request(value)
        except DecodeError:
            code = racp.ResponseCode.INVALID_OPERATOR if len(value) < 2 else racp.ResponseCode.INVALID_OPERAND
            await self._respond(connection, op_code, code)
            return
        if op_code not in (
            racp.OpCode.REPORT_STORED_RECORDS,
            racp.OpCode.DELETE_STORED_RECORDS,
            racp.OpCode.REPORT_NUMBER_OF_STORED_RECORDS,
        ):
            await self._respond(connection, op_code, racp.ResponseCode.OP_CODE_NOT_SUPPORTED)
            return
        selected = self._select(request)
        if isinstance(selected, racp.ResponseCode):
            await self._respond(connection, op_code, selected)
            return
        racp_attribute = self._characteristics[RACP].attribute
        if op_code == racp.OpCode.REPORT_NUMBER_OF_STORED_RECORDS:
            await self.device.indicate_subscriber(connection, racp_attribute, racp_count(len(selected)))
            return
        if not selected:
            await self._respond(connection, op_code, racp.ResponseCode.NO_RECORDS_FOUND)
            return
        if op_code == racp.OpCode.DELETE_STORED_RECORDS:
            self.records = [r for r in self.records if r not in selected]
        else:
            measurement = self._characteristics[GLUCOSE_MEASUREMENT].attribute
            context = self._characteristics[GLUCOSE_CONTEXT].attribute
            for record in selected:
                await self.device.notify_subscriber(connection, measurement, record.encode())
                if (extra := record.context()) is not None:
                    await self.device.notify_subscriber(connection, context, extra)
        await self._respond(connection, op_code, racp.ResponseCode.SUCCESS)

    def _select(self, request: racp.RacpRequest) -> list[GlucoseRecord] | racp.ResponseCode:
        """The records a request's operator and operand pick, or the response code that refuses it."""
        records = sorted(self.records, key=lambda r: r.sequence)
        operator = request.operator
        if operator == racp.Operator.NULL:
            return racp.ResponseCode.INVALID_OPERATOR
        if operator not in set(racp.Operator):
            return racp.ResponseCode.OPERATOR_NOT_SUPPORTED
        if operator in (racp.Operator.ALL_RECORDS, racp.Operator.FIRST_RECORD, racp.Operator.LAST_RECORD):
            if request.trailing:
                return racp.ResponseCode.INVALID_OPERAND
            picked = {racp.Operator.ALL_RECORDS: records, racp.Operator.FIRST_RECORD: records[:1]}
            return picked.get(racp.Operator(operator), records[-1:])
        bounds = _sequence_bounds(request)
        if isinstance(bounds, racp.ResponseCode):
            return bounds
        low, high = bounds
        return [r for r in records if low <= r.sequence <= high]


def _sequence_bounds(request: racp.RacpRequest) -> tuple[int, int] | racp.ResponseCode:
    """Inclusive sequence-number bounds of a ≤ / ≥ / range request; only the sequence-number filter is supported."""
    if request.filter_type == racp.FilterType.USER_FACING_TIME:
        return racp.ResponseCode.OPERAND_NOT_SUPPORTED
    if request.filter_type != racp.FilterType.SEQUENCE_NUMBER or request.trailing:
        return racp.ResponseCode.INVALID_OPERAND
    low = request.minimum if request.minimum is not None else 0
    high = request.maximum if request.maximum is not None else 0xFFFF
    if low > high:
        return racp.ResponseCode.INVALID_OPERAND
    return low, high


class PulseOximeter(VirtualPeripheral):
    SERVICE = PULSE_OXIMETER
    DEFAULT_NAME = "Virtual Oximeter"

    def services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                UUID.from_16_bits(PULSE_OXIMETER),
                [
                    self.characteristic(PLX_SPOT_CHECK, INDICATE),
                    self.characteristic(PLX_CONTINUOUS, NOTIFY),
                    self.characteristic(PLX_FEATURES, READ, (0x0000).to_bytes(2, "little")),
                ],
            )
        ]

    async def spot_check(self, spo2: float, pulse: float, time: datetime | None = None) -> bytes:
        value = plx_spot_check(spo2, pulse, time=time or self.now())
        await self.measure(PLX_SPOT_CHECK, value)
        return value

    async def stream(self, spo2: float, pulse: float) -> bytes:
        value = plx_continuous(spo2, pulse)
        await self.notify(PLX_CONTINUOUS, value)
        return value


class BodyCompositionScale(VirtualPeripheral):
    """A single-user body composition analyzer: indicates measurements, sends stored ones on subscribe."""

    SERVICE = BODY_COMPOSITION
    DEFAULT_NAME = "Virtual BCS Scale"

    def __init__(
        self,
        link: LocalLink,
        *,
        stored: Iterable[bytes] = (),
        features: int = 0x00000609,
        **common: Unpack[Common],
    ) -> None:
        super().__init__(link, **common)
        self._initial = list(stored)
        # default: time stamp, muscle percentage, weight, height; one user; resolutions not specified
        self.features = features

    def services(self) -> list[gatt.Service]:
        measurement = self.characteristic(BODY_COMPOSITION_MEASUREMENT, INDICATE)
        self._characteristics[BODY_COMPOSITION_MEASUREMENT].stored.extend(self._initial)
        return [
            gatt.Service(
                UUID.from_16_bits(BODY_COMPOSITION),
                [
                    measurement,
                    self.characteristic(BODY_COMPOSITION_FEATURE, READ, self.features.to_bytes(4, "little")),
                ],
            )
        ]

    async def measure_body(
        self, body_fat_pct: float | None, *, time: datetime | None = None, **fields: Unpack[BodyComposition]
    ) -> bytes:
        """Stamped with the analyzer's own (drifting) clock unless `time` is given; returns the bytes sent or stored."""
        value = body_composition_measurement(body_fat_pct, time=time or self.now(), **fields)
        await self.measure(BODY_COMPOSITION_MEASUREMENT, value)
        return value


class CgmSensor(VirtualPeripheral):
    """A continuous glucose sensor: notifies a record every few minutes, stamped in minutes since its session start.

    No Current Time: the session start (0x2AAA, with the sensor's zone and DST) is its only
    tie to the calendar. With `crc` the CGM Feature announces E2E-CRC and every record and the
    session start carry it.
    """

    SERVICE = CGM
    DEFAULT_NAME = "Virtual CGM"
    HAS_CLOCK = False

    def __init__(
        self,
        link: LocalLink,
        *,
        session_start: datetime | None = None,
        crc: bool = False,
        **common: Unpack[Common],
    ) -> None:
        super().__init__(link, **common)
        start = session_start or datetime.now().astimezone().replace(microsecond=0)
        if start.utcoffset() is None:
            raise ValueError("the session start must be an aware datetime")
        self.session_start = start
        self.crc = crc

    def services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                UUID.from_16_bits(CGM),
                [
                    self.characteristic(CGM_MEASUREMENT, NOTIFY),
                    self.characteristic(CGM_FEATURE, READ, cgm_feature(crc=self.crc)),
                    self.characteristic(
                        CGM_SESSION_START_TIME, READ, cgm_session_start_time(self.session_start, crc=self.crc)
                    ),
                ],
            )
        ]

    async def send(self, value: bytes) -> None:
        """Notify raw bytes (a hand-made or damaged record)."""
        await self.notify(CGM_MEASUREMENT, value)

    async def send_glucose(self, mg_dl: float, minutes_since_start: int) -> bytes:
        value = cgm_measurement(mg_dl, minutes_since_start, crc=self.crc)
        await self.send(value)
        return value


# --- the bench: link, central and peripherals ------------------------------------------------


class Bench:
    """One LocalLink with the kiosk's central (`radio`) and the peripherals added to it."""

    def __init__(self) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]  # bumble leaves __init__ unannotated
        self.radio = BumbleRadio.on_link(self.link)
        self.peripherals: list[VirtualPeripheral] = []

    async def add(self, peripheral: P) -> P:
        """Power `peripheral` on and start it advertising; it is stopped with the bench."""
        self.peripherals.append(peripheral)
        await peripheral.start()
        return peripheral

    async def close(self) -> None:
        for peripheral in self.peripherals:
            await peripheral.stop()
        await self.radio.close()


@asynccontextmanager
async def virtual_bench(*makers: Callable[[LocalLink], VirtualPeripheral]) -> AsyncIterator[Bench]:
    """A powered central plus a peripheral from each maker (e.g. `HeartRateStrap`, or a lambda with options)."""
    bench = Bench()
    try:
        await bench.radio.power_on()
        for make in makers:
            await bench.add(make(bench.link))
        yield bench
    finally:
        await bench.close()
