"""Two `hub serve` instances on one PostgreSQL: either can die (SIGKILL, mid-stream) without losing a reading
or a session, and the cluster's jobs go on on the other.

Real parts only: Debian's PostgreSQL in a temp folder, two Mosquittos, two `hub serve` processes with their
own ingest workers on each of two brokers' shared subscriptions, kiosk agents streaming. A provider logged in through
one instance keeps working through the other (sessions live in the database). After the kills, a live consult
started then works with the kiosk's socket on one instance and the provider's on the other (the relay in PostgreSQL).
"""

from __future__ import annotations

import json
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.protocol.signaling import HEARTBEAT_S, Request
from device.simulate import single_reading
from hub import attribution, patients
from hub.accounts import kiosk_credentials, users
from hub.app import create_app
from hub.broker import MosquittoProcess
from hub.consults import store as consults
from hub.db import PostgresLocation, connect, immediate
from tests.harness import HubProcess, assert_delivered_exactly_once, hub_count, hub_query, kiosk_agent, wait_until
from tests.postgres import PostgresServer

CLINIC, PROVIDER, PASSWORD, CODE = "cluster-clinic", "doc@cluster.example", "a long cluster password", "C-4242"
KIOSKS = ("k-east", "k-west")
AGENT = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0, "connect_timeout_s": 3.0}
KILLS = 3


def prepare(db: PostgresLocation) -> None:
    conn = connect(db)
    try:
        with immediate(conn) as w:
            now = time.time()
            users.create_clinic(w, CLINIC, "Cluster Clinic", now)
            users.create_user(w, clinic_id=CLINIC, email=PROVIDER, name="Doc", role="provider", password=PASSWORD,
                              now=now)  # fmt: skip
            patients.create(w, CLINIC, code=CODE, name="Cleo Cluster", birth_date="1980-02-02", now=now)
            for kiosk in KIOSKS:
                attribution.assign_kiosk(w, kiosk, CLINIC, now)
    finally:
        conn.close()


def _cookies(response: httpx.Response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c.split("=", 1)[1].split(";", 1)[0] for c in response.headers.get_list("set-cookie")}


def log_in(port: int) -> str:
    """A provider's login through one instance, over its real socket; the session cookie header to send."""
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text[:500]
        cookie = "; ".join(f"{k}={v}" for k, v in _cookies(form).items())
        done = client.post("/login", headers={"cookie": cookie, "origin": base},
                           data={"email": PROVIDER, "password": PASSWORD, "csrf_token": csrf.group(1),
                                 "next": "/patients"})  # fmt: skip
        assert done.status_code == 303, done.text[:500]
        return "; ".join(f"{k}={v}" for k, v in _cookies(done).items())


