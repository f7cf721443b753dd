"""A provisioned kiosk turned hostile: what one kiosk's bundle lets an attacker try, through the real broker and hub.

The attacker holds kiosk-a's certificate, key and password. Kiosk-b is an honest neighbour and ingest
is the hub's own worker. Whatever kiosk-a tries, these hold: no other client is disturbed, ingest never
stalls, nothing is stored that the published contract refuses, and nothing that is not kiosk-a's own
is readable by it. Each test names the finding of issue 18 it closes.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.outbox import Outbox
from device.protocol import EnvelopeError, parse_envelope
from device.protocol.envelope import encode
from device.protocol.topics import Topics
from device.simulate import single_reading
from hub.cli import main as hub_main
from hub.fleet.broker_auth import INGEST_USER
from hub.fleet.identities import ingest_password
from hub.store import HubStore
from tests.fleet import Fleet, Probe, agent_overrides, hub_probe, kiosk_probe, refused
from tests.harness import assert_delivered_exactly_once, hub_rows, kiosk_agent, wait_until
from tests.test_schema_agreement import JUDGE


def _as_kiosk_a(fleet: Fleet, *, client_id: str, user: str = "kiosk-a", password: str | None = None) -> Probe:
    """kiosk-a's certificate, with whatever login and client id the attacker chooses."""
    ident = fleet.identities["kiosk-a"]
    return (
        Probe(client_id)
        .tls(ident, ca=ident.ca_file)
        .login(user, password if password is not None else ident.mqtt_password())
        .connect(fleet.kiosk_url)
    )


def _deliver_from_b(fleet: Fleet, tmp_path: Path, count: int = 20) -> None:
    """The honest neighbour sends `count` readings; each is stored once, in order."""
    ident = fleet.identities["kiosk-b"]
    with kiosk_agent(tmp_path / "kiosk-b", "kiosk-b", fleet.kiosk_url, **agent_overrides(ident)) as b:
        rng = random.Random(7)
        sent = [encode(b.outbox.enqueue("observations", single_reading(rng, datetime.now(UTC)))) for _ in range(count)]
        wait_until(lambda: b.outbox.backlog().items == 0, 20, "kiosk-b's readings receipted")
    assert_delivered_exactly_once(fleet.db, "kiosk-b", sent)


def test_a_kiosk_cannot_take_another_clients_id(tmp_path: Path, fleet_on_each_store: Fleet) -> None:
    """Finding 2: client id `kiosk-b` unseated kiosk B; `hub-ingest-1` fought ingest for its connection."""
    fleet = fleet_on_each_store
    with fleet.ingest() as ingest:
        b = kiosk_probe(fleet, "kiosk-b")
        assert b.connected.is_set(), b.connack
        try:
            for stolen in ("kiosk-b", "kiosk-b:renew", f"{INGEST_USER}:1", INGEST_USER, "kiosk-a-but-longer", ""):
                refused(lambda stolen=stolen: _as_kiosk_a(fleet, client_id=stolen))  # type: ignore[misc]
            own = _as_kiosk_a(fleet, client_id="kiosk-a")  # the control: its own id still works
            assert own.connected.is_set(), own.connack
            own.close()
            time.sleep(0.5)  # a takeover disconnects the earlier holder at once; give it the chance
            assert not b.disconnected.is_set(), "kiosk-b was disconnected by a client taking its id"
            assert ingest.connected.is_set(), "ingest lost its connection to a client taking its id"
        finally:
            b.close()
        _deliver_from_b(fleet, tmp_path)


def test_a_kiosks_certificate_must_name_its_login(fleet: Fleet) -> None:
    """Finding 4: kiosk A's certificate with kiosk B's user name and password was accepted, and stored as B."""
    b = fleet.identities["kiosk-b"]
    for client_id in ("kiosk-b", "kiosk-a"):
        refused(lambda c=client_id: _as_kiosk_a(fleet, client_id=c, user="kiosk-b", password=b.mqtt_password()))  # type: ignore[misc]
    assert hub_rows(fleet.db, "kiosk-b") == []


