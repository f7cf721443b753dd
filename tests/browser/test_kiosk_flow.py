"""A patient's whole visit in a real Chromium at the Pi's screen size (800x480), for what only a walk through the
screens shows: which goodbye a patient sees, whether a case reads as reached, which question an answer answers,
and what the video-call screen promises about the patient's readings.

Most tests serve the screen in this process (`kiosk serve`'s own build(), no Bluetooth, no camera, an agent that
is never started), so the test can play the hub's part exactly: a receipt that comes before the screen has
recorded its notice, an answer to a given case. The consult test runs the kiosk as a process against the hub.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, ViewportSize, expect

from device.agent import AgentConfig, KioskAgent
from device.protocol.downlink import CaseAnswerBody, CaseAnswerMessage
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import utc_iso
from device.protocol.ids import new_message_id
from device.screen.app import create_app
from device.screen.i18n import translations
from device.screen.screen import Screen
from device.screen.serve import ServeOptions, build
from device.screen.visit import IdlePolicy
from device.screen.web import environment
from hub.consults.settings import ConsultSettings
from tests.browser.conftest import DEFAULT_TIMEOUT_MS
from tests.browser.kiosk import KioskProcess
from tests.browser.test_consult import consult_kiosk, serve_with
from tests.browser.test_kiosk_screen import hub, take_blood_pressure
from tests.browser.test_workspace import shot
from tests.harness import wait_until
from tests.screen.kiosk import KIOSK_ID, NO_PIN, REPO, setup_body, setup_message

PI_SCREEN: ViewportSize = {"width": 800, "height": 480}
IDLE_GOODBYE = "Your visit ended because the screen was not used for a while."


@dataclass
class LocalKiosk:
    """The screen served on a loopback port by this process, with its agent's outbox and inbox at hand."""

    url: str
    agent: KioskAgent
    screen: Screen
    loop: asyncio.AbstractEventLoop

    def on_loop(self, action: Any) -> Any:
        """Run `action()` on the screen's event loop, as the kiosk's own parts do; its result."""

        async def run() -> Any:
            return action()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def cases(self) -> dict[str, dict[str, Any]]:
        """The case payloads stored in the outbox by envelope id (the agent never sends them: all are there)."""
        return {i.id: json.loads(i.body)["payload"] for i in self.agent.outbox.pending() if i.kind == "case"}

    def answer(self, case: dict[str, Any], message: str) -> None:
        """The clinic's answer to that case, as the hub's downlink leaves it in the kiosk's inbox."""
        body = CaseAnswerBody(case=case["case"], subject=case["subject"], message=message)
        answer = CaseAnswerMessage(id=new_message_id(), kiosk=KIOSK_ID, created=datetime.now(UTC), body=body)
        assert self.agent.inbox.store(answer)


@contextmanager
def local_kiosk(data: Path) -> Iterator[LocalKiosk]:
    config = AgentConfig(kiosk_id=KIOSK_ID, broker=BrokerUrl.parse("mqtt://127.0.0.1:1"), data_dir=data)
    agent = KioskAgent(config)  # never started: the test plays the hub
    options = ServeOptions(
        port=0, ble="off", profiles=REPO / "firmware_configs" / "ble", camera_profile=None, camera_video=None,
        camera_seconds=1.0, idle=IdlePolicy(), clinic_name="Test kiosk",
    )  # fmt: skip
    screen = build(agent, options)
    assert agent.inbox.store(setup_message(setup_body()))  # the clinic's roster and questionnaire
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(screen), log_level="warning", timeout_graceful_shutdown=5))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the kiosk screen did not start")
        time.sleep(0.01)
    try:
        yield LocalKiosk(f"http://127.0.0.1:{sock.getsockname()[1]}", agent, screen, loop)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        loop.close()
        sock.close()
        screen.notices.close()
        agent.forwarder.close()
        agent.forwarder.outbox.close()
        agent.outbox.close()
        agent.inbox.close()


@pytest.fixture
def pi_screen(browser: Browser) -> Iterator[Page]:
    """The kiosk's browser at the Raspberry Pi touchscreen's size."""
    context = browser.new_context(viewport=PI_SCREEN, has_touch=True)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def kiosk(tmp_path: Path, pi_screen: Page) -> Iterator[LocalKiosk]:
    with local_kiosk(tmp_path / "kiosk") as k:
        yield k
        pi_screen.context.close()  # its live stream open would hold the server's shutdown


def check_in(screen: Page, url: str, code: str, language: str = "English") -> None:
    """Check in as a patient does; returns once the home page's live updates are open."""
    gettext = translations("es" if language == "Español" else "en").gettext
    screen.goto(url)
    screen.get_by_role("button", name=language).click()
    screen.get_by_label(gettext("Type the code on your card")).fill(code)
    with screen.expect_response("**/events"):
        screen.get_by_role("button", name=gettext("Check in"), exact=True).click()
    expect(screen.get_by_role("heading", name=gettext("What would you like to do?"))).to_be_visible()


