"""Which readings a vitals step shows: those of its own device, and for the camera the last measurement only.

Several devices report a pulse (the cuff, the oximeter, the camera): a step shows and waits for the readings
its own device measured, known by the device (its Bluetooth profile's kind, matched by the GATT service it
advertises; the camera by its type), never by the code alone. Measuring again on the camera step replaces
the earlier camera pair, on the screen and in what goes to the clinic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device.ble.transport import Advertisement
from device.screen.station import Bluetooth, Camera, CameraConfig
from device.screen.steps import step_of
from device.screen.visit import Visit
from tests.screen.kiosk import NO_PIN, REPO, Kiosk, checked_in, post

CUFF = {"id": "VBP-1:CUFF-0001", "type": "ble", "model": "VBP-1", "serial": "CUFF-0001"}
OXIMETER = {"id": "VOX-1:OXI-0001", "type": "ble", "model": "VOX-1", "serial": "OXI-0001"}
SCALE = {"id": "VWS-1:SCALE-0001", "type": "ble", "model": "VWS-1", "serial": "SCALE-0001"}
CAMERA = {"id": "camera:kiosk", "type": "camera"}
BLOOD_PRESSURE_SERVICE, PULSE_OXIMETER_SERVICE, WEIGHT_SCALE_SERVICE = 0x1810, 0x1822, 0x181D


def observation(code: str, value: float, unit: str, device: dict[str, Any]) -> dict[str, Any]:
    return {"code": code, "value": value, "unit": unit, "effective": "2026-11-27T10:00:00Z", "device": device}


def cuff(systolic: float, diastolic: float, pulse: float) -> list[dict[str, Any]]:
    return [
        observation("8480-6", systolic, "mm[Hg]", CUFF),
        observation("8462-4", diastolic, "mm[Hg]", CUFF),
        observation("8867-4", pulse, "/min", CUFF),
    ]


def oximeter(spo2: float, pulse: float) -> list[dict[str, Any]]:
    return [observation("59408-5", spo2, "%", OXIMETER), observation("8867-4", pulse, "/min", OXIMETER)]


def camera_pair(pulse: float, breathing: float) -> list[dict[str, Any]]:
    return [observation("8867-4", pulse, "/min", CAMERA), observation("9279-1", breathing, "/min", CAMERA)]


class NoRadio:
    """The collector is never started here: the devices are 'heard' by calling its plan_for directly."""


@pytest.fixture
def bluetooth(kiosk: Kiosk, tmp_path: Path) -> Bluetooth:
    """The screen's Bluetooth as `kiosk serve` builds it (the shipped profiles), its collector not running."""
    screen = kiosk.screen
    bt = Bluetooth(
        NoRadio(),  # type: ignore[arg-type]
        REPO / "firmware_configs" / "ble",
        tmp_path / "ble.db",
        screen.checkin,
        screen.on_reading,
        screen.on_progress,
    )
    screen.bluetooth = bt
    return bt


def heard(bt: Bluetooth, address: str, device: dict[str, Any], service: int) -> None:
    """What the collector does with a device: match its advertisement to a profile, then identify it."""
    assert bt.collector.plan_for(Advertisement(address, device["model"], frozenset({service}))) is not None
    bt.ledger.remember_device(device["id"], address, device)


def taken(kiosk: Kiosk, observations: list[dict[str, Any]]) -> None:
    """A reading from a device, as the collector hands it over (the patient checked in is its subject)."""
    visit = kiosk.screen.desk.visit
    assert visit is not None
    kiosk.screen.on_reading({"observations": observations, "subject": visit.subject})


def shown(page: str) -> list[str]:
    """The readings a step page shows, as the patient reads them."""
    return [f"{name}: {value}" for name, value in re.findall(r"<li>([^<:]+): <strong>([^<]+)</strong></li>", page)]


def waiting(page: str) -> bool:
    """Whether the step still says it waits for its device."""
    return re.search(r'<p class="waiting" data-waiting\s*>', page) is not None


def sent_observations(kiosk: Kiosk) -> list[list[tuple[str, float, str]]]:
    """Each observations envelope in the outbox as (code, value, device type) triples."""
    return [
        [(o["code"], o["value"], o["device"]["type"]) for o in envelope["payload"]["observations"]]
        for envelope in kiosk.outbox("observations")
    ]


# -- which step a reading belongs to ---------------------------------------------------------------------------


