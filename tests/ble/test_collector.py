"""The collector's GATT logic over bumble's real GATT stack, against the virtual peripherals.

Readings land in a real outbox (SQLite, validated by the wire contract), and in the last test
travel through a real Mosquitto and ingest into the hub's database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from device.agent import KioskAgent
from device.ble.collector import CheckIn, Collector, DevicePlan
from device.ble.ledger import Ledger
from device.ble.transport import Advertisement
from device.ble.virtual import (
    BloodPressureCuff,
    BodyCompositionScale,
    CgmSensor,
    GlucoseMeter,
    GlucoseRecord,
    HeartRateStrap,
    Thermometer,
    WeightScale,
    blood_pressure_measurement,
    cgm_crc,
    cgm_measurement,
    virtual_bench,
)
from device.outbox import Outbox
from device.protocol.endpoints import BrokerUrl
from hub.store import HubStore
from tests.harness import ingest_thread, kiosk_agent, wait_until

PATIENT = "P-1001"
CUFF = DevicePlan("generic-blood-pressure", (0x2A35,), bonding="required", stored_records="on_connect")
GLUCOSE = DevicePlan("generic-glucose", (0x2A18,), bonding="optional", stored_records="racp")
THERMOMETER = DevicePlan("generic-thermometer", (0x2A1C,), bonding="none")
STRAP = DevicePlan("generic-heart-rate", (0x2A37,), bonding="none", set_clock=False)
SCALE = DevicePlan("generic-weight-scale", (0x2A9D,), bonding="none", multi_user=True)
PLANS = {0x1810: CUFF, 0x1808: GLUCOSE, 0x1809: THERMOMETER, 0x180D: STRAP, 0x181D: SCALE}


def plan_for(ad: Advertisement) -> DevicePlan | None:
    return next((PLANS[s] for s in ad.service_uuids if s in PLANS), None)


def run(scenario: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(scenario, timeout))


class Kiosk:
    """The kiosk side of a test: outbox, ledger, check-in, and the collector that feeds them."""

    def __init__(self, tmp: Path, radio: Any, outbox: Outbox | None = None) -> None:
        self.outbox = outbox or Outbox(tmp / "outbox.db", "kiosk-ble")
        self.ledger = Ledger(tmp / "ble.db")
        self.checkin = CheckIn()
        self.collector = Collector(
            radio,
            plan_for,
            self.ledger,
            lambda payload: self.outbox.enqueue("observations", payload),
            self.checkin,
            tz=UTC,  # the virtual devices keep the machine's wall clock, which is UTC on the test machines
            scan_seconds=0.2,
            settle_s=0.3,  # in-process GATT: a burst of stored readings has no gaps this long
        )

    def sent(self) -> list[dict[str, Any]]:
        """Every observation in the outbox, with its payload's subject."""
        out = []
        for item in self.outbox.pending(0, 10_000, 1 << 30):
            envelope = json.loads(item.body)
            if envelope["kind"] == "observations":
                out += [
                    {**o, "subject": envelope["payload"].get("subject")} for o in envelope["payload"]["observations"]
                ]
        return out


def at(when: str) -> datetime:
    return datetime.fromisoformat(when)


def close(a: datetime, b: datetime, seconds: float = 3.0) -> bool:
    return abs((a - b).total_seconds()) <= seconds


def test_cuff_bonds_corrects_its_drifting_clock_and_holds_readings_from_before_check_in(tmp_path: Path) -> None:
    drift = timedelta(minutes=7, seconds=30)
    now = datetime.now()  # the cuff's wall clock is the machine's, 7.5 min fast
    before_visit = blood_pressure_measurement(131, 84, 99, pulse=70, time=now + drift - timedelta(hours=3), user=1)
    during_visit = blood_pressure_measurement(122, 78, 92, pulse=66, time=now + drift - timedelta(seconds=20), user=1)

    async def scenario() -> None:
        async with virtual_bench(
            lambda link: BloodPressureCuff(link, stored=[before_visit, during_visit], clock_drift=drift)
        ) as bench:
            cuff = bench.peripherals[0]
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(minutes=2))
            await kiosk.collector.session(cuff.address, CUFF, stay=False)

            assert kiosk.collector.stats.bonded == 1 and cuff.pairings == 1
            sent = kiosk.sent()
            assert [(o["code"], o["value"]) for o in sent] == [
                ("8480-6", 122.0), ("8462-4", 78.0), ("8478-0", 92.0), ("8867-4", 66.0)
            ]  # fmt: skip
            for o in sent:
                assert o["subject"] == PATIENT and o["unit"] in ("mm[Hg]", "/min")
                assert o["device"]["type"] == "ble" and o["device"]["serial"] == "SN-0001"
                assert o["device_user"] == 1
                # the cuff said "now - 20 s + 7.5 min"; corrected, it is "now - 20 s" on the kiosk clock
                assert close(at(o["effective"]), datetime.now(UTC) - timedelta(seconds=20))
                assert o["device_clock_offset_s"] == pytest.approx(450, abs=3)
                assert "device_clock_corrected" in o["flags"]
            held = kiosk.ledger.held()
            assert len(held) == 1 and held[0].reason == "not attributed to a patient"
            assert [o["value"] for o in held[0].observations] == [131.0, 84.0, 99.0, 70.0]
            # and the cuff's clock was set right for next time
            assert cuff.clock is not None and abs(cuff.clock.drift.total_seconds()) < 3
            assert kiosk.collector.stats.clocks_set == 1

    run(scenario())