def finish(screen: Page) -> None:
    screen.get_by_role("button", name="Finish and sign out").click()
    expect(screen.get_by_role("heading", name="Thank you")).to_be_visible()


def send_a_case(screen: Page, url: str, reason: str) -> None:
    """The general intake, every answer No, no words, no photo (this kiosk has no camera), then Send."""
    screen.goto(f"{url}/case")
    screen.get_by_role("link", name="Start", exact=True).click()
    screen.get_by_role("textbox").fill(reason)
    screen.get_by_role("button", name="Next").click()
    for question in ("Have you had a fever?", "Are you in pain?", "Are you short of breath?"):
        expect(screen.get_by_role("heading", name=question)).to_be_visible()
        screen.get_by_label("No").check()
        screen.get_by_role("button", name="Next").click()
    screen.get_by_role("button", name="Next").click()  # new medicines: optional
    screen.get_by_role("button", name="Next").click()  # own words: none
    screen.get_by_role("link", name="Next").click()  # no photos
    expect(screen.get_by_text(reason)).to_be_visible()  # the review
    screen.get_by_role("button", name="Send to my clinic").click()
    expect(screen.get_by_role("heading", name="Your question is saved")).to_be_visible()


def test_finish_and_sign_out_says_goodbye_not_that_the_screen_went_unused(pi_screen: Page, kiosk: LocalKiosk) -> None:
    # The visit's end reaches the page over its live stream while the Finish form's own answer is on its way.
    check_in(pi_screen, kiosk.url, NO_PIN)
    pi_screen.get_by_role("button", name="Finish and sign out").click()
    expect(pi_screen.get_by_role("heading", name="Thank you")).to_be_visible()
    expect(pi_screen.get_by_text("You are signed out and your information has been cleared")).to_be_visible()
    expect(pi_screen).to_have_url(re.compile(r"/bye\?lang=[a-z]+$"))
    expect(pi_screen.get_by_text(IDLE_GOODBYE)).to_have_count(0)
    shot(pi_screen, "kiosk-flow-finished")

    # From a page deeper in the visit, too.
    check_in(pi_screen, kiosk.url, NO_PIN)
    with pi_screen.expect_response("**/events"):
        pi_screen.get_by_role("link", name="Take my vitals").click()
    finish(pi_screen)
    expect(pi_screen.get_by_text(IDLE_GOODBYE)).to_have_count(0)


def test_a_visit_the_kiosk_ends_for_idleness_says_so(pi_screen: Page, kiosk: LocalKiosk) -> None:
    # The page could not run its countdown (as when its script stalls): the kiosk ends the visit itself.
    check_in(pi_screen, kiosk.url, NO_PIN)
    kiosk.on_loop(lambda: kiosk.screen.end_visit("idle"))
    expect(pi_screen.get_by_text(IDLE_GOODBYE)).to_be_visible()


def test_a_receipt_that_comes_before_the_notice_is_written_still_reads_as_reached(
    pi_screen: Page, kiosk: LocalKiosk
) -> None:
    # The hub answers as fast as it can: its receipt for each message arrives the moment the message is in the
    # outbox (the hook that wakes the forwarder), before the screen has written its notice.
    outbox = kiosk.agent.outbox
    receipted: list[str] = []

    def receipt_now() -> None:
        ids = [item.id for item in outbox.pending() if item.id not in receipted]
        receipted.extend(ids)
        kiosk.screen.on_receipt(ids)

    outbox.on_enqueue = receipt_now
    kiosk.agent.forwarder.connected.set()  # online: the screen says "sending" until the receipt shows
    check_in(pi_screen, kiosk.url, NO_PIN)
    send_a_case(pi_screen, kiosk.url, "Headache since Monday")
    expect(pi_screen.get_by_text("It has reached your clinic.")).to_be_visible()
    expect(pi_screen.get_by_text("Sending it to your clinic now…")).to_have_count(0)
    shot(pi_screen, "kiosk-flow-case-reached")
    # And a reading (as the Bluetooth collector hands one over), receipted the same way.
    observation = {
        "code": "8867-4", "value": 72, "unit": "/min", "effective": utc_iso(datetime.now(UTC)),
        "device": {"id": "AA:BB:CC:DD:EE:FF", "type": "ble"},
    }  # fmt: skip
    kiosk.on_loop(lambda: kiosk.screen.on_reading({"subject": NO_PIN, "observations": [observation]}))
    assert len(receipted) == 2
    finish(pi_screen)

    check_in(pi_screen, kiosk.url, NO_PIN)
    expect(pi_screen.get_by_text(re.compile(r"^Your case saved on .+ reached your clinic on .+\.$"))).to_be_visible()
    expect(pi_screen.get_by_text(re.compile(r"^Your readings from .+ reached your clinic on .+\.$"))).to_be_visible()
    expect(pi_screen.get_by_text(re.compile("waiting to be sent"))).to_have_count(0)


