"""Live consults at the hub: the kiosk's and the provider's sockets, the waiting room, the record and its audit.

Real SQLite (the two-clinic world), the real app, both sockets through starlette's TestClient; no mocks.
Each socket of a test runs on its own event loop thread (as two TestClients do), so the relay's
cross-loop posting is exercised too. Sockets that must stay alive across slow steps ping from a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from device.protocol.signaling import MAX_SDP, Request, Vital
from hub import attribution, rpm
from hub.accounts import kiosk_credentials
from hub.app import create_app
from hub.cli import _serve_config, build_parser
from hub.cli import main as hub_main
from hub.consults import store as consults
from hub.consults.ice import IceConfig, IceConfigError
from hub.consults.settings import ConsultSettings
from hub.db import immediate
from hub.workspace import WebSettings
from tests.workspace.world import World, login, session_csrf

ORIGIN = "https://testserver"
SECOND_NORTH_KIOSK = "kiosk-north-2"
TURN_SECRET = "shared-with-coturn"
_pool = ThreadPoolExecutor(8)


# -- helpers


def make_app(world: World, **consult_settings: Any) -> FastAPI:
    settings = ConsultSettings(**{"gone_after_s": 30.0, **consult_settings})
    return create_app(world.db, clock=world.clock, settings=WebSettings(consults=settings))


def credential(world: World, kiosk: str) -> str:
    with immediate(world.store.conn) as conn:
        return kiosk_credentials.issue(conn, kiosk, world.clock())


def browser(app: FastAPI, email: str) -> TestClient:
    client = TestClient(app, base_url=ORIGIN, follow_redirects=False)
    assert login(client, email).status_code == 303
    return client


def kiosk_socket(app: FastAPI, secret: str | None) -> WebSocketTestSession:
    headers = {"authorization": f"Bearer {secret}"} if secret is not None else {}
    return TestClient(app).websocket_connect("/ws/kiosk", headers=headers)


def provider_socket(client: TestClient, consult_id: str, origin: str | None = ORIGIN) -> WebSocketTestSession:
    # The session cookie is `Secure`: sent by hand, since the test client speaks ws://, not wss://.
    headers = {"cookie": f"__Host-session={client.cookies.get('__Host-session', '')}"}
    if origin is not None:
        headers["origin"] = origin
    return client.websocket_connect(f"/ws/consults/{consult_id}", headers=headers)


def recv(socket: WebSocketTestSession, timeout: float = 5.0) -> dict[str, Any]:
    """The next message other than a pong (answers to our own pings), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        message = _pool.submit(socket.receive_json).result(timeout=max(0.01, deadline - time.monotonic()))
        if message["type"] != "pong":
            return dict(message)


def closed_with(socket: WebSocketTestSession, timeout: float = 5.0) -> int:
    """The close code the hub ends this socket with (every message before it is skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _pool.submit(socket.receive_json).result(timeout=max(0.01, deadline - time.monotonic()))
        except WebSocketDisconnect as exc:
            return exc.code


def send(socket: WebSocketTestSession, message: dict[str, Any]) -> None:
    socket.send_text(json.dumps(message))


def ask(consult_id: str, subject: str = "N100", vitals: list[Vital] | None = None) -> str:
    """A kiosk's request, built with the contract's own model."""
    return Request(consult=consult_id, subject=subject, vitals=vitals or []).model_dump_json()


def answer_message_form_and_vitals_cross(k: WebSocketTestSession, p: WebSocketTestSession, consult_id: str) -> None:
    """After the kiosk's offer: the browser's answer, a message and a form request reach the kiosk, and the vitals
    the patient then takes reach the browser, each exactly as sent."""
    send(p, {"type": "answer", "consult": consult_id, "sdp": "v=0\r\no=browser answer\r\n"})
    assert recv(k) == {"type": "answer", "consult": consult_id, "sdp": "v=0\r\no=browser answer\r\n"}
    send(p, {"type": "message", "consult": consult_id, "text": "Please sit still for the cuff."})
    assert recv(k) == {"type": "message", "consult": consult_id, "text": "Please sit still for the cuff."}
    send(p, {"type": "form", "consult": consult_id, "form": "vitals"})
    assert recv(k) == {"type": "form", "consult": consult_id, "form": "vitals"}
    taken = {"code": "8867-4", "value": 64.0, "unit": "/min", "effective": "2026-11-20T12:01:00Z"}
    send(k, {"type": "vitals", "consult": consult_id, "vitals": [taken]})
    assert recv(p) == {"type": "vitals", "consult": consult_id, "vitals": [taken]}


@contextmanager
def pinging(socket: WebSocketTestSession, every_s: float = 0.2) -> Iterator[threading.Event]:
    """Keep a socket alive (a heartbeat from a thread) while the test does slow things; set the event to stop."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                send(socket, {"type": "ping"})
            except Exception:  # the socket has closed: the heartbeat has nothing left to keep alive
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(2)


