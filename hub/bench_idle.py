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


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        broker = MosquittoProcess(Path(tmp) / "broker")
        broker.start()
        url = BrokerUrl.parse(broker.url)
        worker = IngestWorker(Path(tmp) / "hub.db", IngestConfig(broker=url))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        kiosk = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device.cli",
                "run",
                "--kiosk-id",
                "idle-1",
                "--broker",
                str(url),
                "--data",
                str(Path(tmp) / "kiosk"),
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(5.0)  # imports, connect, first status
            cpu0, t0 = _cpu_seconds(kiosk.pid), time.monotonic()
            time.sleep(args.seconds)
            cpu1, t1 = _cpu_seconds(kiosk.pid), time.monotonic()
            rss, peak = _rss_mb(kiosk.pid)
        finally:
            kiosk.terminate()
            kiosk.wait(10)
            worker.stop()
            thread.join(10)
            broker.stop()
    result = {
        "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "seconds": round(t1 - t0, 1),
        "cpu_target_percent": CPU_TARGET_PERCENT,
        "rss_target_mb": RSS_TARGET_MB,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"kiosk agent idle over {result['seconds']} s: CPU {result['idle_cpu_percent']} % of one core "
            f"(target < {CPU_TARGET_PERCENT} %), RSS {result['rss_mb']} MB, peak {result['peak_rss_mb']} MB "
            f"(target < {RSS_TARGET_MB} MB)"
        )
    return 0