def test_stored_readings_sent_again_on_the_next_connection_are_not_counted_twice(tmp_path: Path) -> None:
    reading = blood_pressure_measurement(118, 76, 90, pulse=64, time=datetime.now() - timedelta(seconds=30))

    async def scenario() -> None:
        async with virtual_bench(lambda link: BloodPressureCuff(link, stored=[reading])) as bench:
            cuff = bench.peripherals[0]
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(minutes=5))
            await kiosk.collector.session(cuff.address, CUFF, stay=False)
            assert len(kiosk.sent()) == 4
            # A cuff that keeps its memory sends the same stored reading on every connection.
            assert isinstance(cuff, BloodPressureCuff)
            cuff._characteristics[0x2A35].stored.append(reading)
            await kiosk.collector.session(cuff.address, CUFF, stay=False)
            assert len(kiosk.sent()) == 4
            assert kiosk.collector.stats.duplicates == 4
            assert cuff.pairings == 1  # the bond was reused

    run(scenario())


def test_glucose_download_asks_only_for_new_records_and_applies_time_offsets(tmp_path: Path) -> None:
    base = datetime.now().replace(microsecond=0) - timedelta(hours=5)
    records = [GlucoseRecord(1, base, 95, 0), GlucoseRecord(2, base + timedelta(hours=1), 142, -15)]

    async def scenario() -> None:
        async with virtual_bench(lambda link: GlucoseMeter(link, records=records)) as bench:
            meter = bench.peripherals[0]
            assert isinstance(meter, GlucoseMeter)
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(days=1))
            await kiosk.collector.session(meter.address, GLUCOSE, stay=False)
            first = kiosk.sent()
            assert [(o["code"], o["value"], o["unit"], o["device_sequence"]) for o in first] == [
                ("41653-7", 95.0, "mg/dL", 1), ("41653-7", 142.0, "mg/dL", 2)
            ]  # fmt: skip
            assert close(at(first[1]["effective"]), (base + timedelta(minutes=45)).replace(tzinfo=UTC))

            meter.add_record(188)
            await kiosk.collector.session(meter.address, GLUCOSE, stay=False)
            assert [o["device_sequence"] for o in kiosk.sent()] == [1, 2, 3]
            # the second download asked for records from number 3 on, not for everything again
            assert meter.requests[-1] == bytes([0x01, 0x03, 0x01, 0x03, 0x00])

            await kiosk.collector.session(meter.address, GLUCOSE, stay=False)  # nothing new: "no records found"
            assert len(kiosk.sent()) == 3

    run(scenario())


