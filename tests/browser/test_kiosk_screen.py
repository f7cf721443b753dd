"""A patient at the kiosk, in a real Chromium: check-in, a blood pressure from a virtual cuff, a case with a
photo answered by a provider, the idle timeout, and a visit while the kiosk is offline.

The kiosk is `kiosk serve` as a process: its Bluetooth devices are bumble peripherals speaking GATT,
its camera a video file; the hub is the real ingest on a real Mosquitto, and the provider uses the
hub's pages in a second browser context. Screenshots of each screen go to test-artifacts/browser/kiosk-*.png.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from device.intake import general_intake
from device.protocol.endpoints import BrokerUrl
from device.protocol.questionnaire import Questionnaire
from device.screen.i18n import translations
from hub.broker import MosquittoProcess
from tests.browser.kiosk import KioskProcess, LiveUpdatesHeld, kiosk_screen, rash_video
from tests.browser.site import Site, serve
from tests.browser.test_workspace import assert_icon, axe_serious, log_in, shot
from tests.harness import REPO, ingest_thread, wait_until

FAST = {"downlink_check_s": 0.1}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(tmp_path / "hub.db") as s:
        yield s


def setup_version(kiosk: KioskProcess) -> int:
    """The version of the clinic setup (roster, questionnaire) the kiosk holds; 0 before the first."""
    path = kiosk.data / "inbox.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT version FROM setup").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
    return int(row[0]) if row else 0


def check_in(page: Page, kiosk: KioskProcess, code: str) -> None:
    page.goto(kiosk.url)
    page.get_by_label("Type the code on your card").fill(code)
    page.get_by_role("button", name="Check in").click()
    expect(page.get_by_role("heading", name="What would you like to do?")).to_be_visible()


def hub(site: Site, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Read the hub's database as an auditor would, beside the running hub."""
    conn = sqlite3.connect(f"file:{site.world.db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def hub_values(site: Site, subject: str, code: str) -> list[float]:
    """Values the hub holds from the kiosk's virtual cuff (the world's older readings come from other devices)."""
    rows = hub(
        site,
        "SELECT value FROM observations WHERE subject = ? AND code = ? AND device_id LIKE '%:CUFF-0001'",
        subject,
        code,
    )
    return [float(str(r[0])) for r in rows]


def take_blood_pressure(page: Page) -> float:
    """On the blood pressure step, press the (virtual) cuff's Start; return the systolic the screen shows."""
    readings = page.get_by_text(re.compile(r"^Systolic: \d+ mmHg$"))
    before = readings.count()  # this visit's earlier readings are on the page already
    page.get_by_role("button", name="Press the device's Start button").click()
    expect(page.get_by_text(re.compile(r"Cuff pressure: \d+ mmHg"))).to_be_visible()
    expect(readings).to_have_count(before + 1, timeout=20_000)
    return float(re.findall(r"\d+", readings.last.inner_text())[0])


def test_check_in_by_code_in_english_or_spanish_with_a_pin_where_the_patient_has_one(
    screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    from hub import kiosk_setup
    from hub.db import immediate

    es = translations("es").gettext
    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url) as kiosk,
    ):
        wait_until(lambda: setup_version(kiosk) > 0, 20, "the clinic's setup to reach the kiosk")
        first = setup_version(kiosk)
        pin_hash = kiosk_setup.hash_pin("2468")
        conn = site.world.store.conn
        with immediate(conn):
            kiosk_setup.set_pin(conn, site.world.north.id, site.world.north.patients["N101"], pin_hash, site.clock())
        wait_until(lambda: setup_version(kiosk) > first, 20, "the new roster (with the PIN) to reach the kiosk")

        screen.goto(kiosk.url)
        expect(screen.get_by_text("North Clinic")).to_be_visible()  # named by the hub's setup
        shot(screen, "kiosk-welcome")
        screen.get_by_label("Type the code on your card").fill("S100")  # another clinic's patient
        screen.get_by_role("button", name="Check in").click()
        expect(screen.get_by_role("alert")).to_have_text(re.compile("We do not know this code"))

        screen.get_by_role("button", name="Español").click()
        expect(screen.locator("html")).to_have_attribute("lang", "es")
        screen.get_by_label(es("Type the code on your card")).fill(" n100 ")  # as people type it
        screen.get_by_role("button", name=es("Check in"), exact=True).click()
        expect(screen.get_by_role("heading", name=es("What would you like to do?"))).to_be_visible()
        shot(screen, "kiosk-home-es")
        screen.get_by_role("button", name=es("Finish and sign out")).click()

        screen.goto(kiosk.url)
        screen.get_by_role("button", name="English").click()
        screen.get_by_label("Type the code on your card").fill("N101")
        screen.get_by_role("button", name="Check in").click()
        expect(screen.get_by_role("heading", name="Enter your PIN")).to_be_visible()
        shot(screen, "kiosk-pin")
        screen.get_by_label("Your PIN (4 to 8 digits)").fill("1111")
        screen.get_by_role("button", name="Check in").click()
        expect(screen.get_by_role("alert")).to_have_text("That PIN is not right. Please try again.")
        screen.get_by_label("Your PIN (4 to 8 digits)").fill("2468")
        screen.get_by_role("button", name="Check in").click()
        expect(screen.get_by_role("heading", name="What would you like to do?")).to_be_visible()