def test_each_answer_says_which_of_the_patients_questions_it_answers(pi_screen: Page, kiosk: LocalKiosk) -> None:
    check_in(pi_screen, kiosk.url, NO_PIN)
    send_a_case(pi_screen, kiosk.url, "Headache since Monday")
    send_a_case(pi_screen, kiosk.url, "An itchy rash on my arm")
    finish(pi_screen)
    cases = {c["answers"][0]["value"]: c for c in kiosk.cases().values()}
    kiosk.answer(cases["An itchy rash on my arm"], "Use the cream twice a day.")
    kiosk.answer(cases["Headache since Monday"], "Drink more water and rest.")
    sent = {}  # when each was sent, as the kiosk recorded it
    for envelope_id, case in kiosk.cases().items():
        notice = kiosk.screen.notices.status(NO_PIN, envelope_id)
        assert notice is not None
        sent[case["answers"][0]["value"]] = notice.saved_at

    # The same patient, in Spanish this time: each answer names its question in Spanish.
    check_in(pi_screen, kiosk.url, NO_PIN, language="Español")
    es = translations("es").gettext
    pi_screen.get_by_role("link", name=re.compile(es("Answers from my clinic"))).click()
    when = environment("es").filters["when"]
    rash = pi_screen.locator("article").filter(has_text="Use the cream twice a day.")
    headache = pi_screen.locator("article").filter(has_text="Drink more water and rest.")
    expect(rash).to_contain_text(es("You wrote: “%(words)s”") % {"words": "An itchy rash on my arm"})
    expect(headache).to_contain_text(es("You wrote: “%(words)s”") % {"words": "Headache since Monday"})
    for article, reason in ((rash, "An itchy rash on my arm"), (headache, "Headache since Monday")):
        expect(article).to_contain_text(es("Your question of %(sent)s") % {"sent": when(sent[reason])})
    expect(rash).not_to_contain_text("Headache")
    expect(headache).not_to_contain_text("rash")
    shot(pi_screen, "kiosk-flow-answers-es")


@pytest.fixture
def consult_site(tmp_path: Path) -> Iterator[Any]:
    with serve_with(tmp_path, ConsultSettings(gone_after_s=3.0)) as s:
        yield s


def test_the_video_call_screen_says_which_readings_go_with_the_request_and_they_do(
    pi_screen: Page, consult_site: Any, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    site = consult_site
    ask = pi_screen.get_by_role("button", name="Ask for a video call now")
    process = consult_kiosk(site, broker_url, tmp_path)
    assert isinstance(process, AbstractContextManager)
    with process as running:
        assert isinstance(running, KioskProcess)
        kiosk: KioskProcess = running
        check_in(pi_screen, kiosk.url, "N100")
        pi_screen.goto(f"{kiosk.url}/vitals/blood_pressure")
        systolic = take_blood_pressure(pi_screen)
        pi_screen.goto(f"{kiosk.url}/consult")
        expect(pi_screen.get_by_text("Your readings from this visit go with your request.")).to_be_visible()
        ask.click()
        expect(pi_screen.get_by_text("You are number 1 in line.")).to_be_visible()
        wait_until(lambda: len(hub(site, "SELECT 1 FROM consults")) == 1, 10, "the request at the hub")
        ((sent,),) = hub(site, "SELECT vitals FROM consults")
        assert systolic in [v["value"] for v in json.loads(str(sent))]  # they do go with it
        pi_screen.get_by_role("button", name="Stop waiting").click()
        expect(pi_screen.get_by_text("The call has ended.")).to_be_visible()
        finish(pi_screen)

        # Signed in again: a new visit, with no readings (and not the last visit's call either): the screen must
        # not say that any go with the request.
        check_in(pi_screen, kiosk.url, "N100")
        pi_screen.goto(f"{kiosk.url}/consult")
        expect(pi_screen.get_by_text("The call has ended.")).to_have_count(0)
        expect(pi_screen.get_by_text(re.compile("No readings go with your request"))).to_be_visible()
        expect(pi_screen.get_by_text(re.compile("shared with them|go with your request\\.$"))).to_have_count(0)
        shot(pi_screen, "kiosk-flow-consult-no-readings")
        ask.click()
        expect(pi_screen.get_by_text("You are number 1 in line.")).to_be_visible()
        wait_until(lambda: len(hub(site, "SELECT 1 FROM consults")) == 2, 10, "the second request at the hub")
        assert hub(site, "SELECT vitals FROM consults ORDER BY rowid")[1] == ("[]",)  # the provider is shown "None"
        pi_screen.get_by_role("button", name="Stop waiting").click()
        finish(pi_screen)