def test_shared_scale_attributes_by_user_slot_and_holds_unknown_users(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with virtual_bench(WeightScale) as bench:
            scale = bench.peripherals[0]
            assert isinstance(scale, WeightScale)
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in("P-2002", datetime.now(UTC))  # someone is checked in, but the scale is shared
            await scale.weigh(71.25, user=1)
            await scale.weigh(88.5, user=2)
            device_id = "Virtual Medical Ltd:VM-1:SN-0001"
            kiosk.checkin.slots[(device_id, 1)] = PATIENT
            await kiosk.collector.session(scale.address, SCALE, stay=False)
            assert [(o["value"], o["subject"]) for o in kiosk.sent()] == [(71.25, PATIENT)]
            held = kiosk.ledger.held()
            assert [(h.device_user, h.observations[0]["value"]) for h in held] == [(2, 88.5)]

    run(scenario())


def test_garbage_from_a_device_is_counted_and_collection_goes_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with virtual_bench(HeartRateStrap) as bench:
            strap = bench.peripherals[0]
            assert isinstance(strap, HeartRateStrap)
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC))
            task = asyncio.create_task(kiosk.collector.session(strap.address, STRAP))
            await wait_for(lambda: _subscribed(strap))
            await strap.send(b"\x10")  # RR-intervals announced, heart rate missing
            await strap.send(b"\x00")  # truncated
            await strap.send_bpm(72)
            await wait_for(lambda: kiosk.collector.stats.readings == 1)
            assert kiosk.collector.stats.undecodable == 2
            assert [(o["code"], o["value"]) for o in kiosk.sent()] == [("8867-4", 72.0)]
            await strap.go_away()
            await asyncio.wait_for(task, 5)  # the session ends when the device hangs up

    run(scenario())


def test_scan_loop_serves_several_devices_at_once_and_reconnects_after_they_leave(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with virtual_bench(HeartRateStrap, Thermometer) as bench:
            strap, thermometer = bench.peripherals
            assert isinstance(strap, HeartRateStrap) and isinstance(thermometer, Thermometer)
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.collector.reconnect.initial_s = 0.1
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(minutes=1))
            stop = asyncio.Event()
            loop = asyncio.create_task(kiosk.collector.run(stop))
            await wait_for(lambda: _subscribed(strap) and _subscribed(thermometer))
            await strap.send_bpm(61)
            await thermometer.take_temperature(37.2)
            await wait_for(lambda: kiosk.collector.stats.readings == 2)

            await strap.go_away()
            await wait_for(lambda: not _subscribed(strap))
            await strap.come_back()
            await wait_for(lambda: _subscribed(strap))
            await strap.send_bpm(64)
            await wait_for(lambda: kiosk.collector.stats.readings == 3)
            assert sorted(o["value"] for o in kiosk.sent()) == [37.2, 61.0, 64.0]
            assert kiosk.collector.stats.connections >= 3
            stop.set()
            await asyncio.wait_for(loop, 5)

    run(scenario(), timeout=30)


def test_cuff_reading_reaches_the_hub_through_the_spine(tmp_path: Path, broker_url: BrokerUrl) -> None:
    db = tmp_path / "hub.db"
    with ingest_thread(db, broker_url), kiosk_agent(tmp_path / "kiosk", "kiosk-ble", broker_url) as agent:
        _collect_one_cuff_reading(tmp_path, agent)
        wait_until(lambda: _hub_observations(db) != [], 15, "the cuff reading in the hub")
    rows = _hub_observations(db)
    assert [(r["code"], r["value"], r["subject"]) for r in rows] == [
        ("8480-6", 127.0, PATIENT), ("8462-4", 83.0, PATIENT), ("8478-0", 97.0, PATIENT), ("8867-4", 71.0, PATIENT)
    ]  # fmt: skip
    assert all(json.loads(r["device"])["model"] == "VM-1" for r in rows)
    assert all(r["device_clock_offset_s"] is not None for r in rows)


def _collect_one_cuff_reading(tmp_path: Path, agent: KioskAgent) -> None:
    async def scenario() -> None:
        async with virtual_bench(BloodPressureCuff) as bench:
            cuff = bench.peripherals[0]
            assert isinstance(cuff, BloodPressureCuff)
            kiosk = Kiosk(tmp_path, bench.radio, outbox=agent.outbox)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(minutes=1))
            await cuff.take_measurement(127, 83, 97, 71)
            await kiosk.collector.session(cuff.address, CUFF, stay=False)
            assert kiosk.collector.stats.readings == 4

    run(scenario())


def _hub_observations(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    store = HubStore(db)
    try:
        return store.observations("kiosk-ble")
    finally:
        store.close()


def _subscribed(peripheral: Any) -> bool:
    return any(entry.subscribers for entry in peripheral._characteristics.values())


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait on state the test can see, yielding to the loop; fail with a clear message."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the collector")
        await asyncio.sleep(0.01)