def test_blood_pressure_from_the_virtual_cuff_is_shown_live_and_reaches_the_hub_once(
    screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url) as kiosk,
    ):
        check_in(screen, kiosk, "N100")
        shot(screen, "kiosk-home")
        screen.get_by_role("link", name="Take my vitals").click()
        shot(screen, "kiosk-vitals")
        screen.get_by_role("link", name="Start", exact=True).click()
        expect(screen.get_by_role("heading", name="Blood pressure")).to_be_visible()
        expect(screen.get_by_text("Press the Start button on the cuff")).to_be_visible()
        systolic = take_blood_pressure(screen)
        expect(screen.get_by_text(re.compile(r"^Diastolic: \d+ mmHg$"))).to_be_visible()
        expect(screen.get_by_text(re.compile(r"^Pulse: \d+ /min$"))).to_be_visible()
        shot(screen, "kiosk-blood-pressure")
        wait_until(lambda: hub_values(site, "N100", "8480-6") == [systolic], 20, "the systolic to reach the hub")
        assert len(hub_values(site, "N100", "8462-4")) == 1
        # The outbox keeps nothing the hub has: once receipted, the reading is gone from the kiosk.
        wait_until(lambda: _outbox_items(kiosk) == 0, 20, "the kiosk's outbox to empty")


def test_a_reading_taken_while_the_page_loads_is_shown_all_the_same(
    screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    # The page's live updates are held back until a reading has been taken after it was rendered: that
    # reading comes as no event, and the page must still show it (a slow page and a quick device).
    with kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url) as kiosk:
        check_in(screen, kiosk, "N100")
        held = LiveUpdatesHeld(screen)
        step = f"{kiosk.url}/vitals/thermometer"
        with screen.expect_request("**/events"):
            screen.goto(step)
        temperatures = screen.get_by_text(re.compile(r"^Temperature: [\d.]+ °C$"))
        expect(temperatures).to_have_count(0)
        pressed = screen.request.post(f"{step}/simulate", headers={"Origin": kiosk.url}, max_redirects=0)
        assert pressed.status == 303  # the device is pressed; this page learns nothing of it yet
        wait_until(lambda: "Temperature:" in screen.request.get(step).text(), 20, "the reading at the kiosk")
        expect(temperatures).to_have_count(0)
        held.release()
        expect(temperatures).to_have_count(1)


