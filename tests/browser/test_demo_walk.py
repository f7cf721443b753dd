"""The whole demo as a new patient walks it, at the Pi's 800x480 and at a 1280x800 kiosk panel: check-in, every
device step, the camera, a case with a photo that passes, the clinic's answer read at the kiosk, a video call with
the provider, and the goodbye of a finished visit; the right words on every screen, and each screen's way on in
view without scrolling.

Set up as `make demo` is (`hub demo`), as far as the test fixtures allow: the demo's clinic, patients and provider
(`hub.demo_data.seed`), a kiosk called `demo-kiosk` in that clinic running `kiosk serve` as a process with the
virtual Bluetooth devices, the demo camera's videos (`demo_camera_videos`: a face, and a forearm with a rash on the
photo page) and its hub credential for consults; the hub's web app, a real Mosquitto, ingest and the attribution
pass beside it. The patient uses only what the screen shows (roles and visible text); the provider uses the
workspace in their own Chromium with a fake camera and microphone.

What a screen says beyond the words the walk needs to go on (a reading's name, a notice said twice, the goodbye's
language) is collected along the way and reported together at the end, so one wrong sentence hides nothing after it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, Playwright, expect

from device.protocol.endpoints import BrokerUrl
from device.screen.i18n import translations
from hub import attribution, demo_data
from hub.accounts import kiosk_credentials
from hub.cli import demo_camera_videos
from hub.consults.settings import ConsultSettings
from hub.db import immediate
from hub.store import HubStore
from tests.browser.conftest import DEFAULT_TIMEOUT_MS, _failed
from tests.browser.kiosk import KioskProcess, kiosk_screen
from tests.browser.site import Site
from tests.browser.test_consult import provider_browser, serve_with
from tests.browser.test_kiosk_screen import fully_in_view
from tests.browser.test_workspace import shot
from tests.harness import ingest_thread, wait_until

KIOSK_ID = "demo-kiosk"  # `hub demo --kiosk-id`'s default
CAMERA_SECONDS = "30"  # `hub demo` runs the kiosk with --camera-seconds 30: long enough for a breathing rate
FAST = {"downlink_check_s": 0.1}
PROVIDER = "Dr. Sam Provider"  # the demo's provider (hub/demo_data.py)
REASON = "An itchy rash on my forearm"
OWN_WORDS = "It started after gardening on Sunday and itches at night."
ANSWER = "Use the cream twice a day for a week, and come back if it spreads."
IDLE_GOODBYE = "Your visit ended because the screen was not used for a while."
SLOW = 30_000  # ms: a reading over GATT, a receipt, a call connecting, on a busy machine
SIZES = [
    pytest.param({"width": 800, "height": 480}, id="800x480"),  # the Pi's 7-inch touchscreen
    pytest.param({"width": 1280, "height": 800}, id="1280x800"),  # a kiosk panel
]


class Said:
    """What the screens said wrong, in the order the walk met it."""

    def __init__(self, size: str) -> None:
        self.size = size
        self.wrong: list[str] = []
        self._told: set[str] = set()

    def check(self, right: bool, what: str, *, once: str = "") -> None:
        """`what` if not `right`; with `once`, only the first time (a screen the walk comes back to)."""
        if not right and not (once and once in self._told):
            self.wrong.append(f"at {self.size}: {what}")
            self._told.add(once)


@pytest.fixture(scope="module")
def demo_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo camera's videos, rendered as `hub demo` renders them (a face 34 s long, a forearm with a rash)."""
    return demo_camera_videos(tmp_path_factory.mktemp("demo-camera"))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The hub's web app over the fixtures' world, with live consults as `hub serve` sets them (`demo` adds the
    demo's clinic to that world)."""
    with serve_with(tmp_path, ConsultSettings()) as s:
        yield s


@contextmanager
def attribution_pass(site: Site) -> Iterator[None]:
    """What `hub serve` runs beside ingest: new readings and cases get their patient, twice a second."""
    stop = threading.Event()

    def run() -> None:
        store = HubStore(site.world.db)
        try:
            while not stop.wait(0.5):
                attribution.run_until_done(store.conn, site.clock())
        finally:
            store.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def demo_kiosk(
    site: Site, broker: BrokerUrl, tmp_path: Path, videos: tuple[Path, Path]
) -> AbstractContextManager[KioskProcess]:
    """`kiosk serve` as `hub demo` starts it: virtual devices, the demo camera, the hub for consults."""
    conn = site.world.store.conn
    with immediate(conn):
        secret = kiosk_credentials.issue(conn, KIOSK_ID, site.clock())
    credential = tmp_path / "kiosk-credential"
    credential.write_text(secret)
    face, skin = videos
    extra = [
        "--camera-skin-video", str(skin),
        "--camera-seconds", CAMERA_SECONDS,
        "--hub-url", site.url,
        "--hub-credential-file", str(credential),
    ]  # fmt: skip
    return kiosk_screen(tmp_path / "kiosk", KIOSK_ID, broker, camera_video=face, extra_args=extra)


def reload_until(page: Page, shown: Locator, what: str, timeout_s: float = 30) -> None:
    """Open the page again until `shown` is on it (as a person taps again to see whether something came)."""

    def there() -> bool:
        if shown.count() and shown.first.is_visible():
            return True
        page.reload()
        return False

    wait_until(there, timeout_s, what, interval=1.0)


def in_view(page: Page, where: str) -> Callable[[Locator], None]:
    def check(what: Locator) -> None:
        fully_in_view(page, what, f"{where} at {page.url}")

    return check


def reading(page: Page, name: str, unit: str) -> Locator:
    return page.get_by_text(re.compile(rf"^{name}: \d+(\.\d+)? {re.escape(unit)}$"))


def value_of(what: Locator) -> float:
    return float(re.findall(r"\d+(?:\.\d+)?", what.inner_text())[0])


@dataclass
class Demo:
    site: Site
    kiosk: KioskProcess
    code: str  # the demo patient's check-in code, as `hub demo` prints it
    patient: str  # their name, as the workspace shows it
    provider_password: str  # fresh at each start, as `hub demo` prints it


@pytest.fixture
def demo(site: Site, broker_url: BrokerUrl, tmp_path: Path, demo_videos: tuple[Path, Path]) -> Iterator[Demo]:
    """The demo's clinic, accounts, patients, month of readings and waiting case, with `demo-kiosk` in the clinic;
    ingest and attribution running; the kiosk started."""
    logins = demo_data.seed(site.world.store, KIOSK_ID, datetime.fromtimestamp(site.clock(), UTC))
    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        attribution_pass(site),
        demo_kiosk(site, broker_url, tmp_path, demo_videos) as kiosk,
    ):
        yield Demo(site, kiosk, logins.patient_codes[0], demo_data.NAMES[0], logins.provider_password)


