"""The kiosk outbox: durable on return, ordered, bounded without ever dropping silently."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device.attachments import enqueue_attachment
from device.outbox import DISK_RESERVE_BYTES, WAL_BOUND_BYTES, DiskFull, Outbox, OutboxFull, OutboxWriteError
from device.protocol import parse_envelope
from device.protocol.envelope import encode
from tests.diskfull import MIB, fill, free_bytes, small_tmpfs, sqlite_disk_full


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
    """Kill the writer mid-write: every enqueue that returned is on disk, the file is sound.

    The kill comes after a number of acknowledged writes, not after a number of milliseconds: on a loaded
    machine a wall-clock window held as few as 8 writes, and the test then failed on the machine, not the
    outbox. A random spin of up to a few milliseconds after the N-th acknowledgement puts the kill at an
    arbitrary instant of the next write (its encode, its insert, its commit or its fsync).
    """
    path = tmp_path / "o.db"
    rng = random.Random(11)
    acknowledged: list[tuple[int, str]] = []
    wanted = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        n = rng.randint(5, 40)
        wanted += n
        lines = [proc.stdout.readline() for _ in range(n)]
        assert all(line.endswith("\n") for line in lines), "the writer stopped before its N-th write"
        spin_until = time.perf_counter() + rng.uniform(0, 0.004)
        while time.perf_counter() < spin_until:
            pass
        proc.kill()
        out = "".join(lines) + proc.stdout.read()
        proc.wait()
        for line in out.split("\n")[:-1]:  # a line cut by the kill was never acknowledged
            seq, mid = line.split()
            acknowledged.append((int(seq), mid))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = dict(db.execute("SELECT seq, id FROM outbox").fetchall())
    db.close()
    assert len(acknowledged) >= wanted
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


# -- the disk as a limit (issue 25) ------------------------------------------------------------------------


def fill_until_refused(box: Outbox) -> list[bytes]:
    """Enqueue readings (500 at a time, then one at a time) until the outbox refuses; what it stored."""
    stored: list[bytes] = []
    for batch in (500, 1):
        while True:
            try:
                stored += [encode(e) for e in box.enqueue_many([("observations", reading())] * batch)]
            except OutboxFull:
                break
    return stored


def full_since_on_disk(path: Path) -> object:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT value FROM meta WHERE key = 'full_since'").fetchone()[0]
    finally:
        db.close()


def test_a_full_disk_refuses_the_reading_with_outbox_full_not_a_rollback_error(tmp_path: Path) -> None:
    """Issue 25, 1: on a full disk enqueue raised "cannot rollback - no transaction is active" (SQLite had
    already rolled back), hiding "database or disk is full": no OutboxFull, no alert, the process ended."""
    with small_tmpfs(tmp_path / "disk", 2 * MIB) as disk:
        box = Outbox(disk / "o.db", "k1", disk_reserve_bytes=0)  # no reserve: SQLite itself meets the full disk
        stored = box.enqueue_many([("observations", reading())] * 50)
        filler = fill(disk)
        assert free_bytes(disk) == 0
        with pytest.raises(DiskFull, match="the disk holding the outbox is full") as refused:
            box.enqueue("observations", reading())
        assert isinstance(refused.value, OutboxFull)  # what the screen already catches
        cause = refused.value.__cause__
        assert isinstance(cause, sqlite3.OperationalError) and cause.sqlite_errorname == "SQLITE_FULL"
        # The alert is there although full_since could not be written (kept in memory).
        assert full_since_on_disk(disk / "o.db") is None
        alerts = box.alerts()
        assert [a.code for a in alerts] == ["outbox_full"] and alerts[0].message.startswith("Disk full")
        # What is stored is still there, and still readable for the forwarder.
        assert [i.id for i in box.pending(limit=100)] == [e.id for e in stored]
        # Deleting on a truly full disk fails too, saying why, and changes nothing.
        with pytest.raises(OutboxWriteError, match="disk holding the outbox is full") as failed:
            box.remove([e.id for e in stored[:10]])
        assert failed.value.disk_full and isinstance(failed.value.__cause__, sqlite3.OperationalError)
        assert box.backlog().items == 50
        # Space back: deletes work, a reading is stored again, the alert clears.
        filler.unlink()
        assert box.remove([e.id for e in stored[:10]]) == 10
        box.enqueue("observations", reading())
        assert [a.code for a in box.alerts()] == []
        box.close()


def test_readings_are_refused_while_the_disk_is_under_the_reserve_and_deletes_still_work(tmp_path: Path) -> None:
    """The default reserve leaves room to deliver (delete) the whole backlog of a disk the outbox filled."""
    with small_tmpfs(tmp_path / "disk", 16 * MIB) as disk:
        box = Outbox(disk / "o.db", "k1")
        stored = fill_until_refused(box)
        with pytest.raises(DiskFull, match=r"the disk holding the outbox is full \(\d+\.\d MiB free, 4.0 MiB reserved"):
            box.enqueue("observations", reading())
        assert len(stored) > 10_000
        assert free_bytes(disk) < DISK_RESERVE_BYTES + MIB
        assert [a.code for a in box.alerts()] == ["outbox_full"]
        box.enqueue("status", status(len(stored)))  # exempt from the reserve: the alert can leave
        ids = [i.id for i in box.pending(limit=len(stored) + 1, max_bytes=1 << 40)]
        wal, peak = disk / "o.db-wal", 0
        for start in range(0, len(ids), 1000):  # as the forwarder deletes: a receipt's worth at a time
            box.remove(ids[start : start + 1000])
            peak = max(peak, wal.stat().st_size if wal.exists() else 0)
        assert box.backlog().items == 0
        assert peak <= WAL_BOUND_BYTES
        # Drained, the freed pages take new readings: the refusal ends without freeing anything else.
        box.enqueue("observations", reading())
        assert [a.code for a in box.alerts()] == []
        box.close()


def test_the_disk_reserve_is_checked_without_a_mount(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1", disk_reserve_bytes=1 << 62)  # more than any disk has
    with pytest.raises(DiskFull, match="the reading was not stored"):
        box.enqueue("observations", reading())
    assert [a.code for a in box.alerts()] == ["outbox_full"]
    box.enqueue("status", status())  # status is exempt
    assert box.backlog().items == 0


def test_sqlite_full_in_enqueue_is_outbox_full_via_the_seam(tmp_path: Path) -> None:
    """The same path as a full disk where no tmpfs can be mounted: SQLite's own SQLITE_FULL, raised in the
    enqueue's transaction (tests/diskfull.py)."""
    box = Outbox(tmp_path / "o.db", "k1")
    kept = box.enqueue("observations", reading())
    box.write_hook = sqlite_disk_full
    with pytest.raises(DiskFull, match="the disk holding the outbox is full") as refused:
        box.enqueue_many([("observations", reading())] * 3)
    cause = refused.value.__cause__
    assert isinstance(cause, sqlite3.OperationalError) and cause.sqlite_errorname == "SQLITE_FULL"
    assert [a.code for a in box.alerts()] == ["outbox_full"]
    assert [i.id for i in box.pending()] == [kept.id]  # nothing half-stored, seq not burnt
    box.write_hook = None
    assert box.enqueue("observations", reading()).seq == 2
    assert [a.code for a in box.alerts()] == []


