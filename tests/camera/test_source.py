"""Frame sources and kiosk hardware profiles, without a camera: small videos written here with cv2.VideoWriter
are read back with the right frames, sizes and capture times (sidecar drops and jitter included), broken files
and absent cameras fail with messages a person can act on, `resample_uniform` recovers a known signal from
irregular frames and refuses to bridge a long hole, and the shipped profiles load and are documented."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import re
import time
from pathlib import Path
from typing import Any, get_args

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import BaseModel

from device.camera.profile import (
    CameraKind,
    CameraProfile,
    KioskHardwareProfile,
    PixelFormat,
    ProfileError,
    load_kiosk_profile,
)
from device.camera.source import (
    CameraError,
    Frame,
    FrameSource,
    GapError,
    OpenCvCamera,
    Picamera2Source,
    VideoFileSource,
    find_gaps,
    open_source,
    resample_uniform,
    timestamps_path,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "firmware_configs" / "kiosk"
FORMAT_DOC = (REPO / "firmware_configs" / "README.md").read_text()
HAS_PICAMERA2 = importlib.util.find_spec("picamera2") is not None

WIDTH, HEIGHT, FPS = 64, 48, 30.0


def picture(i: int) -> NDArray[np.uint8]:
    """Frame i: a smooth gradient whose level and colour change with i, so frames are told apart after decoding."""
    x = np.linspace(0, 60, WIDTH, dtype=np.float64)[None, :]
    y = np.linspace(0, 40, HEIGHT, dtype=np.float64)[:, None]
    image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[..., 0] = np.clip(20 + 10 * i + x, 0, 255)
    image[..., 1] = np.clip(100 + y, 0, 255)
    image[..., 2] = np.clip(200 - 7 * i + 0 * x, 0, 255)
    return image


def write_video(path: Path, fourcc: str, count: int, fps: float = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        # opencv-python's wheel (pinned in pyproject) bundles FFmpeg with MJPG and FFV1: not writing
        # them means a broken install, which must fail here rather than skip the camera tests.
        pytest.fail(f"this OpenCV cannot write {fourcc} to {path.suffix}: reinstall opencv-python (make test does)")
    for i in range(count):
        writer.write(picture(i))
    writer.release()
    return path


def read_all(source: FrameSource) -> list[Frame]:
    with source:
        return list(source.frames())


# -- video files ---------------------------------------------------------------------------------------


def test_an_mjpg_avi_reads_back_with_its_count_size_and_times(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 12)
    source = VideoFileSource(video)
    assert isinstance(source, FrameSource)
    assert source.size == (WIDTH, HEIGHT) and source.nominal_fps == pytest.approx(FPS)
    frames = read_all(source)
    assert len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    assert [f.t for f in frames] == pytest.approx([i / FPS for i in range(12)], abs=1e-6)
    for i, frame in enumerate(frames):
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
        # MJPG is lossy: close to what was written, and closer to it than to its neighbours.
        error = np.abs(frame.image.astype(int) - picture(i).astype(int)).mean()
        assert error < 3
        if i + 1 < 12:
            assert error < np.abs(frame.image.astype(int) - picture(i + 1).astype(int)).mean()


def test_a_lossless_ffv1_mkv_gives_back_the_exact_pixels(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mkv", "FFV1", 10)
    frames = read_all(VideoFileSource(video))
    assert len(frames) == 10
    for i, frame in enumerate(frames):
        assert np.array_equal(frame.image, picture(i))
    # MKV keeps presentation times in whole milliseconds.
    assert [f.t for f in frames] == pytest.approx([i / FPS for i in range(10)], abs=0.001)
    assert [f.index for f in frames] == list(range(10))


def test_sidecar_times_with_drops_and_jitter_are_honoured(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mkv", "FFV1", 10)
    # Frames 3 and 4 and frame 8 were dropped by the "camera"; every time jitters by a few milliseconds.
    captured = [0, 1, 2, 5, 6, 7, 9, 10, 11, 12]
    jitter = [0.0, 0.004, -0.003, 0.002, -0.004, 0.001, 0.003, -0.002, 0.0, 0.004]
    times = [100.0 + n / FPS + j for n, j in zip(captured, jitter, strict=True)]
    timestamps_path(video).write_text(json.dumps(times))
    assert timestamps_path(video).name == "clip.mkv.timestamps.json"
    source = VideoFileSource(video)
    assert source.timestamp_source == "sidecar"
    frames = read_all(source)
    assert [f.t for f in frames] == times
    assert [f.index for f in frames] == captured
    assert all(np.array_equal(f.image, picture(i)) for i, f in enumerate(frames))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[0.0, 0.1", r"clip\.avi\.timestamps\.json:1: not valid JSON"),
        ('{"t": [0.0]}', r"expected a JSON list of capture times"),
        ("[0.0, 0.1, 0.1, 0.2]", r"entry 2 \(0\.1\) is not after entry 1"),
        ('[0.0, "0.1"]', r"entry 1 is '0\.1', not a time in seconds"),
        ("[0.0, NaN]", r"entry 1 is nan"),
    ],
)
def test_a_broken_sidecar_is_an_error_naming_it(tmp_path: Path, content: str, expected: str) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 4)
    timestamps_path(video).write_text(content)
    with pytest.raises(CameraError, match=expected):
        VideoFileSource(video)


@pytest.mark.parametrize(("times", "when"), [(3, "has more frames"), (5, "has 4 frames")])
def test_a_sidecar_for_another_render_is_an_error(tmp_path: Path, times: int, when: str) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 4)
    timestamps_path(video).write_text(json.dumps([i / FPS for i in range(times)]))
    with pytest.raises(CameraError, match=f"lists {times} capture times but .*clip.avi {when}"):
        read_all(VideoFileSource(video))


def test_max_seconds_stops_after_that_much_capture_time(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 30)
    frames = read_all(VideoFileSource(video, max_seconds=0.5))
    assert len(frames) == 15 and frames[-1].t < 0.5


def test_realtime_delivers_frames_when_their_time_comes(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 4)
    timestamps_path(video).write_text(json.dumps([0.0, 0.05, 0.1, 0.2]))
    start = time.monotonic()
    with VideoFileSource(video, realtime=True) as source:
        arrivals = [(time.monotonic() - start, frame.t) for frame in source.frames()]
    for arrived, t in arrivals:
        assert arrived >= t - 0.005
    assert arrivals[-1][0] < 1.0
    # Not in real time, a file is read as fast as it decodes: frames 2 s apart take nothing like 6 s.
    timestamps_path(video).write_text(json.dumps([0.0, 2.0, 4.0, 6.0]))
    fast = time.monotonic()
    assert [f.t for f in read_all(VideoFileSource(video))] == [0.0, 2.0, 4.0, 6.0]
    assert time.monotonic() - fast < 3.0


def test_close_ends_an_iteration_cleanly_and_frames_continue_the_stream(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 6)
    source = VideoFileSource(video)
    first = next(source.frames())
    assert first.index == 0
    assert [f.index for f in source.frames()][:2] == [1, 2]  # one stream, like a camera
    running = source.frames()
    source.close()
    assert list(running) == []
    source.close()  # twice is harmless


def test_a_frame_is_immutable(tmp_path: Path) -> None:
    frame = Frame(image=picture(0), t=0.0, index=0)
    with pytest.raises(AttributeError):
        frame.t = 1.0  # type: ignore[misc]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match=rf"video file not found: {re.escape(str(tmp_path))}/absent\.avi"):
        VideoFileSource(tmp_path / "absent.avi")


def test_a_text_file_renamed_avi_is_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.avi"
    fake.write_text("these are not frames\n" * 20)
    with pytest.raises(CameraError, match=rf"{re.escape(str(fake))} is not a video OpenCV can open"):
        VideoFileSource(fake)


def test_an_empty_file_is_called_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.avi"
    empty.touch()
    with pytest.raises(CameraError, match=rf"video file {re.escape(str(empty))} is empty \(0 bytes\)"):
        VideoFileSource(empty)


def test_a_folder_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="is a folder"):
        VideoFileSource(tmp_path)


def test_a_truncated_video_is_an_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 10)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[:300])  # the header and no complete frame
    with pytest.raises(CameraError, match=re.escape(str(cut))):
        VideoFileSource(cut)


# -- cameras that are not there ------------------------------------------------------------------------


@pytest.mark.parametrize("device", [63, "/dev/video63", "/dev/null"])
def test_an_absent_camera_fails_quickly(device: int | str) -> None:
    start = time.monotonic()
    with pytest.raises(CameraError, match=re.escape(str(device)) if isinstance(device, str) else "/dev/video63"):
        OpenCvCamera(device, width=640, height=480, fps=30)
    assert time.monotonic() - start < 2


class FakeCapture:
    """Stands in for cv2.VideoCapture on a V4L2 camera: offers only `formats` at 320x240 at most, refuses the
    controls in `refuses`, and hands out frames whose driver times (CAP_PROP_POS_MSEC) are `driver_ms`, then fails."""

    formats: tuple[str, ...] = ("MJPG",)
    refuses: frozenset[int] = frozenset()
    driver_ms: tuple[float, ...] = ()

    def __init__(self, device: int | str, backend: int) -> None:
        self.props: dict[int, float] = {
            cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter.fourcc(*self.formats[0])),
            cv2.CAP_PROP_FRAME_WIDTH: 320,
            cv2.CAP_PROP_FRAME_HEIGHT: 240,
            cv2.CAP_PROP_FPS: 30,
            cv2.CAP_PROP_EXPOSURE: 157,
            cv2.CAP_PROP_WB_TEMPERATURE: 4600,
        }
        self.calls: list[tuple[int, float]] = []
        self.grabbed = -1
        self.released = False
        FakeCapture.last = self

    last: FakeCapture

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        self.calls.append((prop, value))
        if prop in self.refuses:
            return False
        if prop == cv2.CAP_PROP_FOURCC and not any(value == cv2.VideoWriter.fourcc(*f) for f in self.formats):
            return False
        if (prop == cv2.CAP_PROP_FRAME_WIDTH and value > 320) or (prop == cv2.CAP_PROP_FRAME_HEIGHT and value > 240):
            return False  # the largest size it has
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self.driver_ms[self.grabbed]
        return self.props.get(prop, 0.0)

    def grab(self) -> bool:
        self.grabbed += 1
        return not self.released and self.grabbed < len(self.driver_ms)

    def retrieve(self) -> tuple[bool, NDArray[np.uint8]]:
        return True, np.zeros((240, 320, 3), dtype=np.uint8)

    def release(self) -> None:
        self.released = True


@pytest.fixture
def fake_camera(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A device node that exists, opened through FakeCapture."""
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    monkeypatch.setattr(FakeCapture, "driver_ms", tuple(i * 1000 / 30 for i in (0, 1, 2, 4, 5)))
    node = tmp_path / "video0"
    node.touch()
    return str(node)


