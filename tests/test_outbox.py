"""The kiosk outbox: durable on return, ordered, bounded without ever dropping silently."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device.outbox import Outbox, OutboxFull
from device.protocol import parse_envelope
from device.protocol.envelope import encode


def reading(value: float = 72) -> dict[str, object]:
    return {
        "observations": [
            {
                "code": "8867-4",
                "value": value,
                "unit": "/min",
                "effective": datetime.now(UTC),
                "device": {"id": "strap-1", "type": "ble"},
            }
        ]
    }


def status(backlog: int = 0) -> dict[str, object]:
    return {"software_version": "t", "outbox_backlog": backlog, "outbox_capacity": 10, "uptime_s": 1}


def test_enqueued_items_survive_reopen_in_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    envs = [box.enqueue("observations", reading(60 + i)) for i in range(5)]
    box.close()
    box = Outbox(tmp_path / "o.db", "k1")
    items = box.pending()
    assert [i.seq for i in items] == [1, 2, 3, 4, 5]
    assert [i.body for i in items] == [encode(e) for e in envs]
    assert parse_envelope(items[0].body).kiosk == "k1"
    assert box.backlog().items == 5


def test_seq_never_goes_back_even_after_everything_is_removed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    first = box.enqueue_many([("observations", reading())] * 3)
    assert box.remove([e.id for e in first]) == 3
    box.close()
    box = Outbox(tmp_path / "o.db", "k1")
    assert box.enqueue("observations", reading()).seq == 4
    assert box.backlog().items == 1


def test_pending_pages_by_count_and_bytes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    box.enqueue_many([("observations", reading())] * 10)
    assert [i.seq for i in box.pending(after_seq=3, limit=4)] == [4, 5, 6, 7]
    size = len(box.pending(limit=1)[0].body)
    assert len(box.pending(limit=10, max_bytes=size * 3)) == 3
    assert len(box.pending(limit=10, max_bytes=1)) == 1  # one item always fits, however large


def test_invalid_readings_are_refused_before_storage(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    bad = reading()
    bad["observations"][0]["unit"] = "mm[Hg]"  # type: ignore[index]
    with pytest.raises(ValueError, match="not valid for 8867-4"):
        box.enqueue("observations", bad)
    assert box.backlog().items == 0
    assert box.enqueue("observations", reading()).seq == 1  # no seq was burnt


def test_full_outbox_refuses_loudly_and_keeps_everything(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1", max_items=3)
    stored = box.enqueue_many([("observations", reading())] * 3)
    with pytest.raises(OutboxFull, match="the reading was not stored"):
        box.enqueue("observations", reading())
    assert [a.code for a in box.alerts()] == ["outbox_full"]
    assert [i.id for i in box.pending()] == [e.id for e in stored]  # nothing dropped to make room
    # Status still gets out, so the hub learns the kiosk is full.
    box.enqueue("status", status(3))
    assert box.pending()[-1].kind == "status"
    # Draining below 90 % clears the alert.
    box.remove([stored[0].id, stored[1].id])
    assert [a.code for a in box.alerts()] == []
    box.enqueue("observations", reading())


def test_near_full_warns_before_refusing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1", max_items=10)
    box.enqueue_many([("observations", reading())] * 8)
    assert [a.code for a in box.alerts()] == ["outbox_near_full"]


def test_status_is_coalesced(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    box.enqueue("status", status(1))
    box.enqueue("observations", reading())
    box.enqueue("status", status(2))
    kinds = [(i.kind, i.seq) for i in box.pending()]
    assert kinds == [("observations", 2), ("status", 3)]
    assert box.backlog().items == 1  # status does not count against clinical capacity


def test_rejected_items_are_kept_and_alerted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    env = box.enqueue("observations", reading())
    assert box.reject([(env.id, "because")]) == 1
    assert box.pending() == []
    assert box.rejected() == [(1, env.id, "observations", "because")]
    assert [a.code for a in box.alerts()] == ["rejected_by_hub"]


def test_remove_ignores_unknown_ids(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    box.enqueue("observations", reading())
    assert box.remove(["not-an-id"]) == 0
    assert box.backlog().items == 1


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from device.outbox import Outbox
    box = Outbox(sys.argv[1], "k1")
    while True:
        env = box.enqueue("observations", {"observations": [{"code": "8867-4", "value": 70, "unit": "/min",
            "effective": datetime.now(UTC), "device": {"id": "d", "type": "simulated"}}]})
        print(env.seq, env.id, flush=True)
    """
)


def test_sigkill_mid_write_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    """Kill the writer at arbitrary instants: every enqueue that returned is on disk, the file is sound."""
    path = tmp_path / "o.db"
    acknowledged: list[tuple[int, str]] = []
    for delay in (0.3, 0.45, 0.6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        deadline = time.monotonic() + delay
        first = proc.stdout.readline()  # it is really writing before we kill it
        assert first
        while time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
        out = first + proc.stdout.read()
        proc.wait()
        for line in out.split("\n")[:-1]:  # a line cut by the kill was never acknowledged
            seq, mid = line.split()
            acknowledged.append((int(seq), mid))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = dict(db.execute("SELECT seq, id FROM outbox").fetchall())
    db.close()
    assert len(acknowledged) > 10
    missing = [(s, m) for s, m in acknowledged if stored.get(s) != m]
    assert missing == []
    # Sequence numbers stayed unique and gap-free across the kills.
    seqs = sorted(stored)
    assert seqs == list(range(1, len(seqs) + 1))
    box = Outbox(path, "k1")
    assert box.backlog().items == len(stored)  # counters agree with the rows after a crash


def test_an_envelope_too_large_for_the_hub_is_refused_at_the_kiosk(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    many = reading()
    many["observations"] = many["observations"] * 1000  # type: ignore[operator]
    for obs in many["observations"]:  # type: ignore[attr-defined]
        obs["device"] = {"id": "x" * 128, "type": "ble", "model": "m" * 128, "manufacturer": "f" * 128}
    with pytest.raises(ValueError, match="exceeds the 262144-byte limit; split it"):
        box.enqueue("observations", many)
    assert box.backlog().items == 0