def _outbox_items(kiosk: KioskProcess) -> int:
    conn = sqlite3.connect(f"file:{kiosk.data / 'outbox.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


def test_a_case_with_a_photo_is_answered_by_a_provider_and_the_answer_is_read_at_the_kiosk(
    screen: Page, page: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    video = rash_video(tmp_path / "rash.avi")
    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url, camera_video=video) as kiosk,
    ):
        check_in(screen, kiosk, "N100")
        screen.get_by_role("link", name="Send a question to my clinic").click()
        shot(screen, "kiosk-case-start")
        screen.get_by_role("link", name="Start", exact=True).click()
        expect(screen.get_by_text("Question 1", exact=True)).to_be_visible()
        screen.get_by_role("textbox").fill("An itchy rash on my arm")
        screen.get_by_role("button", name="Next").click()
        screen.get_by_label("No").check()  # fever
        screen.get_by_role("button", name="Next").click()
        screen.get_by_role("button", name="Next").click()  # pain: required, left empty: the form stays
        expect(screen).to_have_url(re.compile(r"/case/q/pain$"))
        screen.get_by_label("Yes").check()
        screen.get_by_role("button", name="Next").click()
        expect(screen.get_by_role("heading", name="Where does it hurt?")).to_be_visible()  # the branch
        screen.get_by_label("skin").check()
        shot(screen, "kiosk-case-question")
        screen.get_by_role("button", name="Next").click()
        screen.get_by_role("textbox").fill("3")
        screen.get_by_role("button", name="Next").click()
        screen.get_by_label("No").check()  # breathless
        screen.get_by_role("button", name="Next").click()
        screen.get_by_role("button", name="Next").click()  # new medicines: optional
        screen.get_by_label("Anything else your clinic should know?").fill("It started after gardening.")
        screen.get_by_role("button", name="Next").click()
        screen.get_by_role("button", name="Take a photo").click()
        photo = screen.get_by_role("img", name="Photo 1")
        expect(photo).to_be_visible(timeout=20_000)
        assert photo.evaluate("img => img.complete && img.naturalWidth") > 0
        shot(screen, "kiosk-case-photo")
        screen.get_by_role("link", name="Next").click()
        expect(screen.get_by_text("An itchy rash on my arm")).to_be_visible()
        shot(screen, "kiosk-case-review")
        screen.get_by_role("button", name="Send to my clinic").click()
        expect(screen.get_by_role("heading", name="Your question is saved")).to_be_visible()
        expect(screen.get_by_text("It has reached your clinic.")).to_be_visible(timeout=20_000)
        shot(screen, "kiosk-case-sent")
        screen.get_by_role("button", name="Finish and sign out").click()
        expect(screen.get_by_role("heading", name="Thank you")).to_be_visible()

        # On the hub: the provider reads the case, photo included, and answers it.
        from hub import attribution

        wait_until(lambda: bool(hub(site, "SELECT 1 FROM cases WHERE subject = 'N100'")), 20, "the case at the hub")
        attribution.run_until_done(site.world.store.conn, site.clock())
        log_in(page, site, site.world.north.provider)
        page.get_by_role("link", name="Triage").click()
        page.get_by_role("link", name="Case: An itchy rash on my arm").click()
        expect(page.get_by_text("It started after gardening.")).to_be_visible()
        image = page.get_by_role("img", name="Photo 1 the patient sent with this case")
        expect(image).to_be_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth") > 0
        page.get_by_role("button", name="Start review").click()
        page.get_by_label("Message to the patient").fill("Use the cream twice a day for a week.")
        page.get_by_role("button", name="Send answer").click()

        # Back at the kiosk: the answer waits for the patient's next check-in, and is read there.
        wait_until(lambda: _answers_waiting(kiosk) == 1, 20, "the answer to reach the kiosk")
        check_in(screen, kiosk, "N100")
        expect(screen.get_by_text("1 new")).to_be_visible()
        screen.get_by_role("link", name=re.compile("Answers from my clinic")).click()
        expect(screen.get_by_text("Use the cream twice a day for a week.")).to_be_visible()
        shot(screen, "kiosk-answers")
        screen.get_by_role("button", name="Finish and sign out").click()
        # Read and signed out: the kiosk no longer keeps the answer (the hub does).
        wait_until(lambda: _answers_waiting(kiosk) == 0, 5, "the answer to leave the kiosk")