def test_a_camera_without_yuyv_falls_back_to_mjpg_and_says_so(
    fake_camera: str, caplog: pytest.LogCaptureFixture
) -> None:
    camera = OpenCvCamera(fake_camera, width=640, height=480, fps=30)
    assert camera.negotiated.fourcc == "MJPG" and camera.negotiated.compressed
    assert camera.size == (320, 240) and camera.nominal_fps == 30
    asked = [value for prop, value in FakeCapture.last.calls if prop == cv2.CAP_PROP_FOURCC]
    assert asked == [cv2.VideoWriter.fourcc(*"YUYV"), cv2.VideoWriter.fourcc(*"MJPG")]  # uncompressed first
    assert "delivers MJPG" in caplog.text and "gives 320x240, not the 640x480" in caplog.text


def test_a_camera_with_yuyv_keeps_it(
    fake_camera: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(FakeCapture, "formats", ("MJPG", "YUYV"))
    camera = OpenCvCamera(fake_camera, width=320, height=240, fps=30)
    assert camera.negotiated.fourcc == "YUYV" and not camera.negotiated.compressed
    assert caplog.text == ""


def test_camera_frames_are_stamped_on_arrival_and_numbered_by_driver_time(fake_camera: str) -> None:
    camera = OpenCvCamera(fake_camera, width=320, height=240, fps=30)
    frames = []
    with pytest.raises(CameraError, match="delivered no frame"):
        for frame in camera.frames():
            frames.append(frame)
    assert [f.index for f in frames] == [0, 1, 2, 4, 5]  # the driver's times skip a frame period
    assert all(b.t > a.t for a, b in itertools.pairwise(frames))
    assert frames[0].image.shape == (240, 320, 3)


def test_closing_a_camera_ends_its_frames(fake_camera: str) -> None:
    with OpenCvCamera(fake_camera, width=320, height=240, fps=30) as camera:
        running = camera.frames()
        next(running)
    assert FakeCapture.last.released
    assert list(running) == []


def test_exposure_and_white_balance_are_locked_at_the_settled_values(
    fake_camera: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(FakeCapture, "refuses", frozenset({cv2.CAP_PROP_AUTO_WB}))
    camera = OpenCvCamera(
        fake_camera, width=320, height=240, fps=30, lock_exposure=True, lock_white_balance=True, settle_seconds=0
    )
    next(camera.frames())
    calls = FakeCapture.last.calls
    assert (cv2.CAP_PROP_AUTO_EXPOSURE, 3) in calls  # automatic first, to settle on the scene
    assert calls.index((cv2.CAP_PROP_AUTO_EXPOSURE, 1)) < calls.index((cv2.CAP_PROP_EXPOSURE, 157))
    assert camera.controls["exposure_locked"] and not camera.controls["white_balance_locked"]
    assert "refused white_balance_locked" in caplog.text


@pytest.mark.skipif(HAS_PICAMERA2, reason="picamera2 is installed: the hardware test covers it")
def test_the_pi_camera_without_picamera2_says_what_to_install() -> None:
    with pytest.raises(CameraError, match="picamera2"):
        Picamera2Source(0, width=640, height=480, fps=30)


@pytest.mark.hardware
@pytest.mark.skipif(not HAS_PICAMERA2, reason="not a Raspberry Pi with picamera2")
def test_the_pi_camera_delivers_timed_frames() -> None:
    """On a Pi with a camera: `pytest -m hardware tests/camera`."""
    with Picamera2Source(0, width=640, height=480, fps=30) as camera:
        frames = []
        for frame in camera.frames():
            frames.append(frame)
            if len(frames) == 30:
                break
    assert all(f.image.shape == (camera.size[1], camera.size[0], 3) for f in frames)
    spacing = np.diff([f.t for f in frames])
    assert np.all(spacing > 0) and np.median(spacing) == pytest.approx(1 / 30, rel=0.05)


# -- open_source ---------------------------------------------------------------------------------------


def test_open_source_reads_the_file_a_file_profile_is_given(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 3)
    profile = load_kiosk_profile(SHIPPED / "video-file.yaml")
    source = open_source(profile.camera, file=video)
    assert isinstance(source, VideoFileSource)
    assert len(read_all(source)) == 3
    with pytest.raises(CameraError, match="needs a video"):
        open_source(profile.camera)


def test_open_source_with_a_file_replaces_any_camera(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", "MJPG", 2)
    camera = load_kiosk_profile(SHIPPED / "usb-uvc-webcam.yaml").camera
    assert isinstance(open_source(camera, file=video), VideoFileSource)


def test_open_source_on_an_absent_usb_camera_is_a_camera_error() -> None:
    camera = CameraProfile(kind="opencv", device="/dev/video63")
    with pytest.raises(CameraError, match="/dev/video63"):
        open_source(camera)


@pytest.mark.skipif(HAS_PICAMERA2, reason="picamera2 is installed")
def test_open_source_for_the_pi_camera_without_picamera2() -> None:
    camera = load_kiosk_profile(SHIPPED / "raspberry-pi-5-camera-module-3.yaml").camera
    with pytest.raises(CameraError, match="picamera2 is not installed"):
        open_source(camera)


# -- resampling ------------------------------------------------------------------------------------------


def irregular_times(seconds: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """30 fps with +-4 ms of jitter and a few dropped frames (single ones and a run of three)."""
    n = int(seconds * FPS)
    kept = np.ones(n, dtype=bool)
    kept[[i for i in (17, 40, 41, 42, 95, 200) if i < n]] = False
    times = np.arange(n) / FPS + rng.uniform(-0.004, 0.004, n)
    return np.asarray(times[kept], dtype=np.float64)


def test_resampling_irregular_frames_recovers_a_sinusoid() -> None:
    rng = np.random.default_rng(7)
    times = irregular_times(10, rng)
    hz = 1.2  # 72 beats a minute
    grid, values = resample_uniform(times, np.sin(2 * np.pi * hz * times), FPS)
    assert grid[0] == times[0] and grid[-1] <= times[-1]
    assert np.allclose(np.diff(grid), 1 / FPS)
    assert len(grid) == math.floor((times[-1] - times[0]) * FPS) + 1
    error = values - np.sin(2 * np.pi * hz * grid)
    # Linear interpolation is off by at most h^2/8 * max|f''| over a step h: worst across the three dropped frames.
    bound = max(np.diff(times)) ** 2 / 8 * (2 * np.pi * hz) ** 2
    assert 0.05 < bound < 0.16  # a run of three drops, plus jitter
    assert np.max(np.abs(error)) <= bound
    assert np.sqrt(np.mean(error**2)) < 0.01
    # The spectrum of the resampled trace peaks at the true frequency.
    spectrum = np.abs(np.fft.rfft(values * np.hanning(len(values)), n=16 * len(values)))
    peak = np.fft.rfftfreq(16 * len(values), 1 / FPS)[np.argmax(spectrum)]
    assert peak == pytest.approx(hz, abs=0.02)


def test_resampling_keeps_columns_apart() -> None:
    times = irregular_times(4, np.random.default_rng(3))
    traces = np.column_stack([np.sin(2 * np.pi * 1.0 * times), 5 + 0 * times, times])
    grid, values = resample_uniform(times, traces, FPS)
    assert values.shape == (len(grid), 3)
    assert np.allclose(values[:, 1], 5) and np.allclose(values[:, 2], grid)


def test_a_long_gap_is_reported_not_bridged() -> None:
    times = np.concatenate([np.arange(0, 3, 1 / FPS), np.arange(3.8, 6, 1 / FPS)])
    values = np.sin(times)
    with pytest.raises(GapError, match=r"1 gap\(s\) longer than 0\.5 s between frames \(2\.967-3\.800 s\)") as caught:
        resample_uniform(times, values, FPS)
    assert caught.value.gaps == find_gaps(times)
    ((before, after),) = caught.value.gaps
    assert before == pytest.approx(2.9667, abs=1e-3) and after == pytest.approx(3.8)
    grid, _ = resample_uniform(times, values, FPS, max_gap=None)  # the caller decided
    assert grid[-1] == pytest.approx(times[-1], abs=1 / FPS)
    resample_uniform(times, values, FPS, max_gap=1.0)


@pytest.mark.parametrize(
    ("times", "values", "message"),
    [
        ([0.0, 0.1, 0.1], [1, 2, 3], r"times\[2\] = 0.1 is not after times\[1\]"),
        ([0.0, 0.1, 0.2], [1, 2], "one per frame time"),
        ([0.0], [1], "at least two frame times"),
        ([0.0, math.nan], [1, 2], "finite"),
    ],
)
def test_resampling_rejects_what_cannot_be_resampled(times: list[float], values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resample_uniform(times, values, FPS)


# -- kiosk hardware profiles -------------------------------------------------------------------------------


def test_the_shipped_profiles_load_and_are_named_after_their_ids() -> None:
    paths = sorted(SHIPPED.glob("*.yaml"))
    assert {p.stem for p in paths} == {"raspberry-pi-5-camera-module-3", "usb-uvc-webcam", "video-file"}
    for path in paths:
        assert path.read_text().startswith("# Sources"), f"{path.name} must start with a comment naming its sources"
        assert load_kiosk_profile(path).id == path.stem
    usb = load_kiosk_profile(SHIPPED / "usb-uvc-webcam.yaml").camera
    assert (usb.kind, usb.device, usb.width, usb.height, usb.fps) == ("opencv", "/dev/video0", 640, 480, 30)
    assert usb.pixel_format[0] == "YUYV"
    assert load_kiosk_profile(SHIPPED / "raspberry-pi-5-camera-module-3.yaml").camera.kind == "picamera2"
    assert load_kiosk_profile(SHIPPED / "video-file.yaml").camera.kind == "file"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kiosk.yaml"
    path.write_text(text)
    return path


VALID = """\
id: test-kiosk
name: Test kiosk
camera:
  kind: opencv
  device: 0
  pixel_format: [YUYV]
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_kiosk_profile(path)
    return str(caught.value).splitlines()


def test_an_unknown_key_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "camera_model: C920\n")
    assert problems(path) == [
        f"{path}:7: unknown key 'camera_model'; allowed: id, name, camera, bluetooth_adapter, touchscreen, notes"
    ]
    path = write(tmp_path, VALID.replace("  device: 0", "  device: 0\n  exposure: manual"))
    assert problems(path) == [
        f"{path}:6: unknown key 'exposure' in camera; allowed: kind, device, width, height, fps, pixel_format, "
        "lock_exposure, lock_white_balance"
    ]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("kind: opencv", "kind: webcam", 4, "camera.kind: Input should be 'opencv', 'picamera2' or 'file'"),
        ("[YUYV]", "[YUYV, RGB888]", 6, "camera.pixel_format: RGB888 not available to kind opencv"),
        ("[YUYV]", "[YUYV, YUYV]", 6, "camera.pixel_format: listed twice: YUYV"),
        ("device: 0", "device: video0", 5, "camera.device: a device path is absolute"),
        ("device: 0", "device: true", 5, "camera.device: expected a device number or path, got true"),
        ("kind: opencv\n  device: 0", "kind: opencv", 3, "camera.device: an opencv camera needs a device"),
        (
            "kind: opencv\n  device: 0\n  pixel_format: [YUYV]",
            "kind: picamera2\n  device: /dev/video0",
            5,
            "camera.device: a Raspberry Pi camera is chosen by number",
        ),
        ("name: Test kiosk", "name: Test kiosk\nbluetooth_adapter: usb0", 3, "bluetooth_adapter: String should"),
        ("name: Test kiosk\n", "name: Test kiosk\nname: Again\n", 3, "duplicate key 'name' (first on line 2)"),
    ],
)
def test_a_wrong_value_is_reported_on_its_line(tmp_path: Path, old: str, new: str, line: int, message: str) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new))
    found = problems(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{line}: {message}"), found


def test_defaults_apply_to_what_is_left_out(tmp_path: Path) -> None:
    profile = load_kiosk_profile(write(tmp_path, VALID))
    assert profile.bluetooth_adapter == "hci0" and profile.touchscreen is None and profile.notes == ""
    assert (profile.camera.width, profile.camera.height, profile.camera.fps) == (640, 480, 30)
    assert profile.camera.lock_exposure and profile.camera.lock_white_balance


def test_a_missing_file_is_a_profile_error(tmp_path: Path) -> None:
    assert problems(tmp_path / "absent.yaml")[0].startswith(f"{tmp_path}/absent.yaml: cannot read")


# -- the documentation cannot drift from the model ---------------------------------------------------------


def documented_keys() -> set[str]:
    """The backquoted first cells of the table under `### Kiosk profile fields` in firmware_configs/README.md."""
    body = re.split(r"\n#{1,3} ", FORMAT_DOC.split("### Kiosk profile fields\n", 1)[1], maxsplit=1)[0]
    return {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", body, re.MULTILINE)}


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys |= model_keys(field.annotation, f"{prefix}{name}.")
    return keys


def test_the_format_doc_names_exactly_the_model_fields() -> None:
    assert documented_keys() == model_keys(KioskHardwareProfile)


@pytest.mark.parametrize("allowed", [CameraKind, PixelFormat])
def test_the_format_doc_names_every_allowed_value(allowed: Any) -> None:
    section = FORMAT_DOC.split("## Kiosk hardware profiles", 1)[1]
    for value in get_args(allowed):
        assert f"`{value}`" in section, f"{value!r} is not documented in firmware_configs/README.md"


def test_every_field_has_a_description() -> None:
    for model in (KioskHardwareProfile, CameraProfile):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
