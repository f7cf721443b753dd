"""A provider and a clinic admin at work in a real Chromium: login, a patient's trends, the queue, the audit log."""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect
from websockets.asyncio.client import connect

from device.attachments import enqueue_attachment
from device.protocol.endpoints import BrokerUrl
from hub.db import Location
from tests.browser.conftest import ARTIFACTS
from tests.browser.site import Site, serve
from tests.harness import ingest_thread, kiosk_agent, wait_until
from tests.workspace.world import NOW, PASSWORD, obs

AXE = Path(__file__).parent / "vendor" / "axe.min.js"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(tmp_path / "hub.db") as s:
        yield s


@pytest.fixture
def site_on_each_store(hub_database: Location) -> Iterator[Site]:
    """The same site once on each of the hub's stores: for the walks where what the page shows is what the store
    holds (readings, attribution, alerts, cases, the audit log)."""
    with serve(hub_database) as s:
        yield s


def log_in(page: Page, site: Site, email: str) -> None:
    page.goto(f"{site.url}/patients")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fpatients$"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{site.url}/patients")


def axe_serious(page: Page) -> list[dict[str, object]]:
    """axe-core's serious and critical violations on the page as it is now (id, impact, first 3 nodes)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def stored_points(site: Site, patient_id: str, code: str) -> dict[str, int]:
    """What the database holds for the chart's default range (last 30 days), by source."""
    since = (NOW - timedelta(days=30)).isoformat().replace("+00:00", "Z")
    rows = site.world.store.conn.execute(
        "SELECT device FROM observations "
        "WHERE patient_id = ? AND code = ? AND attribution = 'attributed' AND effective >= ?",
        (patient_id, code, since),
    )
    counts = {"device": 0, "camera": 0}
    for (device,) in rows:  # the device's JSON read here, the same on both stores
        counts["camera" if json.loads(device)["type"] == "camera" else "device"] += 1
    return counts


def test_a_provider_finds_a_patient_and_the_trend_draws_every_reading(page: Page, site_on_each_store: Site) -> None:
    site = site_on_each_store
    log_in(page, site, site.world.north.provider)
    page.get_by_label("Find a patient").fill("alice")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="Bob North")).to_have_count(0)
    page.get_by_role("link", name="Alice North").click()
    expect(page.get_by_role("heading", name="Alice North")).to_be_visible()
    alice = site.world.north.patients["N100"]
    for code in ("8480-6", "8867-4"):
        plot = page.locator(f'.trend-plot[data-code="{code}"]')
        expect(plot).to_have_attribute("data-points-drawn", re.compile(r"^\d+$"))
        want = stored_points(site, alice, code)
        assert want["device"] > 0
        expect(plot).to_have_attribute("data-points-drawn", str(want["device"] + want["camera"]))
        expect(plot).to_have_attribute("data-device-points", str(want["device"]))
        expect(plot).to_have_attribute("data-camera-points", str(want["camera"]))
    assert stored_points(site, alice, "8867-4")["camera"] == 1
    expect(page.get_by_text("Camera estimate").first).to_be_visible()
    # The raw table beside it: the cuff's identity and the clock corrections.
    expect(page.get_by_text("A&D Medical UA-651BLE (serial S1)").first).to_be_visible()
    expect(page.get_by_text("device clock -2.5 s vs kiosk").first).to_be_visible()
    shot(page, "patient-page")


def test_a_new_reading_appears_on_the_open_page_without_a_reload(page: Page, site: Site) -> None:
    log_in(page, site, site.world.north.provider)
    alice = site.world.north.patients["N100"]
    page.goto(f"{site.url}/patients/{alice}")
    plot = page.locator('.trend-plot[data-code="8480-6"]')
    expect(plot).to_have_attribute("data-points-drawn", "5")
    page.evaluate("window.__sameDocument = true")
    site.world.send(site.world.north.kiosk, [obs("8480-6", 142, "mm[Hg]", NOW - timedelta(hours=1))], subject="N100")
    expect(plot).to_have_attribute("data-points-drawn", "6")
    assert page.evaluate("window.__sameDocument") is True  # no navigation happened