def test_a_reading_belongs_to_the_step_of_the_device_that_measured_it() -> None:
    assert step_of(CAMERA, None) == "camera"
    assert step_of(CAMERA, "blood_pressure") == "camera"  # the camera is the camera, whatever else is said
    assert step_of(CUFF, "blood_pressure") == "blood_pressure"
    assert step_of(OXIMETER, "pulse_oximeter") == "pulse_oximeter"
    assert step_of({"id": "t", "type": "ble"}, "thermometer") == "thermometer"
    assert step_of(SCALE, "weight_scale") is None  # no step for it: shown in "Taken so far" only
    assert step_of(CUFF, None) is None  # a device not known here is no step's: never shown as another's
    assert step_of(CUFF, "camera") is None  # only the camera itself is the camera step's


def test_the_bluetooth_collector_knows_each_device_by_the_profile_its_advertisement_matched(
    bluetooth: Bluetooth,
) -> None:
    heard(bluetooth, "AA:00:00:00:00:01", CUFF, BLOOD_PRESSURE_SERVICE)
    heard(bluetooth, "AA:00:00:00:00:02", OXIMETER, PULSE_OXIMETER_SERVICE)
    assert bluetooth.kind_of(CUFF["id"]) == "blood_pressure"
    assert bluetooth.kind_of(OXIMETER["id"]) == "pulse_oximeter"
    assert bluetooth.kind_of("never-heard") is None
    # A device that changes its address (BLE privacy) keeps its identity, and its kind.
    heard(bluetooth, "AA:00:00:00:00:03", OXIMETER, PULSE_OXIMETER_SERVICE)
    assert bluetooth.kind_of(OXIMETER["id"]) == "pulse_oximeter"


