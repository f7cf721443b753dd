"""Live consults with real peers on loopback: the kiosk process (aiortc, a video file for a camera, a tone for a
microphone) and a provider in headless Chromium with fake camera and microphone, through the hub's signaling.

Each test runs the whole chain: the patient asks on the kiosk screen, the provider joins from the hub's
waiting room, media flows both ways; then the variants: a relay through coturn, a provider whose browser
is killed, a call that cannot connect.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect

from device.protocol.endpoints import BrokerUrl
from hub.accounts import kiosk_credentials
from hub.consults.ice import IceConfig
from hub.consults.settings import ConsultSettings
from hub.db import immediate
from hub.workspace import WebSettings
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DEFAULT_TIMEOUT_MS
from tests.browser.kiosk import KioskProcess, LiveUpdatesHeld, kiosk_screen, rash_video
from tests.browser.site import Site, serve
from tests.browser.test_kiosk_screen import check_in, hub, take_blood_pressure
from tests.browser.test_workspace import log_in, shot
from tests.harness import ingest_thread, wait_until
from tests.turn import turn_server

FAST = {"downlink_check_s": 0.1}
MEDIA_ARGS = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def provider_browser(pw: Playwright, profile: Path) -> BrowserContext:
    """A provider's Chromium with a fake camera and microphone, in its own process (so a test can kill it)."""
    context = pw.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=MEDIA_ARGS,
        viewport={"width": 1280, "height": 900},
    )  # fmt: skip
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    return context


def kill_browser(profile: Path) -> None:
    """SIGKILL every process of that browser: no goodbye on the socket, no BYE on the call."""
    out = subprocess.run(["pgrep", "-f", f"user-data-dir={profile}"], capture_output=True, text=True, check=False)
    for pid in out.stdout.split():
        os.kill(int(pid), signal.SIGKILL)


@contextmanager
def serve_with(tmp_path: Path, consults: ConsultSettings) -> Iterator[Site]:
    settings = WebSettings(chart_refresh_s=1, fleet_refresh_s=1, consults=consults)
    with serve(tmp_path / "hub.db", settings=settings) as site:
        yield site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve_with(tmp_path, ConsultSettings(gone_after_s=3.0)) as s:
        yield s


def credential(site: Site, tmp_path: Path) -> Path:
    conn = site.world.store.conn
    with immediate(conn):
        secret = kiosk_credentials.issue(conn, site.world.north.kiosk, site.clock())
    path = tmp_path / "kiosk-credential"
    path.write_text(secret)
    return path


def consult_kiosk(site: Site, broker_url: BrokerUrl, tmp_path: Path, **extra: str) -> object:
    args = ["--hub-url", site.url, "--hub-credential-file", str(credential(site, tmp_path)), "--microphone", "tone",
            "--consult-return-after", extra.pop("return_after", "4"),
            "--consult-connect-timeout", extra.pop("connect_timeout", "15")]  # fmt: skip
    return kiosk_screen(
        tmp_path / "kiosk", site.world.north.kiosk, broker_url, camera_video=rash_video(tmp_path / "cam.avi"),
        extra_args=args,
    )  # fmt: skip


def ask_for_a_call(screen: Page, kiosk: KioskProcess) -> float:
    check_in(screen, kiosk, "N100")
    screen.goto(f"{kiosk.url}/vitals/blood_pressure")
    systolic = take_blood_pressure(screen)
    screen.goto(f"{kiosk.url}/consult")
    screen.get_by_role("button", name="Ask for a video call now").click()
    expect(screen.get_by_text("You are number 1 in line.")).to_be_visible()
    return systolic


def join(page: Page, site: Site, systolic: float) -> None:
    log_in(page, site, site.world.north.provider)
    page.goto(f"{site.url}/consults")
    expect(page.get_by_text(f"{systolic:g}")).to_be_visible()  # the vitals sent with the request
    shot(page, "consult-waiting-room")
    page.get_by_role("button", name=re.compile("Join")).first.click()


def call_section(page: Page) -> object:
    return page.locator("#call")