def _answers_waiting(kiosk: KioskProcess) -> int:
    conn = sqlite3.connect(f"file:{kiosk.data / 'inbox.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])
    finally:
        conn.close()


def test_the_idle_timeout_ends_the_visit_and_the_next_patient_sees_nothing_of_it(
    screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url, idle_s=8, warn_s=5) as kiosk,
    ):
        check_in(screen, kiosk, "N100")
        screen.goto(f"{kiosk.url}/vitals/blood_pressure")
        systolic = take_blood_pressure(screen)
        # Whatever a page might leave behind in the browser must go too.
        screen.evaluate("() => { localStorage.setItem('left', 'N100'); sessionStorage.setItem('left', 'N100'); }")
        dialog = screen.get_by_role("alertdialog", name="Are you still there?")
        expect(dialog).to_be_visible(timeout=15_000)
        expect(dialog).to_contain_text(re.compile(r"ends in [1-5] seconds"))
        shot(screen, "kiosk-idle-countdown")
        expect(screen.get_by_text("Your visit ended because the screen was not used for a while.")).to_be_visible(
            timeout=15_000
        )
        shot(screen, "kiosk-idle-ended")
        assert screen.context.cookies() == []
        assert screen.evaluate("() => [localStorage.length, sessionStorage.length]") == [0, 0]
        screen.goto(f"{kiosk.url}/home")
        expect(screen.get_by_role("heading", name="Welcome")).to_be_visible()
        # The next patient, on the same browser: nothing of the last one.
        check_in(screen, kiosk, "N101")
        screen.get_by_role("link", name="Take my vitals").click()
        expect(screen.get_by_role("heading", name="Take my vitals")).to_be_visible()
        assert str(int(systolic)) not in screen.content()
        expect(screen.get_by_text("Taken so far")).to_have_count(0)
        screen.goto(f"{kiosk.url}/vitals/blood_pressure")
        expect(screen.get_by_text("Waiting for the device…")).to_be_visible()
        expect(screen.get_by_text(re.compile("^Systolic"))).to_have_count(0)


def test_offline_a_patient_takes_vitals_and_sends_a_case_and_hears_next_visit_when_it_arrived(
    screen: Page, site: Site, mosquitto: MosquittoProcess, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url) as kiosk,
    ):
        wait_until(lambda: setup_version(kiosk) > 0, 20, "the clinic's setup to reach the kiosk")
        mosquitto.stop()  # the network is gone
        screen.goto(kiosk.url)
        expect(screen.get_by_text("Offline: what you send is saved here and sent later")).to_be_visible()
        check_in(screen, kiosk, "N100")  # from the roster the kiosk keeps
        screen.goto(f"{kiosk.url}/vitals/blood_pressure")
        systolic = take_blood_pressure(screen)
        screen.goto(f"{kiosk.url}/case/q/main")
        screen.get_by_role("textbox").fill("Headache since Monday")
        screen.get_by_role("button", name="Next").click()
        screen.get_by_label("No").check()
        screen.get_by_role("button", name="Next").click()
        screen.get_by_label("No").check()
        screen.get_by_role("button", name="Next").click()
        screen.get_by_label("No").check()
        screen.get_by_role("button", name="Next").click()
        screen.get_by_role("button", name="Next").click()
        screen.get_by_role("button", name="Next").click()  # own words: empty
        screen.get_by_role("link", name="Next").click()  # no photos (no camera here)
        screen.get_by_role("button", name="Send to my clinic").click()
        expect(screen.get_by_text(re.compile("This kiosk is offline. Your question is saved here"))).to_be_visible()
        shot(screen, "kiosk-offline-case")
        screen.get_by_role("button", name="Finish and sign out").click()
        assert hub(site, "SELECT count(*) FROM cases") == [(0,)]

        # Next visit, still offline: the screen says it is waiting, honestly.
        check_in(screen, kiosk, "N100")
        expect(screen.get_by_text("1 case is saved on this kiosk and waiting to be sent.")).to_be_visible()
        screen.get_by_role("button", name="Finish and sign out").click()

        mosquitto.start()  # back online: the outbox drains by itself
        wait_until(lambda: hub(site, "SELECT count(*) FROM cases") == [(1,)], 30, "the case to reach the hub")
        wait_until(lambda: hub_values(site, "N100", "8480-6") == [systolic], 10, "the reading to reach the hub")
        wait_until(lambda: _outbox_items(kiosk) == 0, 20, "the receipts to reach the kiosk")
        check_in(screen, kiosk, "N100")
        expect(screen.get_by_text(re.compile(r"^Your case saved on .+ reached your clinic on .+\.$"))).to_be_visible()
        expect(screen.get_by_text(re.compile(r"^Your readings from .+ reached your clinic on"))).to_be_visible()
        shot(screen, "kiosk-delivered-notice")
        screen.get_by_role("button", name="Finish and sign out").click()
        check_in(screen, kiosk, "N100")  # told once
        expect(screen.get_by_text(re.compile("reached your clinic"))).to_have_count(0)


