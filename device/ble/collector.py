"""The collector: finds the kiosk's Bluetooth health devices, talks GATT to them, and turns what they
send into attributed, de-duplicated observations in the outbox.

It speaks to the radio only through `device.ble.transport` (bleak on the Pi, bumble in tests),
decodes with the pure decoders, and keeps its memory in the `Ledger`. For each connection:

1. identify the device (Device Information, read once per device and remembered);
2. bond first when the device's plan says it must (cuffs that indicate only after bonding),
   otherwise bond when a subscription is refused for lack of encryption;
3. read the device clock (Current Time), so stored readings can be corrected for its drift;
4. subscribe to the measurements (stored readings that a cuff sends on connect arrive now);
5. download stored records through the Record Access Control Point, asking only for records
   newer than the last one taken from this device;
6. set the device clock to the kiosk's, when the plan allows it, so new readings need no correction;
7. stay until the device hangs up (most do once they have sent their readings).

A reading that was already taken (same device, same record number or same time-stamped value)
is dropped before the outbox. A reading that cannot be attributed to a patient is held in the
ledger, never sent as someone else's. Nothing a device sends can stop the collector: a value that
does not decode is logged (characteristic and error, no health data) and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timezone, tzinfo
from typing import Any, Literal, Protocol

from device.ble.decoders import REGISTRY, Characteristic, cgm, current_time, device_information, glucose, racp
from device.ble.device_clock import DeviceClock, effective_time, measure_offset
from device.ble.errors import DecodeError
from device.ble.ledger import Ledger
from device.ble.profiles import DeviceProfile
from device.ble.profiles import match as match_profile
from device.ble.readings import Reading
from device.ble.transport import Advertisement, BleError, GattConnection, InsufficientSecurity, Radio
from device.protocol.envelope import DeviceKind
from device.protocol.retry import Backoff

log = logging.getLogger(__name__)

CURRENT_TIME_SERVICE = 0x1805
GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_CONTEXT = 0x2A34
RECORD_ACCESS_CONTROL_POINT = 0x2A52
UNKNOWN_USER = 0xFF
MAX_FLAGS = 32  # the protocol's limit per observation

_DIS_FIELDS = {
    "manufacturer": device_information.MANUFACTURER_NAME,
    "model": device_information.MODEL_NUMBER,
    "serial": device_information.SERIAL_NUMBER,
    "firmware": device_information.FIRMWARE_REVISION,
}


@dataclass(frozen=True)
class DevicePlan:
    """How to talk to one model, from its profile in firmware_configs/ble."""

    profile_id: str
    measurements: tuple[int, ...]
    kind: DeviceKind | None = None
    bonding: Literal["required", "optional", "none"] = "optional"
    stored_records: Literal["none", "on_connect", "racp"] = "none"
    set_clock: bool = True
    max_drift_s: float = 120.0
    multi_user: bool = False
    device_clock_is_utc: bool = False
    trust_device_time: bool = True
    intermediate: tuple[int, ...] = ()  # in-progress values (cuff pressure): shown, never stored

    @classmethod
    def from_profile(cls, profile: DeviceProfile) -> DevicePlan:
        return cls(
            profile_id=profile.id,
            measurements=tuple(int(u) for u in profile.measurements),
            kind=profile.kind,
            bonding=profile.bonding,
            stored_records=profile.stored_records,
            set_clock=profile.clock.current_time_service,
            max_drift_s=profile.clock.max_drift_s,
            multi_user=profile.multi_user,
            device_clock_is_utc=profile.device_clock_is_utc,
            trust_device_time=profile.clock.trust_device_time,
            intermediate=tuple(int(u) for u in profile.intermediate),
        )


def plans_from(profiles: list[DeviceProfile]) -> Callable[[Advertisement], DevicePlan | None]:
    """The collector's `plan_for`: the best-matching profile of an advertisement, as a plan."""
    plans = {p.id: DevicePlan.from_profile(p) for p in profiles}

    def plan_for(ad: Advertisement) -> DevicePlan | None:
        profile = match_profile(profiles, ad)
        return plans[profile.id] if profile is not None else None

    return plan_for


class Attribution(Protocol):
    def subject_for(self, device_id: str, user: int | None, multi_user: bool, taken: datetime) -> str | None:
        """The patient a reading belongs to, or None to hold it."""
        ...