def test_the_oximeters_pulse_is_not_shown_on_the_cuffs_step_which_still_waits_for_the_cuff(
    kiosk: Kiosk, bluetooth: Bluetooth, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard(bluetooth, "AA:00:00:00:00:01", CUFF, BLOOD_PRESSURE_SERVICE)
    heard(bluetooth, "AA:00:00:00:00:02", OXIMETER, PULSE_OXIMETER_SERVICE)
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    published: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(kiosk.screen.events, "publish", lambda event, data: published.append((event, data)))

    taken(kiosk, oximeter(97, 72))
    blood_pressure = kiosk.client.get("/vitals/blood_pressure").text
    assert shown(blood_pressure) == [] and waiting(blood_pressure)
    oxygen = kiosk.client.get("/vitals/pulse_oximeter").text
    assert shown(oxygen) == ["Oxygen: 97 %", "Pulse: 72 /min"] and not waiting(oxygen)
    # The live page learns whose reading each is, and shows only its own device's.
    assert [(d["code"], d["step"]) for e, d in published if e == "reading"] == [
        ("59408-5", "pulse_oximeter"),
        ("8867-4", "pulse_oximeter"),
    ]

    taken(kiosk, cuff(121, 79, 64))
    assert shown(kiosk.client.get("/vitals/blood_pressure").text) == [
        "Systolic: 121 mmHg",
        "Diastolic: 79 mmHg",
        "Pulse: 64 /min",
    ]
    assert shown(kiosk.client.get("/vitals/pulse_oximeter").text) == ["Oxygen: 97 %", "Pulse: 72 /min"]
    assert [d["step"] for e, d in published if e == "reading"][2:] == ["blood_pressure"] * 3
    # The overview lists everything taken in the visit.
    assert len(shown(kiosk.client.get("/vitals").text)) == 5


def test_a_reading_from_a_device_of_no_step_is_on_no_step(kiosk: Kiosk, bluetooth: Bluetooth) -> None:
    heard(bluetooth, "AA:00:00:00:00:04", SCALE, WEIGHT_SCALE_SERVICE)
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    taken(kiosk, [observation("29463-7", 70.5, "kg", SCALE)])
    for kind in ("blood_pressure", "pulse_oximeter", "thermometer"):
        assert shown(kiosk.client.get(f"/vitals/{kind}").text) == [], kind
    assert shown(kiosk.client.get("/vitals").text) == ["Weight: 70.5 kg"]


# -- the camera step: measuring again replaces -----------------------------------------------------------------


@pytest.fixture
def with_camera(kiosk: Kiosk) -> Iterator[Camera]:
    """A camera on the kiosk (never opened here: the measurements are handed to the screen as the route does)."""
    camera = Camera(CameraConfig(REPO / "firmware_configs" / "kiosk" / "video-file.yaml", Path("unused.avi")))
    kiosk.screen.camera = camera
    yield camera
    camera.close()


def measured(kiosk: Kiosk, pulse: float, breathing: float) -> Visit:
    """A camera measurement, as `POST /vitals/camera/measure` records it."""
    visit = kiosk.screen.desk.visit
    assert visit is not None
    kiosk.screen.record_camera_vitals(visit, camera_pair(pulse, breathing))
    return visit


def test_measuring_again_replaces_the_camera_pair_on_the_screen_and_only_the_last_goes_to_the_clinic(
    kiosk: Kiosk, with_camera: Camera
) -> None:
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    assert kiosk.client.get("/vitals/camera").status_code == 200
    for pulse, breathing in ((70, 14), (66, 13), (71, 15)):  # Start, then Measure again twice
        visit = measured(kiosk, pulse, breathing)
        assert shown(kiosk.client.get("/vitals/camera").text) == [
            f"Pulse: {pulse} /min",
            f"Breathing rate: {breathing} /min",
        ]
    assert shown(kiosk.client.get("/vitals/camera").text) == ["Pulse: 71 /min", "Breathing rate: 15 /min"]
    assert sent_observations(kiosk) == []  # still on the camera step: the patient may measure again
    # Moving on (Done with vitals): the pair the patient saw last goes, and only it.
    assert kiosk.client.get("/home").status_code == 200
    assert sent_observations(kiosk) == [[("8867-4", 71, "camera"), ("9279-1", 15, "camera")]]
    assert shown(kiosk.client.get("/vitals").text) == ["Pulse: 71 /min", "Breathing rate: 15 /min"]
    assert len(visit.vitals_ids) == 1 and visit.held_camera == []
    assert kiosk.client.get("/vitals").status_code == 200
    assert len(sent_observations(kiosk)) == 1  # sent once


def test_a_second_sitting_at_the_camera_replaces_the_first_on_the_screen_and_goes_as_well(
    kiosk: Kiosk, with_camera: Camera
) -> None:
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    measured(kiosk, 70, 14)
    kiosk.client.get("/vitals")  # moved on: the first sitting's pair goes
    kiosk.client.get("/vitals/camera")
    measured(kiosk, 75, 16)
    assert shown(kiosk.client.get("/vitals/camera").text) == ["Pulse: 75 /min", "Breathing rate: 16 /min"]
    kiosk.client.get("/vitals/thermometer")
    assert sent_observations(kiosk) == [
        [("8867-4", 70, "camera"), ("9279-1", 14, "camera")],
        [("8867-4", 75, "camera"), ("9279-1", 16, "camera")],
    ]


def test_a_held_camera_pair_goes_when_the_visit_ends_and_with_a_case_sent_from_the_camera_step(
    kiosk: Kiosk, with_camera: Camera
) -> None:
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    measured(kiosk, 70, 14)
    assert post(kiosk.client, "/finish").status_code == 303  # Finish and sign out, from the camera step
    assert sent_observations(kiosk) == [[("8867-4", 70, "camera"), ("9279-1", 14, "camera")]]

    checked_in(kiosk.client, NO_PIN)
    assert post(kiosk.client, "/case/q/main", {"value": "Palpitations"}).status_code == 303
    measured(kiosk, 88, 18)
    assert post(kiosk.client, "/case/send").status_code == 303
    camera_envelope = kiosk.outbox("observations")[-1]
    assert [o["value"] for o in camera_envelope["payload"]["observations"]] == [88, 18]
    (case,) = kiosk.outbox("case")
    assert case["payload"]["vitals"] == [camera_envelope["id"]]  # the case names the readings taken with it


def test_bluetooth_readings_are_sent_at_once_and_kept_when_the_camera_measures_again(
    kiosk: Kiosk, bluetooth: Bluetooth, with_camera: Camera
) -> None:
    heard(bluetooth, "AA:00:00:00:00:02", OXIMETER, PULSE_OXIMETER_SERVICE)
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    kiosk.client.get("/vitals/camera")
    taken(kiosk, oximeter(98, 70))
    assert sent_observations(kiosk) == [[("59408-5", 98, "ble"), ("8867-4", 70, "ble")]]
    measured(kiosk, 68, 14)
    measured(kiosk, 69, 14)
    overview = shown(kiosk.client.get("/vitals").text)
    assert overview == ["Oxygen: 98 %", "Pulse: 70 /min", "Pulse: 69 /min", "Breathing rate: 14 /min"]
    assert json.dumps(sent_observations(kiosk)).count('"camera"') == 2  # one pair
