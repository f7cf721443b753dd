"""What the camera sees, for the patient: a small JPEG a few times a second, made only while someone looks.

A patient framing a rash for a photo, or keeping their face in view while the camera measures, needs to
see what the camera sees. The kiosk screen shows it as an `<img>` fed by its own server on 127.0.0.1
(`/camera/preview.mjpg`). On a Raspberry Pi it must cost next to nothing beside the vitals pipeline that
may be reading the same frames: one frame in `1 / fps` (5 a second) is shrunk to `width` (320 px) by area
averaging and encoded at `quality` 70 (a few milliseconds and about 15 KB a picture); every other frame is
skipped unread, and nothing runs once nobody has asked for a picture for `linger_s`. The pictures stay in
memory, one at a time, and the last one is dropped when the preview stops: the next patient never sees
the previous one's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from device.camera.errors import CameraError
from device.camera.source import Frame

log = logging.getLogger(__name__)

WIDTH: Final = 320
FPS: Final = 5.0
QUALITY: Final = 70
LINGER_S: Final = 2.0
RETRY_S: Final = 5.0  # after the camera failed, before it is opened again for a picture

Watch = Callable[[int], AbstractContextManager[Iterator[Frame]]]  # Camera.watch(maxsize)


def encode(image: NDArray[np.uint8], width: int = WIDTH, quality: int = QUALITY) -> bytes:
    """A BGR frame as a JPEG at most `width` pixels wide (area-averaged: no aliasing shimmer on skin texture)."""
    height, full = image.shape[:2]
    if full > width:
        size = (width, max(1, round(height * width / full)))
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CameraError("could not encode a preview picture")
    return data.tobytes()


class Preview:
    """The newest small picture of a shared camera (`watch`: `Camera.watch`), for whoever asks (`latest`)."""

    def __init__(
        self,
        watch: Watch,
        *,
        width: int = WIDTH,
        fps: float = FPS,
        quality: int = QUALITY,
        linger_s: float = LINGER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watch = watch
        self.width, self.fps, self.quality, self.linger_s = width, fps, quality, linger_s
        self._clock = clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._jpeg: bytes | None = None
        self._serial = 0
        self._wanted_until = 0.0
        self._failed_at: float | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def latest(self) -> tuple[int, bytes] | None:
        """The newest picture and its serial number (higher for each new picture), or None before the first.

        Never blocks: a page's stream polls it. Each call keeps the preview going for `linger_s` more; the
        first starts it (the camera opens if nothing else holds it open).
        """
        with self._lock:
            now = self._clock()
            self._wanted_until = now + self.linger_s
            retry = self._failed_at is None or now - self._failed_at >= RETRY_S
            if self._thread is None and not self._closed and retry:
                self._thread = threading.Thread(target=self._run, name="camera-preview", daemon=True)
                self._thread.start()
            return (self._serial, self._jpeg) if self._jpeg is not None else None

    def close(self) -> None:
        """Stop making pictures (the camera is closing): the thread ends with the camera's frames."""
        with self._lock:
            self._closed = True
            self._jpeg = None

    def _wanted(self) -> bool:
        """Whether to go on; when not, the thread is forgotten under the lock `latest` takes, so a caller either
        keeps this one going or starts a new one."""
        with self._lock:
            if not self._closed and self._clock() <= self._wanted_until:
                return True
            self._thread, self._jpeg = None, None
            return False

    def _run(self) -> None:
        period = 1.0 / self.fps
        due: float | None = None
        try:
            with self._watch(1) as frames:  # only the newest frame matters
                for frame in frames:
                    if not self._wanted():
                        return
                    if due is not None and frame.t < due:
                        continue
                    due = frame.t + period
                    jpeg = encode(frame.image, self.width, self.quality)
                    with self._lock:
                        self._jpeg, self._serial = jpeg, self._serial + 1
        except CameraError as exc:
            log.warning("camera preview: %s", exc)
            with self._lock:
                self._failed_at = self._clock()
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread, self._jpeg = None, None
