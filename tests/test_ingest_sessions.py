"""A hub instance that dies leaves persistent sessions in the broker's shared subscription, which the broker goes
on feeding; a live instance ends them, and from then on every message reaches the living."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from device.protocol.endpoints import BrokerUrl
from hub.broker import MosquittoProcess
from hub.db import PostgresLocation, connect
from hub.db.lease import InstanceNameTaken, dead_instances, forget_instance, register_instance
from hub.ingest_sessions import BrokerLogin, end_session
from tests.harness import Producer, assert_delivered_exactly_once, ingest_thread, kiosk_agent, wait_until
from tests.postgres import PostgresServer


def test_a_dead_instances_sessions_are_ended_and_the_live_one_then_gets_every_message(
    tmp_path: Path, postgres_server: PostgresServer, mosquitto: MosquittoProcess
) -> None:
    db = PostgresLocation(postgres_server.fresh_database())
    url = BrokerUrl.parse(mosquitto.url)
    with ingest_thread(db, url, client_id="hub-ingest:a:1"):
        pass  # instance a's worker joined the shared subscription; its session outlives it (7 days)
    a, b = connect(db), connect(db)
    try:
        register_instance(a, "a", [(str(url), "hub-ingest:a:1")], time.time())
        register_instance(b, "b", [(str(url), "hub-ingest:b:1")], time.time())
        assert dead_instances(b, "b") == []  # a runs: its name's lock is held
        a.close()  # a's machine is gone, and its database session with it
        ((name, sessions),) = dead_instances(b, "b")
        assert name == "a" and sessions == [(str(url), "hub-ingest:a:1")]
        assert all(end_session(BrokerLogin(BrokerUrl.parse(broker)), client) for broker, client in sessions)
        forget_instance(b, "a")
        assert dead_instances(b, "b") == []

        # b alone in the group now: nothing the kiosk sends waits in a's old session for a receipt deadline.
        agent_settings = {"heartbeat_s": 3600.0, "receipt_timeout_s": 30.0}
        with (
            ingest_thread(db, url, client_id="hub-ingest:b:1"),
            kiosk_agent(tmp_path / "k", "k-one", url, **agent_settings) as agent,
        ):
            producer = Producer(agent.outbox, 40, 0.01)
            producer.run()
            wait_until(lambda: agent.outbox.backlog().items == 0, 90, "the outbox to drain")
            assert agent.forwarder.stats.resends == 0  # with a's session left in place, half were resent at 30 s
        assert_delivered_exactly_once(db, "k-one", producer.sent)
    finally:
        b.close()


def test_two_running_instances_cannot_share_a_name(postgres_server: PostgresServer) -> None:
    db = PostgresLocation(postgres_server.fresh_database())
    first, second = connect(db), connect(db)
    try:
        register_instance(first, "web1", [], time.time())
        with pytest.raises(InstanceNameTaken, match="web1"):
            register_instance(second, "web1", [], time.time())
    finally:
        first.close()
        second.close()
