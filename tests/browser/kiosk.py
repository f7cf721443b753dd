"""The kiosk as a real process (`kiosk serve`): agent, virtual Bluetooth devices, a video-file camera, the screen.

Started with the same command a demo or a Pi runs, so the tests meet the screen through Chromium,
the devices through bumble's GATT, and the hub through Mosquitto.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import Page, Route

from device.protocol.endpoints import BrokerUrl
from tests.camera.test_photos import _skin
from tests.harness import REPO, cli

URL_LINE = re.compile(r"kiosk screen: (http://127\.0\.0\.1:\d+)/")


@dataclass
class KioskProcess:
    url: str
    data: Path
    proc: subprocess.Popen[str]
    log: list[str]


def rash_video(path: Path) -> Path:
    """A camera pointed at a rash for 3 s (10 fps, MJPG): sharp, well lit, no face."""
    image = np.array(_skin((1280, 960)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (1280, 960))
    rng = np.random.default_rng(1)
    for _ in range(30):
        noise = rng.normal(0, 1.0, image.shape).astype(np.float32)
        writer.write(np.clip(image + noise, 0, 255).astype(np.uint8))
    writer.release()
    return path


@contextmanager
def kiosk_screen(
    data: Path,
    kiosk_id: str,
    broker: BrokerUrl,
    *,
    camera_video: Path | None = None,
    idle_s: float = 120.0,
    warn_s: float = 30.0,
    extra_args: list[str] | None = None,
) -> Iterator[KioskProcess]:
    args = [
        "serve",
        "--kiosk-id", kiosk_id,
        "--broker", str(broker),
        "--data", str(data),
        "--port", "0",
        "--ble", "virtual",
        "--profiles", str(REPO / "firmware_configs" / "ble"),
        "--keepalive", "2",
        "--receipt-timeout", "2",
        "--heartbeat", "3600",
        "--idle-timeout", str(idle_s),
        "--idle-warning", str(warn_s),
    ]  # fmt: skip
    if camera_video is not None:
        profile = REPO / "firmware_configs" / "kiosk" / "video-file.yaml"
        args += ["--camera-profile", str(profile), "--camera-video", str(camera_video)]
    else:
        args.append("--no-camera")
    proc = cli("device.cli", *args, *(extra_args or []))
    assert proc.stdout is not None and proc.stderr is not None
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stderr or []), daemon=True).start()  # never let a pipe fill
    line = proc.stdout.readline()
    match = URL_LINE.search(line)
    if match is None:
        proc.kill()
        raise AssertionError(f"kiosk serve did not start: {line!r} {''.join(log)}")
    try:
        yield KioskProcess(match.group(1), data, proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class LiveUpdatesHeld:
    """Holds a page's live-update stream (/events) back until `release()`: what happens at the kiosk meanwhile
    reaches the page as no event, as when a page is slow to load. Later streams pass."""

    def __init__(self, page: Page) -> None:
        self._held: list[Route] = []
        self._released = False
        page.route("**/events", self._hold)

    def _hold(self, route: Route) -> None:
        if self._released:
            route.continue_()
        else:
            self._held.append(route)

    def release(self) -> None:
        self._released = True
        for route in self._held:
            route.continue_()
