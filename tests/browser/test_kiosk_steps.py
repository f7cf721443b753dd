"""The guided vitals and the photo page in a real Chromium at the Pi's screen size (800x480), as `make demo` runs
them: each device's step shows and waits for its own device's readings only; measuring again on the camera step
replaces the reading, on the screen and at the hub; the camera step and the photo page show what the camera sees,
and the demo camera (a face, and on the photo page a forearm with a rash) lets a photo pass the photo checks.

The kiosk is `kiosk serve` as a process with the demo's devices: bumble peripherals speaking GATT, and the
videos `hub demo` renders for its camera; the hub is the real ingest on a real Mosquitto.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from device.protocol.endpoints import BrokerUrl
from hub.cli import demo_camera_videos
from tests.browser.conftest import DEFAULT_TIMEOUT_MS
from tests.browser.kiosk import KioskProcess, kiosk_screen
from tests.browser.site import Site, serve
from tests.browser.test_workspace import shot
from tests.harness import ingest_thread, wait_until

PI_SCREEN = {"width": 800, "height": 480}
FAST = {"downlink_check_s": 0.1}
MEASURE_S = 13  # enough for a heart rate (10 s windows); breathing needs 20 s windows and is left out
PULSE = re.compile(r"^Pulse: \d+(\.\d+)? /min$")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(tmp_path / "hub.db") as s:
        yield s


@pytest.fixture(scope="module")
def demo_camera(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo camera's videos, as `hub demo` renders them (the face long enough for a measurement)."""
    return demo_camera_videos(tmp_path_factory.mktemp("demo-camera"), face_seconds=MEASURE_S + 3)


@pytest.fixture
def pi(browser: Browser) -> Iterator[Page]:
    """The kiosk's touchscreen: the Pi's 7-inch 800x480."""
    context = browser.new_context(viewport=PI_SCREEN, has_touch=True)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def demo_kiosk(
    tmp_path: Path, site: Site, broker: BrokerUrl, videos: tuple[Path, Path] | None = None
) -> AbstractContextManager[KioskProcess]:
    """`kiosk serve` with the demo's virtual devices, and its camera when `videos` are given."""
    if videos is None:
        return kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker)
    face, skin = videos
    extra = ["--camera-skin-video", str(skin), "--camera-seconds", str(MEASURE_S)]
    return kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker, camera_video=face, extra_args=extra)


def check_in(page: Page, kiosk: KioskProcess, code: str) -> None:
    page.goto(kiosk.url)
    page.get_by_label("Type the code on your card").fill(code)
    page.get_by_role("button", name="Check in").click()
    expect(page.get_by_role("heading", name="What would you like to do?")).to_be_visible()


def open_step(page: Page, title: str) -> None:
    """From the home screen or a step: (Done with vitals,) Take my vitals, then the device's tile."""
    done = page.get_by_role("link", name="Done with vitals")
    if done.count():
        done.click()
    page.get_by_role("link", name="Take my vitals").click()
    page.get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()


def readings(page: Page, name: str) -> Locator:
    return page.get_by_text(re.compile(rf"^{name}: [\d.]+ "))


def press(page: Page, kiosk: KioskProcess, kind: str) -> None:
    """The patient presses the (virtual) device's own Start button, whatever page the screen shows."""
    pressed = page.request.post(f"{kiosk.url}/vitals/{kind}/simulate", headers={"Origin": kiosk.url}, max_redirects=0)
    assert pressed.status == 303


def step_text(page: Page, kiosk: KioskProcess, kind: str) -> str:
    """The step's page as the kiosk would render it now (another request: the open page is left alone)."""
    return page.request.get(f"{kiosk.url}/vitals/{kind}").text()


def hub_camera_pulses(site: Site, subject: str) -> list[float]:
    conn = sqlite3.connect(f"file:{site.world.db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT value FROM observations WHERE subject = ? AND code = '8867-4' AND device_id = 'camera:kiosk'",
            (subject,),
        ).fetchall()
    finally:
        conn.close()
    return [float(r[0]) for r in rows]