def test_glucose_context_meal_travels_with_its_result(tmp_path: Path) -> None:
    base = datetime.now().replace(microsecond=0) - timedelta(hours=2)
    records = [GlucoseRecord(1, base, 101, meal=3), GlucoseRecord(2, base + timedelta(hours=1), 163, meal=2)]

    async def scenario() -> None:
        async with virtual_bench(lambda link: GlucoseMeter(link, records=records)) as bench:
            meter = bench.peripherals[0]
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(days=1))
            await kiosk.collector.session(meter.address, GLUCOSE, stay=False)
            sent = kiosk.sent()
            assert [(o["value"], o["device_sequence"]) for o in sent] == [(101.0, 1), (163.0, 2)]
            assert "meal_fasting" in sent[0]["flags"] and "meal_postprandial" in sent[1]["flags"]

    run(scenario())


def test_cuff_pressure_while_inflating_is_shown_but_never_stored(tmp_path: Path) -> None:
    progress: list[float] = []

    async def scenario() -> None:
        async with virtual_bench(BloodPressureCuff) as bench:
            cuff = bench.peripherals[0]
            assert isinstance(cuff, BloodPressureCuff)
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.collector.on_progress = lambda _device, _uuid, value: progress.append(
                value.current_cuff_pressure.value
            )
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC))
            plan = DevicePlan("cuff", (0x2A35,), bonding="required", intermediate=(0x2A36,))
            session = asyncio.create_task(kiosk.collector.session(cuff.address, plan))
            await wait_for(lambda: _subscribed(cuff) and cuff.subscribers(0x2A36, 1) != [])
            for pressure in (40, 95, 150):
                await cuff.inflate_to(pressure)
            await cuff.take_measurement(119, 77, 91, 63)
            await wait_for(lambda: kiosk.collector.stats.readings == 4)
            assert progress == [40.0, 95.0, 150.0]
            assert {o["code"] for o in kiosk.sent()} == {"8480-6", "8462-4", "8478-0", "8867-4"}
            await cuff.go_away()
            await asyncio.wait_for(session, 5)

    run(scenario())


def test_cgm_readings_are_timed_from_the_sensor_session_start(tmp_path: Path) -> None:
    """No radio needed: a CGM value as it arrives, with the session start read at connect (bytes per CGMS)."""
    from datetime import timezone

    from device.ble.collector import _Session
    from device.ble.decoders import cgm
    from device.ble.device_clock import DeviceClock

    kiosk = Kiosk(tmp_path, radio=None)
    kiosk.checkin.check_in(PATIENT, datetime(2026, 11, 27, 6, 0, tzinfo=UTC))
    started = datetime(2026, 11, 27, 8, 0, tzinfo=timezone(timedelta(hours=-5)))  # 13:00 UTC
    session = _Session(
        "cgm-address",
        DevicePlan("generic-cgm", (0x2AA7,), bonding="optional"),
        {"id": "cgm-1", "type": "ble"},
        DeviceClock(None, UTC),
        cgm_start=cgm.decode_session_start_time(cgm.encode_session_start_time(started)),
    )
    kiosk.collector.now = lambda: datetime(2026, 11, 27, 13, 40, tzinfo=UTC)
    # size 6, flags 0, glucose SFLOAT 0x0078 = 120 mg/dL, time offset 30 min
    kiosk.collector.accept(session, 0x2AA7, bytes.fromhex("060078001e00"))
    [reading] = kiosk.sent()
    assert (reading["code"], reading["value"], reading["unit"]) == ("99504-3", 120.0, "mg/dL")
    assert at(reading["effective"]) == datetime(2026, 11, 27, 13, 30, tzinfo=UTC)
    assert "device_clock_unverified" in reading["flags"]


BODY_COMPOSITION = DevicePlan("generic-body-composition", (0x2A9C,), bonding="none")
CGM = DevicePlan("generic-cgm", (0x2AA7,), bonding="none", set_clock=False)
PLANS.update({0x181B: BODY_COMPOSITION, 0x181F: CGM})


