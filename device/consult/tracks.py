"""Media for a call: the kiosk camera as a WebRTC video track, and the microphone (or a test tone).

The camera track watches the shared `Camera` (device/screen/station.py): the vitals pipeline can
measure from the very frames the provider sees, and the device is opened once.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import threading
from typing import TYPE_CHECKING

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

if TYPE_CHECKING:
    from device.screen.station import Camera

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms


class CameraTrack(MediaStreamTrack):
    """Frames from the shared camera as they come (a camera paces itself), newest first: a late frame is dropped."""

    kind = "video"

    def __init__(self, camera: Camera, width: int = 640) -> None:
        super().__init__()
        self._camera = camera
        self._width = width
        self._event_loop = asyncio.get_running_loop()
        self._latest: asyncio.Queue[tuple[np.ndarray, float]] = asyncio.Queue(maxsize=1)
        self._stop = threading.Event()
        self._t0: float | None = None
        self._thread = threading.Thread(target=self._pump, name="call-camera", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        import cv2  # noqa: PLC0415

        try:
            with self._camera.watch(maxsize=2) as frames:
                for frame in frames:
                    if self._stop.is_set():
                        return
                    image = frame.image
                    if image.shape[1] > self._width:
                        height = round(image.shape[0] * self._width / image.shape[1]) // 2 * 2
                        image = np.asarray(
                            cv2.resize(image, (self._width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8
                        )
                    self._event_loop.call_soon_threadsafe(self._put, image, frame.t)
        except Exception as exc:  # noqa: BLE001 - a camera that fails ends the track; the call sees no more frames
            log.warning("call: the camera stopped: %s", exc)
            self._event_loop.call_soon_threadsafe(self.stop)

    def _put(self, image: np.ndarray, t: float) -> None:
        if self._latest.full():
            self._latest.get_nowait()
        self._latest.put_nowait((image, t))

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        image, t = await self._latest.get()
        self._t0 = t if self._t0 is None else self._t0
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = int((t - self._t0) * VIDEO_CLOCK)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame

    def stop(self) -> None:
        self._stop.set()
        super().stop()


class ToneTrack(MediaStreamTrack):
    """A quiet 440 Hz tone for kiosks without a microphone (demo, tests): audio that can be checked on arrival."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, level: float = 0.05) -> None:
        super().__init__()
        self._frequency = frequency
        self._level = level
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._samples / AUDIO_RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        n = np.arange(self._samples, self._samples + AUDIO_FRAME)
        wave = (self._level * 32767 * np.sin(2 * math.pi * self._frequency * n / AUDIO_RATE)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._samples += AUDIO_FRAME
        return frame


def microphone(spec: str) -> MediaStreamTrack:
    """`tone` (no microphone), or `alsa:<device>` (the Pi's microphone through ALSA, e.g. alsa:default)."""
    if spec == "tone":
        return ToneTrack()
    kind, _, device = spec.partition(":")
    if kind != "alsa" or not device:
        raise ValueError(f"microphone {spec!r}: expected 'tone' or 'alsa:<device>'")
    from aiortc.contrib.media import MediaPlayer  # noqa: PLC0415

    player = MediaPlayer(device, format="alsa", options={"channels": "1", "sample_rate": str(AUDIO_RATE)})
    if player.audio is None:
        raise ValueError(f"ALSA device {device!r} gives no audio")
    return player.audio
