"""Kiosks fail over between several brokers (issue "No single broker either"): Mosquitto does not cluster.

The end-to-end test runs two real Mosquittos, one ingest worker on each writing to the same hub database,
and a kiosk given both. Killing the broker it uses (SIGKILL, mid-stream) moves it to the other; everything
without a receipt is sent again there, and the hub's de-duplication keeps every reading once, in order.
The other tests check what a list may be (refused with a reason before anything starts) and how refusals
are reported when there are several brokers (a refusal is a reason to try the next; an alert if none lets
the kiosk in). Everything waits on events with generous timeouts; nothing asserts how long it took.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from device.agent import AgentConfig
from device.cli import main as kiosk_main
from device.forwarder import BROKER_REFUSED, BROKER_UNREACHABLE, Forwarder, ForwarderConfig
from device.identity import IdentityError, import_bundle, load_identity
from device.outbox import Outbox
from device.protocol.downlink import CaseAnswerBody
from device.protocol.endpoints import BrokerUrl, broker_list, parse_brokers
from device.protocol.topics import Topics
from hub import downlink
from hub.broker import MosquittoProcess, free_port
from hub.cli import main as hub_main
from hub.db import DatabaseError, connect, immediate
from hub.downlink import Route
from tests.harness import Producer, assert_delivered_exactly_once, hub_count, ingest_thread, kiosk_agent, wait_until

FAST = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0, "connect_timeout_s": 3.0}
KIOSK = "k1"
BROKER_A = "mqtts://hub-a.example:8883"
BROKER_B = "mqtts://hub-b.example:8883"


@contextlib.contextmanager
def _broker(folder: Path) -> Iterator[MosquittoProcess]:
    broker = MosquittoProcess(folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.slow
def test_a_kiosk_fails_over_to_the_second_broker_and_back_losing_nothing(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    with _broker(tmp_path / "broker-1") as one, _broker(tmp_path / "broker-2") as two:
        url_1, url_2 = BrokerUrl.parse(one.url), BrokerUrl.parse(two.url)
        with (
            # One worker per broker, one database; ids as the broker binds them to the hub's login (hub/ingest.py).
            ingest_thread(db, url_1, client_id="hub-ingest:1") as ingest_1,
            ingest_thread(db, url_2, client_id="hub-ingest:2") as ingest_2,
            kiosk_agent(tmp_path / "k", KIOSK, [url_1, url_2], **FAST) as agent,
        ):
            forwarder = agent.forwarder
            assert forwarder.connected.wait(30), "the kiosk did not connect"
            assert forwarder.broker == url_1, "the kiosk starts on the first broker of its list"

            # Broker 1 dies mid-stream, without a goodbye: the kiosk moves on to broker 2.
            first = Producer(agent.outbox, count=2000, interval=0.003)
            first.start()
            wait_until(lambda: hub_count(db, KIOSK) > 100, 30, "readings to flow through broker 1")
            one.kill()
            wait_until(lambda: forwarder.connected.is_set() and forwarder.broker == url_2, 60, "failover to broker 2")
            assert forwarder.stats.failovers >= 1
            # What is enqueued now can only travel through broker 2.
            through_2 = Producer(agent.outbox, count=100, interval=0.0)
            through_2.run()
            first.join(60)
            wait_until(lambda: agent.outbox.backlog().items == 0, 90, "the outbox to drain through broker 2")
            assert ingest_2.stats.new >= len(through_2.sent)

            # Broker 1 comes back (its ingest with it), then broker 2 dies mid-stream: back to broker 1.
            wait_until(lambda: not ingest_1.connected.is_set(), 30, "ingest 1 to notice its broker is gone")
            one.start()
            wait_until(ingest_1.connected.is_set, 90, "ingest 1 to subscribe on the restarted broker 1")
            second = Producer(agent.outbox, count=2000, interval=0.003)
            second.start()
            flowing = hub_count(db, KIOSK) + 100
            wait_until(lambda: hub_count(db, KIOSK) > flowing, 30, "readings to flow through broker 2")
            new_on_1 = ingest_1.stats.new
            two.kill()
            wait_until(lambda: forwarder.connected.is_set() and forwarder.broker == url_1, 60, "failback to broker 1")
            through_1 = Producer(agent.outbox, count=100, interval=0.0)
            through_1.run()
            second.join(60)
            wait_until(lambda: agent.outbox.backlog().items == 0, 90, "the outbox to drain through broker 1")
            assert ingest_1.stats.new - new_on_1 >= len(through_1.sent)
            assert forwarder.stats.connects >= 3 and forwarder.link_problem is None
    sent = first.sent + through_2.sent + second.sent + through_1.sent
    assert_delivered_exactly_once(db, KIOSK, sent)


# -- what a list of brokers may be ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("urls", "tls_only", "message"),
    [
        ([], False, "no broker given: a kiosk needs at least one"),
        (["mqtt://a:1883", "mqtt://b:1883", "mqtt://a"], False, "broker mqtt://a:1883 is listed twice"),
        (["mqtts://A.example", "mqtts://a.example:8883"], True, "listed twice"),
        (["mqtts://a:8883", "mqtt://b:1883"], True, "broker mqtt://b:1883 is not mqtts://"),
        (["mqtts://a:8883", "mqtt://b:1883"], False, "mix mqtt:// and mqtts://"),
        (["mqtt://a:1883", "http://b"], False, "'http://b' must start with mqtt:// or mqtts://"),
    ],
)
def test_a_broker_list_that_cannot_work_is_refused_with_the_reason(
    urls: list[str], tls_only: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_brokers(urls, tls_only=tls_only)


def test_one_broker_or_a_list_is_accepted_everywhere_a_broker_is() -> None:
    a, b = BrokerUrl.parse("mqtt://a:1883"), BrokerUrl.parse("mqtt://b:1883")
    assert broker_list(a) == (a,)
    assert ForwarderConfig(kiosk_id=KIOSK, broker=a).brokers == (a,)
    assert ForwarderConfig(kiosk_id=KIOSK, broker=[b, a]).brokers == (b, a)
    with pytest.raises(ValueError, match="no broker given"):
        AgentConfig(kiosk_id=KIOSK, broker=[], data_dir=Path("unused"))
    with pytest.raises(ValueError, match="listed twice"):
        ForwarderConfig(kiosk_id=KIOSK, broker=[a, b, a])


def test_the_cli_takes_several_brokers_and_refuses_a_bad_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--kiosk-id", KIOSK, "--data", str(tmp_path / "k"), "--broker", "mqtt://a:1883"]
    assert kiosk_main([*argv, "--broker", "mqtt://a"]) == 2
    assert "kiosk run: broker mqtt://a:1883 is listed twice" in capsys.readouterr().err
    assert kiosk_main([*argv, "--broker", "mqtts://b"]) == 2
    assert "mix mqtt:// and mqtts://" in capsys.readouterr().err


# -- the provisioning bundle: `broker` as always, or a `brokers` list -------------------------------------


def _bundle(tmp_path: Path) -> dict[str, Any]:
    """A real bundle from `hub kiosks add` (with a single `broker`, as the hub writes it today)."""
    out = tmp_path / "kiosk.bundle"
    argv = ["kiosks", "add", KIOSK, "--data", str(tmp_path / "hub"), "--broker-url", BROKER_A, "--out", str(out)]
    assert hub_main(argv) == 0
    return dict(json.loads(out.read_text()))


def test_a_bundle_with_a_broker_list_imports_every_broker_in_order(tmp_path: Path) -> None:
    good = _bundle(tmp_path)
    # The published contract: `brokers` in order, `broker` its first (what a kiosk from before lists reads).
    listed = good | {"broker": BROKER_B, "brokers": [BROKER_B, BROKER_A]}
    identity = import_bundle(json.dumps(listed).encode(), tmp_path / "kiosk")
    assert [str(b) for b in identity.brokers] == [BROKER_B, BROKER_A]
    assert str(identity.broker) == BROKER_B  # what needs only one (a renewal's connection) takes the first
    public = json.loads((identity.folder / "identity.json").read_text())
    assert (public["broker"], public["brokers"]) == (BROKER_B, [BROKER_B, BROKER_A])
    # A list without `broker` is not a bundle an older kiosk could read: refused; an old bundle keeps working.
    with pytest.raises(IdentityError, match="broker: Field required"):
        import_bundle(json.dumps({k: v for k, v in listed.items() if k != "broker"}).encode(), tmp_path / "kiosk-2")
    single = import_bundle(json.dumps(good).encode(), tmp_path / "kiosk-3")
    assert [str(b) for b in single.brokers] == [BROKER_A]
    reloaded = load_identity(tmp_path / "kiosk")
    assert reloaded is not None and reloaded.brokers == identity.brokers


@pytest.mark.parametrize(
    ("brokers", "broker", "message"),
    [
        ([], None, "brokers: List should have at least 1 item"),
        ("mqtts://hub-a.example:8883", None, "brokers: Input should be a valid array"),
        ([BROKER_A, "mqtt://hub-b.example:1883"], None, "'mqtt://hub-b.example:1883' is not mqtts://"),
        ([BROKER_A, "mqtts://hub-a.example"], None, "broker mqtts://hub-a.example:8883 is listed twice"),
        ([BROKER_A, BROKER_B], BROKER_B, "is not the first of its brokers"),
        ([BROKER_A, "mqtts://"], None, "has no host"),
    ],
)
def test_a_bundle_with_a_bad_broker_list_is_refused_and_nothing_is_kept(
    tmp_path: Path, brokers: object, broker: str | None, message: str
) -> None:
    bundle = _bundle(tmp_path) | {"brokers": brokers, "broker": broker or BROKER_A}
    with pytest.raises(IdentityError, match=message):
        import_bundle(json.dumps(bundle).encode(), tmp_path / "kiosk")
    assert load_identity(tmp_path / "kiosk") is None


# -- refusals with several brokers -------------------------------------------------------------------------


class ClosingListener:
    """Reads the CONNECT and closes without a CONNACK (a broker turning the kiosk away); counts connections."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.url = BrokerUrl.parse(f"mqtt://127.0.0.1:{self.server.getsockname()[1]}")
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.recv(4096)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