def consult_row(world: World, consult_id: str) -> consults.Consult:
    found = consults.by_id(world.connect(), consult_id)
    assert found is not None
    return found


def audit_actions(world: World, consult_id: str) -> list[tuple[str, str, str | None]]:
    rows = world.connect().execute(
        "SELECT action, actor, detail FROM audit WHERE target = ? ORDER BY id", (f"consult:{consult_id}",)
    )
    return [(a, b, c) for a, b, c in rows]


@dataclass
class Call:
    id: str
    kiosk: WebSocketTestSession
    provider: WebSocketTestSession
    doc: TestClient  # the provider's browser
    kiosk_heartbeat: threading.Event  # set it and the kiosk falls silent
    provider_heartbeat: threading.Event


@contextmanager
def live_call(world: World, app: FastAPI, *, subject: str = "N100") -> Iterator[Call]:
    """A kiosk asks, North's provider joins and opens the call page's socket, the kiosk hears Joined.
    Both sides keep up a heartbeat until the test stops one."""
    consult_id = str(uuid.uuid4())
    with kiosk_socket(app, credential(world, world.north.kiosk)) as k, pinging(k) as kiosk_heartbeat:
        k.send_text(ask(consult_id, subject))
        assert recv(k)["type"] == "queued"
        doc = browser(app, world.north.provider)
        joined = doc.post(f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(doc)})
        assert joined.status_code == 303 and joined.headers["location"] == f"/consults/{consult_id}"
        with provider_socket(doc, consult_id) as p, pinging(p) as provider_heartbeat:
            message = recv(k)
            assert message["type"] == "joined", message
            yield Call(consult_id, k, p, doc, kiosk_heartbeat, provider_heartbeat)


# -- the kiosk's credential


def test_a_kiosk_without_a_live_credential_is_refused_before_any_message_is_read(world: World) -> None:
    app = make_app(world)
    revoked = credential(world, world.north.kiosk)
    with immediate(world.store.conn) as conn:
        assert kiosk_credentials.revoke(conn, world.north.kiosk, world.clock())
    replaced = credential(world, world.north.kiosk)
    credential(world, world.north.kiosk)  # a new secret: the one before stops working
    for secret in (None, "", "wrong", "thk_wrong", revoked, replaced):
        consult_id = str(uuid.uuid4())
        with kiosk_socket(app, secret) as k:
            k.send_text(ask(consult_id))  # sent at once: it must never be read
            assert closed_with(k) == 4401
        assert consults.by_id(world.connect(), consult_id) is None
    with TestClient(app).websocket_connect("/ws/kiosk", headers={"authorization": "Basic a2lvc2s6cGFzcw=="}) as k:
        assert closed_with(k) == 4401
    assert world.connect().execute("SELECT count(*) FROM consults").fetchone() == (0,)