def test_a_patient_and_a_provider_see_and_hear_each_other_and_vitals_and_messages_cross_during_the_call(
    screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path, playwright_instance: Playwright
) -> None:
    provider = provider_browser(playwright_instance, tmp_path / "provider-profile")
    page = provider.new_page()
    with ingest_thread(site.world.db, broker_url, **FAST), consult_kiosk(site, broker_url, tmp_path) as kiosk:
        systolic = ask_for_a_call(screen, kiosk)
        shot(screen, "kiosk-consult-waiting")
        joined = time.monotonic()
        join(page, site, systolic)
        call = page.locator("#call")
        expect(call).to_have_attribute("data-state", "live", timeout=15_000)
        # Frames and sound from the kiosk, decoded in the provider's browser.
        wait_until(lambda: int(call.get_attribute("data-video-frames-decoded") or 0) >= 15, 15, "kiosk video")
        wait_until(lambda: int(call.get_attribute("data-audio-packets-received") or 0) >= 25, 15, "kiosk audio")
        # And the provider's, at the kiosk: its screen shows the provider's picture.
        expect(screen.get_by_role("heading", name=re.compile("You are talking with"))).to_be_visible(timeout=15_000)
        remote = screen.get_by_role("img", name=re.compile("on video"))
        wait_until(lambda: remote.evaluate("img => img.naturalWidth") > 0, 15, "the provider's picture on the kiosk")
        print(f"first frames both ways {time.monotonic() - joined:.1f} s after Join")
        shot(screen, "kiosk-consult-live")
        shot(page, "consult-live")
        # During the call: a message to the kiosk screen, a request for vitals, a reading back live.
        page.get_by_label("Message to show on the kiosk screen").fill("Please sit down and rest your arm.")
        page.get_by_role("button", name="Show on the kiosk").click()
        expect(screen.get_by_text("Please sit down and rest your arm.")).to_be_visible()
        # One sent while the kiosk's page loads (its live stream not open yet) is shown all the same.
        held = LiveUpdatesHeld(screen)
        with screen.expect_request("**/events"):
            screen.reload()
        page.get_by_label("Message to show on the kiosk screen").fill("The nurse will bring a cuff.")
        page.get_by_role("button", name="Show on the kiosk").click()
        consult_page = f"{kiosk.url}/consult"
        wait_until(lambda: "bring a cuff" in screen.request.get(consult_page).text(), 10, "the message at the kiosk")
        expect(screen.get_by_text("The nurse will bring a cuff.")).to_have_count(0)
        held.release()
        expect(screen.get_by_text("The nurse will bring a cuff.")).to_be_visible()
        # So is a request for vitals made while the page loads; once the page is shown, the request is done
        # (the vitals step below stays where it is).
        held = LiveUpdatesHeld(screen)
        with screen.expect_request("**/events"):
            screen.reload()
        page.get_by_role("button", name="Ask the patient to take vitals").click()
        wait_until(lambda: "asks for the vitals page" in "".join(kiosk.log), 10, "the request at the kiosk")
        expect(screen.get_by_role("heading", name="Take my vitals")).to_have_count(0)
        held.release()
        expect(screen.get_by_role("heading", name="Take my vitals")).to_be_visible()
        screen.goto(f"{kiosk.url}/vitals/blood_pressure")
        second = take_blood_pressure(screen)
        expect(page.locator("#call-vitals")).to_contain_text(f"{second:g}")
        screen.get_by_role("link", name=re.compile("back to the call")).click()
        site.clock.advance(6 * 60)  # the hub's clock: a six-minute call
        page.get_by_role("button", name="End the call").click()
        expect(screen.get_by_text("The call has ended.")).to_be_visible()
        rows = hub(site, "SELECT state, reason, ended_by, ended_at - joined_at FROM consults")
        assert rows == [("ended", "finished", "provider", 360.0)]
        logs = "".join(kiosk.log)
        assert "call: first frame from the provider" in logs
        assert re.search(r"call ended: \d+ video frames?, [1-9]\d* audio frames", logs), "the provider's sound"
    provider.close()


