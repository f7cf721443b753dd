"""Kiosk -> real Mosquitto -> hub ingest -> SQLite: exactly once, in order, garbage dead-lettered."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device.forwarder import Forwarder, ForwarderConfig
from device.outbox import Outbox
from device.protocol import Topics, parse_receipt
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.simulate import DEVICES, single_reading
from hub.db import Location, PostgresLocation
from hub.store import HubStore
from tests.harness import (
    Producer,
    assert_delivered_exactly_once,
    hub_count,
    hub_rows,
    ingest_thread,
    kiosk_agent,
    wait_until,
)
from tests.postgres import PostgresServer


def client(url: BrokerUrl, name: str) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5
    )
    c.connect(url.host, url.port)
    c.loop_start()
    return c


def test_readings_arrive_exactly_once_in_order_byte_for_byte(
    hub_database: Location, tmp_path: Path, broker_url: BrokerUrl
) -> None:
    db = hub_database
    rng = random.Random(1)
    with ingest_thread(db, broker_url), kiosk_agent(tmp_path / "k1", "k1", broker_url, heartbeat_s=3600) as agent:
        sent = [
            agent.outbox.enqueue("observations", rng.choice(DEVICES).reading(rng, datetime.now(UTC)))
            for _ in range(200)
        ]
        wait_until(lambda: agent.outbox.backlog().items == 0, 20, "the kiosk outbox to drain")
    rows = hub_rows(db, "k1")
    observations = [(s, raw) for s, raw in rows if json.loads(raw)["kind"] == "observations"]
    assert observations == [(e.seq, encode(e).decode()) for e in sent]
    store = HubStore(db)
    total = sum(len(e.payload.observations) for e in sent)  # type: ignore[union-attr]
    assert store.counts()["observations"] == total
    kiosk = store.kiosk("k1")
    assert kiosk is not None and kiosk["software_version"] == "0.1.0" and kiosk["online"] == 0


def test_a_backlog_is_drained_in_batches(hub_database: Location, tmp_path: Path, broker_url: BrokerUrl) -> None:
    db = hub_database
    rng = random.Random(2)
    box = Outbox(tmp_path / "k2" / "outbox.db", "k2")
    sent = box.enqueue_many([("observations", single_reading(rng, datetime.now(UTC)))] * 3000)
    box.close()
    with ingest_thread(db, broker_url) as worker, kiosk_agent(tmp_path / "k2", "k2", broker_url) as agent:
        wait_until(lambda: agent.outbox.backlog().items == 0, 30, "the backlog to drain")
        assert agent.forwarder.stats.messages_sent < 3000 / 50  # packed, not one message per reading
        assert worker.stats.duplicates == 0
    assert [s for s, _ in hub_rows(db, "k2") if s <= 3000] == [e.seq for e in sent]


def test_duplicates_are_absorbed_and_receipted_again(
    hub_database: Location, tmp_path: Path, broker_url: BrokerUrl
) -> None:
    db = hub_database
    box = Outbox(tmp_path / "o.db", "k3")
    env = box.enqueue("observations", single_reading(random.Random(3), datetime.now(UTC)))
    receipts: list[list[str]] = []
    listener = client(broker_url, "listener")
    listener.on_message = lambda _c, _u, m: receipts.append(parse_receipt(m.payload).accepted)
    listener.subscribe(Topics.receipt("k3"), qos=1).__class__  # noqa: B018
    with ingest_thread(db, broker_url):
        pub = client(broker_url, "k3-raw")
        for _ in range(3):
            pub.publish(Topics.uplink("k3", "observations"), encode(env), qos=1).wait_for_publish(5)
        pub.publish(Topics.uplink("k3", "batch"), encode(env) + b"\n" + encode(env), qos=1).wait_for_publish(5)
        wait_until(lambda: sum(len(r) for r in receipts) >= 5, 10, "a receipt for every copy")
        pub.loop_stop()
    listener.loop_stop()
    assert {i for r in receipts for i in r} == {env.id}
    assert len(hub_rows(db, "k3")) == 1
    assert HubStore(db).counts()["observations"] == 1


def test_garbage_is_dead_lettered_and_ingest_goes_on(
    hub_database: Location, tmp_path: Path, broker_url: BrokerUrl
) -> None:
    db = hub_database
    box = Outbox(tmp_path / "o.db", "k4")
    good = box.enqueue("observations", single_reading(random.Random(4), datetime.now(UTC)))
    other = Outbox(tmp_path / "o2.db", "k5").enqueue(
        "observations", single_reading(random.Random(5), datetime.now(UTC))
    )
    wrong_schema = json.loads(encode(good))
    wrong_schema["payload"]["observations"][0]["unit"] = "mm[Hg]"
    wrong_schema["id"] = other.id.replace(other.id[-4:], "beef")
    garbage = [
        (Topics.uplink("k4", "observations"), b"this is not json"),
        (Topics.uplink("k4", "observations"), json.dumps(wrong_schema).encode()),
        (Topics.uplink("k4", "observations"), b"{" + b" " * (2 * 1024 * 1024) + b"}"),
        (Topics.uplink("k4", "observations"), encode(other)),  # k5's envelope on k4's topic
        (Topics.uplink("k4", "status"), encode(good)),  # kind does not match topic
        ("kiosk/k4/up/observations/extra", encode(good)),
        (Topics.uplink("k4", "batch"), b"\n".join([b"\xff\xfe", encode(good)])),
    ]
    receipts: list[bytes] = []
    listener = client(broker_url, "listener")
    listener.on_message = lambda _c, _u, m: receipts.append(m.payload)
    listener.subscribe(Topics.receipt("k4"), qos=1)
    with ingest_thread(db, broker_url) as worker:
        pub = client(broker_url, "attacker")
        for topic, payload in garbage:
            pub.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_until(lambda: worker.stats.messages >= len(garbage) - 1, 10, "ingest to see every message")
        wait_until(lambda: len(hub_rows(db, "k4")) == 1, 10, "the good envelope in the batch to be stored")
        # Ingest is still alive and storing after all that.
        pub.publish(Topics.uplink("k5", "observations"), encode(other), qos=1).wait_for_publish(5)
        wait_until(lambda: len(hub_rows(db, "k5")) == 1, 10, "a valid message after the garbage")
        pub.loop_stop()
    listener.loop_stop()
    reasons = [r["reason"] for r in HubStore(db).dead_letters()]
    expected = [
        "invalid envelope: (envelope): Invalid JSON",
        "invalid envelope: payload.observations.0: unit 'mm[Hg]' is not valid for 8867-4",
        "payload of 2097154 bytes exceeds the hub's limit of 1048576",
        "envelope kiosk 'k5' does not match topic kiosk 'k4'",
        "envelope kind 'observations' published on topic for 'status'",
        "topic 'kiosk/k4/up/observations/extra' is not kiosk/{kiosk-id}/up/{kind}",
    ]
    for text in expected:
        assert sum(text in r for r in reasons) >= 1, f"no dead letter says {text!r}; got {reasons}"
    assert len(reasons) == 7  # the batch's undecodable line too
    big = next(d for d in HubStore(db).dead_letters() if d["size"] > 2_000_000)
    assert big["raw_truncated"] == 1 and len(big["raw"]) == 64 * 1024
    rejected = [r for raw in receipts for r in parse_receipt(raw).rejected]
    assert wrong_schema["id"] in [r.id for r in rejected]  # the kiosk is told, so it stops resending
    # Told to the publisher only (k4's downlink); it can only touch ids in k4's own outbox.
    assert any(r.id == other.id and "does not match topic kiosk" in r.reason for r in rejected)


def test_rejected_items_leave_the_outbox_into_the_rejected_table(
    hub_database: Location, tmp_path: Path, broker_url: BrokerUrl
) -> None:
    """A kiosk running an older contract: the hub refuses, the kiosk keeps the item for staff and alerts."""
    db = hub_database
    with kiosk_agent(tmp_path / "k6", "k6", broker_url, heartbeat_s=3600) as agent:
        env = agent.outbox.enqueue("observations", single_reading(random.Random(6), datetime.now(UTC)))
        # Simulate a hub-side rule the kiosk does not know: corrupt the stored body's unit.
        conn = agent.outbox._db
        with agent.outbox._lock:
            conn.execute(
                "UPDATE outbox SET body = CAST(replace(body, '\"/min\"', '\"kg\"') AS BLOB) WHERE id = ?", (env.id,)
            )
        with ingest_thread(db, broker_url):
            wait_until(lambda: agent.outbox.rejected() != [], 15, "the rejection to reach the kiosk")
        assert agent.outbox.pending() == [] or all(i.kind == "status" for i in agent.outbox.pending())
        assert "rejected_by_hub" in [a.code for a in agent.outbox.alerts()]
    assert hub_rows(db, "k6") == [] or all(json.loads(r)["kind"] == "status" for _, r in hub_rows(db, "k6"))


def test_workers_side_by_side_share_the_load_exactly_once(
    hub_database: Location, tmp_path: Path, broker_url: BrokerUrl
) -> None:
    """Two ingest workers on one shared subscription: the broker splits the stream, SQLite serialises commits."""
    db = hub_database
    rng = random.Random(8)
    sent: dict[str, list[bytes]] = {}
    for kiosk in ("a", "b", "c", "d"):
        box = Outbox(tmp_path / kiosk / "outbox.db", kiosk)
        envs = box.enqueue_many([("observations", single_reading(rng, datetime.now(UTC))) for _ in range(400)])
        sent[kiosk] = [encode(e) for e in envs]
        box.close()
    with (
        ingest_thread(db, broker_url, client_id="w1") as w1,
        ingest_thread(db, broker_url, client_id="w2") as w2,
        kiosk_agent(tmp_path / "a", "a", broker_url, batch_max_items=5, heartbeat_s=3600) as a,
        kiosk_agent(tmp_path / "b", "b", broker_url, batch_max_items=5, heartbeat_s=3600) as b,
        kiosk_agent(tmp_path / "c", "c", broker_url, batch_max_items=5, heartbeat_s=3600) as c,
        kiosk_agent(tmp_path / "d", "d", broker_url, batch_max_items=5, heartbeat_s=3600) as d,
    ):
        for agent in (a, b, c, d):
            wait_until(lambda agent=agent: agent.outbox.backlog().items == 0, 30, f"kiosk {agent.config.kiosk_id}")
        assert w1.stats.new > 0 and w2.stats.new > 0, (w1.stats, w2.stats)
        assert w1.stats.duplicates == w2.stats.duplicates == 0
    for kiosk, bodies in sent.items():
        stored = [raw.encode() for _, raw in hub_rows(db, kiosk) if json.loads(raw)["kind"] == "observations"]
        assert stored == bodies


def test_an_id_reused_for_other_content_is_refused_not_merged(
    hub_database: Location, tmp_path: Path, broker_url: BrokerUrl
) -> None:
    db = hub_database
    box = Outbox(tmp_path / "o.db", "k7")
    env = box.enqueue("observations", single_reading(random.Random(9), datetime.now(UTC)))
    original = encode(env)
    altered = original.replace(b'"/min"', b'"/min"', 1).replace(b'"value":', b'"value":1', 1)
    assert altered != original
    receipts: list[bytes] = []
    listener = client(broker_url, "listener")
    listener.on_message = lambda _c, _u, m: receipts.append(m.payload)
    listener.subscribe(Topics.receipt("k7"), qos=1)
    with ingest_thread(db, broker_url):
        pub = client(broker_url, "k7-raw")
        pub.publish(Topics.uplink("k7", "observations"), original, qos=1).wait_for_publish(5)
        wait_until(lambda: len(receipts) == 1, 10, "the first receipt")
        pub.publish(Topics.uplink("k7", "observations"), altered, qos=1).wait_for_publish(5)
        wait_until(lambda: len(receipts) == 2, 10, "the second receipt")
        pub.loop_stop()
    listener.loop_stop()
    assert hub_rows(db, "k7") == [(1, original.decode())]
    (rejection,) = parse_receipt(receipts[1]).rejected
    assert rejection.id == env.id and "different content" in rejection.reason
    assert "already stored with different content" in HubStore(db).dead_letters()[0]["reason"]


def test_presence_follows_the_last_will(hub_database: Location, tmp_path: Path, broker_url: BrokerUrl) -> None:
    db = hub_database
    with ingest_thread(db, broker_url):
        with kiosk_agent(tmp_path / "k8", "k8", broker_url, heartbeat_s=3600) as agent:
            assert agent.forwarder.connected.wait(10)
            wait_until(lambda: (HubStore(db).kiosk("k8") or {}).get("online") == 1, 10, "the kiosk to show online")
        wait_until(lambda: (HubStore(db).kiosk("k8") or {}).get("online") == 0, 10, "the kiosk to show offline")
        pub = client(broker_url, "garbage")
        pub.publish(Topics.presence("k8"), b'{"online": "yes"}', qos=1, retain=True).wait_for_publish(5)
        pub.publish(Topics.presence("k9"), b'{"online": true}', qos=1).wait_for_publish(5)
        wait_until(lambda: (HubStore(db).kiosk("k9") or {}).get("online") == 1, 10, "a later valid presence")
        pub.loop_stop()
    assert (HubStore(db).kiosk("k8") or {}).get("online") == 0  # a non-boolean did not flip it


def test_readings_taken_while_a_message_awaits_its_receipt_leave_together_and_the_next_leaves_at_once(
    hub_database: Location, tmp_path: Path, broker_url: BrokerUrl
) -> None:
    """While anything is in flight the forwarder is not woken per reading; the receipt sends what piled up.

    The poll interval is a minute, so a reading that missed its wake-up would wait that long.
    """
    db = hub_database
    rng = random.Random(11)
    box = Outbox(tmp_path / "q" / "outbox.db", "q")
    forwarder = Forwarder(
        Outbox(box.path, "q"),
        ForwarderConfig(kiosk_id="q", broker=broker_url, poll_interval_s=60, receipt_timeout_s=60),
    )
    box.on_enqueue = forwarder.wake
    ingest = {"client_id": "quiet-ingest", "group": "quiet"}
    thread = threading.Thread(target=forwarder.run, daemon=True)
    with ingest_thread(db, broker_url, **ingest):
        pass  # the hub's session and shared subscription now exist; the broker keeps what comes while it is away
    thread.start()
    try:
        wait_until(forwarder.connected.is_set, 10, "the forwarder to connect")
        first = box.enqueue("observations", single_reading(rng, datetime.now(UTC)))
        wait_until(lambda: forwarder.stats.broker_acks == 1, 10, "the broker to take the first reading")
        piled = [box.enqueue("observations", single_reading(rng, datetime.now(UTC))) for _ in range(20)]
        time.sleep(0.5)
        assert forwarder.stats.messages_sent == 1, "readings went out while the first awaited its receipt"
        with ingest_thread(db, broker_url, **ingest):
            wait_until(lambda: box.backlog().items == 0, 10, "the receipts for the first and the piled-up readings")
            assert forwarder.stats.messages_sent == 2  # the twenty travelled together
            last = box.enqueue("observations", single_reading(rng, datetime.now(UTC)))
            wait_until(lambda: box.backlog().items == 0, 10, "a reading enqueued after the receipts")
    finally:
        forwarder.stop()
        thread.join(10)
        forwarder.outbox.close()
        box.close()
    assert [raw.encode() for _, raw in hub_rows(db, "q")] == [encode(e) for e in (first, *piled, last)]


def test_postgresql_sessions_cut_mid_stream_lose_and_double_nothing(
    postgres_server: PostgresServer, tmp_path: Path, broker_url: BrokerUrl
) -> None:
    """The server ends every hub session three times while a kiosk streams (what a restart or a failover of the
    database looks like from the hub): ingest opens a new session, retries the batch, and nothing is lost or
    stored twice."""
    url = postgres_server.fresh_database()
    db = PostgresLocation(url)
    name = url.rsplit("/", 1)[1]
    fast = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0}
    with ingest_thread(db, broker_url), kiosk_agent(tmp_path / "k", "k-cut", broker_url, **fast) as agent:
        producer = Producer(agent.outbox, 600, 0.01)
        producer.start()
        for cut in range(3):
            wait_until(lambda n=cut: hub_count(db, "k-cut") >= 100 * (n + 1), 60, f"readings before cut {cut + 1}")
            with postgres_server.admin() as admin:
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (name,)
                ).fetchone()
            assert ended is not None and ended[0] >= 1  # the ingest worker's session at least
        producer.join(60)
        wait_until(lambda: agent.outbox.backlog().items == 0, 60, "the kiosk outbox to drain")
    assert_delivered_exactly_once(db, "k-cut", producer.sent)