def test_body_composition_taken_before_connect_arrives_for_the_checked_in_patient(tmp_path: Path) -> None:
    drift = timedelta(minutes=6)

    async def scenario() -> None:
        async with virtual_bench(lambda link: BodyCompositionScale(link, clock_drift=drift)) as bench:
            scale = bench.peripherals[0]
            assert isinstance(scale, BodyCompositionScale)
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(minutes=2))
            # stamped by the scale's clock (6 min fast), 20 s ago, while nobody was connected
            await scale.measure_body(21.4, time=scale.now() - timedelta(seconds=20), weight_kg=72.5, muscle_pct=35.2)
            assert len(scale.stored(0x2A9C)) == 1
            await kiosk.collector.session(scale.address, BODY_COMPOSITION, stay=False)
            await wait_for(lambda: kiosk.collector.stats.readings == 3)

            sent = kiosk.sent()
            assert [(o["code"], o["value"], o["unit"]) for o in sent] == [
                ("41982-0", 21.4, "%"), ("73965-6", 35.2, "%"), ("29463-7", 72.5, "kg")
            ]  # fmt: skip
            for o in sent:
                assert o["subject"] == PATIENT and "device_user" not in o
                assert o["device"]["type"] == "ble" and o["device"]["serial"] == "SN-0001"
                assert close(at(o["effective"]), datetime.now(UTC) - timedelta(seconds=20))
                assert o["device_clock_offset_s"] == pytest.approx(360, abs=3)
                assert "device_clock_corrected" in o["flags"]
            assert scale.stored(0x2A9C) == [] and kiosk.ledger.held() == []
            assert kiosk.collector.stats.undecodable == 0
            assert scale.clock is not None and abs(scale.clock.drift.total_seconds()) < 3  # set right

    run(scenario())


def test_body_composition_the_analyzer_marked_unsuccessful_gives_no_readings(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with virtual_bench(BodyCompositionScale) as bench:
            scale = bench.peripherals[0]
            assert isinstance(scale, BodyCompositionScale)
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(minutes=2))
            # body fat 0xFFFF: the weight and muscle beside it come from the same failed analysis
            await scale.measure_body(None, weight_kg=72.5, muscle_pct=35.2)
            await kiosk.collector.session(scale.address, BODY_COMPOSITION, stay=False)
            await wait_for(lambda: scale.stored(0x2A9C) == [])  # indicated, and confirmed after the collector took it
            assert kiosk.sent() == [] and kiosk.ledger.held() == []
            stats = kiosk.collector.stats
            assert (stats.readings, stats.held, stats.duplicates, stats.undecodable) == (0, 0, 0, 0)

    run(scenario())


# The sensor's session started on a summer morning in New York (EDT: zone -5 h, DST +1 h), 13:30 UTC.
CGM_START = datetime(2026, 7, 14, 9, 30, tzinfo=ZoneInfo("America/New_York"))


def _cgm_kiosk(tmp_path: Path, radio: Any) -> Kiosk:
    """A kiosk whose clock reads 12 minutes into the sensor's session, with the patient checked in before it."""
    kiosk = Kiosk(tmp_path, radio)
    kiosk.collector.now = lambda: CGM_START.astimezone(UTC) + timedelta(minutes=12)
    kiosk.checkin.check_in(PATIENT, CGM_START.astimezone(UTC) - timedelta(minutes=30))
    return kiosk


@pytest.mark.parametrize("crc", [False, True], ids=["no-crc", "e2e-crc"])
def test_cgm_values_are_timed_from_the_session_start_in_the_sensor_zone(tmp_path: Path, crc: bool) -> None:
    async def scenario() -> None:
        async with virtual_bench(lambda link: CgmSensor(link, session_start=CGM_START, crc=crc)) as bench:
            sensor = bench.peripherals[0]
            assert isinstance(sensor, CgmSensor)
            kiosk = _cgm_kiosk(tmp_path, bench.radio)
            session = asyncio.create_task(kiosk.collector.session(sensor.address, CGM))
            await wait_for(lambda: _subscribed(sensor))
            await sensor.send_glucose(104, 5)
            await sensor.send_glucose(117, 10)
            await wait_for(lambda: kiosk.collector.stats.readings == 2)

            sent = kiosk.sent()
            assert [(o["code"], o["value"], o["unit"], o["subject"]) for o in sent] == [
                ("99504-3", 104.0, "mg/dL", PATIENT), ("99504-3", 117.0, "mg/dL", PATIENT)
            ]  # fmt: skip
            assert [at(o["effective"]) for o in sent] == [
                datetime(2026, 7, 14, 13, 35, tzinfo=UTC), datetime(2026, 7, 14, 13, 40, tzinfo=UTC)
            ]  # fmt: skip
            assert all(at(o["effective"]).utcoffset() == timedelta(0) for o in sent)
            assert all("device_clock_offset_s" not in o and "device_clock_unverified" in o["flags"] for o in sent)
            assert kiosk.collector.stats.undecodable == 0
            await sensor.go_away()
            await asyncio.wait_for(session, 5)

    run(scenario())


