"""A kiosk started with --no-camera: every camera action is either absent or says plainly that it is unavailable."""

from __future__ import annotations

from tests.screen.kiosk import NO_PIN, Kiosk, checked_in, post


def test_the_camera_routes_refuse_politely(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    scan = post(kiosk.browser(), "/check-in/scan")
    assert scan.status_code == 400 and kiosk.screen.desk.visit is None
    checked_in(kiosk.client, NO_PIN)
    assert post(kiosk.client, "/vitals/camera/measure").status_code == 404
    assert post(kiosk.client, "/case/photos/take").headers["location"] == "/case/photos"
    assert 'action="/case/photos/take"' not in kiosk.client.get("/case/photos").text


def test_the_welcome_page_does_not_offer_to_scan_a_card_with_a_camera_it_does_not_have(kiosk: Kiosk) -> None:
    """Pressing it can only fail, and the failure then tells the patient to hold the card up to that camera."""
    welcome = kiosk.client.get("/")
    assert 'action="/check-in" ' in welcome.text
    assert 'action="/check-in/scan"' not in welcome.text


def test_without_a_camera_the_guided_vitals_have_no_camera_step(kiosk: Kiosk) -> None:
    """Not listed, not the thermometer's next step, and not there when asked for by address."""
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    assert 'href="/vitals/camera"' not in kiosk.client.get("/vitals").text
    last = kiosk.client.get("/vitals/thermometer")
    assert last.status_code == 200 and 'href="/vitals/camera"' not in last.text
    assert kiosk.client.get("/vitals/camera").status_code == 404