# The screens the kiosk ships on: the Raspberry Pi's own 7-inch touchscreen, a 10-inch tablet-sized panel and a
# 1280x800 kiosk panel. Every screen must show its main action without scrolling on each of them.
SCREEN_SIZES = [(800, 480), (1024, 768), (1280, 800)]


def fully_in_view(page: Page, what: Locator, where: str) -> None:
    """`what` is entirely inside the viewport as the page opens: seen and touched without scrolling."""
    assert page.evaluate("window.scrollY") == 0, f"{where}: the page opened scrolled"
    size = page.viewport_size
    assert size is not None
    expect(what).to_be_visible()
    box = what.bounding_box()
    assert box is not None, where
    inside = (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= size["width"] + 0.5
        and box["y"] + box["height"] <= size["height"] + 0.5
    )
    assert inside, f"{where}: {what} at {box} is not inside the {size['width']}x{size['height']} screen"
    # Nothing covers it (a pinned pager over a button would pass the test above): its middle and the middles of
    # its edges are its own to touch.
    covered = what.evaluate(
        """e => { const b = e.getBoundingClientRect(), x = b.left + b.width / 2, y = b.top + b.height / 2;
            const points = [[x, y], [x, b.top + 2], [x, b.bottom - 2], [b.left + 2, y], [b.right - 2, y]];
            return points.filter(([x, y]) => !e.contains(document.elementFromPoint(x, y))).length; }"""
    )
    assert covered == 0, f"{where}: {what} is partly covered by something else"


def open_every_branch(screen: Page, kiosk: KioskProcess, questionnaire: Questionnaire) -> None:
    """Answer every question so that every follow-up question is shown (and the review is as long as it gets)."""
    opens = {i.enable_when.question: i.enable_when.answer for i in questionnaire.items if i.enable_when}
    for item in questionnaire.items:
        wanted = opens.get(item.link_id)
        if item.type == "boolean":
            value = "no" if wanted is False else "yes"
        elif item.type == "choice":
            value = str(wanted) if wanted is not None else (item.options or [""])[-1]
        elif item.type in ("integer", "decimal"):
            value = str(wanted) if wanted is not None else "2"
        else:
            value = "A long question for the clinic " * 4
        answered = screen.request.post(
            f"{kiosk.url}/case/q/{item.link_id}", form={"value": value}, headers={"Origin": kiosk.url}, max_redirects=0
        )
        assert answered.status == 303, (item.link_id, answered.status)