@contextlib.contextmanager
def _forwarding(tmp_path: Path, brokers: list[BrokerUrl]) -> Iterator[Forwarder]:
    outbox = Outbox(tmp_path / "outbox.db", KIOSK)
    forwarder = Forwarder(outbox, ForwarderConfig(kiosk_id=KIOSK, broker=brokers))
    thread = threading.Thread(target=forwarder.run, daemon=True)
    thread.start()
    try:
        yield forwarder
    finally:
        forwarder.stop()
        thread.join(10)
        forwarder.close()
        outbox.close()


def _attempts(forwarder: Forwarder) -> int:
    problem = forwarder.link_problem
    return problem.attempts if problem is not None else 0


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "device.forwarder" and r.levelno >= logging.WARNING]


def test_refused_by_every_broker_is_an_alert_tried_round_robin_and_logged_once_per_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.forwarder")
    first, second = ClosingListener(), ClosingListener()
    try:
        with _forwarding(tmp_path, [first.url, second.url]) as forwarder:
            wait_until(lambda: first.accepted >= 3 and second.accepted >= 3, 60, "three rounds over both brokers")
            problem = forwarder.link_problem
            assert problem is not None and problem.code == BROKER_REFUSED and problem.attempts >= 5
            alert = problem.alert()
            assert alert is not None and "any of the hub's 2 brokers" in alert.message
            assert "closed the connection" in alert.message and str(first.url) in alert.message
            assert forwarder.stats.connects == 0 and forwarder.stats.failovers >= 5
        lines = _warnings(caplog)
        assert len(lines) == 2, lines  # one per broker for the whole run, not one per attempt
        assert all(any(str(url) in line for line in lines) for url in (first.url, second.url)), lines
    finally:
        first.close()
        second.close()


