"""A kiosk on a full disk stays up, refuses new readings loudly, and delivers what it holds once (issue 25).

Caused for real: a small tmpfs holds the kiosk's data folder (tests/diskfull.py; skipped, saying why, where
mounting is not permitted), filled by the outbox itself or by a filler file. The delete path on a disk that is
truly full is also driven through the fault-injection seam (SQLite's own SQLITE_FULL inside the delete's
transaction), which runs everywhere. Against a real Mosquitto and the hub's real ingest.

Before the fix: enqueue raised "cannot rollback - no transaction is active" instead of OutboxFull; a failed
delete ended the connection, the receipted items were forgotten and everything was sent again from the
oldest, reconnect after reconnect. Counted here: connections, sends per item, sends after a receipt, log lines.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from device.agent import AgentConfig, KioskAgent
from device.forwarder import Forwarder
from device.outbox import WAL_BOUND_BYTES, DiskFull, Outbox, OutboxFull, OutboxItem
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.protocol.retry import Backoff
from device.simulate import single_reading
from hub.broker import MosquittoProcess
from tests.diskfull import MIB, fill, free_bytes, small_tmpfs, sqlite_disk_full
from tests.harness import assert_delivered_exactly_once, hub_count, ingest_thread, wait_until

KIOSK = "k-disk"
# Default keepalive and receipt timeout: nothing here should depend on a busy machine answering quickly.
SLOW_HEARTBEAT = {"heartbeat_s": 3600.0, "connect_timeout_s": 5.0}
STILL_FULL = "kept in memory and not sent again"  # the forwarder's one line when deletes start failing
WORKS_AGAIN = "outbox deletes work again"
RNG = random.Random(25)


def reading() -> dict[str, Any]:
    return single_reading(RNG, datetime.now(UTC))


def backlog(box: Outbox, *, until_refused: bool = False, count: int = 0) -> list[bytes]:
    """Store `count` readings, or as many as the outbox takes (500 at a time, then one by one)."""
    stored: list[bytes] = []
    if not until_refused:
        for start in range(0, count, 500):
            stored += [encode(e) for e in box.enqueue_many([("observations", reading())] * min(500, count - start))]
        return stored
    for size in (500, 1):
        while True:
            try:
                stored += [encode(e) for e in box.enqueue_many([("observations", reading()) for _ in range(size)])]
            except DiskFull:
                break
    return stored


class Sends:
    """Every item the forwarder publishes, and every receipt, as the forwarder's own thread sees them."""

    def __init__(self, forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count: Counter[str] = Counter()
        self.receipted: set[str] = set()
        self.after_receipt: list[str] = []  # items sent again once the hub had receipted them
        publish = forwarder._publish

        def counting(items: list[OutboxItem]) -> None:
            for item in items:
                self.count[item.id] += 1
                if item.id in self.receipted:
                    self.after_receipt.append(item.id)
            publish(items)

        monkeypatch.setattr(forwarder, "_publish", counting)
        forwarder.on_receipt = self.receipted.update


class WalPeak:
    """The largest the outbox's WAL was after any delete of the forwarder (when it is largest)."""

    def __init__(self, box: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        wal = Path(f"{box.path}-wal")
        remove = box.remove

        def measured(ids: Any) -> int:
            try:
                return remove(ids)
            finally:
                self.bytes = max(self.bytes, wal.stat().st_size if wal.exists() else 0)

        monkeypatch.setattr(box, "remove", measured)


def held(agent: KioskAgent) -> set[str]:
    """The ids of everything in the kiosk's outbox (readings and its status)."""
    return {item.id for item in agent.outbox.pending(limit=100_000, max_bytes=1 << 40)}


def forwarder_lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == "device.forwarder" and text in r.getMessage())


@contextmanager
def built_agent(data: Path, broker: BrokerUrl) -> Iterator[KioskAgent]:
    """A kiosk agent on `data`, built but not started (the test starts it); stopped, its files closed, after."""
    agent = KioskAgent(AgentConfig(kiosk_id=KIOSK, broker=broker, data_dir=data, **SLOW_HEARTBEAT))
    try:
        yield agent
    finally:
        agent.stop()


def test_a_kiosk_that_filled_its_disk_refuses_readings_and_delivers_its_backlog_once(
    tmp_path: Path, broker_url: BrokerUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 25, 1 and 2: the outbox fills the disk up to its reserve; the kiosk says so, stays up, and its
    deletes fit in the reserve, so the whole backlog leaves once, on one connection."""
    db = tmp_path / "hub.db"
    with small_tmpfs(tmp_path / "kiosk", 16 * MIB) as data:
        box = Outbox(data / "outbox.db", KIOSK)
        sent = backlog(box, until_refused=True)
        box.close()
        assert len(sent) > 10_000
        with built_agent(data, broker_url) as agent, ingest_thread(db, broker_url):
            sends = Sends(agent.forwarder, monkeypatch)
            wal = WalPeak(agent.forwarder.outbox, monkeypatch)
            with pytest.raises(OutboxFull, match="the disk holding the outbox is full"):
                agent.outbox.enqueue("observations", reading())
            assert [a.code for a in agent.alerts()] == ["outbox_full"]
            agent.start()
            wait_until(lambda: agent.outbox.backlog().items == 0, 180, "the backlog to drain")
            # Drained, the database's free pages take readings again, and the alert is gone.
            sent.append(encode(agent.outbox.enqueue("observations", reading())))
            assert [a.code for a in agent.alerts()] == []
            wait_until(lambda: agent.outbox.backlog().items == 0, 60, "the new reading to leave")
            assert agent.healthy()
        stats = agent.forwarder.stats
        print(
            f"backlog {len(sent) - 1} items on a 16 MiB tmpfs; connects {stats.connects}, resends {stats.resends}, "
            f"most sends of one item {max(sends.count.values())}, WAL peak {wal.bytes} bytes, "
            f"free at the end {free_bytes(data)} bytes"
        )
    assert stats.connects <= 2 and stats.connect_failures == 0
    assert stats.delete_failures == 0  # the reserve held the deletes
    assert sends.after_receipt == []
    assert max(sends.count.values()) <= 2
    assert wal.bytes <= WAL_BOUND_BYTES
    assert_delivered_exactly_once(db, KIOSK, sent)


def test_a_truly_full_disk_keeps_receipted_items_in_memory_until_space_returns(
    tmp_path: Path, broker_url: BrokerUrl, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another program takes the last byte: nothing can be deleted. The kiosk keeps forwarding, sends no
    receipted item again, does not reconnect, logs it once, and deletes everything once space returns."""
    caplog.set_level(logging.INFO)
    db = tmp_path / "hub.db"
    with small_tmpfs(tmp_path / "kiosk", 8 * MIB) as data:
        box = Outbox(data / "outbox.db", KIOSK)
        sent = backlog(box, count=3000)
        box.close()
        with built_agent(data, broker_url) as agent, ingest_thread(db, broker_url):
            agent.forwarder.config.delete_retry = Backoff(initial_s=0.1, maximum_s=0.3)
            sends = Sends(agent.forwarder, monkeypatch)
            filler = fill(data)
            assert free_bytes(data) == 0
            with pytest.raises(OutboxFull, match="the disk holding the outbox is full"):
                agent.outbox.enqueue("observations", reading())
            assert [a.code for a in agent.alerts()] == ["outbox_full"]
            agent.start()
            wait_until(lambda: hub_count(db, KIOSK) >= 3000, 60, "the hub to store the backlog")
            wait_until(lambda: held(agent) <= sends.receipted, 30, "a receipt for everything the outbox holds")
            wait_until(lambda: agent.forwarder.stats.delete_failures >= 3, 30, "deletes to be retried")
            assert agent.outbox.backlog().items == 3000  # nothing could be deleted
            assert agent.healthy()
            assert [a.code for a in agent.alerts()] == ["outbox_full"]
            assert agent.forwarder.stats.connects == 1
            assert sends.after_receipt == []
            assert forwarder_lines(caplog, STILL_FULL) == 1
            filler.unlink()
            wait_until(lambda: agent.outbox.backlog().items == 0, 60, "the deletes once space is back")
            assert forwarder_lines(caplog, WORKS_AGAIN) == 1
            sent.append(encode(agent.outbox.enqueue("observations", reading())))
            wait_until(lambda: agent.outbox.backlog().items == 0, 60, "a new reading to leave")
    stats = agent.forwarder.stats
    print(f"delete attempts failed: {stats.delete_failures}; connects {stats.connects}; resends {stats.resends}")
    assert stats.connects == 1
    assert sends.after_receipt == []
    assert max(sends.count.values()) == 1 or stats.resends > 0  # only an overdue receipt sends an item twice
    assert_delivered_exactly_once(db, KIOSK, sent)


def test_a_failing_delete_neither_resends_nor_reconnects_via_the_seam(
    tmp_path: Path, mosquitto: MosquittoProcess, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The same path without a mount: SQLite reports SQLITE_FULL inside every delete's transaction. Also
    across a reconnect (the broker restarted), receipted items held in memory are skipped, not sent again."""
    caplog.set_level(logging.INFO)
    broker_url = BrokerUrl.parse(mosquitto.url)
    db = tmp_path / "hub.db"
    data = tmp_path / "kiosk"
    box = Outbox(data / "outbox.db", KIOSK)
    sent = backlog(box, count=3000)
    box.close()
    with built_agent(data, broker_url) as agent, ingest_thread(db, broker_url):
        agent.forwarder.config.delete_retry = Backoff(initial_s=0.1, maximum_s=0.3)
        agent.forwarder.outbox.write_hook = sqlite_disk_full
        sends = Sends(agent.forwarder, monkeypatch)
        agent.start()
        wait_until(lambda: hub_count(db, KIOSK) >= 3000, 60, "the hub to store the backlog")
        wait_until(lambda: held(agent) <= sends.receipted, 60, "a receipt for everything the outbox holds")
        assert agent.forwarder.stats.connects == 1
        assert sends.after_receipt == []
        wait_until(lambda: agent.forwarder.stats.delete_failures >= 3, 30, "deletes to be retried")
        assert agent.outbox.backlog().items == 3000
        assert agent.forwarder.stats.connects == 1
        assert sends.after_receipt == []
        assert forwarder_lines(caplog, STILL_FULL) == 1
        published = sum(sends.count.values())
        mosquitto.kill()
        mosquitto.start()
        wait_until(lambda: agent.forwarder.stats.connects == 2, 30, "the kiosk to reconnect")
        failures = agent.forwarder.stats.delete_failures
        wait_until(lambda: agent.forwarder.stats.delete_failures >= failures + 2, 30, "more delete attempts")
        assert sends.after_receipt == []
        assert sum(sends.count.values()) == published  # everything it holds is receipted: nothing to send
        agent.forwarder.outbox.write_hook = None
        wait_until(lambda: agent.outbox.backlog().items == 0, 30, "the deletes once the disk takes them")
    assert forwarder_lines(caplog, STILL_FULL) == 1
    assert forwarder_lines(caplog, WORKS_AGAIN) == 1
    assert not any("forwarder step failed" in r.getMessage() for r in caplog.records)
    assert_delivered_exactly_once(db, KIOSK, sent)