def test_the_credential_is_printed_once_and_only_its_hash_is_kept(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hub_main(["kiosks", "credential", "--kiosk", world.north.kiosk, *world.cli_data()]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("thk_")
    conn = world.connect()
    stored = conn.execute("SELECT token_sha256 FROM kiosk_credentials WHERE kiosk = ?", (world.north.kiosk,)).fetchone()
    assert stored == (hashlib.sha256(secret.encode()).hexdigest(),)
    assert secret not in json.dumps(conn.execute("SELECT * FROM audit").fetchall())
    assert kiosk_credentials.kiosk_for(conn, secret) == world.north.kiosk
    assert hub_main(["kiosks", "revoke-credential", "--kiosk", world.north.kiosk, *world.cli_data()]) == 0
    assert kiosk_credentials.kiosk_for(conn, secret) is None
    assert hub_main(["kiosks", "revoke-credential", "--kiosk", world.north.kiosk, *world.cli_data()]) == 2
    assert hub_main(["kiosks", "credential", "--kiosk", "bad id!", *world.cli_data()]) == 2
    actions = [r[0] for r in conn.execute("SELECT action FROM audit WHERE target = ?", (f"kiosk:{world.north.kiosk}",))]
    assert actions[-2:] == ["issue_kiosk_credential", "revoke_kiosk_credential"]


def test_a_revoked_credential_closes_the_open_socket_at_its_next_check(world: World) -> None:
    app = make_app(world, recheck_s=0.2)
    with kiosk_socket(app, credential(world, world.north.kiosk)) as k, pinging(k):
        send(k, {"type": "ping"})
        assert _pool.submit(k.receive_json).result(5) == {"type": "pong"}
        with immediate(world.store.conn) as conn:
            kiosk_credentials.revoke(conn, world.north.kiosk, world.clock())
        assert closed_with(k) == 4401


# -- the queue


def test_requests_are_queued_in_order_and_every_waiting_kiosk_hears_the_change(world: World) -> None:
    with immediate(world.store.conn) as conn:
        attribution.assign_kiosk(conn, SECOND_NORTH_KIOSK, "north-clinic", world.clock())
    app = make_app(world)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with kiosk_socket(app, credential(world, world.north.kiosk)) as a, pinging(a):
        a.send_text(ask(first, "N100", [Vital(code="8867-4", value=72, unit="/min", effective="")]))
        assert recv(a) == {"type": "queued", "consult": first, "position": 1, "estimate_s": None}
        with kiosk_socket(app, credential(world, SECOND_NORTH_KIOSK)) as b, pinging(b):
            world.clock.advance(1)
            b.send_text(ask(second, "N101"))
            assert recv(b) == {"type": "queued", "consult": second, "position": 2, "estimate_s": None}
            assert recv(a) == {"type": "queued", "consult": first, "position": 1, "estimate_s": None}
            a.send_text(ask(first, "N100"))  # the same request again (a retry): the same consult, same place
            assert recv(a)["position"] == 1
            assert world.connect().execute("SELECT count(*) FROM consults").fetchone() == (2,)
            send(a, {"type": "end", "consult": first, "reason": "cancelled"})  # the first patient gives up
            assert recv(b) == {"type": "queued", "consult": second, "position": 1, "estimate_s": None}
    gave_up = consult_row(world, first)
    assert (gave_up.state, gave_up.reason, gave_up.ended_by, gave_up.joined_at) == ("ended", "cancelled", "kiosk", None)
    assert gave_up.vitals == [{"code": "8867-4", "value": 72.0, "unit": "/min", "effective": ""}]
    assert gave_up.patient_id == world.north.patients["N100"]
    # The second kiosk's socket closed while its patient waited: that consult is cancelled by the hub.
    left = consult_row(world, second)
    assert (left.state, left.reason, left.ended_by) == ("ended", "cancelled", "hub")


def test_a_kiosk_of_no_clinic_is_told_why_it_cannot_ask(world: World) -> None:
    app = make_app(world)
    with kiosk_socket(app, credential(world, "kiosk-nowhere")) as k:
        k.send_text(ask(str(uuid.uuid4())))
        message = recv(k)
        assert message["type"] == "error" and "not assigned to a clinic" in message["message"]
        send(k, {"type": "ping"})
        assert _pool.submit(k.receive_json).result(5) == {"type": "pong"}  # still open


def test_the_waiting_estimate_is_the_median_of_recent_finished_calls_and_none_without_enough(world: World) -> None:
    conn = world.store.conn
    now = world.clock()

    def finished_call(minutes: float, ended_ago_s: float, reason: str = "finished") -> None:
        consult_id = str(uuid.uuid4())
        with immediate(conn) as w:
            consults.request(w, kiosk=world.north.kiosk, consult_id=consult_id, subject="N100", language="en",
                             vitals=[], now=now - ended_ago_s - minutes * 60 - 60)  # fmt: skip
            consults.join(w, "north-clinic", consult_id, user_id=world.north.user_ids[world.north.provider],
                          now=now - ended_ago_s - minutes * 60)  # fmt: skip
            consults.end(w, consult_id, reason=reason, by="provider", now=now - ended_ago_s)  # type: ignore[arg-type]

    finished_call(4, 600)
    finished_call(10, 500)
    finished_call(30, 40 * 86400)  # older than 30 days: not counted
    finished_call(1, 300, reason="peer_gone")  # dropped, not finished: not a handling time
    assert consults.estimate_s(conn, "north-clinic", 1, now) is None  # two calls say nothing
    finished_call(6, 400)
    assert consults.median_handle_s(conn, "north-clinic", now) == 6 * 60
    assert consults.estimate_s(conn, "north-clinic", 2, now) == 2 * 6 * 60
    assert consults.estimate_s(conn, "south-clinic", 1, now) is None  # each clinic's own calls only


# -- tenancy


def test_another_clinics_provider_cannot_see_join_or_open_the_call(world: World) -> None:
    app = make_app(world)
    consult_id = str(uuid.uuid4())
    with kiosk_socket(app, credential(world, world.north.kiosk)) as k, pinging(k):
        k.send_text(ask(consult_id, "N100", [Vital(code="59408-5", value=93, unit="%", effective="")]))
        assert recv(k)["position"] == 1
        north = browser(app, world.north.provider)
        room = north.get("/consults")
        assert room.status_code == 200 and "Alice North" in room.text and consult_id in room.text
        assert "(1 waiting)" in north.get("/patients").text  # the menu's count
        south = browser(app, world.south.provider)
        for path in ("/consults", "/consults/rows", "/consults/waiting-count", "/patients"):
            page = south.get(path)
            assert page.status_code == 200
            assert not any(m in page.text for m in ("Alice North", "N100", consult_id, "1 waiting")), path
        assert south.get(f"/consults/{consult_id}").status_code == 404
        south_admin = browser(app, world.south.admin)
        for who in (south, south_admin):
            assert who.post(f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(who)}).status_code == 404
        with provider_socket(south, consult_id) as s:
            assert closed_with(s) == 4404
        assert consult_row(world, consult_id).state == "waiting"
        # North's own provider may not open the call before joining it, nor from another site, nor logged out.
        with provider_socket(north, consult_id) as s:
            assert closed_with(s) == 4403
        assert north.post(f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(north)}).status_code == 303
        for origin in (None, "https://evil.example", "http://testserver.evil.example"):
            with provider_socket(north, consult_id, origin=origin) as s:
                assert closed_with(s) == 4403
        anonymous = TestClient(app, base_url=ORIGIN)
        with anonymous.websocket_connect(f"/ws/consults/{consult_id}", headers={"origin": ORIGIN}) as s:
            assert closed_with(s) == 4401
        admin = browser(app, world.north.admin)  # same clinic, but not the provider who joined
        with provider_socket(admin, consult_id) as s:
            assert closed_with(s) == 4403
        assert admin.post(f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(admin)}).status_code == 303
        assert "no+longer+waiting" in admin.post(
            f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(admin)}
        ).headers["location"].replace("%20", "+")
    views = (
        world.connect().execute("SELECT actor, detail FROM audit WHERE action = 'view_consults' ORDER BY id").fetchall()
    )
    assert (world.north.provider, json.dumps({"consults": [consult_id]})) in views
    assert (world.south.provider, json.dumps({"consults": []})) in views