def test_a_refusal_behind_an_unreachable_broker_is_still_an_alert(tmp_path: Path) -> None:
    nobody = BrokerUrl.parse(f"mqtt://127.0.0.1:{free_port()}")
    refusing = ClosingListener()
    try:
        with _forwarding(tmp_path, [nobody, refusing.url]) as forwarder:
            wait_until(lambda: refusing.accepted >= 2 and _attempts(forwarder) >= 4, 60, "two rounds")
            problem = forwarder.link_problem
            assert problem is not None and problem.code == BROKER_REFUSED and problem.broker == str(refusing.url)
            assert problem.alert() is not None
    finally:
        refusing.close()


def test_unreachable_everywhere_is_logged_but_heals_by_itself(tmp_path: Path) -> None:
    brokers = [BrokerUrl.parse(f"mqtt://127.0.0.1:{free_port()}") for _ in range(2)]
    with _forwarding(tmp_path, brokers) as forwarder:
        wait_until(lambda: _attempts(forwarder) >= 4, 60, "two rounds")
        problem = forwarder.link_problem
        assert problem is not None and problem.code == BROKER_UNREACHABLE and problem.alert() is None


def test_a_broker_that_refuses_the_kiosk_is_passed_over_for_one_that_lets_it_in(
    tmp_path: Path, mosquitto: MosquittoProcess
) -> None:
    refusing = ClosingListener()
    good = BrokerUrl.parse(mosquitto.url)
    try:
        with _forwarding(tmp_path, [refusing.url, good]) as forwarder:
            assert forwarder.connected.wait(30), "the kiosk did not move on to the broker that lets it in"
            assert forwarder.broker == good and refusing.accepted >= 1
            assert forwarder.link_problem is None, "connected: nothing for a person to see"
    finally:
        refusing.close()


