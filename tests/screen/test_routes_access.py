"""Who may see what: every page needs the current visit's cookie unless it is on a short exempt list; changes
must come from the kiosk's own pages (Origin); the visit cookie and the end of a visit are as strict as promised."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response

from device.screen.app import CSP
from device.screen.visit import IdlePolicy
from device.screen.web import COOKIE, LANG_COOKIE
from tests.screen.kiosk import (
    BASE_URL,
    NO_PIN,
    OTHER,
    PIN,
    WITH_PIN,
    Kiosk,
    check_in,
    checked_in,
    goes_to_welcome,
    post,
    set_cookies,
    setup_body,
)

TEMPLATES = Path(__file__).resolve().parents[2] / "device" / "screen" / "templates"

# The only routes a browser without the current visit may use (check-in, the end of a visit, the live stream).
EXEMPT = {
    ("GET", "/"),
    ("GET", "/bye"),
    ("GET", "/events"),
    ("POST", "/language"),
    ("POST", "/check-in"),
    ("POST", "/check-in/scan"),
    ("POST", "/alive"),
    ("POST", "/finish"),
    ("POST", "/timeout"),
}


def endpoints(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path with its parameters filled) for every API route in app.routes (included routers too)."""
    for route in iter_route_contexts(app.routes):
        if route.path is None or route.path.startswith("/static"):
            continue
        for method in sorted(route.methods or ()):
            yield method, route.path


def filled(path: str) -> str:
    # "0" is a valid value for every parameter here: a photo number, a step, a question, a case id.
    return re.sub(r"\{[^}]+\}", "0", path)


def request(client: TestClient, method: str, path: str) -> Response:
    url = filled(path)
    return client.get(url) if method == "GET" else post(client, url)


def test_the_exempt_list_names_only_routes_that_exist_and_the_rest_is_most_of_the_app(kiosk: Kiosk) -> None:
    found = set(endpoints(kiosk.app))
    assert found >= EXEMPT
    assert len(found - EXEMPT) >= 15
    assert {method for method, _ in found} == {"GET", "POST"}, "a new method needs its own checks here"
    # Nothing else hides in app.routes: no websocket, no second mount.
    assert [r.path for r in iter_route_contexts(kiosk.app.routes) if not r.methods] == ["/static"]


