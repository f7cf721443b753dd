"""Backoff per cause (issue 25, 4): "no matching subscribers" is not a connection failure.

A restarted broker answers PUBACK 0x10 until the hub's ingest has subscribed again. The kiosk used to advance
its reconnect backoff on each of those (four per resend round, one per message of the window), so within a
few rounds its resends waited 30 to 60 s, and commits resumed 32 to 50 s after a broker kill instead of about
one second. Against a real Mosquitto with no subscriber, then the hub's real ingest subscribing: the reconnect
backoff is never asked for a delay, the resend backoff is, once per round, and delivery resumes within a round
or two of ingest subscribing. Counted, not timed (the time is printed for the record).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from random import Random

from device.agent import AgentConfig, KioskAgent
from device.outbox import Outbox
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.protocol.retry import Backoff
from device.simulate import single_reading
from tests.harness import assert_delivered_exactly_once, ingest_thread, wait_until

KIOSK = "k-backoff"
ITEMS = 2000  # four full messages of 500: the whole window comes back 0x10 each round


class CountingBackoff(Backoff):
    """A Backoff that counts the delays it was asked for."""

    def __init__(self, initial_s: float, maximum_s: float) -> None:
        super().__init__(initial_s=initial_s, maximum_s=maximum_s)
        self.delays = 0

    def next_delay(self) -> float:
        self.delays += 1
        return super().next_delay()


def test_no_matching_subscribers_backs_off_resends_not_reconnects(tmp_path: Path, broker_url: BrokerUrl) -> None:
    db = tmp_path / "hub.db"
    box = Outbox(tmp_path / "k" / "outbox.db", KIOSK)
    rng = Random(4)
    sent = [encode(e) for e in box.enqueue_many([("observations", single_reading(rng, datetime.now(UTC)))] * ITEMS)]
    box.close()
    agent = KioskAgent(AgentConfig(kiosk_id=KIOSK, broker=broker_url, data_dir=tmp_path / "k", heartbeat_s=3600.0))
    reconnect = agent.forwarder.config.reconnect = CountingBackoff(0.5, 60.0)
    resend = agent.forwarder.config.resend = CountingBackoff(0.5, 60.0)
    stats = agent.forwarder.stats
    agent.start()
    try:
        # No ingest: the broker has no subscriber for the kiosk's uplink, and says so in every PUBACK.
        wait_until(lambda: stats.resends >= 3, 60, "three resend rounds answered 'no matching subscribers'")
        assert reconnect.delays == 0, "a PUBACK 0x10 advanced the reconnect backoff"
        assert stats.connects == 1 and stats.connect_failures == 0
        assert stats.unrouted >= 3 * 4 - 1  # about the whole window, each round
        assert resend.delays == stats.resends or resend.delays == stats.resends + 1  # once per round, not per message
        assert agent.forwarder._receipt_timeout == agent.forwarder.config.receipt_timeout_s  # the hub was not silent
        assert agent.outbox.backlog().items == ITEMS
        rounds = stats.resends
        with ingest_thread(db, broker_url):
            subscribed = time.monotonic()
            wait_until(lambda: agent.outbox.backlog().items == 0, 120, "delivery once ingest subscribed")
            took = time.monotonic() - subscribed
        print(
            f"after {rounds} rounds without a subscriber (resend delay then up to "
            f"{min(60.0, 0.5 * 2 ** (resend.delays - 1)):g} s): all {ITEMS} receipted {took:.2f} s after ingest "
            f"subscribed, {stats.resends - rounds} more round(s)"
        )
        # Delivery resumed at the next round (or the one after, if ingest subscribed while one was in flight).
        assert stats.resends - rounds <= 2
        assert reconnect.delays == 0 and stats.connects == 1
        assert resend.delays <= stats.resends + 1
    finally:
        agent.stop()
    assert_delivered_exactly_once(db, KIOSK, sent)


def test_a_receipt_resets_the_resend_backoff(tmp_path: Path, broker_url: BrokerUrl) -> None:
    """After ingest is back the next refusal starts again at the first delay, not where the last outage left it."""
    db = tmp_path / "hub.db"
    agent = KioskAgent(AgentConfig(kiosk_id=KIOSK, broker=broker_url, data_dir=tmp_path / "k", heartbeat_s=3600.0))
    resend = agent.forwarder.config.resend = CountingBackoff(0.5, 60.0)
    stats = agent.forwarder.stats
    rng = Random(5)
    sent: list[bytes] = []
    agent.start()
    try:
        sent.append(encode(agent.outbox.enqueue("observations", single_reading(rng, datetime.now(UTC)))))
        wait_until(lambda: stats.resends >= 2, 60, "two rounds answered 'no matching subscribers'")
        assert resend._attempt >= 2
        with ingest_thread(db, broker_url):
            wait_until(lambda: agent.outbox.backlog().items == 0, 60, "delivery once ingest subscribed")
            assert resend._attempt == 0
            sent.append(encode(agent.outbox.enqueue("observations", single_reading(rng, datetime.now(UTC)))))
            wait_until(lambda: agent.outbox.backlog().items == 0, 60, "the next reading")
    finally:
        agent.stop()
    assert_delivered_exactly_once(db, KIOSK, sent)