def test_identity_json_written_by_a_single_broker_kiosk_still_loads(tmp_path: Path) -> None:
    """A kiosk provisioned before broker lists has only `broker` in identity.json."""
    identity = import_bundle(json.dumps(_bundle(tmp_path)).encode(), tmp_path / "kiosk")
    path = identity.folder / "identity.json"
    public = json.loads(path.read_text())
    del public["brokers"]
    path.write_text(json.dumps(public))
    loaded = load_identity(tmp_path / "kiosk")
    assert loaded is not None and [str(b) for b in loaded.brokers] == [BROKER_A]


# -- what the hub sends, with several brokers ----------------------------------------------------------------


def _kiosk_row(db: Path, kiosk: str) -> tuple[object, ...] | None:
    conn = connect(db, read_only=True)
    try:
        row = conn.execute("SELECT online, broker FROM kiosks WHERE id = ?", (kiosk,)).fetchone()
        return None if row is None else tuple(row)
    except DatabaseError:
        return None
    finally:
        conn.close()


def _answer(db: Path, kiosk: str, text: str) -> str:
    conn = connect(db)
    try:
        with immediate(conn) as w:
            body = CaseAnswerBody(case=str(uuid.uuid4()), subject="P1", message=text, plan="", request="none")
            return downlink.enqueue_case_answer(w, kiosk, body, 0.0)
    finally:
        conn.close()


@pytest.mark.slow
def test_kept_messages_go_out_on_the_broker_the_kiosk_is_on_and_another_brokers_will_does_not_take_it_offline(
    tmp_path: Path,
) -> None:
    """Both brokers up, the kiosk on the second: the hub's answers reach it there (the second broker's ingest
    sends them, as the kiosk's presence came through it), and a stale "offline" published on the first broker
    (its last will, fired after the kiosk had moved on) leaves the kiosk online."""
    db = tmp_path / "hub.db"
    with _broker(tmp_path / "broker-1") as one, _broker(tmp_path / "broker-2") as two:
        url_1, url_2 = BrokerUrl.parse(one.url), BrokerUrl.parse(two.url)
        with (
            ingest_thread(db, url_1, client_id="hub-ingest:1", downlink_check_s=0.1,
                          route=Route(str(url_1), first=True)),
            ingest_thread(db, url_2, client_id="hub-ingest:2", downlink_check_s=0.1,
                          route=Route(str(url_2), first=False)),
            kiosk_agent(tmp_path / "k", KIOSK, [url_2, url_1], **FAST) as agent,
        ):  # fmt: skip
            wait_until(lambda: _kiosk_row(db, KIOSK) == (1, str(url_2)), 30, "the kiosk online through broker 2")
            sent = [_answer(db, KIOSK, f"answer {n}") for n in range(5)]
            wait_until(lambda: len(agent.inbox.messages()) == 5, 30, "every answer at the kiosk")
            assert sorted(m.id for m in agent.inbox.messages()) == sorted(sent)
            stale = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stale-will", protocol=mqtt.MQTTv5)
            stale.connect(url_1.host, url_1.port)
            stale.loop_start()
            offline = json.dumps({"online": False})
            stale.publish(Topics.presence(KIOSK), offline, qos=1, retain=True).wait_for_publish(10)
            # A marker after it, from the same client: ingest handles one connection's messages in order, so once
            # the marker is stored, the stale will has been handled too.
            stale.publish(Topics.presence("marker"), json.dumps({"online": True}), qos=1).wait_for_publish(10)
            stale.loop_stop()
            stale.disconnect()
            wait_until(lambda: _kiosk_row(db, "marker") is not None, 30, "the marker after the stale will")
            assert _kiosk_row(db, KIOSK) == (1, str(url_2))