def patients_page(port: int, cookie: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/patients", headers={"cookie": cookie}, timeout=30)


class Stream(threading.Thread):
    """A patient's readings at one kiosk, checked in (attribution gives them to the patient), remembered exactly;
    taken until `stop` is set, so the stream outlasts every kill however slowly the machine runs."""

    def __init__(self, agent: object, seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.agent, self.seed, self.stop = agent, seed, stop
        self.sent: list[bytes] = []

    def run(self) -> None:
        rng = random.Random(self.seed)
        while not self.stop.wait(0.02):
            reading = {**single_reading(rng, datetime.now(UTC)), "subject": CODE}
            env = self.agent.outbox.enqueue("observations", reading)  # type: ignore[attr-defined]
            self.sent.append(encode(env))


def stored(db: PostgresLocation) -> int:
    return sum(hub_count(db, k) for k in KIOSKS)


# -- a live consult over the real processes' sockets


def kiosk_secret(db: PostgresLocation, kiosk: str) -> str:
    """The kiosk's consult credential (`hub kiosks credential`), issued in the shared database."""
    conn = connect(db)
    try:
        with immediate(conn) as w:
            return kiosk_credentials.issue(w, kiosk, time.time())
    finally:
        conn.close()


def session_csrf(port: int, cookie: str) -> str:
    """The session's CSRF token, read from a page the session gets (as the browser's forms carry it)."""
    page = httpx.get(f"http://127.0.0.1:{port}/account", headers={"cookie": cookie}, timeout=30)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert page.status_code == 200 and found, f"no CSRF token on /account ({page.status_code}): {page.text[:500]}"
    return found.group(1)


def open_socket(port: int, path: str, headers: dict[str, str]) -> ClientConnection:
    return ws_connect(f"ws://127.0.0.1:{port}{path}", additional_headers=headers, proxy=None, open_timeout=15)


@contextmanager
def pinging(socket: ClientConnection) -> Iterator[None]:
    """The contract's heartbeat (a `ping` a second): the hub takes a socket silent for 5 s as gone."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S / 2):
            try:
                socket.send(json.dumps({"type": "ping"}))
            except ConnectionClosed:  # nothing left to keep alive
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def next_message(socket: ClientConnection, what: str, timeout: float = 15.0) -> dict[str, Any]:
    """The next message other than a pong (the answers to our own pings), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = socket.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
        except ConnectionClosed as exc:
            raise AssertionError(f"the socket closed ({exc.rcvd}) while waiting for {what}") from exc
        message: dict[str, Any] = json.loads(raw)
        if message.get("type") != "pong":
            return message


def consult_sockets(db: PostgresLocation) -> dict[tuple[str, str], int]:
    """Which instance holds which open consult socket, as the relay records it."""
    rows = hub_query(db, "SELECT side, key, instance FROM consult_sockets WHERE socket IS NOT NULL")
    return {(str(side), str(key)): int(str(instance)) for side, key, instance in rows}


def consult_across_instances(
    db: PostgresLocation, kiosk_hub: HubProcess, provider_hub: HubProcess, cookie: str
) -> None:
    """A consult from start to end, the kiosk's socket on one instance and the provider's (the session made
    before the kills, joining as a browser does) on the other: every message between them crosses PostgreSQL."""
    consult_id, kiosk = str(uuid.uuid4()), KIOSKS[0]
    site = f"http://127.0.0.1:{provider_hub.port}"
    bearer = {"authorization": f"Bearer {kiosk_secret(db, kiosk)}"}
    with open_socket(kiosk_hub.port, "/ws/kiosk", bearer) as k, pinging(k):
        k.send(Request(consult=consult_id, subject=CODE).model_dump_json())
        queued = next_message(k, "the kiosk's request to be queued")
        assert queued == {"type": "queued", "consult": consult_id, "position": 1, "estimate_s": None}, queued

        joined = httpx.post(f"{site}/consults/{consult_id}/join", headers={"cookie": cookie, "origin": site},
                            data={"csrf_token": session_csrf(provider_hub.port, cookie)}, timeout=30)  # fmt: skip
        assert joined.status_code == 303 and joined.headers.get("location") == f"/consults/{consult_id}", (
            f"the provider's join was refused: {joined.status_code} {joined.headers} {joined.text[:500]}"
        )
        headers = {"cookie": cookie, "origin": site}
        with open_socket(provider_hub.port, f"/ws/consults/{consult_id}", headers) as p, pinging(p):
            told = next_message(k, "the kiosk to hear that the provider joined")
            assert (told.get("type"), told.get("consult"), told.get("provider")) == ("joined", consult_id, "Doc"), told
            held = consult_sockets(db)
            assert held.keys() == {("kiosk", kiosk), ("provider", consult_id)}, held
            assert held[("kiosk", kiosk)] != held[("provider", consult_id)], f"both sockets on one instance: {held}"

            offer = {"type": "offer", "consult": consult_id, "sdp": "v=0\r\no=kiosk offer after the kills\r\n"}
            k.send(json.dumps(offer))
            got = next_message(p, "the kiosk's offer to reach the provider")
            assert got == offer, f"the provider got {got}, not the kiosk's offer"
            answer = {"type": "answer", "consult": consult_id, "sdp": "v=0\r\no=browser answer\r\n"}
            p.send(json.dumps(answer))
            got = next_message(k, "the provider's answer to reach the kiosk")
            assert got == answer, f"the kiosk got {got}, not the provider's answer"
            p.send(json.dumps({"type": "end", "consult": consult_id, "reason": "finished"}))
            got = next_message(k, "the kiosk to hear the provider ended the call")
            assert got == {"type": "ended", "consult": consult_id, "reason": "finished"}, got

    conn = connect(db, read_only=True)
    try:
        record = consults.by_id(conn, consult_id)
    finally:
        conn.close()
    assert record is not None, f"no record of consult {consult_id}"
    assert (record.state, record.reason, record.ended_by) == ("ended", "finished", "provider"), record
    wait_until(lambda: consult_sockets(db) == {}, 15, "both consult sockets to detach")


def test_either_instance_and_either_broker_can_die_mid_stream_without_losing_a_reading_or_a_session(
    tmp_path: Path, postgres_server: PostgresServer, mosquitto: MosquittoProcess
) -> None:
    db = PostgresLocation(postgres_server.fresh_database())
    prepare(db)
    second = MosquittoProcess(tmp_path / "broker-2")
    second.start()
    brokers = [BrokerUrl.parse(mosquitto.url), BrokerUrl.parse(second.url)]
    # Every instance's ingest on every broker; the kiosks know both brokers, in the same order.
    common = ("--database", db.url, "--broker", f"{mosquitto.url},{second.url}")
    hubs = [
        HubProcess(tmp_path / name, tmp_path / f"{name}.log", args=(*common, "--instance", name)) for name in ("a", "b")
    ]
    for hub in hubs:
        hub.start()
    try:
        for hub in hubs:
            hub.wait_ready()
        cookie = log_in(hubs[0].port)
        assert "Cleo Cluster" in patients_page(hubs[1].port, cookie).text  # logged in on a, served by b

        with (
            kiosk_agent(tmp_path / KIOSKS[0], KIOSKS[0], brokers, **AGENT) as east,  # type: ignore[arg-type]
            kiosk_agent(tmp_path / KIOSKS[1], KIOSKS[1], brokers, **AGENT) as west,  # type: ignore[arg-type]
        ):
            stop = threading.Event()
            streams = [Stream(east, 1, stop), Stream(west, 2, stop)]
            for s in streams:
                s.start()
            for kill in range(KILLS):
                victim, survivor = hubs[kill % 2], hubs[(kill + 1) % 2]
                before = stored(db)
                wait_until(lambda b=before: stored(db) >= b + 20, 60, "readings stored before the kill")  # type: ignore[misc]
                victim.lose_machine()
                # The survivor alone goes on storing, and serves the session made on the other.
                during = stored(db)
                wait_until(lambda d=during: stored(db) >= d + 20, 90, "the survivor to store readings alone")  # type: ignore[misc]
                page = patients_page(survivor.port, cookie)
                assert page.status_code == 200 and "Cleo Cluster" in page.text
                victim.start()
                victim.wait_ready()
            # A consult started after the kills works, across the instances: the kiosk on the one killed last
            # (restarted), the provider (still the session made before the kills) on the other.
            consult_across_instances(db, hubs[(KILLS - 1) % 2], hubs[KILLS % 2], cookie)
            # The broker the kiosks use first dies (SIGKILL): they go on through the second, which both instances'
            # ingest also reads; then it comes back.
            before = stored(db)
            wait_until(lambda: stored(db) >= before + 20, 60, "readings stored before the broker dies")
            mosquitto.kill()
            during = stored(db)
            wait_until(lambda: stored(db) >= during + 40, 90, "readings through the second broker")
            mosquitto.start()
            stop.set()
            for s in streams:
                s.join(30)
            for agent, name in ((east, KIOSKS[0]), (west, KIOSKS[1])):
                wait_until(lambda a=agent: a.outbox.backlog().items == 0, 120, f"{name}'s outbox to drain")  # type: ignore[misc]
        for s, name in zip(streams, KIOSKS, strict=True):
            assert len(s.sent) >= 60  # readings taken before, during and after each of the kills
            assert_delivered_exactly_once(db, name, s.sent)
        taken = sum(len(s.sent) for s in streams)

        # The cluster's jobs went on: every reading was attributed to the patient (by whichever instance held
        # attribution at the time, across three kills).
        def attributed() -> int:
            sql = "SELECT count(*) FROM observations WHERE patient_id IS NOT NULL AND attribution = 'attributed'"
            return int(str(hub_query(db, sql)[0][0]))

        wait_until(lambda: attributed() == taken, 60, "attribution to finish on the surviving instances")
        for hub in hubs:
            assert patients_page(hub.port, cookie).status_code == 200
    finally:
        for hub in hubs:
            hub.stop(signal.SIGTERM)
        second.stop()


def test_a_hub_whose_database_server_goes_away_says_why_and_comes_back_by_itself() -> None:
    """The PostgreSQL server stops under a running hub (a restart, a failover): /readyz says what is wrong,
    naming the server but never a password, and the hub answers again once the server does, without a restart."""
    server = PostgresServer()
    server.start()
    try:
        url = server.fresh_database()
        client = TestClient(create_app(PostgresLocation(url)))
        assert client.get("/readyz").status_code == 200
        server.halt()
        down = client.get("/readyz")
        assert down.status_code == 503
        said = down.json()["checks"]["database"]
        assert said.startswith("error: OperationalError") and f"port {server.port}" in said, said
        server.resume()
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "the hub to answer again")
    finally:
        server.stop()