@dataclass
class CheckIn:
    """Attribution at a kiosk: the patient checked in now, and user slots of shared devices.

    A reading from a shared (multi-user) device goes to the patient mapped to its user slot,
    never to whoever is checked in. A reading from a single-user device goes to the checked-in
    patient only if it was taken during their visit: a cuff's stored readings from before are
    someone else's, or at least not known to be theirs.
    """

    patient: str | None = None
    since: datetime | None = None
    slots: dict[tuple[str, int], str] = field(default_factory=dict)
    grace_s: float = 120.0  # a reading taken just before check-in (cuff started first) still counts

    def check_in(self, patient: str, at: datetime) -> None:
        self.patient, self.since = patient, at

    def check_out(self) -> None:
        self.patient, self.since = None, None

    def subject_for(self, device_id: str, user: int | None, multi_user: bool, taken: datetime) -> str | None:
        if multi_user:
            if user is None or user == UNKNOWN_USER:
                return None
            return self.slots.get((device_id, user))
        if self.patient is None or self.since is None:
            return None
        if (self.since - taken).total_seconds() > self.grace_s:
            return None
        return self.patient


Sink = Callable[[dict[str, Any]], object]  # an observations payload -> the outbox (raises when it cannot store)
# (device id, characteristic, decoded value) of an in-progress value, e.g. the cuff pressure while inflating:
# for the patient's screen, never stored.
Progress = Callable[[str, int, Any], None]


@dataclass
class CollectorStats:
    connections: int = 0
    connect_failures: int = 0
    readings: int = 0  # observations sent to the outbox
    duplicates: int = 0  # readings dropped as already taken
    held: int = 0  # readings held for attribution (or refused by the outbox)
    undecodable: int = 0
    bonded: int = 0
    clocks_set: int = 0


@dataclass
class _Session:
    """One connection's state: who the device is, what its clock says, glucose results awaiting context."""

    address: str
    plan: DevicePlan
    device: dict[str, Any]
    clock: DeviceClock
    # A glucose result announcing a context (meal, tester, health) waits for it, by sequence number.
    awaiting_context: dict[int, tuple[Characteristic, bytes, Any]] = field(default_factory=dict)
    # A CGM stamps readings in minutes since its session started; the start is read at connect.
    cgm_start: cgm.CgmSessionStartTime | None = None
    cgm_crc: bool | None = None  # from the CGM Feature: whether records must carry their E2E-CRC
    last_value_at: float = 0.0  # time.monotonic() of the latest value: stored-reading bursts end in silence