def test_a_kiosks_password_alone_does_not_work_on_the_hubs_loopback_listener(fleet: Fleet) -> None:
    """Finding 5: the hub's own listener has no certificates; a kiosk's password alone got in there."""
    a = fleet.identities["kiosk-a"]
    for client_id in ("kiosk-a", "kiosk-a:x"):
        refused(lambda c=client_id: Probe(c).login("kiosk-a", a.mqtt_password()).connect(fleet.hub_url))  # type: ignore[misc]
    # The hub's user still gets in there (the control), and only under its own client ids.
    ok = hub_probe(fleet)
    assert ok.connected.is_set(), ok.connack
    ok.close()
    refused(lambda: Probe("kiosk-b").login(INGEST_USER, ingest_password(fleet.paths)).connect(fleet.hub_url))


def test_a_kiosk_cannot_join_ingests_shared_subscription(tmp_path: Path, fleet: Fleet) -> None:
    """Finding 3: `$share/ingest/kiosk/+/up/#` with a persistent session took half of every kiosk's uplinks."""
    with fleet.ingest():
        a = Probe("kiosk-a")
        ident = fleet.identities["kiosk-a"]
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        a.tls(ident, ca=ident.ca_file).login("kiosk-a", ident.mqtt_password())
        a.client.connect(fleet.kiosk_url.host, fleet.kiosk_url.port, clean_start=False, properties=props)
        a.client.loop_start()
        assert a.answered.wait(10) and a.connected.is_set(), a.connack
        taken: list[str] = []
        a.client.on_message = lambda _c, _u, m: taken.append(m.topic)
        try:
            for shared in (
                Topics.shared("ingest", Topics.UPLINK_FILTER),
                "$share/ingest/kiosk/kiosk-b/up/#",
                "$share/other/#",
                "$share/mine/kiosk/kiosk-a/down/#",  # even its own downlink: kiosks have no use for shared ones
            ):
                a.ask(lambda s=shared: a.client.subscribe(s, qos=1))  # type: ignore[misc]
                assert a.suback[-1].is_failure, f"{shared}: {a.suback[-1]}"
            _deliver_from_b(fleet, tmp_path, count=40)
            assert taken == []
        finally:
            a.close()


def test_a_kiosk_cannot_leave_retained_messages_on_its_uplinks(fleet_on_each_store: Fleet) -> None:
    """Finding 8: a retained uplink with readings outlived the kiosk, even its revocation."""
    fleet = fleet_on_each_store
    box = Outbox(fleet.hub / "forge.db", "kiosk-a")
    reading = encode(box.enqueue("observations", single_reading(random.Random(8), datetime.now(UTC))))
    box.close()
    a = _as_kiosk_a(fleet, client_id="kiosk-a")
    try:
        for topic in (Topics.uplink("kiosk-a", "observations"), Topics.uplink("kiosk-a", "batch"), "kiosk/kiosk-a/x"):
            a.ask(lambda t=topic: a.client.publish(t, reading, qos=1, retain=True))  # type: ignore[misc]
            assert a.puback[-1].getName() == "Not authorized", (topic, a.puback[-1])
        a.client.publish(Topics.uplink("kiosk-a", "status"), reading, qos=0, retain=True)  # no answer at QoS 0
        # Its presence is the one retained message a kiosk sends (its last will too): the control.
        a.ask(lambda: a.client.publish(Topics.presence("kiosk-a"), b'{"online":true}', qos=1, retain=True))
        # Allowed: "Success", or "No matching subscribers" (0x10) when no one subscribes to presence just now
        # (retained all the same; the late subscriber below reads it). A refusal is 0x80 or above.
        assert a.puback[-1].value < 0x80, a.puback[-1]
    finally:
        a.close()
    assert hub_main(["kiosks", "revoke", "kiosk-a", *fleet.args]) == 0
    # Whoever subscribes later (ingest after a restart) finds no retained uplink.
    late = hub_probe(fleet)
    found: list[str] = []
    late.client.on_message = lambda _c, _u, m: found.append(m.topic)
    try:
        late.ask(lambda: late.client.subscribe(Topics.UPLINK_FILTER, qos=1))
        late.ask(lambda: late.client.subscribe(Topics.PRESENCE_FILTER, qos=1))
        wait_until(lambda: Topics.presence("kiosk-a") in found, 5, "the retained presence (the control)")
        time.sleep(0.3)
    finally:
        late.close()
    assert [t for t in found if t != Topics.presence("kiosk-a")] == []


