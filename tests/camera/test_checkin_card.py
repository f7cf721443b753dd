"""The kiosk camera reads a patient's check-in card (the QR code the hub prints) from a video, as it would live."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from device.screen.station import Camera, CameraConfig
from hub.web.routes.patients import card_qr
from tests.harness import REPO

PROFILE = REPO / "firmware_configs" / "kiosk" / "video-file.yaml"


def card_video(path: Path, text: str | None, seconds: float = 2.0, fps: int = 10) -> Path:
    """The hub's check-in card held up to a 640x480 camera: its QR code on a white card, slightly turned."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    if text is not None:
        png = io.BytesIO()
        card_qr(text).save(png, kind="png", scale=6, border=4)
        qr = cv2.imdecode(np.frombuffer(png.getvalue(), np.uint8), cv2.IMREAD_COLOR)
        card = np.full((qr.shape[0] + 60, qr.shape[1] + 60, 3), 245, np.uint8)
        card[30 : 30 + qr.shape[0], 30 : 30 + qr.shape[1]] = qr
        turn = cv2.getRotationMatrix2D((card.shape[1] / 2, card.shape[0] / 2), 8, 1.0)
        card = cv2.warpAffine(card, turn, (card.shape[1], card.shape[0]), borderValue=(90, 90, 90))
        y, x = (480 - card.shape[0]) // 2, (640 - card.shape[1]) // 2
        frame[y : y + card.shape[0], x : x + card.shape[1]] = card
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (640, 480))
    rng = np.random.default_rng(0)
    for _ in range(int(seconds * fps)):
        writer.write(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


def test_the_code_on_a_card_held_to_the_camera_is_read(tmp_path: Path) -> None:
    camera = Camera(CameraConfig(PROFILE, card_video(tmp_path / "card.avi", "P-1001")))
    assert camera.scan_code(seconds=5) == "P-1001"
    assert not camera.busy


def test_no_card_in_view_gives_nothing_after_the_time_allowed(tmp_path: Path) -> None:
    camera = Camera(CameraConfig(PROFILE, card_video(tmp_path / "room.avi", None, seconds=1.5)))
    assert camera.scan_code(seconds=1.0) is None


def test_watchers_at_the_same_time_share_one_opening_of_the_camera(tmp_path: Path) -> None:
    """A consult's video and a vitals measurement see the same frames; the device is not opened twice."""
    import threading

    camera = Camera(CameraConfig(PROFILE, card_video(tmp_path / "card.avi", "P-1001", seconds=1.0)))
    seen: dict[str, list[float]] = {}

    def watch(name: str, count: int) -> None:
        with camera.watch() as frames:
            seen[name] = [f.t for _, f in zip(range(count), frames, strict=False)]

    first = threading.Thread(target=watch, args=("call", 25))
    first.start()
    while not camera.busy:
        pass
    watch("vitals", 10)
    first.join()
    assert camera.opened >= 1
    assert set(seen["vitals"]) <= set(seen["call"])  # the very same frames
    # 25 frames of a 1 s, 10 fps video: it played again, and its times kept increasing.
    assert all(b > a for a, b in zip(seen["call"], seen["call"][1:], strict=False))
    assert camera.opened == 3  # the file ended twice and was replayed; never opened twice at once
