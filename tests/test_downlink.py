"""A provider's answer reaches the kiosk through real Mosquitto exactly once, also when the kiosk was offline."""

from __future__ import annotations

from pathlib import Path

from device.protocol.downlink import CaseAnswerBody
from device.protocol.endpoints import BrokerUrl
from hub import downlink
from hub.db import Location, immediate
from hub.store import HubStore
from tests.harness import ingest_thread, kiosk_agent, wait_until

FAST = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0, "connect_timeout_s": 3.0}
CASE = "0b1e8c2a-1111-4222-8333-444455556666"


def answer_for(db: Location, kiosk: str, message: str) -> str:
    store = HubStore(db)
    try:
        with immediate(store.conn) as conn:
            # The case it answers, as ingest stores a kiosk's case (PostgreSQL holds the answer to its key).
            conn.execute(
                "INSERT INTO cases (id, message_id, kiosk, subject, questionnaire_id, questionnaire_version, answers, "
                "text, attachments, vitals, created, received_at, state) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (id) DO NOTHING",
                (CASE, "m-case", kiosk, "P1", "general-intake", 1, "[]", "", "[]", "[]", "2026-01-01T00:00:00Z", 0.0,
                 "answered"),
            )  # fmt: skip
            body = CaseAnswerBody(case=CASE, subject="P1", message=message, plan="", request="none")
            return downlink.enqueue_case_answer(conn, kiosk, body, 0.0)
    finally:
        store.close()


def delivered(db: Location, message_id: str) -> bool:
    store = HubStore(db)
    try:
        row = store.conn.execute("SELECT delivered_at FROM downlink WHERE id = ?", (message_id,)).fetchone()
        return row is not None and row[0] is not None
    finally:
        store.close()


def test_an_answer_written_while_the_kiosk_was_away_arrives_once_when_it_returns(
    tmp_path: Path, broker_url: BrokerUrl, hub_database: Location
) -> None:
    db = hub_database
    with ingest_thread(db, broker_url, downlink_check_s=0.1):
        # The kiosk has never connected: no broker session holds anything for it.
        first = answer_for(db, "k-away", "Rest and drink water.")
        with kiosk_agent(tmp_path / "k", "k-away", broker_url, **FAST) as agent:
            wait_until(lambda: delivered(db, first), 20, "the kiosk to confirm the answer")
            (kept,) = agent.inbox.messages()
            assert kept.id == first and kept.body.message == "Rest and drink water."
        # Offline again: a second answer waits at the hub; the kiosk's return brings it, and only it.
        second = answer_for(db, "k-away", "Come in on Monday.")
        with kiosk_agent(tmp_path / "k", "k-away", broker_url, **FAST) as agent:
            wait_until(lambda: delivered(db, second), 20, "the kiosk to confirm the second answer")
            assert [m.body.message for m in agent.inbox.messages()] == ["Rest and drink water.", "Come in on Monday."]


def test_a_resent_message_is_stored_once_and_acknowledged_again(
    tmp_path: Path, broker_url: BrokerUrl, hub_database: Location
) -> None:
    db = hub_database
    with ingest_thread(db, broker_url, downlink_check_s=0.1), kiosk_agent(tmp_path / "k", "k-dup", broker_url,
                                                                           **FAST) as agent:  # fmt: skip
        message_id = answer_for(db, "k-dup", "Take your tablets.")
        wait_until(lambda: delivered(db, message_id), 20, "the first delivery")
        store = HubStore(db)
        with immediate(store.conn) as conn:  # as if the kiosk's ack had been lost: the hub sends it again
            conn.execute("UPDATE downlink SET delivered_at = NULL, last_sent_at = NULL WHERE id = ?", (message_id,))
        store.close()
        wait_until(lambda: delivered(db, message_id), 20, "the repeat to be acknowledged")
        assert len(agent.inbox.messages()) == 1


def test_only_the_addressed_kiosk_can_confirm_and_garbage_acks_change_nothing(
    tmp_path: Path, broker_url: BrokerUrl, hub_database: Location
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from device.protocol import Topics

    db = hub_database
    with ingest_thread(db, broker_url, downlink_check_s=0.1) as worker:
        message_id = answer_for(db, "k-target", "For k-target only.")
        intruder = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="intruder")
        intruder.connect(broker_url.host, broker_url.port)
        intruder.loop_start()
        try:
            for topic, payload in [
                (Topics.uplink("k-other", "delivered"), f'{{"kiosk": "k-other", "ids": ["{message_id}"]}}'),
                (Topics.uplink("k-target", "delivered"), f'{{"kiosk": "k-other", "ids": ["{message_id}"]}}'),
                (Topics.uplink("k-target", "delivered"), "not json"),
            ]:
                intruder.publish(topic, payload.encode(), qos=1).wait_for_publish(5)
            # A real envelope after them: once it is stored, the acks before it have been handled.
            intruder.publish(Topics.uplink("k-target", "status"), b"{}", qos=1).wait_for_publish(5)
            wait_until(lambda: worker.stats.messages >= 1, 10, "ingest to read past the acks")
        finally:
            intruder.loop_stop()
            intruder.disconnect()
    assert not delivered(db, message_id)