def _retained_presence(fleet: Fleet, kiosk: str) -> dict[str, Any]:
    probe = hub_probe(fleet)
    got: list[bytes] = []
    probe.client.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    try:
        probe.ask(lambda: probe.client.subscribe(Topics.presence(kiosk), qos=1))
        wait_until(lambda: bool(got), 5, f"{kiosk}'s retained presence")
    finally:
        probe.close()
    return dict(json.loads(got[0]))


def test_a_revoked_kiosk_shows_offline(tmp_path: Path, fleet_on_each_store: Fleet) -> None:
    """Finding 7: revocation cut the kiosk off without its last will, so it stayed 'online' everywhere."""
    fleet = fleet_on_each_store
    ident = fleet.identities["kiosk-a"]
    with fleet.ingest(), kiosk_agent(tmp_path / "kiosk-a", "kiosk-a", fleet.kiosk_url, **agent_overrides(ident)):
        store = HubStore(fleet.db)
        try:
            wait_until(lambda: (store.kiosk("kiosk-a") or {}).get("online") == 1, 10, "kiosk-a online")
            assert _retained_presence(fleet, "kiosk-a") == {"online": True}
            assert hub_main(["kiosks", "revoke", "kiosk-a", *fleet.args]) == 0
            wait_until(lambda: (store.kiosk("kiosk-a") or {}).get("online") == 0, 10, "kiosk-a offline at the hub")
            # What any later subscriber (ingest after a restart, the fleet page's source) reads from the broker,
            # while the revoked kiosk's agent still runs and keeps trying to come back.
            assert _retained_presence(fleet, "kiosk-a") == {"online": False}
            time.sleep(1.0)
            assert (store.kiosk("kiosk-a") or {}).get("online") == 0, "the revoked kiosk came back online"
        finally:
            store.close()


def test_a_kiosk_reads_nothing_that_is_not_its_own_whatever_it_subscribes(fleet: Fleet) -> None:
    a = _as_kiosk_a(fleet, client_id="kiosk-a")
    seen: list[str] = []
    a.client.on_message = lambda _c, _u, m: seen.append(m.topic)
    try:
        for pattern in ("#", "+/#", "kiosk/#", "kiosk/+/down/#", "kiosk/+/up/#", "kiosk/kiosk-b/#", "$SYS/#", "+"):
            a.ask(lambda p=pattern: a.client.subscribe(p, qos=1))  # type: ignore[misc]
        b = kiosk_probe(fleet, "kiosk-b")
        hub = hub_probe(fleet)
        try:
            b.ask(lambda: b.client.publish(Topics.uplink("kiosk-b", "observations"), b"{}", qos=1))
            b.ask(lambda: b.client.publish(Topics.presence("kiosk-b"), b'{"online":true}', qos=1, retain=True))
            hub.ask(lambda: hub.client.publish(Topics.message("kiosk-b"), b"{}", qos=1))
            hub.ask(lambda: hub.client.publish(Topics.receipt("kiosk-b"), b"{}", qos=1))
            hub.ask(lambda: hub.client.publish(Topics.message("kiosk-a"), b"{}", qos=1))  # its own: the control
            wait_until(lambda: Topics.message("kiosk-a") in seen, 5, "kiosk-a's own downlink")
            time.sleep(0.3)
        finally:
            b.close()
            hub.close()
    finally:
        a.close()
    foreign = [t for t in seen if not t.startswith("kiosk/kiosk-a/") and not t.startswith("$SYS/")]
    assert foreign == []
    # Writing where it may not: another kiosk's uplink and presence, any downlink, its own receipts.
    a = _as_kiosk_a(fleet, client_id="kiosk-a")
    try:
        for topic in (
            Topics.uplink("kiosk-b", "observations"),
            Topics.presence("kiosk-b"),
            Topics.receipt("kiosk-a"),
            Topics.receipt("kiosk-b"),
            Topics.config("kiosk-a"),
            "$SYS/broker/x",
            "kiosk",
        ):
            a.ask(lambda t=topic: a.client.publish(t, b"{}", qos=1))  # type: ignore[misc]
            assert a.puback[-1].getName() == "Not authorized", (topic, a.puback[-1])
    finally:
        a.close()


_BIG = (2**53, 2**63, 2**64, 10**400)
_WRONG_TYPES: tuple[Any, ...] = (True, "7", "", None, [], {}, 1.5, -1)