def test_staff_assign_an_unattributed_reading_and_it_joins_the_patients_trend(
    page: Page, site_on_each_store: Site
) -> None:
    site = site_on_each_store
    log_in(page, site, site.world.north.provider)
    page.get_by_role("link", name="Unattributed readings").click()
    expect(page.get_by_text("user slot 2 on this device is not mapped to a patient")).to_be_visible()
    shot(page, "queue")
    page.get_by_role("checkbox", name="Select reading 1").check()
    page.get_by_label("Patient check-in code").fill("N101")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_role("status")).to_contain_text("Assigned 1 reading(s) to N101.")
    expect(page.get_by_text("Nothing is waiting.")).to_be_visible()
    bob = site.world.north.patients["N101"]
    page.goto(f"{site.url}/patients/{bob}")
    expect(page.locator('.trend-plot[data-code="8480-6"]')).to_have_attribute("data-points-drawn", "6")
    expect(page.get_by_text("151 mmHg")).to_be_visible()


def test_an_admin_reads_the_audit_log_of_what_the_provider_looked_at(
    browser: Browser, site_on_each_store: Site
) -> None:
    site = site_on_each_store
    provider = browser.new_context().new_page()
    log_in(provider, site, site.world.north.provider)
    alice = site.world.north.patients["N100"]
    provider.goto(f"{site.url}/patients/{alice}")
    admin = browser.new_context().new_page()
    log_in(admin, site, site.world.north.admin)
    admin.get_by_role("link", name="Audit log").click()
    admin.get_by_label("Action").select_option("view_patient")
    admin.get_by_role("button", name="Filter").click()
    row = admin.get_by_role("row").filter(has_text="view_patient")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("doc@north.example")
    expect(row.get_by_role("link", name="Alice North")).to_be_visible()
    shot(admin, "audit-log")
    # The admin ends the provider's sessions; the provider's next click lands on the login page.
    admin.get_by_role("link", name="Accounts").click()
    admin.get_by_role("row").filter(has_text="doc@north.example").get_by_role("button", name="End sessions").click()
    expect(admin.get_by_role("status")).to_contain_text("Ended 1 session(s)")
    provider.get_by_role("link", name="Kiosks").click()
    expect(provider).to_have_url(re.compile(r"/login\?next=%2Ffleet$"))
    provider.context.close()
    admin.context.close()


def test_an_idle_screen_is_logged_out_even_while_its_charts_refresh(page: Page, site: Site) -> None:
    log_in(page, site, site.world.north.provider)
    alice = site.world.north.patients["N100"]
    page.goto(f"{site.url}/patients/{alice}")
    plot = page.locator('.trend-plot[data-code="8480-6"]')
    expect(plot).to_have_attribute("data-points-drawn", "5")
    site.clock.advance(16 * 60)  # nobody touched the screen for 16 minutes; the chart kept polling
    expect(page.get_by_role("status").filter(has_text=re.compile("sign|log", re.I))).to_be_visible()
    page.get_by_role("link", name="Patients").click()
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fpatients$"))


def test_login_and_a_patient_by_keyboard_alone(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/login")
    expect(page.get_by_label("Email")).to_be_focused()  # the login form takes the focus at once
    page.keyboard.type(site.world.north.provider)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{site.url}/patients")
    page.keyboard.press("Tab")  # on every page the skip link comes first
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Alice North":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Alice North")).to_be_visible()


@pytest.mark.parametrize("width", [1280, 768])
def test_every_page_passes_the_accessibility_rules(browser: Browser, site: Site, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 1000}, bypass_csp=True)
    page = context.new_page()
    log_in(page, site, site.world.north.admin)
    alice = site.world.north.patients["N100"]
    site.world.send(site.world.north.kiosk, [obs("59408-5", 86, "%", NOW - timedelta(hours=2))], subject="N100")
    alert_id = site.world.store.conn.execute("SELECT id FROM alerts").fetchone()[0]
    case_id = site.world.send_case(site.world.north.kiosk, "N100", text="A rash on my arm.")
    pages = ["/triage", f"/triage/{alert_id}", f"/cases/{case_id}", "/rpm", f"/patients/{alice}/rpm", "/patients",
             f"/patients/{alice}", "/queue", "/fleet", "/account"]  # fmt: skip
    for path in [*pages, "/admin/users", "/admin/audit"]:
        page.goto(f"{site.url}{path}")
        if path == f"/patients/{alice}":
            expect(page.locator('.trend-plot[data-code="8480-6"]')).to_have_attribute("data-points-drawn", "5")
        serious = axe_serious(page)
        assert not serious, f"{path} at {width}px: {json.dumps(serious)}"
        # Nothing scrolls sideways on a tablet.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
        shot(page, f"a11y-{width}-{path.strip('/').replace('/', '-') or 'home'}")
    context.close()


