"""How long until commits resume after a fault: a broker kill, a hub kill, a full disk (`make soak`).

A kiosk streams readings at a steady rate into real ingest through a real Mosquitto; each fault is caused for
real and the time is measured from the moment the fault ends (the broker or hub started again, the disk's
space given back) to the first reading committed after it. Every reading is then checked stored once, in order.
Targets (issue 25): within 5 s of a broker or hub restart, within 15 s of space returning. Prints a table; exits
non-zero when a target is missed. Not part of `make test`: a figure, not a timed test.

Run: python -m tests.soak_recovery [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from device.protocol.endpoints import BrokerUrl
from hub.broker import MosquittoProcess
from tests.harness import Producer, assert_delivered_exactly_once, cli, hub_count, ingest_thread, kiosk_agent, sigkill

FAST = {"keepalive_s": 2, "receipt_timeout_s": 2.0, "heartbeat_s": 3600.0, "connect_timeout_s": 3.0}
TARGETS = {"broker kill": 5.0, "hub kill": 5.0, "disk full": 15.0}


def _until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` holds (polled every 20 ms); raises when it never does."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def _resumed(db: Path, kiosk: str) -> Callable[[], bool]:
    """True once a reading is committed after this call (the count at the call is the baseline)."""
    before = hub_count(db, kiosk)
    return lambda: hub_count(db, kiosk) > before


def broker_kill(work: Path) -> float:
    broker = MosquittoProcess(work / "broker")
    broker.start()
    url = BrokerUrl.parse(broker.url)
    db = work / "hub.db"
    try:
        with ingest_thread(db, url), kiosk_agent(work / "k", "k1", url, **FAST) as agent:
            producer = Producer(agent.outbox, count=3000, interval=0.005)
            producer.start()
            _until(lambda: hub_count(db, "k1") > 200, 30, "readings to flow")
            broker.kill()
            time.sleep(1.0)
            resumed = _resumed(db, "k1")
            broker.start()
            took = _until(resumed, 60, "commits after the broker restart")
            producer.join(60)
            _until(lambda: agent.outbox.backlog().items == 0, 90, "the outbox to drain")
        assert_delivered_exactly_once(db, "k1", producer.sent)
        return took
    finally:
        broker.stop()


def hub_kill(work: Path) -> float:
    broker = MosquittoProcess(work / "broker")
    broker.start()
    url = BrokerUrl.parse(broker.url)
    hub_dir = work / "hub"
    db = hub_dir / "hub.db"
    args = ["ingest", "--data", str(hub_dir), "--broker", str(url)]
    hub = cli("hub.cli", *args, stdout=subprocess.DEVNULL)
    try:
        with kiosk_agent(work / "k", "k1", url, **FAST) as agent:
            producer = Producer(agent.outbox, count=3000, interval=0.005)
            producer.start()
            _until(lambda: hub_count(db, "k1") > 200, 60, "readings to flow")
            sigkill(hub)
            time.sleep(1.0)
            resumed = _resumed(db, "k1")
            hub = cli("hub.cli", *args, stdout=subprocess.DEVNULL)
            took = _until(resumed, 60, "commits after the hub restart")
            producer.join(60)
            _until(lambda: agent.outbox.backlog().items == 0, 90, "the outbox to drain")
        assert_delivered_exactly_once(db, "k1", producer.sent)
        return took
    finally:
        hub.terminate()
        hub.wait(10)
        broker.stop()


@contextlib.contextmanager
def _tmpfs(path: Path, size: int) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def disk_full(work: Path) -> float:
    """The hub's database on a small tmpfs: filled while the kiosk streams, then space given back."""
    broker = MosquittoProcess(work / "broker")
    broker.start()
    url = BrokerUrl.parse(broker.url)
    disk = work / "disk"
    db = disk / "hub.db"
    try:
        with _tmpfs(disk, 24 * 1024 * 1024), ingest_thread(db, url), kiosk_agent(work / "k", "k1", url, **FAST) as a:
            producer = Producer(a.outbox, count=3000, interval=0.005)
            producer.start()
            _until(lambda: hub_count(db, "k1") > 200, 30, "readings to flow")
            filler = disk / "filler"
            with filler.open("wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            stalled = hub_count(db, "k1")
            time.sleep(3.0)  # a full disk for a few seconds: commits stop, the kiosk keeps what it holds
            assert hub_count(db, "k1") - stalled < 50, "commits went on although the disk was full"
            resumed = _resumed(db, "k1")
            filler.unlink()
            took = _until(resumed, 60, "commits after space returned")
            producer.join(60)
            _until(lambda: a.outbox.backlog().items == 0, 90, "the outbox to drain")
            assert_delivered_exactly_once(db, "k1", producer.sent)
        return took
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    faults: dict[str, Callable[[Path], float]] = {"broker kill": broker_kill, "hub kill": hub_kill}
    if os.geteuid() == 0:
        faults["disk full"] = disk_full
    else:
        print("disk full: skipped (mounting a tmpfs needs root)")
    results: dict[str, list[float]] = {name: [] for name in faults}
    for _ in range(args.rounds):
        for name, fault in faults.items():
            with tempfile.TemporaryDirectory(prefix="soak-recovery-") as work:
                results[name].append(fault(Path(work)))
    missed = False
    print(f"{'fault':<12} {'target':>7}  time until commits resumed (s), {args.rounds} rounds")
    for name, times in results.items():
        worst = max(times)
        missed |= worst > TARGETS[name]
        verdict = "PASS" if worst <= TARGETS[name] else "MISS"
        print(
            f"{name:<12} {TARGETS[name]:>6.0f}s  {'  '.join(f'{t:.2f}' for t in times)}  worst {worst:.2f}  {verdict}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