# -- the call


def test_join_offer_answer_messages_and_end_pass_between_the_two_sides(world: World) -> None:
    config = IceConfig(stun_urls=("stun:stun.clinic.example:3478",),
                       turn_urls=("turn:turn.clinic.example:3478?transport=udp",), turn_secret=TURN_SECRET)  # fmt: skip
    app = make_app(world, ice=config)
    consult_id = str(uuid.uuid4())
    reading = Vital(code="8480-6", value=151, unit="mm[Hg]", effective="2026-11-20T11:58:00Z")
    with kiosk_socket(app, credential(world, world.north.kiosk)) as k, pinging(k):
        k.send_text(ask(consult_id, "N100", [reading]))
        assert recv(k)["type"] == "queued"
        doc = browser(app, world.north.provider)
        room = doc.get("/consults").text
        assert "Systolic blood pressure" in room and "151" in room and "N100" in room
        world.clock.advance(90)
        joined_at = world.clock()
        issued = time.time()  # TURN expiries count from the wall clock, which coturn checks them against
        assert doc.post(f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(doc)}).status_code == 303
        page = doc.get(f"/consults/{consult_id}")
        assert (
            'src="/static/consult.js"' in page.text and 'id="call"' in page.text and "&#34;username&#34;" in page.text
        )
        with provider_socket(doc, consult_id) as p, pinging(p):
            joined = recv(k)
            assert joined["type"] == "joined" and joined["consult"] == consult_id
            assert joined["provider"] == "north doc" and joined["relay_only"] is False
            stun, turn = joined["ice_servers"]
            assert stun == {"urls": ["stun:stun.clinic.example:3478"], "username": None, "credential": None}
            assert turn["urls"] == ["turn:turn.clinic.example:3478?transport=udp"]
            expiry, _, named = turn["username"].partition(":")
            assert named == consult_id and int(issued) + 3600 <= int(expiry) <= time.time() + 3600
            mac = hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()
            assert base64.b64decode(turn["credential"]) == mac

            send(k, {"type": "offer", "consult": consult_id, "sdp": "v=0\r\no=kiosk offer\r\n"})
            assert recv(p) == {"type": "offer", "consult": consult_id, "sdp": "v=0\r\no=kiosk offer\r\n"}
            answer_message_form_and_vitals_cross(k, p, consult_id)
            world.clock.advance(12 * 60)
            send(p, {"type": "end", "consult": consult_id, "reason": "finished"})
            assert recv(k) == {"type": "ended", "consult": consult_id, "reason": "finished"}

    record = consult_row(world, consult_id)
    assert (record.state, record.reason, record.ended_by) == ("ended", "finished", "provider")
    assert record.provider_user_id == world.north.user_ids[world.north.provider]
    assert record.joined_at == joined_at and record.ended_at == joined_at + 12 * 60
    done = doc.get(f"/consults/{consult_id}").text
    assert "Ended: someone ended the call (by provider)" in done and "12.0 min" in done and "north doc" in done

    trail = audit_actions(world, consult_id)
    assert [a for a, _, _ in trail] == [
        "request_consult", "join_consult", "view_consult", "consult_message", "consult_form", "end_consult",
        "view_consult",
    ]  # fmt: skip
    assert trail[0][1] == f"kiosk:{world.north.kiosk}" and trail[1][1] == world.north.provider
    assert json.loads(trail[5][2] or "{}") == {"by": "provider", "reason": "finished"}
    everything = json.dumps(world.connect().execute("SELECT * FROM audit").fetchall())
    for health in ("sit still", "mm[Hg]", TURN_SECRET, turn["credential"]):
        assert health not in everything
    # A reading's value as a value, not as digits inside an id or a time (a random consult id held "151" once).
    for value in ("151", "64.0"):
        assert re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", everything) is None, value


