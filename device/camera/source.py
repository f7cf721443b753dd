"""Where the kiosk's frames come from: one narrow interface over a USB webcam, the Raspberry Pi camera and video files.

Everything downstream (face tracking, the pulse and breathing estimates) sees only `FrameSource`:
an iterator of `Frame`s, each a BGR image with the time it was captured and its frame number. The
vitals are read from colour changes of a fraction of a percent, so two things matter more here
than in an ordinary camera app:

- **Time.** Frames do not arrive at the nominal rate: USB cameras jitter by milliseconds, drop
  frames when the bus or the CPU is busy, and stretch exposures in dim light. Every frame carries
  its own capture time (`Frame.t`), frame numbers skip where frames were lost (`Frame.index`), and
  `resample_uniform` puts a per-frame signal onto the uniform grid a spectrum needs, refusing to
  interpolate across a long hole.
- **Pixels.** Compression (MJPG) quantises away exactly the small, smooth colour changes the
  pulse is made of, so the cameras ask for an uncompressed format first and record what they got,
  and automatic exposure and white balance can be locked (they add slow colour drift otherwise).

Video files (`VideoFileSource`) make all of it testable without a camera: the synthetic renderer
writes a lossless video plus a sidecar `<video>.timestamps.json` with the true capture times,
drops and jitter included, which a constant-rate container cannot carry.

`open_source` chooses the source from the kiosk's hardware profile (`device/camera/profile.py`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, runtime_checkable

import cv2
import numpy as np
from numpy.typing import NDArray

from device.camera.errors import CameraError
from device.camera.timebase import MAX_GAP_S, GapError, find_gaps, resample_uniform

if TYPE_CHECKING:
    from device.camera.profile import CameraProfile

log = logging.getLogger(__name__)

Image = NDArray[np.uint8]
FloatArray = NDArray[np.float64]


# Pixel formats that keep every sample as the sensor pipeline produced it. MJPG is the only compressed
# one the sources accept (H.264 and friends are not offered: OpenCV's V4L2 backend cannot decode them).
UNCOMPRESSED_FORMATS = frozenset({"YUYV", "UYVY", "NV12", "RGB888", "YUV420"})
# What a USB camera is asked for when the profile does not say: uncompressed first, MJPG as the fallback
# most webcams need at larger sizes (USB 2.0 cannot carry 1280x720 YUYV at 30 fps).
DEFAULT_OPENCV_FORMATS = ("YUYV", "MJPG")
PICAMERA2_FORMATS = ("RGB888", "YUV420")

# How long automatic exposure and white balance are left to settle on the scene before they are locked.
AUTO_SETTLE_S = 1.0

# V4L2_CID_EXPOSURE_AUTO values, which OpenCV's V4L2 backend passes through unchanged.
_V4L2_EXPOSURE_MANUAL = 1
_V4L2_EXPOSURE_APERTURE_PRIORITY = 3


@dataclass(frozen=True, eq=False, slots=True)
class Frame:
    """One captured frame.

    `image` is HxWx3 uint8 in BGR order (OpenCV's), whatever the source. `t` is the capture time in
    seconds, strictly increasing within one source; its zero is the source's own (a file's first
    frame, the system's monotonic clock for a camera), so only differences mean anything. `index`
    is the frame number as captured: it steps by one between consecutive frames, and a larger step
    means frames were lost in between. Equality is identity (comparing images pixel by pixel is
    never what a caller means).
    """

    image: Image
    t: float
    index: int


@runtime_checkable
class FrameSource(Protocol):
    """What the vitals pipeline needs from a camera; close it (or use `with`) to release the device."""

    @property
    def nominal_fps(self) -> float:
        """The rate the source was configured for. Frames are not guaranteed to arrive at it: use `Frame.t`."""
        ...

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame's image, in pixels."""
        ...

    def frames(self) -> Iterator[Frame]:
        """Frames in capture order until the source ends or is closed; raises `CameraError` when it fails."""
        ...

    def close(self) -> None:
        """Release the camera or file; an iteration in progress ends cleanly. Calling it twice is harmless."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _Closing:
    """Context-manager support shared by the sources: leaving the block closes the source."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _next_index(previous_index: int, dt: float, fps: float) -> int:
    """The frame number after one `dt` seconds later: how many frame periods passed, at least one.

    Counted from the previous frame rather than the first, so a rate a fraction off nominal (sensor
    clocks are) cannot accumulate into a phantom drop over a long recording.
    """
    return previous_index + max(1, round(dt * fps))


# -- video files -----------------------------------------------------------------------------------


def timestamps_path(video: Path | str) -> Path:
    """Where the capture times of `video` are kept: `<video path>.timestamps.json` (e.g. `clip.mkv.timestamps.json`)."""
    return Path(f"{video}.timestamps.json")


def read_timestamps(path: Path) -> list[float]:
    """The capture times in a sidecar file: a JSON list of seconds, one per frame, strictly increasing.

    The synthetic renderer writes an object with the list under "timestamps" and its codec and nominal
    rate beside it; both forms are read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CameraError(f"cannot read frame timestamps {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CameraError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict):  # the renderer's form: metadata beside the list
        data = data.get("timestamps")
    if not isinstance(data, list) or not data:
        raise CameraError(
            f"{path}: expected a JSON list of capture times in seconds, one per frame of the video "
            '(or an object with that list under "timestamps")'
        )
    times: list[float] = []
    for position, value in enumerate(data):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise CameraError(f"{path}: entry {position} is {value!r}, not a time in seconds")
        if times and value <= times[-1]:
            raise CameraError(
                f"{path}: capture times must increase, but entry {position} ({value}) is not after "
                f"entry {position - 1} ({times[-1]})"
            )
        times.append(float(value))
    return times


def _check_video_file(path: Path) -> None:
    """Fail with the actual reason before OpenCV does: it only ever says that it could not open the file."""
    if not path.exists():
        raise CameraError(f"video file not found: {path}")
    if path.is_dir():
        raise CameraError(f"{path} is a folder, not a video file")
    try:
        with path.open("rb") as handle:
            empty = handle.read(1) == b""
    except OSError as exc:
        raise CameraError(f"cannot read video file {path}: {exc.strerror or exc}") from None
    if empty:
        raise CameraError(f"video file {path} is empty (0 bytes)")


class VideoFileSource(_Closing):
    """Frames from a video file, with the capture times it was recorded (or rendered) with.

    Any container and codec OpenCV's FFmpeg backend reads will do; lossless FFV1 in MKV keeps the
    pixels exactly as rendered, MJPG in AVI shows what compression does to the signal. Capture times
    come from, in order of preference:

    1. the sidecar `<video path>.timestamps.json` (see `timestamps_path`), when it exists: one time
       per frame of the file, so drops and jitter survive. It must match the video frame for frame;
       a mismatch is a `CameraError` (when the sidecar is short, as soon as a frame has no time; when
       the video is short, at its end), because times shifted by one frame are silently wrong;
    2. the container's presentation time of each frame (CAP_PROP_POS_MSEC; MKV stores whole
       milliseconds, so expect +-0.5 ms of quantisation);
    3. the frame's position divided by the container's frame rate, for any frame whose container
       time is missing or does not increase (logged once per file).

    `index` follows the times: consecutive unless the times skip one or more frame periods of the
    container's rate (how a sidecar records a drop). `realtime=True` delivers each frame when its
    time comes (demos, or code that must see frames arrive like a camera's); otherwise frames come
    as fast as they decode. `max_seconds` stops after that much capture time from the first frame.
    `frames()` continues where the previous call stopped: a file is one stream, like a camera.
    """

    def __init__(self, path: Path | str, *, realtime: bool = False, max_seconds: float | None = None) -> None:
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.path = Path(path)
        self.realtime = realtime
        self.max_seconds = max_seconds
        _check_video_file(self.path)
        self.sidecar = timestamps_path(self.path)
        self._times = read_timestamps(self.sidecar) if self.sidecar.is_file() else None
        self.timestamp_source: Literal["sidecar", "container"] = "sidecar" if self._times is not None else "container"
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(
                f"{self.path} is not a video OpenCV can open (not a video at all, truncated, or a codec this "
                "OpenCV build lacks)"
            )
        first = self._decode()
        if first is None:
            self._cap.release()
            raise CameraError(f"{self.path}: opened, but no frame could be decoded (truncated or unsupported codec)")
        self._pending: tuple[Image, float] | None = first
        self._size = (int(first[0].shape[1]), int(first[0].shape[0]))
        self._fps = self._container_fps()
        self._decoded = 0  # frames taken from the file so far: the position of the next one
        self._previous: tuple[float, int] | None = None  # (t, index) of the last frame delivered
        self._t0: float | None = None
        self._wall0 = 0.0
        self._warned_fallback = False
        self._closed = False
        self._ended = False

    @property
    def nominal_fps(self) -> float:
        """The container's frame rate (or, when it has none, the sidecar's median rate)."""
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the decoded frames."""
        return self._size

    def _container_fps(self) -> float:
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        if math.isfinite(fps) and fps > 0:
            return fps
        if self._times is not None and len(self._times) > 1:
            return float(1.0 / np.median(np.diff(self._times)))
        self._cap.release()
        raise CameraError(f"{self.path} states no frame rate and has no {self.sidecar.name}: frames cannot be timed")

    def _decode(self) -> tuple[Image, float] | None:
        """The next frame as BGR and its container time in ms (read right after it, as OpenCV requires)."""
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        position_ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        array = np.asarray(image, dtype=np.uint8)
        if array.ndim == 2:
            array = np.asarray(cv2.cvtColor(array, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
        elif array.shape[2] == 4:
            array = np.asarray(cv2.cvtColor(array, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
        return array, position_ms

    def _time_of(self, position: int, position_ms: float) -> float:
        previous = self._previous[0] if self._previous is not None else None
        if self._times is not None:
            if position >= len(self._times):
                raise CameraError(
                    f"{self.sidecar} lists {len(self._times)} capture times but {self.path} has more frames: "
                    "the sidecar belongs to another render of the video"
                )
            return self._times[position]
        t = position_ms / 1000.0
        if math.isfinite(t) and t >= 0 and (previous is None or t > previous):
            return t
        if not self._warned_fallback:
            log.warning("%s: no usable container time at frame %d; timing by the frame rate", self.path, position)
            self._warned_fallback = True
        return position / self._fps if previous is None else previous + 1.0 / self._fps

    def frames(self) -> Iterator[Frame]:
        """Frames from where the last call stopped; see the class for how they are timed and paced."""
        while not self._closed and not self._ended:
            decoded = self._pending if self._pending is not None else self._decode()
            self._pending = None
            if decoded is None:
                self._ended = True
                if self._times is not None and self._decoded != len(self._times):
                    raise CameraError(
                        f"{self.sidecar} lists {len(self._times)} capture times but {self.path} has "
                        f"{self._decoded} frames: the sidecar belongs to another render of the video"
                    )
                return
            image, position_ms = decoded
            t = self._time_of(self._decoded, position_ms)
            self._decoded += 1
            if self._t0 is None:
                self._t0, self._wall0 = t, time.monotonic()
            if self.max_seconds is not None and t - self._t0 >= self.max_seconds:
                self._ended = True
                return
            if self.realtime:
                delay = self._wall0 + (t - self._t0) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            index = 0 if self._previous is None else _next_index(self._previous[1], t - self._previous[0], self._fps)
            self._previous = (t, index)
            yield Frame(image=image, t=t, index=index)

    def close(self) -> None:
        """Release the file; a `frames()` iteration in progress ends at its next step."""
        self._closed = True
        self._pending = None
        self._cap.release()


# -- USB (UVC) cameras through OpenCV ---------------------------------------------------------------


def _fourcc_text(code: float) -> str:
    value = int(code)
    return "".join(chr((value >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ") if value > 0 else ""


@dataclass(frozen=True)
class CameraFormat:
    """What a camera actually delivers after negotiation, which may differ from what was asked for."""

    fourcc: str  # "" when the backend does not say
    width: int
    height: int
    fps: float

    @property
    def compressed(self) -> bool:
        """True when the pixels went through a lossy codec on the camera (MJPG): the pulse signal suffers."""
        return self.fourcc not in UNCOMPRESSED_FORMATS


class OpenCvCamera(_Closing):
    """A USB (UVC) or other V4L2 camera through `cv2.VideoCapture` (the V4L2 backend on Linux).

    Formats are tried in order (`pixel_formats`, or YUYV then MJPG when `prefer_uncompressed`, the
    reverse otherwise) and the one the driver accepted is kept in `negotiated` together with the
    size and rate it really gave; when that is a compressed format a warning is logged, and the
    kiosk can show one (`negotiated.compressed`).

    Capture time is `time.monotonic()` taken right after `grab()` returns, not the driver's buffer
    timestamp: what OpenCV reports as that (CAP_PROP_POS_MSEC) depends on the backend and driver
    (V4L2 buffer time in the driver's clock, which may be start or end of exposure; stream-relative
    for other backends; 0 for some), none of which can be told apart or compared with the kiosk's
    other clocks from here. The monotonic time is in the same clock as the rest of the kiosk and
    lags the true capture by a roughly constant latency, which a rate estimate does not see. It is
    the time of *delivery*, so it is only as good as the consumer is prompt: a consumer that falls
    behind gets buffered frames stamped late (keep up with the camera, or read it in its own thread).
    The driver timestamp is still used for `index`: its frame-to-frame spacing is reliable even
    where its zero is not, so a gap of several frame periods there is counted as dropped frames.

    With `lock_exposure`/`lock_white_balance`, the automatic controls are switched on at open, left
    `settle_seconds` to adapt to the scene (those frames are read and discarded when `frames()`
    starts), then switched off at the values they chose. What the driver accepted is in `controls`;
    a refusal is logged. A failed read raises `CameraError`, unless the camera was closed.
    """

    def __init__(
        self,
        device: int | str,
        *,
        width: int,
        height: int,
        fps: float,
        prefer_uncompressed: bool = True,
        pixel_formats: Sequence[str] | None = None,
        lock_exposure: bool = False,
        lock_white_balance: bool = False,
        settle_seconds: float = AUTO_SETTLE_S,
    ) -> None:
        self.device = device
        self.lock_exposure = lock_exposure
        self.lock_white_balance = lock_white_balance
        self.settle_seconds = settle_seconds
        if pixel_formats:
            formats = tuple(pixel_formats)
        else:
            formats = DEFAULT_OPENCV_FORMATS if prefer_uncompressed else DEFAULT_OPENCV_FORMATS[::-1]
        self._cap = self._open(device)
        try:
            self.negotiated = self._negotiate(formats, width, height, fps)
            self.controls: dict[str, bool] = {}
            if lock_exposure:
                self.controls["auto_exposure"] = self._cap.set(
                    cv2.CAP_PROP_AUTO_EXPOSURE, _V4L2_EXPOSURE_APERTURE_PRIORITY
                )
            if lock_white_balance:
                self.controls["auto_white_balance"] = self._cap.set(cv2.CAP_PROP_AUTO_WB, 1)
        except BaseException:
            self._cap.release()
            raise
        self._locked = not (lock_exposure or lock_white_balance)
        self._lock = threading.Lock()  # held around grab/retrieve, so close() never releases mid-read
        self._closed = False
        self._previous: tuple[float, int] | None = None  # (driver ms, index) of the last frame
        if self.negotiated.compressed:
            log.warning(
                "camera %s delivers %s, not an uncompressed format (asked for %s): compression weakens the "
                "pulse signal",
                device,
                self.negotiated.fourcc or "an unknown format",
                ", ".join(formats),
            )
        if (self.negotiated.width, self.negotiated.height) != (width, height):
            log.warning(
                "camera %s gives %dx%d, not the %dx%d asked for",
                device,
                self.negotiated.width,
                self.negotiated.height,
                width,
                height,
            )

    @staticmethod
    def _open(device: int | str) -> cv2.VideoCapture:
        if sys.platform.startswith("linux"):
            node = Path(f"/dev/video{device}") if isinstance(device, int) else Path(device)
            if not node.exists():
                raise CameraError(
                    f"no camera at {node}: not plugged in, or another device number (`v4l2-ctl --list-devices` "
                    "lists the cameras)"
                )
            backend = cv2.CAP_V4L2
        else:
            backend = cv2.CAP_ANY
        cap = cv2.VideoCapture(device, backend)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"camera {device!r} could not be opened: not a capture device, in use by another program, or no "
                "permission (the kiosk user must be in the 'video' group)"
            )
        return cap

    def _negotiate(self, formats: Sequence[str], width: int, height: int, fps: float) -> CameraFormat:
        """Ask for each format in turn (format first: V4L2 re-applies size and rate when it changes)."""
        for fourcc in formats:
            if len(fourcc) != 4:
                raise ValueError(f"{fourcc!r} is not a four-character pixel format")
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*fourcc))
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            self._cap.set(cv2.CAP_PROP_FPS, fps)
            if _fourcc_text(self._cap.get(cv2.CAP_PROP_FOURCC)) == fourcc:
                break
        got_fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        return CameraFormat(
            fourcc=_fourcc_text(self._cap.get(cv2.CAP_PROP_FOURCC)),
            width=int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=got_fps if math.isfinite(got_fps) and got_fps > 0 else fps,
        )

    @property
    def nominal_fps(self) -> float:
        """The rate the driver agreed to (or the one asked for, when it does not say)."""
        return self.negotiated.fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the driver agreed to."""
        return self.negotiated.width, self.negotiated.height

    def _grab(self) -> tuple[Image, float, float] | None:
        """(image, monotonic time, driver ms) of the next frame; None when closed; CameraError when it fails."""
        with self._lock:
            if self._closed:
                return None
            grabbed = self._cap.grab()
            t = time.monotonic()
            driver_ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) if grabbed else math.nan
            ok, image = self._cap.retrieve() if grabbed else (False, None)
        if self._closed:
            return None
        if not ok or image is None:
            raise CameraError(f"camera {self.device!r} delivered no frame (unplugged, or the driver stopped)")
        return np.asarray(image, dtype=np.uint8), t, driver_ms

    def _settle_and_lock(self) -> None:
        deadline = time.monotonic() + self.settle_seconds
        while time.monotonic() < deadline:
            if self._grab() is None:
                return
        with self._lock:
            if self._closed:
                return
            if self.lock_exposure:
                exposure = self._cap.get(cv2.CAP_PROP_EXPOSURE)
                manual = self._cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, _V4L2_EXPOSURE_MANUAL)
                self.controls["exposure_locked"] = manual and self._cap.set(cv2.CAP_PROP_EXPOSURE, exposure)
            if self.lock_white_balance:
                temperature = self._cap.get(cv2.CAP_PROP_WB_TEMPERATURE)
                manual = self._cap.set(cv2.CAP_PROP_AUTO_WB, 0)
                self.controls["white_balance_locked"] = manual and self._cap.set(
                    cv2.CAP_PROP_WB_TEMPERATURE, temperature
                )
        for name, accepted in self.controls.items():
            if not accepted:
                log.warning("camera %s refused %s: colours may drift during a measurement", self.device, name)
        self._locked = True

    def frames(self) -> Iterator[Frame]:
        """Frames as they come, after the settling time when controls are to be locked; ends on close()."""
        if not self._locked:
            self._settle_and_lock()
        while (grabbed := self._grab()) is not None:
            image, t, driver_ms = grabbed
            if self._previous is None:
                index = 0
            else:
                previous_ms, previous_index = self._previous
                spacing = (driver_ms - previous_ms) / 1000.0
                usable = math.isfinite(spacing) and spacing > 0
                index = _next_index(previous_index, spacing, self.nominal_fps) if usable else previous_index + 1
            self._previous = (driver_ms, index)
            yield Frame(image=image, t=t, index=index)

    def close(self) -> None:
        """Release the camera; waits for a read in progress (at most one frame period or the driver timeout)."""
        self._closed = True
        with self._lock:
            self._cap.release()


# -- the Raspberry Pi camera ------------------------------------------------------------------------


class Picamera2Source(_Closing):
    """The Raspberry Pi camera through picamera2 (libcamera); only on a Pi, where picamera2 is installed.

    The main stream is RGB888 (which picamera2 lays out as B, G, R: OpenCV's order, no conversion) or
    YUV420 (converted here); both are uncompressed. The frame rate is pinned with FrameDurationLimits.
    Capture time is the frame's `SensorTimestamp` metadata (ns) converted to seconds: the frame-start
    time the kernel recorded as the frame came off the sensor, in the same clock as `time.monotonic()`
    by picamera2's maintainers' account (raspberrypi/picamera2 issues 703 and 787; not checked here).
    Unlike a USB camera's delivery time it does not depend on how promptly frames are read, and
    `index` counts frame periods between those times. Exposure and white balance are locked as in
    `OpenCvCamera`: after `settle_seconds`, the values the automatic controls reached (ExposureTime,
    AnalogueGain, ColourGains from the metadata) are set as fixed controls, which is how libcamera
    on the Pi turns the automatic controls off.

    Not tested on hardware in this repository's CI (see the `hardware` test); kept thin on purpose.
    """

    def __init__(
        self,
        camera: int = 0,
        *,
        width: int,
        height: int,
        fps: float,
        pixel_format: str = "RGB888",
        lock_exposure: bool = False,
        lock_white_balance: bool = False,
        settle_seconds: float = AUTO_SETTLE_S,
    ) -> None:
        if pixel_format not in PICAMERA2_FORMATS:
            allowed = ", ".join(PICAMERA2_FORMATS)
            raise ValueError(f"picamera2 pixel format must be one of {allowed}, not {pixel_format}")
        try:
            picamera2: Any = importlib.import_module("picamera2")
        except ImportError:
            raise CameraError(
                "the Raspberry Pi camera needs picamera2 (Raspberry Pi OS: apt install python3-picamera2, and a "
                "virtualenv made with --system-site-packages)"
            ) from None
        self.pixel_format = pixel_format
        self.lock_exposure = lock_exposure
        self.lock_white_balance = lock_white_balance
        self.settle_seconds = settle_seconds
        self._fps = fps
        period_us = round(1_000_000 / fps)
        try:
            self._camera: Any = picamera2.Picamera2(camera)
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraError(f"Raspberry Pi camera {camera} could not be opened: {exc}") from None
        try:
            config = self._camera.create_video_configuration(
                main={"size": (width, height), "format": pixel_format},
                controls={"FrameDurationLimits": (period_us, period_us)},
            )
            self._camera.configure(config)
            self._camera.start()
            main = self._camera.camera_configuration()["main"]
            self._size = (int(main["size"][0]), int(main["size"][1]))
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            self._camera.close()
            raise CameraError(f"Raspberry Pi camera {camera} could not be started at {width}x{height}: {exc}") from None
        self.controls: dict[str, bool] = {}
        self._locked = not (lock_exposure or lock_white_balance)
        self._lock = threading.Lock()
        self._closed = False
        self._previous: tuple[float, int] | None = None

    @property
    def nominal_fps(self) -> float:
        """The rate pinned through FrameDurationLimits."""
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the main stream as configured (libcamera may round the size asked for)."""
        return self._size

    def _capture(self) -> tuple[Image, dict[str, Any]] | None:
        with self._lock:
            if self._closed:
                return None
            request = self._camera.capture_request()
            try:
                array = np.asarray(request.make_array("main"), dtype=np.uint8)
                metadata: dict[str, Any] = dict(request.get_metadata())
            finally:
                request.release()
        if self.pixel_format == "YUV420":
            array = np.asarray(cv2.cvtColor(array, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)
        return array, metadata

    def _settle_and_lock(self) -> None:
        deadline = time.monotonic() + self.settle_seconds
        metadata: dict[str, Any] = {}
        while time.monotonic() < deadline:
            captured = self._capture()
            if captured is None:
                return
            metadata = captured[1]
        fixed: dict[str, Any] = {}
        if self.lock_exposure and "ExposureTime" in metadata and "AnalogueGain" in metadata:
            fixed |= {"ExposureTime": metadata["ExposureTime"], "AnalogueGain": metadata["AnalogueGain"]}
        if self.lock_white_balance and "ColourGains" in metadata:
            fixed["ColourGains"] = metadata["ColourGains"]
        self._camera.set_controls(fixed)
        if self.lock_exposure:
            self.controls["exposure_locked"] = "ExposureTime" in fixed
        if self.lock_white_balance:
            self.controls["white_balance_locked"] = "ColourGains" in fixed
        for name, done in self.controls.items():
            if not done:
                log.warning("Raspberry Pi camera: %s not possible (metadata lacks the values)", name)
        self._locked = True

    def frames(self) -> Iterator[Frame]:
        """Frames timed by the sensor, after the settling time when controls are to be locked."""
        if not self._locked:
            self._settle_and_lock()
        while (captured := self._capture()) is not None:
            image, metadata = captured
            t = int(metadata["SensorTimestamp"]) / 1e9
            index = 0 if self._previous is None else _next_index(self._previous[1], t - self._previous[0], self._fps)
            self._previous = (t, index)
            yield Frame(image=image, t=t, index=index)

    def close(self) -> None:
        """Stop and release the camera (libcamera allows one user at a time)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._camera.stop()
            self._camera.close()


# -- onto a uniform time grid -----------------------------------------------------------------------


# -- choosing the source ----------------------------------------------------------------------------


def open_source(profile: CameraProfile, *, file: Path | None = None, realtime: bool = False) -> FrameSource:
    """The frame source a kiosk's camera profile describes.

    `file`, when given, replaces the camera with that video whatever the profile's kind (a demo on
    a real kiosk, a recorded session replayed); for `kind: file` it is required unless the profile
    names a video in `device`. `realtime` paces a video like a camera (see `VideoFileSource`).
    """
    if file is not None or profile.kind == "file":
        video = file if file is not None else profile.device
        if not isinstance(video, str | Path):
            raise CameraError("the file camera needs a video: give one (file=...) or set camera.device to its path")
        return VideoFileSource(Path(video), realtime=realtime)
    if profile.kind == "opencv":
        if profile.device is None:
            raise CameraError("an opencv camera profile needs camera.device (an index or a /dev path)")
        return OpenCvCamera(
            profile.device,
            width=profile.width,
            height=profile.height,
            fps=profile.fps,
            pixel_formats=profile.pixel_format or None,
            lock_exposure=profile.lock_exposure,
            lock_white_balance=profile.lock_white_balance,
        )
    if importlib.util.find_spec("picamera2") is None:
        raise CameraError(
            "this profile uses the Raspberry Pi camera, but picamera2 is not installed (apt install python3-picamera2)"
        )
    camera = profile.device if isinstance(profile.device, int) else 0
    return Picamera2Source(
        camera,
        width=profile.width,
        height=profile.height,
        fps=profile.fps,
        pixel_format=profile.pixel_format[0] if profile.pixel_format else PICAMERA2_FORMATS[0],
        lock_exposure=profile.lock_exposure,
        lock_white_balance=profile.lock_white_balance,
    )


__all__ = [
    "AUTO_SETTLE_S",
    "DEFAULT_OPENCV_FORMATS",
    "MAX_GAP_S",
    "PICAMERA2_FORMATS",
    "UNCOMPRESSED_FORMATS",
    "CameraError",
    "CameraFormat",
    "Frame",
    "FrameSource",
    "GapError",
    "OpenCvCamera",
    "Picamera2Source",
    "VideoFileSource",
    "find_gaps",
    "open_source",
    "read_timestamps",
    "resample_uniform",
    "timestamps_path",
]
