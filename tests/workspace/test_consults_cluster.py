"""Live consults across hub instances: two (or three) apps on one PostgreSQL database, each its own relay.

A kiosk's socket on one instance and its provider's on another: everything between them goes through the
database (a row per message, a NOTIFY of its id). Which instance holds which socket is in the database, and
counts only while that instance runs (its advisory lock). An instance "dies" here by stopping its relay (its
listening connection and lock go) and dropping its sockets without detaching them.

PostgreSQL only: this module's `hub_database` gives the `world` fixture a fresh PostgreSQL database (one
instance per SQLite file is the rule there, and tests/workspace/test_consults.py covers it). No sleeps:
every wait is for an event, with a timeout.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from hub import attribution
from hub.app import create_app
from hub.consults.relay import Relay
from hub.consults.settings import ConsultSettings
from hub.consults.store import RELAY_LOCK_CLASS
from hub.db import Location, PostgresLocation, immediate
from hub.workspace import WebSettings
from tests.postgres import PostgresServer
from tests.workspace.test_consults import (
    SECOND_NORTH_KIOSK,
    answer_message_form_and_vitals_cross,
    ask,
    audit_actions,
    browser,
    closed_with,
    consult_row,
    credential,
    kiosk_socket,
    pinging,
    provider_socket,
    recv,
    send,
)
from tests.workspace.world import World, session_csrf

Instances = Callable[..., FastAPI]


@pytest.fixture
def hub_database(postgres_server: PostgresServer) -> Iterator[Location]:
    """The `world` of these tests is always on PostgreSQL: several instances share one database only there."""
    url = postgres_server.fresh_database()
    yield PostgresLocation(url)
    postgres_server.drop(url.rsplit("/", 1)[1])


@pytest.fixture
def instances(world: World) -> Iterator[Instances]:
    """Start hub instances on the world's database (each app is one instance); all are stopped at the end."""
    started: list[FastAPI] = []

    def start(**consult_settings: Any) -> FastAPI:
        settings = ConsultSettings(**{"gone_after_s": 30.0, **consult_settings})
        app = create_app(world.db, clock=world.clock, settings=WebSettings(consults=settings))
        started.append(app)
        return app

    yield start
    for app in started:
        relay_of(app).stop()


def relay_of(app: FastAPI) -> Relay:
    relay: Relay = app.state.consult_relay
    return relay


def number(app: FastAPI) -> int:
    instance = relay_of(app).instance
    assert instance is not None
    return instance