def test_a_provider_works_an_alert_from_the_triage_queue(page: Page, site_on_each_store: Site) -> None:
    site = site_on_each_store
    site.world.send(site.world.north.kiosk, [obs("8867-4", 141, "/min", NOW - timedelta(hours=3))], subject="N101")
    site.world.send(site.world.north.kiosk, [obs("59408-5", 86, "%", NOW - timedelta(hours=2))], subject="N100")
    log_in(page, site, site.world.north.provider)
    page.get_by_role("link", name="Triage").click()
    rows = page.get_by_role("row")
    # The high-severity SpO2 alert comes before the medium heart-rate one, though it is newer.
    expect(rows.nth(1)).to_contain_text("SpO2 below 90 %")
    expect(rows.nth(2)).to_contain_text("Heart rate outside 40-130 /min")
    shot(page, "triage")
    page.get_by_role("link", name="SpO2 below 90 %").click()
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_text("acknowledged by north doc")).to_be_visible()
    page.get_by_label("Note").fill("Rechecked by phone: 95 % at rest.")
    page.get_by_role("button", name="Add note").click()
    expect(page.get_by_text("Rechecked by phone: 95 % at rest.")).to_be_visible()
    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_text("resolved by north doc")).to_be_visible()
    page.get_by_role("link", name="Triage").click()
    expect(page.get_by_role("link", name="SpO2 below 90 %")).to_have_count(0)
    expect(page.get_by_role("link", name="Heart rate outside 40-130 /min")).to_be_visible()


def test_a_case_from_the_kiosk_is_answered_in_the_browser_and_reaches_the_kiosk_after_an_outage(
    page: Page, site_on_each_store: Site, broker_url: BrokerUrl, tmp_path: Path
) -> None:
    site = site_on_each_store
    from hub import attribution

    kiosk_dir = tmp_path / "kiosk"
    fast = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0, "connect_timeout_s": 3.0}
    with ingest_thread(site.world.db, broker_url, downlink_check_s=0.1):
        with kiosk_agent(kiosk_dir, site.world.north.kiosk, broker_url, **fast) as agent:
            case_id = str(uuid.uuid4())
            throat = np.zeros((240, 320, 3), np.uint8)
            throat[:, :, 2] = np.linspace(80, 220, 320, dtype=np.uint8)  # a reddish gradient, a real JPEG
            photo = enqueue_attachment(agent.outbox, cv2.imencode(".jpg", throat)[1].tobytes(), subject="N100")
            thermometer = {"id": "th-1", "type": "ble", "manufacturer": "A&D Medical", "model": "UT-201BLE"}
            fever = {"code": "8310-5", "value": 38.2, "unit": "Cel", "effective": NOW, "device": thermometer}
            vitals = agent.outbox.enqueue("observations", {"subject": "N100", "observations": [fever]})
            agent.outbox.enqueue("case", {
                "case": case_id, "subject": "N100", "questionnaire": {"id": "general-intake", "version": 1},
                "answers": [{"link_id": "main", "value": "Sore throat"}, {"link_id": "fever", "value": True},
                            {"link_id": "fever_days", "value": 2}, {"link_id": "pain", "value": False},
                            {"link_id": "breathless", "value": False}],
                "text": "Three days now.", "created": NOW, "attachments": [photo], "vitals": [vitals.id],
            })  # fmt: skip
            wait_until(lambda: agent.outbox.backlog().items == 0, 20, "the case to reach the hub")
        # The kiosk goes offline before anyone answers.
        attribution.run_until_done(site.world.store.conn, site.clock())
        log_in(page, site, site.world.north.provider)
        page.get_by_role("link", name="Triage").click()
        page.get_by_role("link", name="Case: Sore throat").click()
        expect(page.get_by_text("Three days now.")).to_be_visible()
        expect(page.get_by_text("For how many days?")).to_be_visible()  # the branch the patient saw
        expect(page.get_by_role("cell", name="38.2 °C")).to_be_visible()
        image = page.get_by_role("img", name="Photo 1 the patient sent with this case")
        expect(image).to_be_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth") == 320
        page.get_by_role("button", name="Start review").click()
        page.get_by_label("Message to the patient").fill("Salt-water gargles; come in if it lasts a week.")
        page.get_by_label("Also ask for").select_option("more_info")
        page.get_by_role("button", name="Send answer").click()
        expect(page.get_by_text("not yet delivered to the kiosk")).to_be_visible()
        shot(page, "case-answered")
        # Back online: the answer arrives, once, and the case says when.
        with kiosk_agent(kiosk_dir, site.world.north.kiosk, broker_url, **fast) as agent:
            wait_until(lambda: len(agent.inbox.messages()) == 1, 20, "the answer to reach the kiosk")
            (message,) = agent.inbox.messages()
            assert message.body.case == case_id and message.body.request == "more_info"
            page.reload()
            expect(page.get_by_text(re.compile(r"delivered to the kiosk \d{4}-"))).to_be_visible()