class Collector:
    def __init__(
        self,
        radio: Radio,
        plan_for: Callable[[Advertisement], DevicePlan | None],
        ledger: Ledger,
        sink: Sink,
        attribution: Attribution,
        *,
        tz: tzinfo | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        scan_seconds: float = 3.0,
        racp_timeout_s: float = 30.0,
        reconnect: Backoff | None = None,
        on_progress: Progress | None = None,
        settle_s: float = 1.0,
        settle_max_s: float = 10.0,
    ) -> None:
        self.radio = radio
        self.plan_for = plan_for
        self.ledger = ledger
        self.sink = sink
        self.attribution = attribution
        self.tz = tz or datetime.now().astimezone().tzinfo or UTC
        self.now = now
        self.scan_seconds = scan_seconds
        self.racp_timeout_s = racp_timeout_s
        self.reconnect = reconnect or Backoff(initial_s=1.0, maximum_s=60.0)
        self.on_progress = on_progress
        self.settle_s = settle_s  # silence that ends a burst of stored readings
        self.settle_max_s = settle_max_s
        self.stats = CollectorStats()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._backoffs: dict[str, Backoff] = {}

    # -- the scan loop -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Scan, and serve every matched device in its own task (several devices at once), until `stop`."""
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    heard = await self.radio.scan(self.scan_seconds)
                except BleError as exc:
                    log.error("Bluetooth scan failed: %s", exc)
                    heard = []
                for ad in heard:
                    self._maybe_serve(ad, loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.1)
        finally:
            for task in list(self._tasks.values()):
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _maybe_serve(self, ad: Advertisement, now: float) -> None:
        if ad.address in self._tasks or now < self._retry_at.get(ad.address, 0.0):
            return
        plan = self.plan_for(ad)
        if plan is None:
            return
        task = asyncio.create_task(self._serve(ad.address, plan), name=f"ble {ad.address}")
        self._tasks[ad.address] = task
        task.add_done_callback(functools.partial(self._forget_task, ad.address))

    def _forget_task(self, address: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(address, None)

    async def _serve(self, address: str, plan: DevicePlan) -> None:
        backoff = self._backoffs.setdefault(address, Backoff(self.reconnect.initial_s, self.reconnect.maximum_s))
        try:
            await self.session(address, plan)
            backoff.reset()
        except BleError as exc:
            self.stats.connect_failures += 1
            delay = backoff.next_delay()
            self._retry_at[address] = asyncio.get_running_loop().time() + delay
            log.warning("device %s (%s): %s; retrying in %.0f s", address, plan.profile_id, exc, delay)

    # -- one connection ------------------------------------------------------------------

    async def session(self, address: str, plan: DevicePlan, *, stay: bool = True) -> None:
        """Connect, collect, and (with `stay`) remain until the device hangs up."""
        conn = await self.radio.connect(address)
        self.stats.connections += 1
        gone = asyncio.Event()
        conn.on_disconnect(gone.set)
        try:
            services = await conn.discover()
            characteristics = frozenset().union(*services.values()) if services else frozenset()
            device = await self._identify(conn, characteristics)
            if plan.bonding == "required":
                await self._pair(conn)
            tz = UTC if plan.device_clock_is_utc else self.tz
            clock = DeviceClock(await self._clock_offset(conn, characteristics, tz), tz)
            session = _Session(address, plan, device, clock)
            if cgm.CGM_FEATURE in characteristics:
                session.cgm_crc = await self._cgm_crc(conn)
            if cgm.SESSION_START_TIME in characteristics:
                session.cgm_start = await self._cgm_start(conn, session.cgm_crc)
            wanted = list(plan.measurements)
            if GLUCOSE_MEASUREMENT in wanted and GLUCOSE_CONTEXT in characteristics:
                wanted.append(GLUCOSE_CONTEXT)  # meal and tester travel beside the result
            for uuid in wanted:
                if uuid in characteristics:
                    await self._subscribe(conn, plan, uuid, functools.partial(self.accept, session, uuid))
            if self.on_progress is not None:
                for uuid in plan.intermediate:
                    if uuid in characteristics:
                        await self._subscribe(conn, plan, uuid, functools.partial(self._progress, session, uuid))
            if plan.stored_records == "racp" and RECORD_ACCESS_CONTROL_POINT in characteristics:
                await self._download(conn, session)
                self._flush_awaiting_context(session)
            if plan.set_clock and current_time.CURRENT_TIME in characteristics:
                # Stored readings stamped by the old clock may still be arriving: only once the
                # device has gone quiet does setting its clock not change what their stamps mean.
                await self._quiet(session, gone)
                session.clock = DeviceClock(await self._set_clock(conn, tz), tz)
            elif not stay:
                await self._quiet(session, gone)
            if stay:
                await gone.wait()
            self._flush_awaiting_context(session)
        finally:
            if conn.is_connected:
                with contextlib.suppress(BleError):
                    await conn.disconnect()

    async def _identify(self, conn: GattConnection, characteristics: frozenset[int]) -> dict[str, Any]:
        """The DeviceRef of the protocol; Device Information is read once per device, then remembered."""
        known = self.ledger.device_info(conn.address)
        if known is not None:
            return known
        info: dict[str, Any] = {}
        for name, uuid in _DIS_FIELDS.items():
            if uuid in characteristics:
                try:
                    info[name] = device_information.string_decoder(name)(await conn.read(uuid)).value[:128] or None
                except (BleError, DecodeError) as exc:
                    log.info("device %s: could not read %s: %s", conn.address, name, exc)
        info = {k: v for k, v in info.items() if v}
        # The serial survives BLE address rotation; the address is the fallback identity.
        serial = info.get("serial")
        device_id = f"{info.get('manufacturer', 'ble')}:{info.get('model', '?')}:{serial}" if serial else conn.address
        device = {"id": device_id[:128], "type": "ble", **info}
        self.ledger.remember_device(device["id"], conn.address, device)
        return device

    async def _pair(self, conn: GattConnection) -> None:
        await conn.pair()
        self.stats.bonded += 1

    async def _subscribe(
        self, conn: GattConnection, plan: DevicePlan, uuid: int, handler: Callable[[bytes], None]
    ) -> None:
        try:
            await conn.subscribe(uuid, handler)
        except InsufficientSecurity:
            if plan.bonding == "none":
                raise
            log.info("device %s needs bonding before %#06x; pairing", conn.address, uuid)
            await self._pair(conn)
            await conn.subscribe(uuid, handler)

    async def _clock_offset(self, conn: GattConnection, characteristics: frozenset[int], tz: tzinfo) -> float | None:
        if current_time.CURRENT_TIME not in characteristics:
            return None
        try:
            device_now = current_time.decode_current_time(await conn.read(current_time.CURRENT_TIME))
        except (BleError, DecodeError) as exc:
            log.info("device %s: clock unreadable: %s", conn.address, exc)
            return None
        return measure_offset(device_now.date_time, self.now(), tz)

    async def _quiet(self, session: _Session, gone: asyncio.Event) -> None:
        """Wait until no value has come for `settle_s` (at most `settle_max_s`), or the device hangs up."""
        deadline = time.monotonic() + self.settle_max_s
        session.last_value_at = max(session.last_value_at, time.monotonic())
        while not gone.is_set() and time.monotonic() < deadline:
            wait = session.last_value_at + self.settle_s - time.monotonic()
            if wait <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), min(wait, deadline - time.monotonic()))

    async def _cgm_crc(self, conn: GattConnection) -> bool | None:
        try:
            return cgm.decode_feature(await conn.read(cgm.CGM_FEATURE)).e2e_crc_supported
        except (BleError, DecodeError) as exc:
            log.info("device %s: CGM feature unreadable, CRC presence taken from each record: %s", conn.address, exc)
            return None

    async def _cgm_start(self, conn: GattConnection, crc: bool | None) -> cgm.CgmSessionStartTime | None:
        try:
            return cgm.decode_session_start_time(await conn.read(cgm.SESSION_START_TIME), crc_present=crc)
        except (BleError, DecodeError) as exc:
            log.info("device %s: CGM session start unreadable, readings get the kiosk's time: %s", conn.address, exc)
            return None

    async def _set_clock(self, conn: GattConnection, tz: tzinfo) -> float | None:
        """Write the kiosk's time (device wall-clock zone) and read it back: the new offset."""
        try:
            local_now = self.now().astimezone(tz).replace(tzinfo=None)
            await conn.write(current_time.CURRENT_TIME, current_time.encode_current_time(local_now, 0x01))
            self.stats.clocks_set += 1
        except BleError as exc:
            log.info("device %s refused a clock update: %s", conn.address, exc)  # optional in CTS
        try:
            device_now = current_time.decode_current_time(await conn.read(current_time.CURRENT_TIME))
        except (BleError, DecodeError):
            return None
        return measure_offset(device_now.date_time, self.now(), tz)

    async def _download(self, conn: GattConnection, session: _Session) -> None:
        """Record Access Control Point: ask for records newer than the last one taken, wait for the answer."""
        answers: asyncio.Queue[bytes] = asyncio.Queue()
        await self._subscribe(conn, session.plan, RECORD_ACCESS_CONTROL_POINT, answers.put_nowait)
        last = self.ledger.last_record_number(session.device["id"])
        request = racp.report_all() if last is None else racp.report_from(last + 1)
        await conn.write(RECORD_ACCESS_CONTROL_POINT, request)
        while True:
            try:
                raw = await asyncio.wait_for(answers.get(), self.racp_timeout_s)
            except TimeoutError:
                with contextlib.suppress(BleError):
                    await conn.write(RECORD_ACCESS_CONTROL_POINT, racp.abort())
                raise BleError(f"device {conn.address}: no answer to the stored-records request") from None
            try:
                answer = racp.decode_response(raw)
            except DecodeError as exc:
                log.warning("device %s: unreadable control point answer: %s", conn.address, exc)
                continue
            if isinstance(answer, racp.RacpResponseCode):
                if not answer.succeeded:
                    log.warning(
                        "device %s: stored-records download ended with code %d", conn.address, answer.response_code
                    )
                return

    # -- one value -----------------------------------------------------------------------

    def _progress(self, session: _Session, uuid: int, raw: bytes) -> None:
        spec = REGISTRY.get(uuid)
        if spec is None or self.on_progress is None:
            return
        try:
            self.on_progress(session.device["id"], uuid, spec.decode(raw))
        except DecodeError as exc:
            log.info("device %s: undecodable progress value: %s", session.address, exc)
        except Exception:
            log.exception("device %s: progress callback failed", session.address)

    def accept(self, session: _Session, uuid: int, raw: bytes) -> None:
        """Decode one notified or indicated value and route its readings. Never raises."""
        spec = REGISTRY.get(uuid)
        if spec is None:
            return
        try:
            self._accept(session, spec, raw)
        except DecodeError as exc:
            self.stats.undecodable += 1
            log.warning("device %s: undecodable %s (%d bytes): %s", session.address, spec.name, len(raw), exc)
        except Exception:
            self.stats.undecodable += 1
            log.exception("device %s: could not process a %s value", session.address, spec.name)

    def _accept(self, session: _Session, spec: Characteristic, raw: bytes) -> None:
        if spec.uuid == GLUCOSE_CONTEXT:
            self._glucose_context(session, glucose.decode_context(raw))
            return
        session.last_value_at = time.monotonic()
        if spec.uuid == cgm.CGM_MEASUREMENT:
            decoded: Any = cgm.decode_measurement(raw, crc_present=session.cgm_crc)
        else:
            decoded = spec.decode(raw)
        if isinstance(decoded, glucose.GlucoseMeasurement) and decoded.context_follows:
            session.awaiting_context[decoded.sequence_number] = (spec, raw, decoded)
            return
        self._route(session, spec, raw, spec.readings(decoded))

    def _glucose_context(self, session: _Session, context: glucose.GlucoseContext) -> None:
        waiting = session.awaiting_context.pop(context.sequence_number, None)
        if waiting is None:
            return  # a context for a result not taken here (or already flushed without it)
        spec, raw, decoded = waiting
        extra = glucose.context_flags(context)
        self._route(session, spec, raw, [replace(r, flags=(*r.flags, *extra)) for r in spec.readings(decoded)])

    def _flush_awaiting_context(self, session: _Session) -> None:
        """Results whose announced context never came are still results: take them without it."""
        for sequence in sorted(session.awaiting_context):
            spec, raw, decoded = session.awaiting_context.pop(sequence)
            try:
                self._route(session, spec, raw, spec.readings(decoded))
            except Exception:
                log.exception("device %s: could not process glucose record %d", session.address, sequence)

    def _route(self, session: _Session, spec: Characteristic, raw: bytes, readings: list[Reading]) -> None:
        if not readings:
            return
        received = self.now()
        device_id = session.device["id"]
        fingerprint = _fingerprint(spec.uuid, raw, readings)
        if fingerprint is not None and not self.ledger.first_time(device_id, fingerprint):
            self.stats.duplicates += len(readings)
            return
        observations = [self._observation(session, r, received) for r in readings]
        sequence = next((r.sequence for r in readings if r.sequence is not None), None)
        user = next((r.user for r in readings if r.user is not None), None)
        taken = datetime.fromisoformat(observations[0]["effective"])
        subject = self.attribution.subject_for(device_id, user, session.plan.multi_user, taken)
        if subject is None:
            self.ledger.hold(device_id, user, observations, "not attributed to a patient")
            self.stats.held += len(observations)
        else:
            try:
                self.sink({"observations": observations, "subject": subject})
                self.stats.readings += len(observations)
            except Exception as exc:  # noqa: BLE001 - whatever the outbox refuses with, the reading is kept
                self.ledger.hold(device_id, user, observations, f"not stored in the outbox: {exc}")
                self.stats.held += len(observations)
                log.error("device %s: reading held, the outbox refused it: %s", session.address, exc)
        if sequence is not None:
            self.ledger.set_last_record_number(device_id, sequence)

    def _observation(self, session: _Session, reading: Reading, received: datetime) -> dict[str, Any]:
        stamp, clock = reading.device_time, session.clock
        if stamp is None and reading.time_offset_min is not None and session.cgm_start is not None:
            # CGM: minutes since the session start, which is in the sensor's own zone when it says so.
            stamp = session.cgm_start.start
            offset = session.cgm_start.utc_offset()
            clock = replace(clock, tz=timezone(offset)) if offset is not None else clock
        if not session.plan.trust_device_time:
            stamp = None
        timed = effective_time(
            stamp,
            received,
            clock,
            time_offset_min=reading.time_offset_min,
            max_drift_s=session.plan.max_drift_s,
        )
        flags = list(dict.fromkeys((*reading.flags, *timed.flags)))[:MAX_FLAGS]
        obs: dict[str, Any] = {
            "code": reading.code,
            "value": reading.value,
            "unit": reading.unit,
            "effective": timed.effective.isoformat(),
            # The kind is the plan's, not remembered with the device's identity: a ledger from before kinds.
            "device": session.device if session.plan.kind is None else {**session.device, "kind": session.plan.kind},
            "flags": flags,
        }
        if timed.offset_s is not None:
            obs["device_clock_offset_s"] = round(timed.offset_s, 3)
        if reading.user is not None:
            obs["device_user"] = reading.user
        if reading.sequence is not None:
            obs["device_sequence"] = reading.sequence
        return obs


def _fingerprint(uuid: int, raw: bytes, readings: list[Reading]) -> str | None:
    """How a repeat of this reading is recognised; None for live values without a stamp (a strap's pulse).

    A record number identifies a stored record; otherwise a value that carries its own time stamp
    is identified by its bytes (the same measurement re-sent is byte for byte the same).
    """
    sequence = next((r.sequence for r in readings if r.sequence is not None), None)
    if sequence is not None:
        return f"{uuid:04x}:seq:{sequence}"
    if any(r.device_time is not None for r in readings):
        return f"{uuid:04x}:{raw.hex()}"
    return None