def test_no_ice_servers_configured_means_an_empty_list_never_a_public_default(world: World) -> None:
    app = make_app(world)
    with live_call(world, app) as call:
        page = call.doc.get(f"/consults/{call.id}").text
        assert 'data-ice-servers="[]"' in page and 'data-relay-only="false"' in page
    assert "google" not in (Path(__file__).parents[2] / "hub/web/static/consult.js").read_text().lower()


def test_the_kiosk_vanishing_during_a_call_ends_it_for_the_provider_at_once(world: World) -> None:
    app = make_app(world)
    doc = browser(app, world.north.provider)
    consult_id = str(uuid.uuid4())
    with kiosk_socket(app, credential(world, world.north.kiosk)) as k:
        k.send_text(ask(consult_id))
        recv(k)
        doc.post(f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(doc)})
        p = provider_socket(doc, consult_id).__enter__()
        assert recv(k)["type"] == "joined"
    # The kiosk's socket has closed (its `with` ended): the provider hears it without waiting for a heartbeat.
    assert recv(p, timeout=2) == {"type": "ended", "consult": consult_id, "reason": "peer_gone"}
    p.__exit__(None, None, None)
    record = consult_row(world, consult_id)
    assert (record.state, record.reason, record.ended_by) == ("ended", "peer_gone", "hub")
    assert ("end_consult", "hub", json.dumps({"by": "hub", "reason": "peer_gone"})) in audit_actions(world, consult_id)