def test_a_relay_only_call_goes_through_coturn(
    screen: Page, broker_url: BrokerUrl, tmp_path: Path, playwright_instance: Playwright
) -> None:
    with turn_server(tmp_path / "turn") as turn:
        ice = IceConfig(turn_urls=(f"turn:127.0.0.1:{turn.port}?transport=udp",), turn_secret=turn.secret,
                        relay_only=True)  # fmt: skip
        with serve_with(tmp_path, ConsultSettings(ice=ice)) as site:
            provider = provider_browser(playwright_instance, tmp_path / "provider-profile")
            page = provider.new_page()
            with ingest_thread(site.world.db, broker_url, **FAST), consult_kiosk(site, broker_url, tmp_path) as kiosk:
                join(page, site, ask_for_a_call(screen, kiosk))
                call = page.locator("#call")
                expect(call).to_have_attribute("data-state", "live", timeout=20_000)
                wait_until(lambda: int(call.get_attribute("data-video-frames-decoded") or 0) >= 15, 20, "video")
                expect(screen.get_by_role("heading", name=re.compile("You are talking with"))).to_be_visible()
                pairs: list[str] = []

                def pair_in_use() -> bool:
                    pairs[:] = page.evaluate("window.consultCandidateTypes()")
                    return bool(pairs)

                wait_until(pair_in_use, 10, "the candidate pair the call uses")
                assert pairs == ["relay", "relay"]
            provider.close()
        assert "allocation" in turn.log.read_text().lower()


def test_a_killed_provider_browser_is_noticed_within_5_s_and_the_patient_gets_a_case_and_the_welcome_screen(
    screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path, playwright_instance: Playwright
) -> None:
    profile = tmp_path / "provider-profile"
    provider = provider_browser(playwright_instance, profile)
    page = provider.new_page()
    with ingest_thread(site.world.db, broker_url, **FAST), consult_kiosk(site, broker_url, tmp_path) as kiosk:
        join(page, site, ask_for_a_call(screen, kiosk))
        expect(page.locator("#call")).to_have_attribute("data-state", "live", timeout=15_000)
        expect(screen.get_by_role("heading", name=re.compile("You are talking with"))).to_be_visible(timeout=15_000)
        killed = time.monotonic()
        kill_browser(profile)
        notice = screen.get_by_text(re.compile("The video call could not go on"))
        expect(notice).to_be_visible(timeout=5_000)
        assert time.monotonic() - killed < 5.0
        shot(screen, "kiosk-consult-dropped")
        wait_until(lambda: bool(hub(site, "SELECT 1 FROM cases WHERE subject = 'N100'")), 20, "the fallback case")
        (text,) = hub(site, "SELECT text FROM cases WHERE subject = 'N100'")[0]
        assert "dropped" in str(text)
        assert hub(site, "SELECT reason FROM consults") == [("peer_gone",)]
        expect(screen.get_by_role("heading", name="Thank you")).to_be_visible(timeout=10_000)  # back to the start
    with suppress(Exception):
        provider.close()


def test_a_call_that_cannot_connect_becomes_a_case_and_the_patient_is_told(
    screen: Page, broker_url: BrokerUrl, tmp_path: Path, playwright_instance: Playwright
) -> None:
    # Relay only, through a TURN server that is not there: no path can ever be found.
    ice = IceConfig(turn_urls=("turn:127.0.0.1:9?transport=udp",), turn_secret="nobody-listens", relay_only=True)
    with serve_with(tmp_path, ConsultSettings(ice=ice)) as site:
        provider = provider_browser(playwright_instance, tmp_path / "provider-profile")
        page = provider.new_page()
        # The least connect timeout the kiosk takes: the outcome is the same at any length.
        with (
            ingest_thread(site.world.db, broker_url, **FAST),
            consult_kiosk(site, broker_url, tmp_path, connect_timeout="3") as kiosk,
        ):
            join(page, site, ask_for_a_call(screen, kiosk))
            expect(screen.get_by_text(re.compile("The video call could not go on"))).to_be_visible(timeout=40_000)
            wait_until(lambda: bool(hub(site, "SELECT 1 FROM cases WHERE subject = 'N100'")), 20, "the fallback case")
            (text,) = hub(site, "SELECT text FROM cases WHERE subject = 'N100'")[0]
            assert "could not connect" in str(text)
            expect(page.locator("#call")).to_have_attribute("data-state", "ended", timeout=10_000)
        provider.close()