def kiosk_credential(site: Site, tmp_path: Path) -> Path:
    """The kiosk's own credential for the hub, so that "See a provider now" can put the patient in line."""
    from hub.accounts import kiosk_credentials
    from hub.db import immediate

    conn = site.world.store.conn
    with immediate(conn):
        secret = kiosk_credentials.issue(conn, site.world.north.kiosk, site.clock())
    path = tmp_path / "kiosk-credential"
    path.write_text(secret)
    return path


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_kiosk_screen_passes_the_accessibility_rules_and_fits_the_screen(
    browser: Browser, site: Site, broker_url: BrokerUrl, tmp_path: Path, language: str
) -> None:
    context = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True, bypass_csp=True)
    screen = context.new_page()
    gettext = translations(language).gettext
    questionnaire = general_intake()  # what the world's clinic gives its kiosks
    video = rash_video(tmp_path / "rash.avi")  # a camera, so that every screen is there
    hub_args = ["--hub-url", site.url, "--hub-credential-file", str(kiosk_credential(site, tmp_path))]

    def button(name: str) -> Locator:
        return screen.get_by_role("button", name=gettext(name), exact=True)

    def link(name: str) -> Locator:
        return screen.get_by_role("link", name=gettext(name), exact=True)

    def check(path: str, main_actions: list[Locator], *, axe: bool = True) -> None:
        """At each screen size: the accessibility rules, no sideways scrolling, large targets, and the main
        actions on the screen as it opens."""
        for width, height in SCREEN_SIZES:
            where = f"{path} ({language}, {width}x{height})"
            screen.set_viewport_size({"width": width, "height": height})
            screen.goto(f"{kiosk.url}{path}")
            screen.evaluate("window.scrollTo(0, 0)")
            if axe:
                serious = axe_serious(screen)
                assert not serious, f"{where}: {json.dumps(serious)}"
            assert screen.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), where
            # Touch targets: every button and link at least 44 px high (WCAG 2.5.5), most far more.
            small = screen.evaluate(
                "[...document.querySelectorAll('main a, main button, header button, main label.choice')]"
                ".filter(e => e.getBoundingClientRect().height < 44).map(e => e.textContent.trim())"
            )
            assert small == [], f"{where}: small targets {small}"
            for action in main_actions:
                fully_in_view(screen, action, where)
            name = path.strip("/").replace("/", "-") or "welcome"
            shot(screen, f"kiosk-a11y-{language}-{width}x{height}-{name}")

    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        kiosk_screen(
            tmp_path / "kiosk", site.world.north.kiosk, broker_url, camera_video=video, extra_args=hub_args
        ) as kiosk,
    ):
        screen.goto(kiosk.url)
        screen.get_by_role("button", name="Español" if language == "es" else "English").click()
        check("/", [screen.get_by_label(gettext("Type the code on your card")), button("Check in")])
        screen.get_by_label(gettext("Type the code on your card")).fill("N100")
        button("Check in").click()
        expect(screen.get_by_role("heading", name=gettext("What would you like to do?"))).to_be_visible()
        check("/home", [screen.locator("main .tile").nth(n) for n in range(4)])
        check("/vitals", [link("Start")])
        for kind in ("blood_pressure", "pulse_oximeter", "thermometer"):
            check(f"/vitals/{kind}", [screen.locator("section.live"), button("Press the device's Start button"),
                                      link("Next device")])  # fmt: skip
        # With a reading on it: the readings, the cuff's pressure and the way on, all in view.
        screen.goto(f"{kiosk.url}/vitals/blood_pressure")
        button("Press the device's Start button").click()
        expect(screen.locator("[data-readings] li").nth(2)).to_be_visible(timeout=20_000)  # systolic, diastolic, pulse
        shown = [screen.locator("[data-readings]"), button("Press the device's Start button"), link("Next device")]
        check("/vitals/blood_pressure", shown, axe=False)
        check("/vitals/camera", [button("Start"), link("Done with vitals")])
        check("/case", [link("Start")])
        check("/case/q/main", [button("Next")])
        check("/case/q/pain", [button("Next")])
        open_every_branch(screen, kiosk, questionnaire)
        # Every question (the longest and the one with the most choices among them): its answer field or every
        # choice, and Next, in view.
        answer = screen.locator("#answer, label.choice")
        for item in questionnaire.items:
            check(f"/case/q/{item.link_id}", [answer.first, answer.last, button("Next")], axe=False)
        check("/case/q/pain_where", [button("Next")])
        check("/case/details", [button("Next")])
        check("/case/photos", [button("Take a photo"), link("Next")])
        check("/case/review", [button("Send to my clinic")])
        check("/answers", [link("Back to the start")])
        check("/consult", [button("Ask for a video call now")])
        button("Ask for a video call now").click()
        one = translations(language).ngettext("You are number %(num)d in line.", "You are number %(num)d in line.", 1)
        in_line = screen.get_by_text(one % {"num": 1})
        expect(in_line).to_be_visible()
        check("/consult", [in_line, button("Stop waiting")])
        button("Stop waiting").click()
        check(f"/bye?lang={language}", [screen.locator("main a.button")])  # as the sign-out's redirect says it
    context.close()