# ---- what people read: units, alert wording, times, the icon ----------------------------------------

UCUM_ON_A_PAGE = re.compile(r"mm\[Hg\]|\[degF\]|\[lb_av\]|\[in_i\]|\bCel\b|\{score\}")


def test_units_are_written_as_clinicians_write_them_on_charts_tables_and_alerts(page: Page, site: Site) -> None:
    site.world.send(site.world.north.kiosk, [obs("8310-5", 38.6, "Cel", NOW - timedelta(hours=1))], subject="N100")
    log_in(page, site, site.world.north.provider)
    alice = site.world.north.patients["N100"]
    page.goto(f"{site.url}/patients/{alice}")
    plot = page.locator('.trend-plot[data-code="8480-6"]')
    expect(plot).to_have_attribute("data-points-drawn", "5")
    expect(page.locator('.trend-card[data-code="8480-6"] .trend-unit')).to_have_text(" (mmHg)")
    expect(page.locator('.trend-card[data-code="8310-5"] .trend-unit')).to_have_text(" (°C)")
    expect(plot).to_have_attribute("aria-label", re.compile(r"latest \d+ mmHg$"))
    expect(page.get_by_role("cell", name=re.compile(r"^38\.6 °C"))).to_be_visible()
    assert UCUM_ON_A_PAGE.findall(page.locator("body").inner_text()) == []
    page.get_by_role("link", name="Triage").click()
    page.get_by_role("link", name="Temperature above 38.0 °C").click()
    said = re.compile(r"1 reading met this condition, the latest measured .+: 38\.6 °C")
    expect(page.get_by_text(said)).to_be_visible()
    assert UCUM_ON_A_PAGE.findall(page.locator("body").inner_text()) == []


def test_a_no_reading_alert_says_since_when_and_counts_no_sweeps_as_readings(page: Page, site: Site) -> None:
    from hub.db import immediate
    from hub.triage import alerts

    conn = site.world.store.conn
    site.clock.advance(3 * 86400)  # the last readings were taken a day before NOW: four days without one
    for _ in range(12):  # the sweep runs every minute: twelve minutes of silence
        site.clock.advance(60)
        with immediate(conn):
            alerts.check_silence(conn, site.clock())
    last = conn.execute("SELECT last_reading_at FROM patients WHERE code = 'N100'").fetchone()[0]
    log_in(page, site, site.world.north.provider)
    page.get_by_role("link", name="Triage").click()
    row = page.get_by_role("row").filter(has_text="Alice North").filter(has_text="No reading for 3 days")
    expect(row).to_contain_text(re.compile(r"No reading since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(4 d ago\)"))
    expect(row).not_to_contain_text("reading(s)")
    expect(row).not_to_contain_text(re.compile(r"\d+ readings?\b"))  # twelve sweeps are no readings
    row.get_by_role("link", name="No reading for 3 days").click()
    when = datetime.fromisoformat(last).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    expect(page.get_by_text(f"No reading since {when} (4 d ago); still none.")).to_be_visible()
    assert "reading(s)" not in page.content() and "12 reading" not in page.content()