def test_cgm_record_with_a_damaged_crc_is_counted_and_the_next_one_arrives(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with virtual_bench(lambda link: CgmSensor(link, session_start=CGM_START, crc=True)) as bench:
            sensor = bench.peripherals[0]
            assert isinstance(sensor, CgmSensor)
            kiosk = _cgm_kiosk(tmp_path, bench.radio)
            session = asyncio.create_task(kiosk.collector.session(sensor.address, CGM))
            await wait_for(lambda: _subscribed(sensor))
            good = await sensor.send_glucose(104, 5)
            assert len(good) == 8 and good[0] == 8  # the size counts the CRC
            damaged = bytearray(cgm_measurement(150, 10, crc=True))
            damaged[-1] ^= 0x40
            await sensor.send(bytes(damaged))
            await sensor.send_glucose(117, 15)
            await wait_for(lambda: kiosk.collector.stats.readings == 2)

            assert kiosk.collector.stats.undecodable == 1
            sent = kiosk.sent()
            assert [(o["value"], at(o["effective"])) for o in sent] == [
                (104.0, datetime(2026, 7, 14, 13, 35, tzinfo=UTC)), (117.0, datetime(2026, 7, 14, 13, 45, tzinfo=UTC))
            ]  # fmt: skip
            await sensor.go_away()
            await asyncio.wait_for(session, 5)

    run(scenario())


def test_virtual_cgm_crc_is_the_catalogued_crc16_mcrf4xx() -> None:
    """The virtual sensor's CRC, written from the spec's parameters, against published check values."""
    assert cgm_crc(b"123456789") == 0x6F91  # CRC-16/MCRF4XX check value
    assert cgm_crc(bytes.fromhex("3e010203040506070809")) == 0x2F01  # the CGMS example, printed as 0x012F


def test_every_stored_body_composition_gets_the_clock_correction_measured_at_connect(tmp_path: Path) -> None:
    drift = timedelta(minutes=3)

    async def scenario() -> None:
        async with virtual_bench(lambda link: BodyCompositionScale(link, clock_drift=drift)) as bench:
            scale = bench.peripherals[0]
            assert isinstance(scale, BodyCompositionScale)
            kiosk = Kiosk(tmp_path, bench.radio)
            kiosk.checkin.check_in(PATIENT, datetime.now(UTC) - timedelta(minutes=10))
            taken = [datetime.now(UTC) - timedelta(minutes=8 - i) for i in range(8)]  # one a minute, kiosk time
            for i, when in enumerate(taken):
                device_wall = when.replace(tzinfo=None) + drift  # the scale's clock is the machine's (UTC) + drift
                await scale.measure_body(20.0 + i, time=device_wall)
            session = asyncio.create_task(kiosk.collector.session(scale.address, BODY_COMPOSITION))
            await wait_for(lambda: kiosk.collector.stats.readings == len(taken))
            await wait_for(lambda: kiosk.collector.stats.clocks_set == 1)  # after the burst, not during it
            await scale.go_away()
            await asyncio.wait_for(session, 5)

            sent = kiosk.sent()
            assert [o["value"] for o in sent] == [20.0 + i for i in range(len(taken))]
            assert kiosk.collector.stats.clocks_set == 1
            for o, when in zip(sent, taken, strict=True):
                assert o["device_clock_offset_s"] == pytest.approx(180, abs=3), o
                assert close(at(o["effective"]), when), o

    run(scenario())


def test_cgm_record_without_the_crc_its_sensor_announces_is_not_a_reading(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with virtual_bench(lambda link: CgmSensor(link, session_start=CGM_START, crc=True)) as bench:
            sensor = bench.peripherals[0]
            assert isinstance(sensor, CgmSensor)
            kiosk = _cgm_kiosk(tmp_path, bench.radio)
            session = asyncio.create_task(kiosk.collector.session(sensor.address, CGM))
            await wait_for(lambda: _subscribed(sensor))
            await sensor.send(cgm_measurement(150, 5, crc=False))  # CRC stripped (size 6)
            await sensor.send_glucose(117, 10)
            await wait_for(lambda: kiosk.collector.stats.readings + kiosk.collector.stats.undecodable >= 2)
            await sensor.go_away()
            await asyncio.wait_for(session, 5)
            assert [o["value"] for o in kiosk.sent()] == [117.0]
            assert kiosk.collector.stats.undecodable == 1

    run(scenario())
