"""`hub serve` runs ingest as worker processes: they share the load, are restarted when they die,
and die with the hub. Faults are caused for real (SIGKILL) against a real Mosquitto."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

from device.outbox import Outbox
from device.protocol.endpoints import BrokerUrl
from device.protocol.envelope import encode
from device.simulate import single_reading
from hub.broker import free_port
from tests.harness import assert_delivered_exactly_once, cli, hub_count, kiosk_agent, sigkill, wait_until

FAST = {"receipt_timeout_s": 2.0, "heartbeat_s": 3600.0}


def _workers(pid: int) -> list[int]:
    """The hub's ingest worker processes (multiprocessing's spawned children, not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return bool(json.load(response)["status"] == "ok")
    except (urllib.error.URLError, OSError):
        return False


def _fill(path: Path, kiosk: str, count: int) -> list[bytes]:
    box = Outbox(path, kiosk)
    rng = random.Random(11)
    try:
        envs = box.enqueue_many([("observations", single_reading(rng, datetime.now(UTC))) for _ in range(count)])
        return [encode(e) for e in envs]
    finally:
        box.close()


def test_workers_are_processes_restarted_when_killed_and_gone_with_the_hub(
    tmp_path: Path, broker_url: BrokerUrl
) -> None:
    hub_dir = tmp_path / "hub"
    db = hub_dir / "hub.db"
    port = free_port()
    sent = _fill(tmp_path / "k" / "outbox.db", "k1", 20_000)
    serve = ["serve", "--data", str(hub_dir), "--broker", str(broker_url), "--port", str(port), "--workers", "2"]
    hub = cli("hub.cli", *serve, stdout=None)
    try:
        wait_until(lambda: _ready(port), 30, "the hub's ingest workers to be ready")
        workers = _workers(hub.pid)
        assert len(workers) == 2, workers
        with kiosk_agent(tmp_path / "k", "k1", broker_url, **FAST) as agent:
            wait_until(lambda: hub_count(db, "k1") > 0, 30, "the workers to start committing")
            os.kill(workers[0], signal.SIGKILL)
            assert 0 < hub_count(db, "k1") < len(sent), "the kill should land mid-stream"
            wait_until(lambda: len(_workers(hub.pid)) == 2 and workers[0] not in _workers(hub.pid), 30, "a restart")
            wait_until(lambda: _ready(port), 30, "the restarted worker to be ready")
            wait_until(lambda: agent.outbox.backlog().items == 0, 90, "the backlog to drain")
        assert_delivered_exactly_once(db, "k1", sent)

        survivors = _workers(hub.pid)
        sigkill(hub)
        # The kernel sends each worker SIGTERM at once (PR_SET_PDEATHSIG); each then ends as it would when asked:
        # its last flush, its goodbye to the broker, SQLite's closing checkpoint of a 20,000-row WAL. On a loaded
        # CI machine that took longer than 10 s once: this checks that they go, not how fast.
        wait_until(lambda: not any(_alive(pid) for pid in survivors), 60, "the workers to die with the hub")
    finally:
        if hub.poll() is None:
            hub.terminate()
            hub.wait(10)
    assert hub.returncode == -signal.SIGKILL


def test_the_hub_script_loads_no_web_app_into_the_workers_it_spawns() -> None:
    # multiprocessing's spawn runs the `hub` script's module again in every worker: what that module
    # imports, each worker carries (FastAPI and the benchmarks had cost 87 MB a worker instead of 56).
    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == "hub"]
    probe = f"import sys, {entry.module}; print(sorted({{'fastapi', 'hub.cli', 'hub.app'}} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