def test_a_silent_kiosk_is_gone_after_the_heartbeat_timeout_and_the_provider_is_told(world: World) -> None:
    app = make_app(world, gone_after_s=0.6)
    with live_call(world, app) as call:
        call.kiosk_heartbeat.set()  # the kiosk's socket stays open, but nothing more comes from it
        silent_since = time.monotonic()
        assert recv(call.provider) == {"type": "ended", "consult": call.id, "reason": "peer_gone"}
        assert 0.35 < time.monotonic() - silent_since < 3  # 0.6 s after its last ping (one came up to 0.2 s before)
        assert closed_with(call.kiosk) == 4408
    record = consult_row(world, call.id)
    assert (record.state, record.reason, record.ended_by) == ("ended", "peer_gone", "hub")


def test_a_silent_provider_is_gone_too_and_the_kiosk_is_told(world: World) -> None:
    app = make_app(world, gone_after_s=0.6)
    with live_call(world, app) as call:
        call.provider_heartbeat.set()
        assert recv(call.kiosk) == {"type": "ended", "consult": call.id, "reason": "peer_gone"}
        assert closed_with(call.provider) == 4408
    assert consult_row(world, call.id).reason == "peer_gone"


def test_a_provider_who_joins_but_never_opens_the_call_page_is_gone(world: World) -> None:
    app = make_app(world, provider_connect_s=0.3)
    consult_id = str(uuid.uuid4())
    with kiosk_socket(app, credential(world, world.north.kiosk)) as k, pinging(k):
        k.send_text(ask(consult_id))
        recv(k)
        doc = browser(app, world.north.provider)
        doc.post(f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(doc)})
        assert recv(k) == {"type": "ended", "consult": consult_id, "reason": "peer_gone"}
        with provider_socket(doc, consult_id) as p:  # too late: the page hears the call is over
            assert recv(p) == {"type": "ended", "consult": consult_id, "reason": "peer_gone"}
            assert closed_with(p) == 1000