def sockets(world: World) -> dict[tuple[str, str], int]:
    rows = world.connect().execute("SELECT side, key, instance FROM consult_sockets WHERE socket IS NOT NULL")
    return {(side, key): int(instance) for side, key, instance in rows}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll the database for something another thread finishes (a socket's detach) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def die(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instance dies: its listening connection (and lock) goes, and its sockets will never detach."""
    relay = relay_of(app)
    relay.stop()
    monkeypatch.setattr(relay, "detach", lambda peer: None)


def join(app: FastAPI, world: World, consult_id: str) -> Any:
    doc = browser(app, world.north.provider)
    joined = doc.post(f"/consults/{consult_id}/join", data={"csrf_token": session_csrf(doc)})
    assert joined.status_code == 303 and joined.headers["location"] == f"/consults/{consult_id}", joined.headers
    return doc


def big_sdp() -> str:
    """An offer far larger than a NOTIFY payload (8000 bytes) may be, as a kiosk with many candidates sends."""
    lines = ["v=0", "o=kiosk 1 1 IN IP4 127.0.0.1", "s=-"]
    lines += [f"a=candidate:{i} 1 udp 2122260223 10.0.{i // 250}.{i % 250} {40000 + i} typ host" for i in range(400)]
    sdp = "\r\n".join(lines) + "\r\n"
    assert 8000 * 2 < len(sdp.encode()) < 64 * 1024
    return sdp


def test_a_call_passes_between_a_kiosk_on_one_instance_and_a_provider_on_another(
    world: World, instances: Instances
) -> None:
    a, b = instances(), instances()
    assert number(a) != number(b)
    consult_id = str(uuid.uuid4())
    with kiosk_socket(a, credential(world, world.north.kiosk)) as k, pinging(k):
        k.send_text(ask(consult_id))
        assert recv(k) == {"type": "queued", "consult": consult_id, "position": 1, "estimate_s": None}
        doc = join(b, world, consult_id)  # the provider's pages and socket are on the other instance
        with provider_socket(doc, consult_id) as p, pinging(p):
            joined = recv(k)
            assert (joined["type"], joined["consult"], joined["provider"]) == ("joined", consult_id, "north doc")
            assert sockets(world) == {("kiosk", world.north.kiosk): number(a), ("provider", consult_id): number(b)}

            sdp = big_sdp()
            send(k, {"type": "offer", "consult": consult_id, "sdp": sdp})
            assert recv(p) == {"type": "offer", "consult": consult_id, "sdp": sdp}
            answer_message_form_and_vitals_cross(k, p, consult_id)
            # The rules hold across instances too: a browser speaks for its own consult only.
            send(p, {"type": "message", "consult": str(uuid.uuid4()), "text": "hello"})
            assert "only" in recv(p)["message"]
            world.clock.advance(6 * 60)
            send(p, {"type": "end", "consult": consult_id, "reason": "finished"})
            assert recv(k) == {"type": "ended", "consult": consult_id, "reason": "finished"}

    record = consult_row(world, consult_id)
    assert (record.state, record.reason, record.ended_by) == ("ended", "finished", "provider")
    trail = [action for action, _, _ in audit_actions(world, consult_id)]
    assert trail == ["request_consult", "join_consult", "consult_message", "consult_form", "end_consult"]
    # Every message handed over was read once and deleted; both sockets' rows went when they closed.
    wait_until(lambda: sockets(world) == {}, "both sockets to detach")
    assert world.connect().execute("SELECT count(*) FROM consult_relay").fetchone() == (0,)
    assert world.connect().execute("SELECT count(*) FROM consult_sockets").fetchone() == (0,)


def test_queue_positions_reach_waiting_kiosks_on_the_other_instance(world: World, instances: Instances) -> None:
    with immediate(world.store.conn) as conn:
        attribution.assign_kiosk(conn, SECOND_NORTH_KIOSK, "north-clinic", world.clock())
    a, b = instances(), instances()
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with kiosk_socket(a, credential(world, world.north.kiosk)) as k1, pinging(k1):
        k1.send_text(ask(first, "N100"))
        assert recv(k1) == {"type": "queued", "consult": first, "position": 1, "estimate_s": None}
        with kiosk_socket(b, credential(world, SECOND_NORTH_KIOSK)) as k2, pinging(k2):
            world.clock.advance(1)
            k2.send_text(ask(second, "N101"))
            assert recv(k2) == {"type": "queued", "consult": second, "position": 2, "estimate_s": None}
            assert recv(k1) == {"type": "queued", "consult": first, "position": 1, "estimate_s": None}  # from b
            send(k1, {"type": "end", "consult": first, "reason": "cancelled"})  # on a: the queue moves on b
            assert recv(k2) == {"type": "queued", "consult": second, "position": 1, "estimate_s": None}
            doc = join(a, world, second)  # joined through a; its call page's socket on a too
            with provider_socket(doc, second) as p, pinging(p):
                assert recv(k2)["type"] == "joined"
                send(k2, {"type": "end", "consult": second, "reason": "finished"})
                assert recv(p) == {"type": "ended", "consult": second, "reason": "finished"}
    assert (consult_row(world, first).reason, consult_row(world, first).ended_by) == ("cancelled", "kiosk")
    assert (consult_row(world, second).reason, consult_row(world, second).ended_by) == ("finished", "kiosk")
    for consult_id in (first, second):
        assert [a for a, _, _ in audit_actions(world, consult_id)].count("end_consult") == 1


def test_a_kiosk_reconnecting_through_the_other_instance_replaces_its_old_socket(
    world: World, instances: Instances
) -> None:
    a, b = instances(), instances()
    secret = credential(world, world.north.kiosk)
    consult_id = str(uuid.uuid4())
    with kiosk_socket(a, secret) as old, pinging(old):
        old.send_text(ask(consult_id))
        assert recv(old)["position"] == 1
        with kiosk_socket(b, secret) as new, pinging(new):
            # The new socket learns where its patient stands; the old one, on the other instance, is closed.
            assert recv(new) == {"type": "queued", "consult": consult_id, "position": 1, "estimate_s": None}
            assert closed_with(old) == 4409
            assert sockets(world) == {("kiosk", world.north.kiosk): number(b)}
            # Its closing ended nothing: the patient still waits, and the call goes through the new socket.
            assert consult_row(world, consult_id).state == "waiting"
            doc = join(a, world, consult_id)
            with provider_socket(doc, consult_id) as p, pinging(p):
                assert recv(new)["type"] == "joined"
                send(new, {"type": "offer", "consult": consult_id, "sdp": "v=0 from the new socket"})
                assert recv(p)["sdp"] == "v=0 from the new socket"
                send(p, {"type": "end", "consult": consult_id, "reason": "finished"})
                assert recv(new) == {"type": "ended", "consult": consult_id, "reason": "finished"}
    record = consult_row(world, consult_id)
    assert (record.reason, record.ended_by) == ("finished", "provider")
    assert [a for a, _, _ in audit_actions(world, consult_id)].count("end_consult") == 1


def test_the_sockets_of_an_instance_that_died_are_gone_for_the_others(
    world: World, instances: Instances, monkeypatch: pytest.MonkeyPatch
) -> None:
    with immediate(world.store.conn) as conn:
        attribution.assign_kiosk(conn, SECOND_NORTH_KIOSK, "north-clinic", world.clock())
    # No sweep during this test (every gone_after_s): what is gone must be found by the checks and at start-up.
    a, b = instances(gone_after_s=600.0), instances(gone_after_s=600.0)
    call, left_waiting, elsewhere = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    with (
        kiosk_socket(a, credential(world, world.north.kiosk)) as k,
        pinging(k),
        kiosk_socket(a, credential(world, world.south.kiosk)) as south,
        pinging(south),
    ):
        k.send_text(ask(call))
        assert recv(k)["type"] == "queued"
        south.send_text(ask(elsewhere, "S100"))  # waits on a, which keeps running
        assert recv(south)["type"] == "queued"
        doc = join(b, world, call)
        p = provider_socket(doc, call).__enter__()
        assert recv(k)["type"] == "joined"
        k2 = kiosk_socket(b, credential(world, SECOND_NORTH_KIOSK)).__enter__()
        k2.send_text(ask(left_waiting, "N101"))
        assert recv(k2)["type"] == "queued"

        die(b, monkeypatch)
        p.__exit__(None, None, None)
        k2.__exit__(None, None, None)
        # Its rows are still there, but its lock is not: for a, the provider is not connected.
        assert sockets(world)[("provider", call)] == number(b)
        send(k, {"type": "offer", "consult": call, "sdp": "v=0"})
        assert recv(k) == {"type": "error", "message": f"the provider of consult {call} is not connected yet"}

        # A new instance starts: it ends what the dead one held, not what a still runs.
        c = instances(gone_after_s=600.0)
        assert recv(k) == {"type": "ended", "consult": call, "reason": "peer_gone"}  # told through a
        assert (consult_row(world, call).reason, consult_row(world, call).ended_by) == ("peer_gone", "hub")
        assert (consult_row(world, left_waiting).reason, consult_row(world, left_waiting).ended_by) == (
            "cancelled",
            "hub",
        )
        assert consult_row(world, elsewhere).state == "waiting"
        assert sockets(world) == {("kiosk", world.north.kiosk): number(a), ("kiosk", world.south.kiosk): number(a)}

        # A new consult on the surviving instance works, whichever live instance serves the provider.
        again = str(uuid.uuid4())
        k.send_text(ask(again))
        assert recv(k) == {"type": "queued", "consult": again, "position": 1, "estimate_s": None}
        doc = join(c, world, again)
        with provider_socket(doc, again) as p2, pinging(p2):
            assert recv(k)["type"] == "joined"
            send(k, {"type": "offer", "consult": again, "sdp": big_sdp()})
            assert recv(p2)["type"] == "offer"
            send(p2, {"type": "answer", "consult": again, "sdp": "v=0 answer"})
            assert recv(k)["sdp"] == "v=0 answer"
            send(p2, {"type": "end", "consult": again, "reason": "finished"})
            assert recv(k) == {"type": "ended", "consult": again, "reason": "finished"}
    for consult_id in (call, left_waiting, again):
        ends = [json.loads(d or "{}") for a, _, d in audit_actions(world, consult_id) if a == "end_consult"]
        assert len(ends) == 1, (consult_id, ends)
    assert consult_row(world, again).reason == "finished"


def test_a_running_instance_sweeps_a_dead_ones_sockets_and_tells_the_other_side(
    world: World, instances: Instances, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = instances(gone_after_s=2.0), instances(gone_after_s=2.0)
    consult_id = str(uuid.uuid4())
    with kiosk_socket(a, credential(world, world.north.kiosk)) as k, pinging(k):
        k.send_text(ask(consult_id))
        assert recv(k)["type"] == "queued"
        doc = join(b, world, consult_id)
        with provider_socket(doc, consult_id) as p, pinging(p):
            assert recv(k)["type"] == "joined"
            die(b, monkeypatch)
            # a sweeps every gone_after_s: the provider's instance is gone, so is the call, and the kiosk hears it.
            assert recv(k, timeout=15) == {"type": "ended", "consult": consult_id, "reason": "peer_gone"}
        assert ("provider", consult_id) not in sockets(world)
    record = consult_row(world, consult_id)
    assert (record.state, record.reason, record.ended_by) == ("ended", "peer_gone", "hub")
    assert [a for a, _, _ in audit_actions(world, consult_id)].count("end_consult") == 1


def test_an_instance_that_loses_its_listening_connection_listens_again_and_keeps_its_calls(
    world: World, instances: Instances
) -> None:
    a, b = instances(gone_after_s=600.0), instances(gone_after_s=600.0)
    conn = world.connect()

    def listener(app: FastAPI) -> int | None:
        """The server process of the instance's listening connection: the one holding its lock."""
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
            "AND classid = ? AND objid = CAST(? AS oid)",
            (RELAY_LOCK_CLASS, number(app)),
        ).fetchone()
        return None if row is None else int(row[0])

    consult_id = str(uuid.uuid4())
    with kiosk_socket(a, credential(world, world.north.kiosk)) as k, pinging(k):
        k.send_text(ask(consult_id))
        assert recv(k)["type"] == "queued"
        doc = join(b, world, consult_id)
        with provider_socket(doc, consult_id) as p, pinging(p):
            assert recv(k)["type"] == "joined"
            cut = listener(b)
            assert cut is not None
            conn.execute("SELECT pg_terminate_backend(?)", (cut,))  # a database restart, a network blip
            wait_until(lambda: listener(b) not in (None, cut), "b to listen again")
            send(k, {"type": "offer", "consult": consult_id, "sdp": "v=0 after the blip"})
            assert recv(p, timeout=10)["sdp"] == "v=0 after the blip"
            send(p, {"type": "answer", "consult": consult_id, "sdp": "v=0 answer"})
            assert recv(k, timeout=10)["sdp"] == "v=0 answer"
            send(p, {"type": "end", "consult": consult_id, "reason": "finished"})
            assert recv(k, timeout=10) == {"type": "ended", "consult": consult_id, "reason": "finished"}
    assert (consult_row(world, consult_id).reason, consult_row(world, consult_id).ended_by) == ("finished", "provider")
