"""Login, sessions, second factor, throttling, CSRF: what a clinic's security officer would try."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.accounts import totp
from tests.workspace.world import PASSWORD, Clock, World, csrf_from, login, session_csrf


def anonymous(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def test_login_sets_a_host_prefixed_secure_cookie_and_logout_really_ends_the_session(
    app: FastAPI, world: World
) -> None:
    client = anonymous(app)
    response = login(client, world.north.provider)
    assert response.status_code == 303 and response.headers["location"] == "/patients"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-session=")
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attrs and "domain" not in attrs
    assert "samesite=lax" in cookie.lower()
    token = client.cookies.get("__Host-session")
    assert client.get("/patients").status_code == 200

    client.post("/logout", data={"csrf_token": session_csrf(client)})
    # The old cookie, replayed by someone who copied it, opens nothing.
    replay = anonymous(app)
    replay.cookies.set("__Host-session", str(token), domain="testserver.local")
    assert replay.get("/patients", headers={"accept": "text/html"}).status_code == 303
    assert client.get("/patients", headers={"accept": "text/html"}).headers["location"].startswith("/login")


def test_a_wrong_password_and_an_unknown_account_get_the_same_answer(app: FastAPI, world: World) -> None:
    client = anonymous(app)
    wrong = login(client, world.north.provider, "not the password at all")
    unknown = login(client, "nobody@nowhere.example", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert "Email or password is wrong." in wrong.text and "Email or password is wrong." in unknown.text
    assert "__Host-session" not in wrong.headers.get("set-cookie", "")


def test_brute_force_is_slowed_even_for_the_right_password_then_lifts(app: FastAPI, world: World, clock: Clock) -> None:
    client = anonymous(app)
    for _ in range(3):
        assert login(client, world.north.provider, "guess-guess-guess").status_code == 401
    # The fourth attempt within the window waits, whatever the password.
    slowed = login(client, world.north.provider, "guess-guess-guess")
    assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) >= 1
    assert login(client, world.north.provider, PASSWORD).status_code == 429
    clock.advance(3)
    assert login(client, world.north.provider, "guess-again-again").status_code == 401
    # Each further failure doubles the wait.
    assert int(login(client, world.north.provider, PASSWORD).headers["retry-after"]) >= 4
    clock.advance(5)
    assert login(client, world.north.provider, PASSWORD).status_code == 303


def test_guessing_across_many_accounts_from_one_address_is_slowed_too(app: FastAPI, world: World) -> None:
    client = anonymous(app)
    for i in range(3):
        assert login(client, f"user{i}@nowhere.example", "guess-guess-guess").status_code == 401
    assert login(client, world.south.provider, PASSWORD).status_code == 429


def test_idle_and_absolute_timeouts_end_the_session(app: FastAPI, world: World, clock: Clock) -> None:
    client = anonymous(app)
    login(client, world.north.provider)
    clock.advance(14 * 60)
    assert client.get("/patients").status_code == 200  # activity keeps it alive
    clock.advance(14 * 60)
    assert client.get("/patients").status_code == 200
    clock.advance(15 * 60 + 1)
    expired = client.get("/patients", headers={"accept": "text/html"})
    assert expired.status_code == 303 and expired.headers["location"] == "/login?next=%2Fpatients"

    login(client, world.north.provider)
    started = clock()
    while client.get("/fleet").status_code == 200:  # busy all day, a request every ten minutes
        clock.advance(10 * 60)
        assert clock() - started < 13 * 3600, "the session outlived the 12 h absolute limit"
    assert 12 * 3600 < clock() - started <= 12 * 3600 + 10 * 60


def test_totp_second_factor_enrolment_login_and_no_replay(app: FastAPI, world: World, clock: Clock) -> None:
    client = anonymous(app)
    login(client, world.north.provider)
    page = client.get("/account").text
    secret = page.split('id="totp-secret">')[1].split("<")[0]
    assert "<svg" in page  # the QR code to scan
    bad = client.post("/account/totp/enable", data={"csrf_token": csrf_from(page), "secret": secret, "code": "000000"})
    assert bad.status_code == 400
    good_code = totp.code_at(secret, clock())
    enabled = client.post(
        "/account/totp/enable", data={"csrf_token": csrf_from(page), "secret": secret, "code": good_code}
    )
    assert enabled.status_code == 303
    client.post("/logout", data={"csrf_token": session_csrf(client)})

    # Password alone now leads only to the second step; nothing else opens.
    second = login(client, world.north.provider)
    assert second.headers["location"].startswith("/login/totp")
    assert client.get("/patients", headers={"accept": "text/html"}).status_code == 303
    form = client.get(second.headers["location"]).text
    # The code used at enrolment cannot be used again, even inside its 30 s.
    replay = client.post("/login/totp", data={"csrf_token": csrf_from(form), "code": good_code})
    assert replay.status_code == 401
    clock.advance(30)
    ok = client.post("/login/totp", data={"csrf_token": csrf_from(form), "code": totp.code_at(secret, clock())})
    assert ok.status_code == 303 and ok.headers["location"] == "/patients"
    assert client.get("/patients").status_code == 200


def test_an_admin_ends_a_providers_sessions_and_disables_the_account(
    client_as: Callable[[str], TestClient], world: World
) -> None:
    provider = client_as(world.north.provider)
    admin = client_as(world.north.admin)
    users_page = admin.get("/admin/users")
    assert world.north.provider in users_page.text
    uid = world.north.user_ids[world.north.provider]
    ended = admin.post(f"/admin/users/{uid}/end-sessions", data={"csrf_token": csrf_from(users_page.text)})
    assert ended.status_code == 303 and "Ended+1+session" in ended.headers["location"]
    assert provider.get("/patients").status_code == 401

    provider = client_as(world.north.provider)
    admin.post(f"/admin/users/{uid}/disable", data={"csrf_token": csrf_from(users_page.text)})
    assert provider.get("/patients").status_code == 401
    assert login(TestClient(provider.app, base_url="https://testserver"), world.north.provider).status_code == 401
    # A provider is not an admin.
    other = client_as(world.north.admin)
    assert other.get("/admin/users").status_code == 200
    assert client_as(world.south.provider).get("/admin/users").status_code == 403


def test_password_change_ends_the_other_sessions(client_as: Callable[[str], TestClient], world: World) -> None:
    laptop = client_as(world.north.provider)
    tablet = client_as(world.north.provider)
    short = laptop.post(
        "/account/password", data={"csrf_token": session_csrf(laptop), "current": PASSWORD, "new": "short"}
    )
    assert short.status_code == 400 and "at least 12" in short.text
    changed = laptop.post(
        "/account/password",
        data={"csrf_token": session_csrf(laptop), "current": PASSWORD, "new": "a much longer passphrase"},
    )
    assert changed.status_code == 303
    assert laptop.get("/patients").status_code == 200 and tablet.get("/patients").status_code == 401


def test_state_changes_need_the_csrf_token_and_this_sites_origin(
    client_as: Callable[[str], TestClient], world: World
) -> None:
    admin = client_as(world.north.admin)
    token = session_csrf(admin)
    data = {"code": "N999", "name": "Csrf Test"}
    assert admin.post("/patients", data=data).status_code == 403
    assert admin.post("/patients", data={**data, "csrf_token": "forged"}).status_code == 403
    cross = admin.post("/patients", data={**data, "csrf_token": token}, headers={"origin": "https://evil.example"})
    assert cross.status_code == 403
    assert "Csrf Test" not in admin.get("/patients").text
    made = admin.post("/patients", data={**data, "csrf_token": token}, headers={"origin": "https://testserver"})
    assert made.status_code == 303 and "Csrf Test" in admin.get("/patients").text
    # The login form is protected too (login CSRF), by a cookie-bound token.
    fresh = TestClient(admin.app, base_url="https://testserver", follow_redirects=False)
    refused = fresh.post("/login", data={"email": world.north.admin, "password": PASSWORD, "csrf_token": "x"})
    assert refused.status_code == 403


def test_login_never_redirects_off_site(app: FastAPI, world: World) -> None:
    client = anonymous(app)
    form = client.get("/login?next=//evil.example/x")
    assert "//evil.example" not in form.text
    response = client.post(
        "/login",
        data={"email": world.north.provider, "password": PASSWORD, "csrf_token": csrf_from(form.text),
              "next": "https://evil.example/"},
    )  # fmt: skip
    assert response.headers["location"] == "/patients"


def test_background_refreshes_do_not_keep_an_unattended_screen_logged_in(
    app: FastAPI, world: World, clock: Clock
) -> None:
    client = anonymous(app)
    login(client, world.north.provider)
    alice = world.north.patients["N100"]
    for _ in range(20):  # a chart and the fleet table polling for 16 minutes, nobody at the screen
        clock.advance(48)
        polled = client.get(f"/patients/{alice}/trends.json", headers={"x-auto-refresh": "1"})
        if polled.status_code != 200:
            break
    assert polled.status_code == 401
    assert client.get("/patients").status_code == 401