def test_every_other_route_sends_a_browser_without_the_visit_back_to_welcome(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    patient = kiosk.client
    checked_in(patient, NO_PIN)
    visit = kiosk.screen.desk.visit
    stranger, forger = kiosk.browser(), kiosk.browser()
    forger.cookies.set(COOKIE, "forged-" + "x" * 40)
    guarded = sorted(set(endpoints(kiosk.app)) - EXEMPT)
    for method, path in guarded:
        for client in (stranger, forger):
            response = request(client, method, path)
            assert goes_to_welcome(response), f"{method} {path} answered {response.status_code} without the visit"
    # The patient's own visit is untouched by all that.
    assert kiosk.screen.desk.visit is visit
    assert patient.get("/home").status_code == 200
    assert kiosk.outbox("case") == []


def test_every_other_route_is_closed_once_the_visit_has_ended(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    token = checked_in(kiosk.client, NO_PIN)
    assert post(kiosk.client, "/finish").status_code == 303
    returning = kiosk.browser()
    returning.cookies.set(COOKIE, token)
    for method, path in sorted(set(endpoints(kiosk.app)) - EXEMPT):
        assert goes_to_welcome(request(returning, method, path)), f"{method} {path} still open after /finish"
    assert returning.post("/alive", headers={"Origin": BASE_URL}).status_code == 410


def test_the_exempt_routes_behave_sensibly_without_a_visit(kiosk: Kiosk) -> None:
    client = kiosk.client
    welcome = client.get("/")
    assert welcome.status_code == 200 and 'action="/check-in"' in welcome.text
    bye = client.get("/bye")
    assert bye.status_code == 200 and "cookies" in bye.headers["clear-site-data"]
    events = client.get("/events")
    assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")
    assert events.text == "event: ended\ndata: {}\n\n"
    language = post(client, "/language", {"lang": "es"})
    assert language.status_code == 303 and language.headers["location"] == "/"
    cookie = set_cookies(language)[LANG_COOKIE].lower()
    assert all(part in cookie for part in ("secure", "httponly", "samesite=strict", "path=/"))
    scan = post(client, "/check-in/scan")  # this kiosk has no camera
    assert scan.status_code == 400 and 'role="alert"' in scan.text and COOKIE not in set_cookies(scan)
    assert post(client, "/alive").status_code == 410
    finish = post(client, "/finish")
    assert (finish.status_code, finish.headers["location"]) == (303, "/bye?lang=es")
    timeout = post(client, "/timeout")
    assert (timeout.status_code, timeout.headers["location"]) == (303, "/bye?idle=1&lang=es")
    assert kiosk.screen.desk.visit is None
    missing_code = post(client, "/check-in", {})
    assert missing_code.status_code == 422 and kiosk.screen.desk.visit is None


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "https://evil.example",
        "null",
        "http://127.0.0.1",
        "https://127.0.0.1:8443",
        "https://127.0.0.1.evil.example",
        "https://localhost",
    ],
)
def test_a_post_from_anywhere_but_the_kiosks_own_pages_is_refused_and_changes_nothing(
    kiosk: Kiosk, origin: str | None
) -> None:
    kiosk.give_setup()
    headers = {} if origin is None else {"Origin": origin}
    client = kiosk.browser()
    refused = client.post("/check-in", data={"code": NO_PIN}, headers=headers)
    assert refused.status_code == 403
    assert kiosk.screen.desk.visit is None and COOKIE not in set_cookies(refused)
    assert client.post("/language", data={"lang": "es"}, headers=headers).status_code == 403
    assert LANG_COOKIE not in client.cookies
    # During a visit: its cookie does not make a foreign post acceptable.
    checked_in(kiosk.client, NO_PIN)
    visit = kiosk.screen.desk.visit
    assert post(kiosk.client, "/case/q/main", {"value": "A cough"}).status_code == 303
    for method, path in endpoints(kiosk.app):
        if method == "POST":
            response = kiosk.client.post(filled(path), headers=headers)
            assert response.status_code == 403, f"{path} accepted Origin {origin!r}"
    assert kiosk.screen.desk.visit is visit and visit.case.answers == {"main": "A cough"}
    assert kiosk.outbox("case") == []


def test_a_post_for_another_host_name_is_refused_like_a_foreign_origin(kiosk: Kiosk) -> None:
    """A page on rebound.example whose name was re-pointed at 127.0.0.1 (DNS rebinding) is not the kiosk's page.

    The Origin check compares the Origin with the request's own Host, which that page chooses too; the screen
    is served to 127.0.0.1 only, so another host name must not be able to begin (or replace) a visit.
    """
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    patient_visit = kiosk.screen.desk.visit
    rebound = kiosk.browser()
    response = rebound.post(
        "/check-in", data={"code": OTHER}, headers={"Host": "rebound.example", "Origin": "https://rebound.example"}
    )
    assert response.status_code in (400, 403, 421)
    assert kiosk.screen.desk.visit is patient_visit