def test_garbage_and_oversized_messages_get_an_error_and_the_sockets_keep_working(world: World) -> None:
    app = make_app(world)
    with live_call(world, app) as call:
        bad: list[str | bytes] = [
            "not json",
            b"\xff\xfe\x00",
            "[]",
            json.dumps({"type": "launch"}),
            json.dumps({"type": "offer", "consult": call.id}),  # no sdp
            json.dumps({"type": "offer", "consult": "not-a-uuid", "sdp": "x"}),
            json.dumps({"type": "request", "consult": str(uuid.uuid4()), "subject": "N100", "extra": 1}),
            json.dumps({"type": "offer", "consult": call.id, "sdp": "x" * (MAX_SDP + 1)}),
            "x" * (3 * MAX_SDP),
        ]
        for side, socket in (("kiosk", call.kiosk), ("browser", call.provider)):
            for raw in bad:
                if isinstance(raw, bytes):
                    socket.send_bytes(raw)
                else:
                    socket.send_text(raw)
                reply = recv(socket)
                assert reply["type"] == "error" and reply["message"], (side, raw[:40], reply)
            assert "too large" in reply["message"]
        # Both still work: the offer and answer pass as before.
        send(call.kiosk, {"type": "offer", "consult": call.id, "sdp": "v=0"})
        assert recv(call.provider)["type"] == "offer"
        send(call.provider, {"type": "answer", "consult": call.id, "sdp": "v=0"})
        assert recv(call.kiosk)["type"] == "answer"
        # A browser may speak only for its own consult, and not with the kiosk's words.
        send(call.provider, {"type": "message", "consult": str(uuid.uuid4()), "text": "hello"})
        assert "only" in recv(call.provider)["message"]
        send(call.provider, {"type": "offer", "consult": call.id, "sdp": "v=0"})
        assert recv(call.provider)["type"] == "error"
    assert consult_row(world, call.id).state == "ended"


def test_a_kiosk_cannot_offer_or_end_another_kiosks_consult(world: World) -> None:
    with immediate(world.store.conn) as conn:
        attribution.assign_kiosk(conn, SECOND_NORTH_KIOSK, "north-clinic", world.clock())
    app = make_app(world)
    with live_call(world, app) as call, kiosk_socket(app, credential(world, SECOND_NORTH_KIOSK)) as other:
        for message in (
            {"type": "offer", "consult": call.id, "sdp": "v=0 intruder"},
            {"type": "vitals", "consult": call.id, "vitals": [{"code": "8867-4", "value": 1, "unit": "/min",
                                                               "effective": ""}]},
            {"type": "end", "consult": call.id, "reason": "finished"},
            {"type": "request", "consult": call.id, "subject": "N101"},  # claiming the id for itself
        ):  # fmt: skip
            send(other, message)
            reply = recv(other)
            assert reply["type"] == "error", reply
            assert "no consult" in reply["message"] or "already in use" in reply["message"]
        assert consult_row(world, call.id).state == "live"
        # Nothing reached the provider: the next thing it hears is the real kiosk's offer.
        send(call.kiosk, {"type": "offer", "consult": call.id, "sdp": "v=0 real"})
        assert recv(call.provider)["sdp"] == "v=0 real"


def test_a_second_window_cannot_take_over_the_call(world: World) -> None:
    app = make_app(world)
    with live_call(world, app) as call:
        with provider_socket(call.doc, call.id) as again:
            assert closed_with(again) == 4409
        send(call.kiosk, {"type": "offer", "consult": call.id, "sdp": "v=0"})
        assert recv(call.provider)["type"] == "offer"  # the first window still has the call


def test_a_held_call_counts_toward_the_patients_monitoring_minutes_once(world: World) -> None:
    app = make_app(world)
    alice = world.north.patients["N100"]
    conn = world.store.conn
    before = rpm.month_for(conn, "north-clinic", alice, "2026-11").minutes
    with live_call(world, app) as call:
        call.doc.get(f"/patients/{alice}")  # looking at the chart during the call is the call's time
        world.clock.advance(8 * 60)
        call.doc.get(f"/patients/{alice}")
        world.clock.advance(6 * 60)
        send(call.provider, {"type": "end", "consult": call.id, "reason": "finished"})
        assert recv(call.kiosk)["type"] == "ended"
    month = rpm.month_for(conn, "north-clinic", alice, "2026-11")
    (held,) = month.calls
    assert (held.consult, held.user, held.reason, held.minutes) == (call.id, world.north.provider, "finished", 14.0)
    # 14 minutes of call; the views inside it add nothing (their episode is the call's time already).
    assert month.minutes == pytest.approx(before + 14.0)
    assert month.minutes_status == "10-minute tier"
    page = call.doc.get(f"/patients/{alice}/rpm?month=2026-11").text
    assert "Live video consults" in page and "14.0" in page
    export = call.doc.get("/rpm.csv?month=2026-11").text
    assert f"live consult,2026-11-20T12:00:00+00:00,{world.north.provider},14.0,video call consult:{call.id}" in export