def test_the_kiosk_screen_shows_its_icon(screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path) -> None:
    with kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url) as kiosk:
        screen.goto(kiosk.url)
        assert_icon(screen, kiosk.url)
        check_in(screen, kiosk, "N100")
        assert_icon(screen, kiosk.url)


def stop_timeout_s(unit: str) -> float:
    """How long systemd waits for a stop before it kills (the unit's `TimeoutStopSec=`)."""
    [value] = re.findall(r"^TimeoutStopSec=(\d+)$", (REPO / "systemd" / unit).read_text(), re.MULTILINE)
    return float(value)


def test_a_kiosk_stops_when_asked_while_its_screen_is_open(
    screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    """`systemctl stop` (or a restart for an update) while a patient's page holds its live updates open: the kiosk
    ends the page's streams and exits by itself, well before systemd would kill it mid-write."""
    with kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url) as kiosk:
        check_in(screen, kiosk, "N100")  # the home page's live updates are open
        kiosk.proc.send_signal(signal.SIGTERM)
        try:
            code = kiosk.proc.wait(stop_timeout_s("kiosk-agent.service") / 2)
        except subprocess.TimeoutExpired:
            pytest.fail("the kiosk did not stop on SIGTERM while its screen was open")
        assert code == 0, "".join(kiosk.log)


def test_a_patient_checks_in_answers_and_signs_out_by_keyboard_alone(
    screen: Page, site: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    with (
        ingest_thread(site.world.db, broker_url, **FAST),
        kiosk_screen(tmp_path / "kiosk", site.world.north.kiosk, broker_url) as kiosk,
    ):
        screen.goto(kiosk.url)
        expect(screen.get_by_label("Type the code on your card")).to_be_focused()  # ready for a card scanner
        screen.keyboard.type("N100")
        screen.keyboard.press("Enter")
        expect(screen.get_by_role("heading", name="What would you like to do?")).to_be_visible()
        tab_to(screen, "Send a question to my clinic")
        screen.keyboard.press("Enter")
        expect(screen.get_by_role("heading", name="Send a question to my clinic")).to_be_visible()
        tab_to(screen, "Start")
        screen.keyboard.press("Enter")
        expect(screen.get_by_role("textbox")).to_be_focused()  # the first question takes the focus
        screen.keyboard.type("Dizzy when I stand up")
        screen.keyboard.press("Tab")
        screen.keyboard.press("Tab")
        screen.keyboard.press("Enter")  # Next
        expect(screen.get_by_role("heading", name="Have you had a fever?")).to_be_visible()
        tab_to(screen, "yes", what="value")
        screen.keyboard.press("Space")
        expect(screen.get_by_label("Yes")).to_be_checked()
        screen.keyboard.press("Enter")  # submits the form
        expect(screen.get_by_role("heading", name="For how many days?")).to_be_visible()
        expect(screen.get_by_role("textbox")).to_be_focused()
        screen.keyboard.type("2")
        screen.keyboard.press("Enter")
        expect(screen.get_by_role("heading", name="Are you in pain?")).to_be_visible()
        tab_to(screen, "Finish and sign out", key="Shift+Tab")
        screen.keyboard.press("Enter")
        expect(screen.get_by_role("heading", name="Thank you")).to_be_visible()


def tab_to(page: Page, text: str, *, what: str = "textContent", key: str = "Tab", most: int = 30) -> None:
    """Press Tab until the focused element's text (or value) is `text`, as a keyboard user would."""
    for _ in range(most):
        page.keyboard.press(key)
        if page.evaluate(f"(document.activeElement.{what} || '').trim()") == text:
            return
    raise AssertionError(f"{text!r} cannot be reached with {key}")