def assert_icon(page: Page, base_url: str) -> None:
    """The page names an SVG icon of its own site, served as one, that the browser can draw."""
    icon = page.locator('link[rel~="icon"]')
    expect(icon).to_have_attribute("href", re.compile(r"^/static/.+\.svg$"))
    href = icon.get_attribute("href")
    response = page.request.get(f"{base_url}{href}")
    assert response.status == 200 and response.headers["content-type"].startswith("image/svg+xml")
    drawn = page.evaluate(
        """href => new Promise(done => { const img = new Image(); img.onload = () => done(img.naturalWidth);
             img.onerror = () => done(0); img.src = href; })""",
        href,
    )
    assert drawn > 0, page.url


def test_the_workspace_shows_its_icon_on_every_page(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/login")
    assert_icon(page, site.url)
    log_in(page, site, site.world.north.provider)
    assert_icon(page, site.url)


@contextmanager
def fake_kiosk(site: Site, request: dict[str, object]) -> Iterator[tuple[queue.Queue[str], list[dict[str, object]]]]:
    """A kiosk on the hub's signaling socket (no media): it asks for a call, pings, keeps what the hub sends and
    sends what the test puts in its outbox."""
    from hub.accounts import kiosk_credentials
    from hub.db import immediate

    with immediate(site.world.store.conn) as conn:
        secret = kiosk_credentials.issue(conn, site.world.north.kiosk, site.clock())
    outbox: queue.Queue[str] = queue.Queue()
    heard: list[dict[str, object]] = []
    stop = threading.Event()

    async def run() -> None:
        url = site.url.replace("http://", "ws://") + "/ws/kiosk"
        async with connect(url, additional_headers={"Authorization": f"Bearer {secret}"}) as ws:
            await ws.send(json.dumps(request))
            while not stop.is_set():
                await ws.send('{"type": "ping"}')
                while not outbox.empty():
                    await ws.send(outbox.get())
                # Everything that has come, not one message a round: each ping earns a pong, and a round whose
                # pong came late (a loaded machine) left one more queued for good, so a message fell ever further
                # behind the pongs (seen: not heard within 10 s).
                with suppress(TimeoutError):
                    while True:
                        heard.append(json.loads(await asyncio.wait_for(ws.recv(), 0.3)))

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    try:
        yield outbox, heard
    finally:
        stop.set()
        thread.join(10)


def test_the_call_page_writes_times_in_utc_and_units_as_clinicians_do(page: Page, site: Site) -> None:
    consult = str(uuid.uuid4())
    measured = (NOW - timedelta(minutes=5)).isoformat()
    pressure = {"code": "8480-6", "value": 151, "unit": "mm[Hg]", "effective": measured}
    request = {"type": "request", "consult": consult, "subject": "N100", "language": "en", "vitals": [pressure]}
    with fake_kiosk(site, request) as (outbox, heard):
        log_in(page, site, site.world.north.provider)
        page.goto(f"{site.url}/consults")
        expect(page.get_by_role("cell", name=re.compile("151 mmHg"))).to_be_visible()  # the waiting room
        page.get_by_role("button", name=re.compile("Join")).first.click()
        expect(page.get_by_role("cell", name="151 mmHg")).to_be_visible()  # sent with the request
        page.get_by_label("Message to show on the kiosk screen").fill("Please rest your arm.")
        page.get_by_role("button", name="Show on the kiosk").click()
        utc = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"  # as the page writes every other time
        expect(page.locator("#call-sent li")).to_have_text(re.compile(rf"^{utc}: “Please rest your arm.”$"))
        wait_until(lambda: any(m.get("type") == "message" for m in heard), 10, "the message at the kiosk")
        fever = {"code": "8310-5", "value": 37.9, "unit": "Cel", "effective": measured}
        outbox.put(json.dumps({"type": "vitals", "consult": consult, "vitals": [fever]}))
        row = page.locator("#call-vitals tr").filter(has_text="37.9")
        expect(row.locator("td").nth(0)).to_have_text(re.compile(rf"^{utc}$"))
        expect(row.locator("td").nth(2)).to_have_text("37.9 °C")
        assert UCUM_ON_A_PAGE.findall(page.locator("body").inner_text()) == []
        page.get_by_role("button", name="End the call").click()
