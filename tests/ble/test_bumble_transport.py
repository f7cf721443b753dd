"""The bumble adapter (device.ble.transports.bumble) against the virtual peripherals in device/ble/virtual.py.

Everything runs over bumble's real GATT stack on an in-process LocalLink: no radio, no
BlueZ. pytest-asyncio is not installed, so each test drives its own loop with `run`, under a
hard timeout; waits are on values and events with timeouts, never on sleeps.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

import pytest

from device.ble.decoders import device_information, racp
from device.ble.decoders.blood_pressure import decode_blood_pressure_measurement
from device.ble.decoders.current_time import decode_current_time, encode_current_time
from device.ble.decoders.glucose import decode_measurement, measurement_readings
from device.ble.decoders.heart_rate import decode_heart_rate_measurement
from device.ble.decoders.pulse_oximeter import decode_continuous, decode_spot_check
from device.ble.decoders.thermometer import decode_temperature_measurement
from device.ble.decoders.weight_scale import decode_weight_measurement
from device.ble.ieee11073 import Number
from device.ble.transport import BleError, Disconnected, InsufficientSecurity
from device.ble.transports.bumble import BumbleConnection
from device.ble.virtual import (
    BP_MEASUREMENT,
    CURRENT_TIME,
    FIRMWARE_REVISION,
    GLUCOSE_MEASUREMENT,
    HEART_RATE_MEASUREMENT,
    MANUFACTURER_NAME,
    MODEL_NUMBER,
    PLX_CONTINUOUS,
    PLX_SPOT_CHECK,
    RACP,
    SERIAL_NUMBER,
    TEMPERATURE_MEASUREMENT,
    WEIGHT_MEASUREMENT,
    BloodPressureCuff,
    DeviceInfo,
    GlucoseMeter,
    GlucoseRecord,
    HeartRateStrap,
    PulseOximeter,
    Thermometer,
    WeightScale,
    blood_pressure_measurement,
    virtual_bench,
)

ALL_KINDS = (HeartRateStrap, BloodPressureCuff, Thermometer, WeightScale, GlucoseMeter, PulseOximeter)
WAIT = 2.0  # seconds for any single value or event: everything here is in-process


def run(scenario: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    """One event loop per test, with a hard ceiling so a lost indication fails fast instead of hanging."""
    asyncio.run(asyncio.wait_for(scenario, timeout))


class Inbox:
    """A subscription callback that queues what arrives, so a test awaits values instead of sleeping."""

    def __init__(self) -> None:
        self._values: asyncio.Queue[bytes] = asyncio.Queue()

    def __call__(self, value: bytes) -> None:
        self._values.put_nowait(value)

    async def next(self) -> bytes:
        return await asyncio.wait_for(self._values.get(), WAIT)

    async def take(self, count: int) -> list[bytes]:
        return [await self.next() for _ in range(count)]

    def drain(self) -> list[bytes]:
        """What already arrived (e.g. notifications sent before the indication just awaited)."""
        values = []
        while not self._values.empty():
            values.append(self._values.get_nowait())
        return values


def close_to(when: datetime, expected: datetime, tolerance: timedelta = timedelta(seconds=2)) -> bool:
    return abs(when - expected) <= tolerance


def test_scan_hears_every_peripheral_with_its_name_and_service() -> None:
    async def scenario() -> None:
        async with virtual_bench(*ALL_KINDS) as bench:
            heard = {ad.address: ad for ad in await bench.radio.scan(0.3)}
            assert set(heard) == {p.address for p in bench.peripherals}  # the central does not hear itself
            for peripheral in bench.peripherals:
                ad = heard[peripheral.address]
                assert ad.name == peripheral.name
                assert ad.service_uuids == frozenset({peripheral.SERVICE})
                assert ad.rssi is not None

    run(scenario())


DIS = {0x180A: frozenset({MANUFACTURER_NAME, MODEL_NUMBER, SERIAL_NUMBER, FIRMWARE_REVISION})}
CTS = {0x1805: frozenset({CURRENT_TIME})}
OWN_SERVICES = {
    HeartRateStrap: {0x180D: frozenset({0x2A37, 0x2A38})},
    BloodPressureCuff: {0x1810: frozenset({0x2A35, 0x2A36, 0x2A49})},
    Thermometer: {0x1809: frozenset({0x2A1C, 0x2A1D})},
    WeightScale: {0x181D: frozenset({0x2A9D, 0x2A9E})},
    GlucoseMeter: {0x1808: frozenset({0x2A18, 0x2A34, 0x2A51, 0x2A52})},
    PulseOximeter: {0x1822: frozenset({0x2A5E, 0x2A5F, 0x2A60})},
}


def test_discover_lists_each_peripherals_services_and_characteristics() -> None:
    async def scenario() -> None:
        async with virtual_bench(*ALL_KINDS) as bench:
            for peripheral in bench.peripherals:
                connection = await bench.radio.connect(peripheral.address)
                services = await connection.discover()
                await connection.disconnect()
                expected = {**OWN_SERVICES[type(peripheral)], **DIS, **(CTS if peripheral.HAS_CLOCK else {})}
                assert {uuid: services[uuid] for uuid in expected if uuid in services} == expected
                # only bumble's own GAP and GATT services besides
                assert set(services) - set(expected) <= {0x1800, 0x1801}

    run(scenario())


def test_device_information_strings_read_and_decode_to_the_configured_values() -> None:
    info = DeviceInfo(manufacturer="Acme Thermo GmbH", model="AT-300", serial="0042-77", firmware="2.3.1")

    async def scenario() -> None:
        async with virtual_bench(lambda link: Thermometer(link, info=info)) as bench:
            connection = await bench.radio.connect(bench.peripherals[0].address)
            read = connection.read
            assert device_information.decode_manufacturer_name(await read(MANUFACTURER_NAME)).value == info.manufacturer
            assert device_information.decode_model_number(await read(MODEL_NUMBER)).value == info.model
            assert device_information.decode_serial_number(await read(SERIAL_NUMBER)).value == info.serial
            assert device_information.decode_firmware_revision(await read(FIRMWARE_REVISION)).value == info.firmware

    run(scenario())


def test_heart_rate_notification_arrives_and_decodes() -> None:
    async def scenario() -> None:
        async with virtual_bench(HeartRateStrap) as bench:
            strap = bench.peripherals[0]
            assert isinstance(strap, HeartRateStrap)
            connection = await bench.radio.connect(strap.address)
            inbox = Inbox()
            await connection.subscribe(HEART_RATE_MEASUREMENT, inbox)
            sent = await strap.send_bpm(72, rr_intervals=[840, 856])
            received = await inbox.next()
            assert received == sent
            measurement = decode_heart_rate_measurement(received)
            assert measurement.heart_rate == 72
            assert measurement.rr_intervals == (840, 856)

    run(scenario())


def test_cuff_refuses_indications_until_paired_then_sends_its_stored_readings() -> None:
    stored = [
        blood_pressure_measurement(121, 79, 93, pulse=64, time=datetime(2025, 3, 1, 8, 0), user=1),
        blood_pressure_measurement(118, 76, 90, pulse=61, time=datetime(2025, 3, 2, 8, 5), user=1),
    ]

    async def scenario() -> None:
        async with virtual_bench() as bench:
            cuff = await bench.add(BloodPressureCuff(bench.link, stored=stored, clock_drift=timedelta(minutes=4)))
            connection = await bench.radio.connect(cuff.address)
            inbox = Inbox()
            with pytest.raises(InsufficientSecurity, match=re.escape(cuff.address)):
                await connection.subscribe(BP_MEASUREMENT, inbox)
            assert cuff.stored(BP_MEASUREMENT) == stored  # nothing left the cuff unencrypted

            await connection.pair()
            assert isinstance(connection, BumbleConnection) and connection.is_encrypted
            await connection.subscribe(BP_MEASUREMENT, inbox)
            assert await inbox.take(2) == stored  # oldest first, right after subscribing

            live = await cuff.take_measurement(132, 84, 100, 70, user=2)
            assert await inbox.next() == live
            assert inbox.drain() == []  # the refused first subscription left no second callback behind

            measurement = decode_blood_pressure_measurement(live)
            assert measurement.systolic == Number(132.0, 0)
            assert measurement.user_id == 2
            assert measurement.time_stamp is not None
            # stamped by the cuff's own clock, four minutes fast
            assert close_to(measurement.time_stamp.naive(), datetime.now() + timedelta(minutes=4))

    run(scenario())


def test_pair_again_after_reconnect_uses_the_bond() -> None:
    async def scenario() -> None:
        async with virtual_bench() as bench:
            cuff = await bench.add(BloodPressureCuff(bench.link))
            first = await bench.radio.connect(cuff.address)
            await first.pair()
            await cuff.go_away()
            await cuff.come_back()

            again = await bench.radio.connect(cuff.address)
            assert isinstance(again, BumbleConnection) and not again.is_encrypted
            await again.pair()
            assert again.is_encrypted
            assert cuff.pairings == 1  # re-encrypted with the stored keys, not paired anew
            inbox = Inbox()
            await again.subscribe(BP_MEASUREMENT, inbox)
            sent = await cuff.take_measurement(120, 80, 93)
            assert await inbox.next() == sent

    run(scenario())


def _records() -> list[GlucoseRecord]:
    start = datetime(2025, 3, 1, 7, 30)
    return [GlucoseRecord(n, start + timedelta(hours=6 * n), 90 + n, offset_min=-n) for n in range(1, 6)]


async def _racp(connection: Any, request: bytes, control: Inbox) -> racp.RacpResponseCode | racp.RacpNumberOfRecords:
    await connection.write(RACP, request)
    return racp.decode_response(await control.next())


def test_glucose_racp_report_all_then_from_a_sequence_number() -> None:
    records = _records()

    async def scenario() -> None:
        async with virtual_bench(lambda link: GlucoseMeter(link, records=records)) as bench:
            connection = await bench.radio.connect(bench.peripherals[0].address)
            measurements, control = Inbox(), Inbox()
            await connection.subscribe(GLUCOSE_MEASUREMENT, measurements)
            await connection.subscribe(RACP, control)

            assert await _racp(connection, racp.count_all(), control) == racp.RacpNumberOfRecords(0, 5)

            done = await _racp(connection, racp.report_all(), control)
            assert done == racp.RacpResponseCode(0, racp.OpCode.REPORT_STORED_RECORDS, racp.ResponseCode.SUCCESS)
            decoded = [decode_measurement(value) for value in measurements.drain()]
            assert [m.sequence_number for m in decoded] == [1, 2, 3, 4, 5]
            assert [m.base_time.naive() for m in decoded] == [r.base_time for r in records]
            assert [m.time_offset_min for m in decoded] == [-1, -2, -3, -4, -5]
            assert [measurement_readings(m)[0].value for m in decoded] == [91.0, 92.0, 93.0, 94.0, 95.0]

            done = await _racp(connection, racp.report_from(4), control)
            assert isinstance(done, racp.RacpResponseCode) and done.response_code == racp.ResponseCode.SUCCESS
            assert [decode_measurement(v).sequence_number for v in measurements.drain()] == [4, 5]

    run(scenario())


def test_glucose_racp_without_matching_records_answers_no_records_found() -> None:
    async def scenario() -> None:
        async with virtual_bench(lambda link: GlucoseMeter(link, records=_records())) as bench:
            connection = await bench.radio.connect(bench.peripherals[0].address)
            measurements, control = Inbox(), Inbox()
            await connection.subscribe(GLUCOSE_MEASUREMENT, measurements)
            await connection.subscribe(RACP, control)
            done = await _racp(connection, racp.report_from(6), control)
            assert done == racp.RacpResponseCode(
                0, racp.OpCode.REPORT_STORED_RECORDS, racp.ResponseCode.NO_RECORDS_FOUND
            )
            assert done.succeeded  # nothing new is not a failure
            assert measurements.drain() == []

    run(scenario())


def test_glucose_racp_abort_is_acknowledged() -> None:
    async def scenario() -> None:
        async with virtual_bench(lambda link: GlucoseMeter(link, records=_records())) as bench:
            connection = await bench.radio.connect(bench.peripherals[0].address)
            control = Inbox()
            await connection.subscribe(RACP, control)
            done = await _racp(connection, racp.abort(), control)
            assert done == racp.RacpResponseCode(0, racp.OpCode.ABORT_OPERATION, racp.ResponseCode.SUCCESS)

    run(scenario())


def test_racp_write_before_enabling_indications_is_an_att_error_naming_the_device() -> None:
    async def scenario() -> None:
        async with virtual_bench(GlucoseMeter) as bench:
            meter = bench.peripherals[0]
            connection = await bench.radio.connect(meter.address)
            with pytest.raises(BleError, match=re.escape(meter.address)) as refused:
                await connection.write(RACP, racp.report_all())
            assert not isinstance(refused.value, InsufficientSecurity)
            assert "0xfd" in str(refused.value)

    run(scenario())


def test_current_time_shows_the_drift_and_a_write_corrects_it() -> None:
    drift = timedelta(minutes=-7, seconds=-30)

    async def scenario() -> None:
        async with virtual_bench(lambda link: Thermometer(link, clock_drift=drift)) as bench:
            thermometer = bench.peripherals[0]
            assert isinstance(thermometer, Thermometer)
            connection = await bench.radio.connect(thermometer.address)

            shown = decode_current_time(await connection.read(CURRENT_TIME))
            assert close_to(shown.date_time.naive(), datetime.now() + drift)

            await connection.write(CURRENT_TIME, encode_current_time(datetime.now()))
            shown = decode_current_time(await connection.read(CURRENT_TIME))
            assert close_to(shown.date_time.naive(), datetime.now())

            # a change made on the device itself is notified
            changes = Inbox()
            await connection.subscribe(CURRENT_TIME, changes)
            await thermometer.set_clock_drift(timedelta(hours=1))
            changed = decode_current_time(await changes.next())
            assert close_to(changed.date_time.naive(), datetime.now() + timedelta(hours=1))
            await connection.write(CURRENT_TIME, encode_current_time(datetime.now()))

            # and what it measures from now on carries the corrected time
            inbox = Inbox()
            await connection.subscribe(TEMPERATURE_MEASUREMENT, inbox)
            await thermometer.take_temperature(37.6)
            measurement = decode_temperature_measurement(await inbox.next())
            assert measurement.temperature == Number(37.6, -1)
            assert measurement.time_stamp is not None
            assert close_to(measurement.time_stamp.naive(), datetime.now())

    run(scenario())


def test_scale_and_oximeter_measurements_arrive_and_decode() -> None:
    async def scenario() -> None:
        async with virtual_bench() as bench:
            scale = await bench.add(WeightScale(bench.link, users=(1, 2)))
            oximeter = await bench.add(PulseOximeter(bench.link))
            to_scale = await bench.radio.connect(scale.address)
            to_oximeter = await bench.radio.connect(oximeter.address)
            weights, spots, stream = Inbox(), Inbox(), Inbox()
            await to_scale.subscribe(WEIGHT_MEASUREMENT, weights)
            await to_oximeter.subscribe(PLX_SPOT_CHECK, spots)
            await to_oximeter.subscribe(PLX_CONTINUOUS, stream)

            await scale.weigh(72.35, user=2)
            weight = decode_weight_measurement(await weights.next())
            assert weight.user_id == 2
            assert weight.weight == pytest.approx(72.35)

            await oximeter.spot_check(97, 64)
            spot = decode_spot_check(await spots.next())
            assert (spot.spo2_pct, spot.pulse_rate_bpm) == (Number(97.0, 0), Number(64.0, 0))
            await oximeter.stream(96, 66)
            continuous = decode_continuous(await stream.next())
            assert (continuous.spo2_pct, continuous.pulse_rate_bpm) == (Number(96.0, 0), Number(66.0, 0))

    run(scenario())


def test_peripheral_going_away_calls_on_disconnect_once_and_can_come_back() -> None:
    async def scenario() -> None:
        async with virtual_bench(HeartRateStrap) as bench:
            strap = bench.peripherals[0]
            connection = await bench.radio.connect(strap.address)
            lost = asyncio.get_running_loop().create_future()
            calls: list[str] = []

            def on_disconnect() -> None:
                calls.append("lost")
                if not lost.done():
                    lost.set_result(None)

            connection.on_disconnect(on_disconnect)
            await strap.go_away()
            await asyncio.wait_for(lost, WAIT)
            assert calls == ["lost"]
            assert not connection.is_connected
            with pytest.raises(Disconnected, match=re.escape(strap.address)):
                await connection.read(MANUFACTURER_NAME)
            assert strap.address not in {ad.address for ad in await bench.radio.scan(0.2)}

            await strap.come_back()
            assert strap.address in {ad.address for ad in await bench.radio.scan(0.2)}
            again = await bench.radio.connect(strap.address)
            assert again.is_connected
            assert await again.read(MANUFACTURER_NAME) == DeviceInfo().manufacturer.encode()
            assert calls == ["lost"]

    run(scenario())


def test_link_loss_during_a_pending_read_raises_disconnected() -> None:
    async def scenario() -> None:
        async with virtual_bench(Thermometer) as bench:
            thermometer = bench.peripherals[0]
            connection = await bench.radio.connect(thermometer.address)
            await connection.discover()
            thermometer.responding.clear()
            pending = asyncio.ensure_future(connection.read(MANUFACTURER_NAME))
            await asyncio.wait_for(thermometer.stalled.wait(), WAIT)  # the request is at the peripheral
            await thermometer.go_away()
            with pytest.raises(Disconnected, match=re.escape(thermometer.address)):
                await asyncio.wait_for(pending, WAIT)
            thermometer.responding.set()

    run(scenario())


def test_connect_to_an_absent_device_fails_with_its_address() -> None:
    async def scenario() -> None:
        async with virtual_bench() as bench:
            with pytest.raises(BleError, match="F0:00:00:00:EE:EE"):
                await bench.radio.connect("F0:00:00:00:EE:EE", timeout=0.3)
            with pytest.raises(BleError, match="not a Bluetooth address"):
                await bench.radio.connect("Virtual BP Cuff")  # bumble alone would scan for a device by that name

    run(scenario())