def _mutations(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every field of a valid envelope set to a boundary value or a wrong type, one at a time."""
    out: list[dict[str, Any]] = []

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))
        else:
            for bad in (*_BIG, *_WRONG_TYPES, 2**53 - 1, 0, 1e308, "1970-01-01 00:00:00Z", 0.0):
                if bad == node and type(bad) is type(node):
                    continue
                copy = json.loads(json.dumps(base))
                target = copy
                for step in path[:-1]:
                    target = target[step]
                target[path[-1]] = bad
                out.append(copy)

    walk(base, ())
    return out


def test_hostile_payloads_never_stall_ingest_and_nothing_refused_is_stored(
    tmp_path: Path, fleet_on_each_store: Fleet
) -> None:
    """Findings 1 and 6: a 2^64 `seq` stopped every commit; `true`, `"72"` and Unix times were stored.

    Every field of a reading and of a status, at every boundary and with every wrong type, over the real
    broker: what the contract refuses is dead-lettered, what it accepts is stored once, and ingest goes on.
    """
    fleet = fleet_on_each_store
    box = Outbox(tmp_path / "forge.db", "kiosk-a")
    reading = json.loads(encode(box.enqueue("observations", single_reading(random.Random(9), datetime.now(UTC)))))
    status = json.loads(
        encode(
            box.enqueue(
                "status",
                {"software_version": "1", "outbox_backlog": 0, "outbox_capacity": 10, "uptime_s": 1.0},
            )
        )
    )
    box.close()
    mutated = _mutations(reading) + _mutations(status)
    # Each its own id, so a refusal is not a duplicate of another: the id is a mutation target too, kept where mutated.
    payloads: list[bytes] = []
    for n, envelope in enumerate(mutated):
        if isinstance(envelope.get("id"), str) and envelope["id"] in (reading["id"], status["id"]):
            envelope["id"] = f"{envelope['id'][:-6]}{n:06x}"
        payloads.append(json.dumps(envelope).encode())
    # What the published schema accepts, judged by an outside validator, from the kiosk of the topic (the hub's
    # one other check); the reading and the status break neither of the rules a schema cannot state.
    accepted_ids = [
        doc["id"]
        for doc in (json.loads(raw) for raw in payloads)
        if JUDGE.is_valid(doc) and doc.get("kiosk") == "kiosk-a"
    ]
    for raw in payloads:  # the contract in code says the same (test_schema_agreement.py holds it to that)
        with contextlib.suppress(EnvelopeError):
            assert parse_envelope(raw).id in accepted_ids or json.loads(raw).get("kiosk") != "kiosk-a"
    a = _as_kiosk_a(fleet, client_id="kiosk-a")
    with fleet.ingest() as ingest:
        try:
            for raw in payloads:
                a.client.publish(Topics.uplink("kiosk-a", "observations"), raw, qos=1)
            a.client.publish(Topics.uplink("kiosk-a", "batch"), b"\n".join(payloads), qos=1)
            a.client.publish(Topics.uplink("kiosk-a", "observations"), b"x" * (2 * 1024 * 1024), qos=1)
            a.client.publish(Topics.uplink("kiosk-a", "observations"), b"\xff\xfe{", qos=2)
            store = HubStore(fleet.db)
            try:
                expected_dead = len(payloads) - len(accepted_ids)
                wait_until(lambda: store.counts()["dead_letters"] >= 2 * expected_dead + 2, 30, "every refusal")
            finally:
                store.close()
            _deliver_from_b(fleet, tmp_path)  # ingest did not stall
            assert ingest.stats.commit_failures == 0
        finally:
            a.close()
    stored = [json.loads(raw)["id"] for _, raw in hub_rows(fleet.db, "kiosk-a")]
    missing = set(accepted_ids) - set(stored)
    extra = set(stored) - set(accepted_ids)
    assert not missing and not extra, (  # stored must be exactly what the published schema accepts
        [json.loads(p) for p in payloads if json.loads(p).get("id") in missing][:3],
        [json.loads(p) for p in payloads if json.loads(p).get("id") in extra][:3],
    )
    for _, raw in hub_rows(fleet.db, "kiosk-a"):
        parse_envelope(raw)  # everything stored still passes the contract