@contextmanager
def screenshot_on_failure(page: Page, request: pytest.FixtureRequest, who: str) -> Iterator[Page]:
    try:
        yield page
    finally:
        node = request.node
        if isinstance(node, pytest.Item) and _failed(node) and not page.is_closed():
            shot(page, f"demo-walk-failed-{re.sub(r'[^A-Za-z0-9_.-]+', '_', node.name)}-{who}")


@pytest.fixture(params=SIZES)
def pi(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    """The kiosk's touchscreen, at each size it ships on."""
    context = browser.new_context(viewport=request.param, has_touch=True)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        with screenshot_on_failure(context.new_page(), request, "kiosk") as page:
            yield page
    finally:
        context.close()


@pytest.fixture
def doc(request: pytest.FixtureRequest, playwright_instance: Playwright, tmp_path: Path) -> Iterator[Page]:
    """The provider's browser, with a fake camera and microphone for the call."""
    provider = provider_browser(playwright_instance, tmp_path / "provider-profile")
    try:
        with screenshot_on_failure(provider.new_page(), request, "provider") as page:
            yield page
    finally:
        provider.close()


def test_a_new_patient_walks_the_whole_demo_with_the_right_words_on_every_screen(
    demo: Demo, pi: Page, doc: Page
) -> None:
    site, kiosk, patient = demo.site, demo.kiosk, demo.patient
    size = pi.viewport_size
    assert size is not None
    name = f"{size['width']}x{size['height']}"
    said = Said(name)

    # 1. Welcome, named by the clinic's setup (its roster) once the hub has sent it; check in; home.
    pi.goto(kiosk.url)
    reload_until(pi, pi.get_by_text("Demo Clinic"), "the demo clinic's setup to reach the kiosk")
    expect(pi.get_by_role("heading", name="Welcome")).to_be_visible()
    expect(pi.get_by_role("status")).to_have_text("Connected")
    expect(pi.get_by_text("No card? Ask the staff for your code.")).to_be_visible()
    view = in_view(pi, "welcome")
    view(pi.get_by_label("Type the code on your card"))
    view(pi.get_by_role("button", name="Check in"))
    shot(pi, f"demo-walk-{name}-welcome")
    pi.get_by_label("Type the code on your card").fill(demo.code)
    pi.get_by_role("button", name="Check in").click()
    home(pi, said)
    for tile in ("Take my vitals", "Send a question to my clinic", "Answers from my clinic", "See a provider now"):
        in_view(pi, "home")(pi.get_by_role("link", name=tile))

    # 2. Vitals: every device of the demo in order, each showing its own readings and its way on in view.
    pi.get_by_role("link", name="Take my vitals").click()
    expect(pi.get_by_role("heading", name="Take my vitals")).to_be_visible()
    expect(pi.get_by_text("We will go through the devices one at a time. You can skip any of them.")).to_be_visible()
    in_view(pi, "vitals")(pi.get_by_role("link", name="Start", exact=True))
    pi.get_by_role("link", name="Start", exact=True).click()

    systolic = device_step(
        pi, said, name, "Blood pressure",
        instruction="Put the cuff on your bare upper arm, at the level of your heart.",
        own=[("Systolic", "mmHg"), ("Diastolic", "mmHg"), ("Pulse", "/min")], others=[],
    )  # fmt: skip
    device_step(
        pi, said, name, "Oxygen level", instruction="Clip the sensor on a fingertip, nail up, and rest your hand.",
        own=[("Oxygen", "%"), ("Pulse", "/min")], others=["Systolic"],  # the oximeter's pulse, not the cuff's
    )  # fmt: skip
    device_step(
        pi, said, name, "Temperature", instruction="Press the button on the thermometer.",
        own=[("Temperature", "°C")], others=["Pulse", "Oxygen"],
    )  # fmt: skip
    camera_step(pi, name)
    home(pi, said)

    # 3. A case: every question, the patient's own words, a photo that passes, review, send; "reached" seen live.
    pi.get_by_role("link", name="Send a question to my clinic").click()
    expect(pi.get_by_role("heading", name="Send a question to my clinic")).to_be_visible()
    expect(pi.get_by_text(re.compile("This is not for emergencies"))).to_be_visible()
    expect(pi.get_by_role("heading", name="How are you feeling?")).to_be_visible()  # the questionnaire's title
    in_view(pi, "case start")(pi.get_by_role("link", name="Start", exact=True))
    pi.get_by_role("link", name="Start", exact=True).click()
    question(pi, 1, "What is the main reason for this visit?", lambda: pi.get_by_role("textbox").fill(REASON))
    question(pi, 2, "Have you had a fever?", lambda: pi.get_by_label("Yes").check())
    question(pi, 3, "For how many days?", lambda: pi.get_by_role("textbox").fill("3"))
    question(pi, 4, "Are you in pain?", lambda: pi.get_by_label("Yes").check())
    question(pi, 5, "Where does it hurt?", lambda: pi.get_by_label("skin").check())
    question(pi, 6, "How bad is it, from 0 (none) to 10 (worst)?", lambda: pi.get_by_role("textbox").fill("3"))
    question(pi, 7, "Are you short of breath?", lambda: pi.get_by_label("No").check())
    question(pi, 8, "Any new medicines since your last visit?", lambda: pi.get_by_role("textbox").fill("None"))
    expect(pi.get_by_role("heading", name="Anything else your clinic should know?")).to_be_visible()
    expect(pi.get_by_text("In your own words. You can leave this empty.")).to_be_visible()
    pi.get_by_label("Anything else your clinic should know?").fill(OWN_WORDS)
    next_button(pi, "own words").click()

    expect(pi.get_by_role("heading", name="Photos (optional)")).to_be_visible()
    expect(pi.get_by_text(re.compile("show it to the camera. Keep your face out of the picture."))).to_be_visible()
    expect(pi.get_by_role("img", name="What the camera sees")).to_be_visible()  # the demo camera shows the rash
    wait_until(lambda: camera_picture(pi) > 0, 20, "the camera's picture on the photo page")
    in_view(pi, "photos")(pi.get_by_role("button", name="Take a photo"))
    pi.get_by_role("button", name="Take a photo").click()
    photo = pi.get_by_role("img", name="Photo 1")
    expect(photo).to_be_visible(timeout=SLOW)
    expect(pi.get_by_role("alert")).to_have_count(0)  # passed the checks: no "blurry", no "your face is in it"
    expect(pi.get_by_role("button", name="Remove photo 1")).to_be_visible()
    assert photo.evaluate("img => img.complete && img.naturalWidth") > 0
    wait_until(lambda: camera_picture(pi) > 0, 20, "the camera's picture again, for another photo")
    shot(pi, f"demo-walk-{name}-photo")
    in_view(pi, "photos, one taken")(pi.get_by_role("link", name="Next"))
    pi.get_by_role("link", name="Next").click()

    expect(pi.get_by_role("heading", name="Check and send")).to_be_visible()
    review = pi.locator("dl.review")
    for words in (REASON, "Have you had a fever?", "Where does it hurt?", "skin", "In your own words", OWN_WORDS):
        expect(review).to_contain_text(words)
    expect(review.locator("dt", has_text="Photos").locator("+ dd")).to_have_text("1")
    expect(review.locator("dt", has_text="Readings from this visit").locator("+ dd")).not_to_have_text("0")
    in_view(pi, "review")(pi.get_by_role("button", name="Send to my clinic"))
    shot(pi, f"demo-walk-{name}-review")
    pi.get_by_role("button", name="Send to my clinic").click()
    expect(pi.get_by_role("heading", name="Your question is saved")).to_be_visible()
    expect(pi.get_by_text("It has reached your clinic. A provider will answer you here.")).to_be_visible(timeout=SLOW)
    expect(pi.get_by_text("Sending it to your clinic now…")).to_be_hidden()
    shot(pi, f"demo-walk-{name}-sent")

    # 4. The provider reads the case (words and photo) in the workspace and answers it; the patient reads the
    # answer, which says which of their questions it answers.
    doc.goto(f"{site.url}/login")
    doc.get_by_label("Email").fill(demo_data.PROVIDER_EMAIL)
    doc.get_by_label("Password").fill(demo.provider_password)
    doc.get_by_role("button", name="Log in").click()
    expect(doc.get_by_role("link", name="Triage")).to_be_visible()
    doc.get_by_role("link", name="Triage").click()
    reload_until(doc, doc.get_by_role("link", name=f"Case: {REASON}"), "the case in the triage queue")
    doc.get_by_role("link", name=f"Case: {REASON}").click()
    expect(doc.get_by_role("heading", name=f"Case from {patient}")).to_be_visible()
    expect(doc.get_by_text(OWN_WORDS)).to_be_visible()
    image = doc.get_by_role("img", name="Photo 1 the patient sent with this case")
    reload_until(doc, image, "the case's photo, complete, at the hub")
    wait_until(lambda: image.evaluate("img => img.complete && img.naturalWidth") > 0, 10, "the photo to load")
    doc.get_by_role("button", name="Start review").click()
    doc.get_by_label("Message to the patient").fill(ANSWER)
    doc.get_by_role("button", name="Send answer").click()
    delivered = doc.get_by_text(re.compile(r"delivered to the kiosk \d{4}-"))  # with a time: not "not yet delivered"
    reload_until(doc, delivered, "the answer at the kiosk")

    pi.get_by_role("link", name="Back to the start").click()
    home(pi, said)
    expect(pi.get_by_text("1 new")).to_be_visible()
    pi.get_by_role("link", name=re.compile("Answers from my clinic")).click()
    expect(pi.get_by_role("heading", name="Answers from my clinic")).to_be_visible()
    answer = pi.locator("article").filter(has_text=ANSWER)
    expect(answer.get_by_role("heading", name=re.compile(r"^Your question of .+"))).to_be_visible()
    expect(answer).to_contain_text(f"You wrote: “{REASON}”")
    expect(answer).to_contain_text(re.compile("Answer received .+"))
    expect(pi.get_by_text(re.compile("these answers are removed from this kiosk when you sign out"))).to_be_visible()
    shot(pi, f"demo-walk-{name}-answer")
    in_view(pi, "answers")(pi.get_by_role("link", name="Back to the start"))
    pi.get_by_role("link", name="Back to the start").click()
    home(pi, said)

    # 5. A video call: the patient asks, the provider joins from the waiting room, both see it connected; the
    # provider ends it.
    pi.get_by_role("link", name="See a provider now").click()
    expect(pi.get_by_role("heading", name="See a provider now")).to_be_visible()
    expect(
        pi.get_by_text("A provider from your clinic will see you by video on this screen.", exact=False)
    ).to_be_visible()
    expect(pi.get_by_text(re.compile("Your readings from this visit go with your request."))).to_be_visible()
    in_view(pi, "consult")(pi.get_by_role("button", name="Ask for a video call now"))
    pi.get_by_role("button", name="Ask for a video call now").click()
    expect(pi.get_by_role("heading", name="Waiting for a provider")).to_be_visible()
    expect(pi.get_by_text("You are number 1 in line.")).to_be_visible()
    expect(pi.get_by_text("We cannot tell how long it will take yet.")).to_be_visible()
    in_view(pi, "waiting")(pi.get_by_role("button", name="Stop waiting"))
    shot(pi, f"demo-walk-{name}-waiting")

    doc.goto(f"{site.url}/consults")
    join = doc.get_by_role("button", name=f"Join the call with {patient}")
    reload_until(doc, join, "the patient in the waiting room")
    row = doc.locator("tr", has=join)
    expect(row).to_contain_text(f"Systolic blood pressure: {systolic:g} mmHg")  # the vitals sent with the request
    join.click()
    expect(doc.locator("#call-state")).to_have_text("Live: you are in the call with the patient.", timeout=SLOW)
    expect(pi.get_by_role("heading", name=f"You are talking with {PROVIDER}")).to_be_visible(timeout=SLOW)
    remote = pi.get_by_role("img", name=f"{PROVIDER} on video")
    wait_until(lambda: remote.evaluate("img => img.naturalWidth") > 0, 20, "the provider's picture on the kiosk")
    in_view(pi, "call")(pi.get_by_role("button", name="End the call"))
    shot(pi, f"demo-walk-{name}-call")
    doc.get_by_role("button", name="End the call").click()
    expect(doc.locator("#call-state")).to_have_text("You ended the call. You can close this page.")
    expect(pi.get_by_text("The call has ended.")).to_be_visible(timeout=SLOW)
    expect(pi.get_by_text(re.compile("could not go on"))).to_have_count(0)  # ended, not dropped
    in_view(pi, "call ended")(pi.get_by_role("link", name="Back to the start"))
    pi.get_by_role("link", name="Back to the start").click()
    home(pi, said)

    # 6. Finish and sign out: the goodbye of a finished visit, not the idle one.
    in_view(pi, "home, leaving")(pi.get_by_role("button", name="Finish and sign out"))
    pi.get_by_role("button", name="Finish and sign out").click()
    expect(pi.get_by_role("heading", name="Thank you")).to_be_visible()
    expect(pi.get_by_text("You are signed out and your information has been cleared from this screen.")).to_be_visible()
    expect(pi.get_by_text(IDLE_GOODBYE)).to_have_count(0)
    expect(pi).to_have_url(re.compile(r"/bye\?lang=[a-z]+$"))
    in_view(pi, "goodbye")(pi.get_by_role("link", name="Start"))
    shot(pi, f"demo-walk-{name}-bye")

    # 7. The next visit, in the screen's other language: its goodbye is in that language too.
    es = translations("es").gettext
    pi.get_by_role("link", name="Start").click()
    expect(pi.get_by_role("heading", name="Welcome")).to_be_visible()
    pi.get_by_role("button", name="Español").click()
    pi.get_by_label(es("Type the code on your card")).fill(demo.code)
    pi.get_by_role("button", name=es("Check in"), exact=True).click()
    expect(pi.get_by_role("heading", name=es("What would you like to do?"))).to_be_visible()
    pi.get_by_role("button", name=es("Finish and sign out")).click()
    expect(pi).to_have_url(re.compile(r"/bye\?lang=[a-z]+$"))
    goodbye = pi.locator("main").inner_text()
    said.check(
        es("Thank you") in goodbye
        and es("You are signed out and your information has been cleared from this screen.") in goodbye,
        f"the goodbye after a visit in Spanish is not in Spanish: {goodbye!r}",
    )
    shot(pi, f"demo-walk-{name}-bye-es")

    assert not said.wrong, "the screens said what they should not:\n" + "\n".join(said.wrong)


def home(pi: Page, said: Said) -> None:
    expect(pi.get_by_role("heading", name="What would you like to do?")).to_be_visible()
    expect(pi.get_by_role("button", name="Finish and sign out")).to_be_visible()
    # What reached the clinic, each said once: the same sentence again tells the patient nothing more.
    notices = pi.locator(".notices p").all_inner_texts()
    repeated = sorted({n for n in notices if notices.count(n) > 1})
    said.check(
        not repeated,
        f"the home screen says the same thing more than once: {repeated} (all its notices: {notices})",
        once="home repeats",
    )


def device_step(
    pi: Page, said: Said, name: str, title: str, *, instruction: str, own: list[tuple[str, str]], others: list[str]
) -> float:
    """A device's step, from its instructions to its readings; on to the next device. Its first reading's value."""
    expect(pi.get_by_role("heading", name=title)).to_be_visible()
    expect(pi.get_by_text(instruction)).to_be_visible()
    expect(pi.get_by_text("Waiting for the device…")).to_be_visible()
    expect(pi.get_by_text("Demo kiosk: the devices are simulated.")).to_be_visible()
    view = in_view(pi, title)
    view(pi.get_by_role("button", name="Press the device's Start button"))
    pi.get_by_role("button", name="Press the device's Start button").click()
    for code_name, unit in own:
        expect(reading(pi, code_name, unit)).to_have_count(1, timeout=SLOW)
    for other in others:  # another device's readings are not shown here
        expect(pi.get_by_text(re.compile(rf"^{other}:"))).to_have_count(0)
    expect(pi.get_by_text("Waiting for the device…")).to_be_hidden()
    view(pi.locator("[data-readings]"))
    # Each reading by its name in words ("Systolic: 120 mmHg"), as the patient reads it.
    shown = pi.locator("[data-readings] li").all_inner_texts()
    unnamed = [r for r in shown if not re.match(r"^[A-Z][a-z]*( [a-z]+)*: \d", r)]
    said.check(not unnamed, f"{title} step: readings not named in words: {unnamed} (all shown: {shown})")
    shot(pi, f"demo-walk-{name}-{title.lower().replace(' ', '-')}")
    first = value_of(reading(pi, *own[0]))
    view(pi.get_by_role("link", name="Next device"))
    pi.get_by_role("link", name="Next device").click()
    return first


def camera_picture(pi: Page) -> int:
    return int(pi.get_by_role("img", name="What the camera sees").evaluate("img => img.complete && img.naturalWidth"))


def camera_step(pi: Page, name: str) -> None:
    expect(pi.get_by_role("heading", name="Heart and breathing rate by camera")).to_be_visible()
    expect(pi.get_by_text("Sit facing the screen, about an arm's length away, in good light.")).to_be_visible()
    expect(pi.get_by_text("Press Start when you are ready.")).to_be_visible()
    expect(pi.get_by_role("img", name="What the camera sees")).to_be_visible()
    wait_until(lambda: camera_picture(pi) > 0, 20, "the camera's picture on its step")
    view = in_view(pi, "camera")
    view(pi.get_by_role("img", name="What the camera sees"))
    view(pi.get_by_role("button", name="Start", exact=True))
    pi.get_by_role("button", name="Start", exact=True).click(no_wait_after=True)  # "Measuring… keep still"
    expect(pi.get_by_role("button", name="Measure again")).to_be_visible(timeout=120_000)
    expect(pi.get_by_role("alert")).to_have_count(0)  # no advice: both vitals were measured
    pulse, breathing = reading(pi, "Pulse", "/min"), reading(pi, "Breathing rate", "/min")
    expect(pulse).to_have_count(1)
    expect(breathing).to_have_count(1)
    # The demo face's pulse is 68/min and its breathing 14/min (hub/cli.py demo_camera_videos).
    assert abs(value_of(pulse) - 68) <= 8, pulse.inner_text()
    assert abs(value_of(breathing) - 14) <= 4, breathing.inner_text()
    wait_until(lambda: camera_picture(pi) > 0, 20, "the camera's picture again, to measure again")
    view(pi.locator("[data-readings]"))
    shot(pi, f"demo-walk-{name}-camera")
    view(pi.get_by_role("link", name="Done with vitals"))
    expect(pi.get_by_role("link", name="Next device")).to_have_count(0)  # the last step
    pi.get_by_role("link", name="Done with vitals").click()


def next_button(pi: Page, where: str) -> Locator:
    button = pi.get_by_role("button", name="Next")
    in_view(pi, where)(button)
    return button


def question(pi: Page, number: int, text: str, answer: Callable[[], None]) -> None:
    expect(pi.get_by_text(f"Question {number}", exact=True)).to_be_visible()
    expect(pi.get_by_role("heading", name=text)).to_be_visible()
    answer()
    next_button(pi, f"question {number}").click()