def test_check_in_sets_a_strict_session_cookie(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    response = check_in(kiosk.client, NO_PIN)
    assert response.status_code == 303 and response.headers["location"] == "/home"
    cookie = set_cookies(response)[COOKIE]
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert "secure" in attributes and "httponly" in attributes and "samesite=strict" in attributes
    assert "path=/" in attributes
    # __Host-: no Domain; a session cookie: no lifetime of its own.
    assert not any(a.startswith(("domain", "max-age", "expires")) for a in attributes)
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 40 and token == kiosk.screen.desk.visit.token  # type: ignore[union-attr]
    assert kiosk.client.get("/").headers["location"] == "/home"


def test_check_in_without_a_roster_admits_any_well_formed_code_and_refuses_the_rest(kiosk: Kiosk) -> None:
    client = kiosk.client
    bad = check_in(client, "P 1001 !")
    assert bad.status_code == 400 and "does not look like a check-in code" in bad.text
    assert kiosk.screen.desk.visit is None
    assert check_in(client, " N-77 ").status_code == 303
    assert kiosk.screen.desk.visit.subject == "N-77"  # type: ignore[union-attr]


def test_an_unknown_code_is_refused_when_the_clinic_sent_its_roster(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    response = check_in(kiosk.client, "P-9999")
    assert response.status_code == 400 and "We do not know this code" in response.text
    assert kiosk.screen.desk.visit is None and COOKIE not in set_cookies(response)


def test_finishing_clears_the_browser_and_the_old_cookie_opens_nothing(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    token = checked_in(client, NO_PIN)
    finish = post(client, "/finish")
    assert (finish.status_code, finish.headers["location"]) == (303, "/bye?lang=en")
    for response in (finish, client.get("/bye"), client.get("/?ended=1")):
        clear = response.headers["clear-site-data"]
        assert '"cookies"' in clear and '"storage"' in clear and '"cache"' in clear
    assert "max-age=0" in set_cookies(finish)[COOKIE].lower()
    assert kiosk.screen.desk.visit is None and COOKIE not in client.cookies
    kept = kiosk.browser()
    kept.cookies.set(COOKIE, token)  # a browser that ignored Clear-Site-Data
    assert goes_to_welcome(kept.get("/home"))
    assert kept.get("/").status_code == 200
    assert post(kept, "/alive").status_code == 410


def test_the_idle_timeout_from_the_screen_ends_the_visit(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    token = checked_in(kiosk.client, NO_PIN)
    response = post(kiosk.client, "/timeout")
    assert response.headers["location"] == "/bye?idle=1&lang=en" and "cookies" in response.headers["clear-site-data"]
    assert kiosk.screen.desk.visit is None
    bye = kiosk.client.get("/bye?idle=1")
    assert "because the screen was not used for a while" in bye.text
    kept = kiosk.browser()
    kept.cookies.set(COOKIE, token)
    assert goes_to_welcome(kept.get("/home"))


def test_the_server_ends_an_idle_visit_itself_after_the_grace(kiosk: Kiosk) -> None:
    now = [float(int(kiosk.screen.clock()))]  # whole seconds: the sums below are exact
    kiosk.screen.clock = lambda: now[0]  # the screen's injectable clock: time passes without waiting
    policy: IdlePolicy = kiosk.screen.desk.policy
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    now[0] += policy.idle_s
    assert kiosk.client.get("/home").status_code == 200  # activity: the deadline moves
    now[0] += policy.idle_s + policy.server_grace_s
    assert post(kiosk.client, "/alive").status_code == 204
    now[0] += policy.idle_s + policy.server_grace_s + 1
    assert goes_to_welcome(kiosk.client.get("/home"))
    assert post(kiosk.client, "/alive").status_code == 410


def test_a_second_check_in_replaces_the_first_visit(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    first, second = kiosk.client, kiosk.browser()
    checked_in(first, NO_PIN)
    checked_in(second, OTHER)
    assert goes_to_welcome(first.get("/home"))
    assert post(first, "/alive").status_code == 410
    assert second.get("/home").status_code == 200
    assert kiosk.screen.desk.visit.subject == OTHER  # type: ignore[union-attr]
    # The first browser finishing does not end the second patient's visit.
    post(first, "/finish")
    assert second.get("/home").status_code == 200


def test_a_patient_with_a_pin_is_asked_for_it_and_only_the_right_one_lets_them_in(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    asked = check_in(client, " p-2002 ")
    assert asked.status_code == 200 and "Enter your PIN" in asked.text
    assert f'name="code" value="{WITH_PIN}"' in asked.text
    assert kiosk.screen.desk.visit is None and COOKIE not in set_cookies(asked)
    wrong = check_in(client, WITH_PIN, "9999")
    assert wrong.status_code == 400 and "That PIN is not right" in wrong.text
    assert kiosk.screen.desk.visit is None and COOKIE not in set_cookies(wrong)
    right = check_in(client, WITH_PIN, PIN)
    assert (right.status_code, right.headers["location"]) == (303, "/home")
    assert client.get("/home").status_code == 200
    assert kiosk.screen.desk.visit.subject == WITH_PIN  # type: ignore[union-attr]


def test_three_wrong_pins_lock_the_code_on_the_screen_too(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    client = kiosk.client
    assert check_in(client, WITH_PIN, "0000").status_code == 400
    assert check_in(client, WITH_PIN, "0001").status_code == 400
    locked = check_in(client, WITH_PIN, "0002")
    assert locked.status_code == 400 and "Too many wrong PINs" in locked.text
    still = check_in(client, WITH_PIN, PIN)
    assert still.status_code == 400 and "Too many wrong PINs" in still.text
    assert kiosk.screen.desk.visit is None


def test_a_clinic_that_requires_pins_asks_everyone(kiosk: Kiosk) -> None:
    kiosk.give_setup(setup_body(pin_required=True))
    asked = check_in(kiosk.client, NO_PIN)
    assert asked.status_code == 200 and "Enter your PIN" in asked.text
    assert check_in(kiosk.client, NO_PIN, PIN).status_code == 400
    assert kiosk.screen.desk.visit is None


VISIT_PAGES = [
    "/home",
    "/answers",
    "/consult",
    "/vitals",
    "/vitals/thermometer",
    "/case",
    "/case/q/main",
    "/case/review",
]


def test_every_page_carries_the_security_headers(kiosk: Kiosk) -> None:
    kiosk.give_setup()
    checked_in(kiosk.client, NO_PIN)
    assert "script-src 'self'" in CSP and "unsafe" not in CSP
    stranger = kiosk.browser()
    pages = [(kiosk.client, page) for page in VISIT_PAGES] + [(stranger, "/"), (stranger, "/bye")]
    for client, page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        headers = response.headers
        csp = headers["content-security-policy"]
        assert csp == CSP
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert "camera=()" in headers["permissions-policy"]
        assert headers["cache-control"] == "no-store"
        assert headers["content-type"].startswith("text/html")
    script = kiosk.client.get("/static/kiosk.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_no_template_carries_inline_script_or_style(kiosk: Kiosk) -> None:
    """The CSP allows scripts and styles from files only: anything inline would be blocked, or be a hole."""
    templates = sorted(TEMPLATES.glob("*.html"))
    assert len(templates) >= 10
    for template in templates:
        source = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", source, flags=re.IGNORECASE):
            assert re.search(r"\ssrc=", tag), f"{template.name}: inline {tag}"
        assert not re.search(r"\son\w+\s*=", source, flags=re.IGNORECASE), f"{template.name}: an on… handler"
        assert "javascript:" not in source.lower(), template.name
        assert not re.search(r"\sstyle\s*=|<style\b", source, flags=re.IGNORECASE), f"{template.name}: inline style"
    # And what the pages really send: scripts only by src.
    for page in ("/", "/bye"):
        html = kiosk.client.get(page).text
        assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/kiosk.js" defer>']


def test_a_page_whose_visit_has_ended_hears_why_on_its_live_stream(kiosk: Kiosk) -> None:
    # The page goes to the goodbye that fits: "the screen was not used" only when it was not.
    kiosk.give_setup()
    for end, reason in (("/finish", "finished"), ("/timeout", "idle")):
        token = checked_in(kiosk.client, NO_PIN)
        post(kiosk.client, end)
        kept = kiosk.browser()
        kept.cookies.set(COOKIE, token)  # a page still open on the ended visit, whose stream reconnects
        assert kept.get("/events").text == f'event: ended\ndata: {{"reason": "{reason}"}}\n\n'
    assert kiosk.browser().get("/events").text == "event: ended\ndata: {}\n\n"  # no visit of its own: no reason