def outbox_items(kiosk: KioskProcess) -> int:
    conn = sqlite3.connect(f"file:{kiosk.data / 'outbox.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


def preview_works(page: Page) -> None:
    """What the camera sees is on the page, as a picture that has arrived and keeps changing."""
    preview = page.get_by_role("img", name="What the camera sees")
    expect(preview).to_be_visible()
    expect(preview).to_have_attribute("src", "/camera/preview.mjpg")
    wait_until(lambda: preview.evaluate("img => img.complete && img.naturalWidth") > 0, 15, "a preview picture")
    assert preview.evaluate("img => img.naturalWidth") <= 320  # small: light on the Pi and on the page
    box = preview.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PI_SCREEN["width"]
    # Live: what it shows changes (the demo's camera moves), read back through a canvas as a patient sees it.
    sample = (
        "img => { const c = document.createElement('canvas'); c.width = 32; c.height = 24;"
        " const g = c.getContext('2d'); g.drawImage(img, 0, 0, 32, 24);"
        " return Array.from(g.getImageData(0, 0, 32, 24).data).join(','); }"
    )
    first = preview.evaluate(sample)
    wait_until(lambda: preview.evaluate(sample) != first, 15, "the preview to show a newer picture")


def test_each_device_step_shows_and_waits_for_its_own_devices_readings_only(
    pi: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    with ingest_thread(site.world.db, broker_url, **FAST), demo_kiosk(tmp_path, site, broker_url) as kiosk:
        check_in(pi, kiosk, "N100")
        open_step(pi, "Oxygen level")
        pi.get_by_role("button", name="Press the device's Start button").click()
        expect(readings(pi, "Oxygen")).to_have_count(1, timeout=20_000)
        expect(readings(pi, "Pulse")).to_have_count(1)
        shot(pi, "kiosk-steps-oximeter")

        # The cuff's step: the oximeter's pulse is not the cuff's, and the step still waits for the cuff.
        open_step(pi, "Blood pressure")
        expect(pi.get_by_text("Waiting for the device…")).to_be_visible()
        expect(readings(pi, "Pulse")).to_have_count(0)
        # The oximeter measures again while this page is open: nothing of it appears here, live or not.
        press(pi, kiosk, "pulse_oximeter")
        wait_until(
            lambda: step_text(pi, kiosk, "pulse_oximeter").count("Pulse:") == 2, 20, "the second oximeter reading"
        )
        expect(pi.get_by_text("Waiting for the device…")).to_be_visible()
        expect(readings(pi, "Pulse")).to_have_count(0)
        pi.reload()
        expect(readings(pi, "Pulse")).to_have_count(0)

        # The cuff's own reading: its pulse, and only its.
        pi.get_by_role("button", name="Press the device's Start button").click()
        expect(readings(pi, "Systolic")).to_have_count(1, timeout=20_000)
        expect(readings(pi, "Pulse")).to_have_count(1)
        expect(pi.get_by_text("Waiting for the device…")).to_be_hidden()
        shot(pi, "kiosk-steps-cuff")

        # Back on the oximeter's step: its two pulses, not the cuff's.
        open_step(pi, "Oxygen level")
        expect(readings(pi, "Oxygen")).to_have_count(2)
        expect(readings(pi, "Pulse")).to_have_count(2)
        expect(readings(pi, "Systolic")).to_have_count(0)


def test_measuring_again_on_the_camera_step_replaces_the_reading_on_screen_and_at_the_hub(
    pi: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path, demo_camera: tuple[Path, Path]
) -> None:
    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        demo_kiosk(tmp_path, site, broker_url, demo_camera) as kiosk,
    ):
        check_in(pi, kiosk, "N100")
        open_step(pi, "Heart and breathing rate by camera")
        preview_works(pi)  # the patient sees their face in view before and while measuring
        shot(pi, "kiosk-steps-camera-preview")
        # The measurement takes its time: the page waits with the button saying so (not for the click to return).
        pi.get_by_role("button", name="Start", exact=True).click(no_wait_after=True)
        expect(pi.get_by_role("button", name="Measure again")).to_be_visible(timeout=90_000)
        expect(pi.get_by_text(PULSE)).to_have_count(1)
        first = pi.get_by_text(PULSE).inner_text()

        pi.get_by_role("button", name="Measure again").click(no_wait_after=True)  # says "Measuring… keep still"
        expect(pi.get_by_role("button", name="Measure again")).to_be_visible(timeout=90_000)
        expect(pi.get_by_text(PULSE)).to_have_count(1)  # replaced, not added
        shown = float(re.findall(r"[\d.]+", pi.get_by_text(PULSE).inner_text())[0])
        shot(pi, "kiosk-steps-camera-again")

        # Done with vitals: the reading the patient saw last goes to the clinic, and nothing else of the camera.
        pi.get_by_role("link", name="Done with vitals").click()
        expect(pi.get_by_role("heading", name="What would you like to do?")).to_be_visible()
        wait_until(lambda: hub_camera_pulses(site, "N100") != [], 30, "the camera's reading at the hub")
        wait_until(lambda: outbox_items(kiosk) == 0, 30, "the kiosk's outbox to empty (all it sent is at the hub)")
        assert hub_camera_pulses(site, "N100") == [shown], f"first measurement: {first}"
        pi.get_by_role("link", name="Take my vitals").click()
        expect(pi.get_by_text(PULSE)).to_have_count(1)  # "Taken so far"


def test_the_photo_page_shows_the_camera_live_and_the_demo_camera_takes_a_photo_that_passes(
    pi: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path, demo_camera: tuple[Path, Path]
) -> None:
    with demo_kiosk(tmp_path, site, broker_url, demo_camera) as kiosk:
        check_in(pi, kiosk, "N100")
        pi.goto(f"{kiosk.url}/case/photos")
        expect(pi.get_by_role("heading", name="Photos (optional)")).to_be_visible()
        preview_works(pi)  # the patient frames the rash
        shot(pi, "kiosk-steps-photo-preview")
        pi.get_by_role("button", name="Take a photo").click()
        photo = pi.get_by_role("img", name="Photo 1")
        expect(photo).to_be_visible(timeout=20_000)
        expect(pi.get_by_role("alert")).to_have_count(0)  # no "your face is in the photo"
        assert photo.evaluate("img => img.complete && img.naturalWidth") > 0
        preview_works(pi)  # still there for a second photo
        shot(pi, "kiosk-steps-photo-taken")