def test_a_failed_delete_says_disk_full_and_keeps_the_items_via_the_seam(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "k1")
    envs = box.enqueue_many([("observations", reading())] * 1200)
    ids = [e.id for e in envs]
    box.write_hook = sqlite_disk_full
    with pytest.raises(OutboxWriteError, match="could not delete receipted items") as failed:
        box.remove(ids)
    assert failed.value.disk_full and failed.value.cause == "the disk holding the outbox is full"
    assert failed.value.removed == 0
    assert isinstance(failed.value.__cause__, sqlite3.OperationalError)
    assert box.backlog().items == 1200
    with pytest.raises(OutboxWriteError, match="could not move rejected items"):
        box.reject([(ids[0], "because")])
    assert box.rejected() == []
    box.write_hook = None
    assert box.remove(ids) == 1200
    assert box.backlog().items == 0


def test_the_wal_stays_bounded_while_enqueueing_and_draining(tmp_path: Path) -> None:
    """SQLite's default checkpoint let the WAL reach ~4 MiB (12 MiB when deleting photos in one transaction);
    the reserve assumes WAL_BOUND_BYTES. Measured after every write, which is when the WAL is largest."""
    box = Outbox(tmp_path / "o.db", "k1")
    wal = tmp_path / "o.db-wal"
    peaks = {"enqueue": 0, "drain": 0, "photos": 0}

    def measure(phase: str) -> None:
        peaks[phase] = max(peaks[phase], wal.stat().st_size if wal.exists() else 0)

    ids: list[str] = []
    for _ in range(40):
        ids += [e.id for e in box.enqueue_many([("observations", reading())] * 500)]
        measure("enqueue")
    for _ in range(500):
        ids.append(box.enqueue("observations", reading()).id)
        measure("enqueue")
    for start in range(0, len(ids), 1000):
        box.remove(ids[start : start + 1000])
        measure("drain")
    photos: list[str] = []
    for _ in range(6):
        photos.append(enqueue_attachment(box, os.urandom(300_000)))
    chunks = [i.id for i in box.pending(limit=1000, max_bytes=1 << 40)]
    assert len(chunks) == 18
    box.remove(chunks)  # one call, as a late batch of receipts: 3 MB of chunks
    measure("photos")
    print(f"WAL peaks (bytes): {peaks}")
    assert max(peaks.values()) <= WAL_BOUND_BYTES, peaks
    assert box.backlog().items == 0
