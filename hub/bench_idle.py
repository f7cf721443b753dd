"""`hub bench kiosk-idle`: what an idle kiosk agent costs (it runs on a Raspberry Pi).

Starts a broker, a hub ingest worker and a real `kiosk run` process, lets it settle,
then reads the kiosk's CPU time and resident memory from /proc over a quiet period.
The limit it compares against is the target: under 1 % of one core and 80 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from device.protocol.endpoints import BrokerUrl
from hub.broker import MosquittoProcess
from hub.ingest import IngestConfig, IngestWorker

CPU_TARGET_PERCENT = 1.0
RSS_TARGET_MB = 80.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=30.0, help="length of the quiet period measured")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _rss_mb(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _measure(command: list[str], seconds: float) -> dict[str, float]:
    """CPU and memory of one kiosk process over a quiet period, after it has settled."""
    kiosk = subprocess.Popen([sys.executable, "-m", "device.cli", *command], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(5.0)  # imports, connect, first status
        cpu0, t0 = _cpu_seconds(kiosk.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = _cpu_seconds(kiosk.pid), time.monotonic()
        rss, peak = _rss_mb(kiosk.pid)
    finally:
        kiosk.terminate()
        kiosk.wait(10)
    return {"cpu": round(100 * (cpu1 - cpu0) / (t1 - t0), 3), "rss": round(rss, 1), "peak": round(peak, 1),
            "seconds": round(t1 - t0, 1)}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        broker = MosquittoProcess(Path(tmp) / "broker")
        broker.start()
        url = BrokerUrl.parse(broker.url)
        worker = IngestWorker(Path(tmp) / "hub.db", IngestConfig(broker=url))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        common = ["--broker", str(url), "--data"]
        try:
            agent = _measure(["run", "--kiosk-id", "idle-1", *common, str(Path(tmp) / "kiosk1")], args.seconds)
            # The same agent with the patient's screen served and no one at it (no radio or camera here: those
            # are hardware, and OpenCV loads only when the camera is used).
            serve = ["serve", "--kiosk-id", "idle-2", *common, str(Path(tmp) / "kiosk2"), "--port", "0"]
            screen = _measure([*serve, "--ble", "off", "--no-camera"], args.seconds)
        finally:
            worker.stop()
            thread.join(10)
            broker.stop()
    result = {
        "idle_cpu_percent": agent["cpu"],
        "rss_mb": agent["rss"],
        "peak_rss_mb": agent["peak"],
        "screen_idle_cpu_percent": screen["cpu"],
        "screen_rss_mb": screen["rss"],
        "screen_peak_rss_mb": screen["peak"],
        "seconds": agent["seconds"],
        "cpu_target_percent": CPU_TARGET_PERCENT,
        "rss_target_mb": RSS_TARGET_MB,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, m in (("kiosk agent (kiosk run)", agent), ("agent + screen (kiosk serve)", screen)):
            print(
                f"{name} idle over {m['seconds']} s: CPU {m['cpu']} % of one core "
                f"(target < {CPU_TARGET_PERCENT} %), RSS {m['rss']} MB, peak {m['peak']} MB "
                f"(target < {RSS_TARGET_MB} MB)"
            )
    return 0