def test_a_call_that_never_connected_does_not_count(world: World) -> None:
    app = make_app(world)
    with live_call(world, app) as call:
        world.clock.advance(5 * 60)
        send(call.kiosk, {"type": "end", "consult": call.id, "reason": "failed"})
        assert recv(call.provider) == {"type": "ended", "consult": call.id, "reason": "failed"}
    assert rpm.month_for(world.store.conn, "north-clinic", world.north.patients["N100"], "2026-11").calls == []
    assert consult_row(world, call.id).ended_by == "kiosk"


def test_calls_and_episodes_are_counted_once_by_hand() -> None:
    calls = [rpm.Call("a", 100.0, 700.0, "c1", "finished")]
    found = rpm.outside_calls(rpm.episodes([(50.0, "a", "view_patient"), (400.0, "a", "view_trends"),
                                            (300.0, "b", "view_case")]), calls)  # fmt: skip
    by_user = {e.user: e for e in found}
    # a: 50..400 + 1 min = 50..460, of which 100..460 was the call: 50 s left.
    assert by_user["a"].in_call_s == 360.0 and by_user["a"].minutes == pytest.approx(50 / 60)
    assert by_user["b"].in_call_s == 0.0 and by_user["b"].minutes == 1.0  # another person's time is theirs


def test_consults_left_open_by_a_stopped_hub_are_ended_at_start_up(world: World) -> None:
    conn = world.store.conn
    waiting, live = str(uuid.uuid4()), str(uuid.uuid4())
    with immediate(conn) as w:
        for consult_id in (waiting, live):
            consults.request(w, kiosk=world.north.kiosk, consult_id=consult_id, subject="N100", language="en",
                             vitals=[], now=world.clock())  # fmt: skip
        consults.join(w, "north-clinic", live, user_id=world.north.user_ids[world.north.provider], now=world.clock())
    make_app(world)
    assert (consult_row(world, waiting).reason, consult_row(world, waiting).ended_by) == ("cancelled", "hub")
    assert (consult_row(world, live).reason, consult_row(world, live).ended_by) == ("peer_gone", "hub")


def test_serve_takes_ice_servers_and_a_turn_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "turn-secret"
    secret.write_text(TURN_SECRET + "\n")
    args = build_parser().parse_args([
        "serve", "--ice-server", "stun:a.example:3478", "--ice-server", "stun:b.example:3478",
        "--turn-url", "turn:t.example:3478?transport=udp", "--turn-secret-file", str(secret), "--turn-relay-only",
    ])  # fmt: skip
    ice = _serve_config(args).ice
    assert ice.stun_urls == ("stun:a.example:3478", "stun:b.example:3478")
    assert ice.turn_secret == TURN_SECRET and ice.relay_only
    assert TURN_SECRET not in repr(ice)
    assert _serve_config(build_parser().parse_args(["serve"])).ice == IceConfig()  # nothing configured: no servers
    for wrong in (
        IceConfig(stun_urls=("https://stun.example",)),
        IceConfig(turn_urls=("turn:t.example",)),  # no secret
        IceConfig(turn_secret="s"),  # no server
        IceConfig(stun_urls=("stun:a",), relay_only=True),
    ):
        with pytest.raises(IceConfigError):
            wrong.check()
    assert hub_main(["serve", "--data", str(tmp_path / "hub"), "--turn-url", "turn:t.example"]) == 2
    assert hub_main(["serve", "--data", str(tmp_path / "hub"), "--turn-url", "turn:t.example",
                     "--turn-secret-file", str(tmp_path / "missing")]) == 2  # fmt: skip
