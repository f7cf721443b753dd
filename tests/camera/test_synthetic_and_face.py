"""The synthetic face videos and the face tracker, checked against the truth the renderer knows.

Videos are short (at most 12 s at 640x480) and rendered once per module where several tests share them:
the whole file runs in well under a minute on two shared cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from device.camera import photo_faces
from device.camera.detector import FaceDetector
from device.camera.face import (
    BACKGROUND_REGIONS,
    SKIN_REGIONS,
    UPPER_BODY,
    FaceSample,
    FaceTracker,
    TrackerConfig,
    _region_samples,
    _sample,
    extract,
)
from device.camera.synthetic import (
    FITZPATRICK_TYPES,
    SKIN_TONES_SRGB,
    GroundTruth,
    SyntheticSpec,
    _geometry,
    ground_truth,
    render_frames,
    write_video,
)


@dataclass(frozen=True)
class _Frame:
    """Shaped like device.camera.source.Frame; the tracker only needs .image and .t."""

    image: NDArray[np.uint8]
    t: float
    index: int


def _frames(spec: SyntheticSpec) -> list[_Frame]:
    return [_Frame(image, t, i) for i, (t, image) in enumerate(render_frames(spec))]


def _box_centres(samples: list[FaceSample]) -> NDArray[np.float64]:
    return np.array([(s.box.cx, s.box.cy) if s.box else (math.nan, math.nan) for s in samples])


def _peak_bpm(t: NDArray[np.float64], x: NDArray[np.float64], lo: float = 40.0, hi: float = 180.0) -> float:
    """Strongest spectral peak in [lo, hi] per minute after removing a quadratic trend (numpy FFT only)."""
    x = x - np.polyval(np.polyfit(t, x, 2), t)
    fs = (len(t) - 1) / (t[-1] - t[0])
    n = 16 * len(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    bpm = np.fft.rfftfreq(n, 1.0 / fs) * 60.0
    band = (bpm >= lo) & (bpm <= hi)
    return float(bpm[band][np.argmax(spectrum[band])])


@dataclass(frozen=True)
class _Still:
    spec: SyntheticSpec
    truth: GroundTruth
    frames: list[_Frame]
    samples: list[FaceSample]
    render_s: float
    extract_s: float  # the tracker over every frame, OpenCV on one thread
    detections: int


@pytest.fixture(scope="module", params=["II", "VI"])
def still(request: pytest.FixtureRequest) -> _Still:
    """12 s of a still face at 75 bpm with sensor noise: a light and the darkest skin tone.

    The tracker runs over it once, on one OpenCV thread as on a busy kiosk (its samples are the same on any
    number), and is timed there for test_extract_speed_is_measured."""
    spec = SyntheticSpec(seconds=12.0, skin_tone=request.param, heart_rate_bpm=75.0, noise_sigma=2.0, seed=11)
    started = time.perf_counter()
    frames = _frames(spec)
    render_s = time.perf_counter() - started
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        started = time.perf_counter()
        tracker = FaceTracker()
        samples = tracker.extract(frames)
        extract_s = time.perf_counter() - started
    finally:
        cv2.setNumThreads(threads)
    return _Still(spec, ground_truth(spec), frames, samples, render_s, extract_s, tracker.detections)


# --------------------------------------------------------------------------------------------------------------
# Renderer


@pytest.mark.parametrize("tone", FITZPATRICK_TYPES)
def test_the_detector_finds_the_face_in_every_skin_tone(tone: str) -> None:
    """BlazeFace on the whole frame and through the tracker's window around the face, still and with head sway
    and roll: one face, its eye keypoints on the rendered eyes, its box centre a fixed offset below the face
    centre (BlazeFace's box centre is near the nose tip), and the eye line's roll near the head's."""
    spec = SyntheticSpec(seconds=3.0, fps=2.0, skin_tone=tone, head_motion_px=8.0, noise_sigma=2.0)  # type: ignore[arg-type]
    truth = ground_truth(spec)
    g = _geometry(spec.size)
    faces = FaceDetector()
    frames = render_frames(spec)
    for (_, image), centre, roll in zip(frames, truth.face_center, truth.head_angle_deg, strict=True):
        a = math.radians(roll)
        eyes = centre + 0.08 * g.ry * np.array([math.sin(a), -math.cos(a)])  # the eyes sit 0.08 ry above the centre
        whole = faces.detect(image)
        assert len(whole) == 1, (tone, whole)
        side = 3.5 * whole[0].width
        window = faces.detect(image, (whole[0].cx - side / 2, whole[0].cy - side / 2, side))
        assert len(window) == 1, (tone, window)
        for face, roll_tolerance in ((whole[0], 10.0), (window[0], 6.0)):
            assert math.dist(face.eye_centre, eyes) < 0.07 * face.width, (tone, face.eye_centre, eyes)
            offset = (np.array([face.cx, face.cy]) - centre) / face.width
            assert abs(offset[0]) < 0.05 and 0.13 < offset[1] < 0.24, (tone, offset)
            assert abs(face.roll_deg - roll) < roll_tolerance, (tone, face.roll_deg, roll)


def test_skin_tones_are_ordered_light_to_dark() -> None:
    """A guard on the table: luma must fall from type I to type VI."""
    luma = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in (SKIN_TONES_SRGB[t] for t in FITZPATRICK_TYPES)]
    assert luma == sorted(luma, reverse=True)


def test_pulse_is_ppg_shaped_with_the_asked_rate() -> None:
    """Two maxima per beat (systolic and diastolic, the notch between), not a sine; the rate is exact."""
    spec = SyntheticSpec(seconds=20.0, fps=250.0, heart_rate_bpm=66.0)
    truth = ground_truth(spec)
    pulse = truth.pulse
    maxima = int(np.sum((pulse[1:-1] > pulse[:-2]) & (pulse[1:-1] > pulse[2:])))
    beats = len(truth.beat_times)
    assert 1.8 * beats <= maxima <= 2.2 * beats
    assert truth.heart_rate_bpm == pytest.approx(66.0, abs=1.0)
    assert 60.0 / float(np.mean(np.diff(truth.beat_times))) == pytest.approx(66.0, abs=2.0)
    assert np.std(np.diff(truth.beat_times)) > 0.005  # beat-to-beat variability
    assert np.allclose(truth.skin_modulation, -pulse)
    assert abs(float(np.mean(pulse))) < 0.05 * float(np.ptp(pulse))


def test_render_is_deterministic_per_seed() -> None:
    spec = SyntheticSpec(seconds=0.1, head_motion_px=4.0, noise_sigma=2.0, seed=5)
    first = [image for _, image in render_frames(spec)]
    again = [image for _, image in render_frames(spec)]
    other = next(iter(render_frames(dataclasses.replace(spec, seed=6))))[1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other)


CLIP = SyntheticSpec(seconds=2.0, frame_drop_rate=0.1, jitter_ms=4.0, noise_sigma=2.0, seed=3)


@pytest.fixture(scope="module")
def clip_rendered() -> list[NDArray[np.uint8]]:
    """CLIP's frames rendered in memory, once for both codecs: what a file must give back."""
    return [image for _, image in render_frames(CLIP)]


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "FFV1"), (".avi", "HFYU")])
def test_video_and_timestamps_sidecar(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    clip_rendered: list[NDArray[np.uint8]],
    suffix: str,
    codec: str,
) -> None:
    """Drops are frames not written, jitter is in the times; FFV1 and HuffYUV give back every pixel."""
    spec = CLIP
    written = write_video(spec, tmp_path / f"clip{suffix}")
    sidecar = json.loads(written.timestamps_path.read_text())
    assert (written.codec, written.lossless) == (codec, True)  # opencv-python's wheel (pinned) has both
    assert written.timestamps_path.name == f"clip{suffix}.timestamps.json"
    times = np.array(sidecar["timestamps"])
    nominal = np.array(sidecar["nominal_index"])
    assert sidecar["frames"] == len(times) == len(nominal) == written.frames
    assert len(sidecar["dropped_nominal_index"]) == spec.frame_count - written.frames > 0
    assert set(nominal) | set(sidecar["dropped_nominal_index"]) == set(range(spec.frame_count))
    assert np.all(np.diff(times) > 0)
    jitter_ms = (times - nominal / spec.fps) * 1000.0
    assert 2.5 < float(np.std(jitter_ms[1:])) < 5.5
    assert np.max(np.abs(jitter_ms)) <= 0.45 * 1000.0 / spec.fps + 1e-3

    capture = cv2.VideoCapture(str(written.path))
    decoded = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        decoded.append(image)
    capture.release()
    assert len(decoded) == sidecar["frames"]
    with capsys.disabled():
        print(f"\nvideo: {written.codec}, lossless {written.lossless}, {written.path.stat().st_size / 1e6:.1f} MB")
    assert all(np.array_equal(a, b) for a, b in zip(decoded, clip_rendered, strict=True))


# --------------------------------------------------------------------------------------------------------------
# Tracker


@pytest.mark.parametrize("seed", [0, 12])
def test_no_face_video_finds_no_face(seed: int) -> None:
    """The person faces away (back of the head, neck, shoulders): nothing found, nothing measured. Seed 12's
    head is one BlazeFace scores as high as 0.75 (as high as some real faces); it has no eyes."""
    spec = SyntheticSpec(seconds=3.0, face=False, head_motion_px=5.0, noise_sigma=2.0, seed=seed)
    frames = _frames(spec)
    tracker = FaceTracker()
    samples = tracker.extract(frames)
    assert not any(s.face_found for s in samples)
    assert all(s.box is None and math.isnan(s.skin_rgb[0]) and math.isnan(s.upper_body_y) for s in samples)
    assert tracker.detections >= 10  # it kept searching, several times a second


@pytest.mark.parametrize("tone", ["I", "VI"])
def test_tracker_follows_head_motion(tone: str) -> None:
    """Slow sway of +-8 px with roll: the box centre stays within 2 px of the true face centre's path."""
    spec = SyntheticSpec(seconds=6.0, skin_tone=tone, head_motion_px=8.0, noise_sigma=2.0, seed=2)  # type: ignore[arg-type]
    truth = ground_truth(spec)
    samples = extract(_frames(spec))
    assert all(s.face_found for s in samples)
    error = _box_centres(samples) - truth.face_center
    error -= np.median(error, axis=0)  # the box centre sits a constant offset from the face centre
    travel = np.ptp(truth.face_center, axis=0)
    assert float(np.max(travel)) > 8.0  # the head did move
    assert float(np.max(np.abs(error))) < 2.0, np.max(np.abs(error), axis=0)
    motion = np.array([s.motion_px for s in samples[1:]])
    true_motion = np.hypot(*np.diff(truth.face_center, axis=0).T)
    assert float(np.mean(np.abs(motion - true_motion))) < 0.3


def test_a_new_detection_does_not_make_the_box_jump(still: _Still) -> None:
    """Drift the box by 25 px: detections pull it back as a slow ramp (< 1 px a frame), never a step."""
    tracker = FaceTracker()
    xs = []
    for i, frame in enumerate(still.frames[:240]):
        if i == 20:
            assert tracker.box is not None
            tracker._box = dataclasses.replace(tracker.box, cx=tracker.box.cx + 25.0)  # simulated drift
        sample = tracker.update(frame)
        assert sample.box is not None
        xs.append(sample.box.cx)
    steps = np.abs(np.diff(xs))[20:]
    assert float(np.max(steps)) < 1.0
    settled = xs[-1] - xs[0]
    deadband = TrackerConfig().correction_deadband * still.samples[0].box.size  # type: ignore[union-attr]
    assert settled < deadband + 3.0  # pulled back to within the dead band (the detector's own scatter)


def test_smooth_re_anchoring_keeps_box_noise_out_of_the_skin_trace(still: _Still) -> None:
    """Snapping the box to every detection (the field notes' trap) puts noise into the skin trace: with Haar as
    much as the pulse itself, with BlazeFace, whose boxes scatter less, still 4-5 times what the dead band and
    ramp leave, which is no more than a box that is never corrected at all leaves."""
    snap = TrackerConfig(
        correction_deadband=0.0,
        size_deadband=0.0,
        roll_deadband_deg=0.0,
        correction_gain=1.0,
        correction_s=1e-3,
        detect_interval_dither=0.0,
    )
    never_corrected = TrackerConfig(detect_interval_s=1e9)  # one detection to start with, optical flow after

    def residual(samples: list[FaceSample]) -> float:
        rgb = np.array([s.skin_rgb for s in samples])
        normalised = rgb / rgb.mean(axis=0) - 1.0
        t = still.truth.t
        design = np.c_[still.truth.skin_modulation, np.ones(len(t)), t, t**2]
        fit = design @ np.linalg.lstsq(design, normalised, rcond=None)[0]
        return float(np.std(normalised - fit))

    assert residual(still.samples) < 0.3 * residual(extract(still.frames, snap))
    assert residual(still.samples) < 1.1 * residual(extract(still.frames, never_corrected))


@pytest.mark.parametrize("tone", [1, 5, 10], ids=["MST-1", "MST-5", "MST-10"])
@pytest.mark.parametrize("name", photo_faces.PHOTO_NAMES)
def test_regions_land_on_skin_beside_the_head_and_on_the_shoulders_of_real_faces(
    name: photo_faces.PhotoName, tone: int
) -> None:
    """On kiosk videos of the two photographs (device/camera/photo_faces.py) the tracker finds the face in
    every frame, and its regions fall where they should by photo_faces.py's own skin mask (made from colour,
    not from a detector): cheeks and forehead on skin, the background regions off it, and the upper-body
    window below the chin and reaching well below the shoulder line."""
    spec = photo_faces.PhotoSpec(photo=name, tone=tone, seconds=1.5, seed=1)
    frames = [_Frame(image, t, i) for i, (t, image) in enumerate(photo_faces.render_frames(spec))]
    samples = extract(frames)
    assert all(s.face_found for s in samples)
    box = samples[-1].box
    assert box is not None
    mask = np.dstack([photo_faces.skin_in_frame(spec) * 255.0] * 3).astype(np.uint8)
    skin = {}
    for region in (*SKIN_REGIONS, *BACKGROUND_REGIONS):
        patch = _sample(mask, box, region, _region_samples(region, box.size))
        assert patch is not None, region.name
        skin[region.name] = float(patch.mean()) / 255.0
    assert skin["left_cheek"] > 0.95 and skin["right_cheek"] > 0.95, skin
    assert skin["forehead"] > 0.7, skin  # the astronaut's low fringe leaves a narrow forehead (0.75 at MST-10)
    assert skin["background_left"] < 0.02 and skin["background_right"] < 0.02, skin
    rig = photo_faces.PHOTOS[name]
    scale = spec.face_width_px / rig.face_width
    top_of_photo = photo_faces.FACE_POSITION[1] * spec.size[1] - scale * rig.face_center[1]
    shoulders, chin = top_of_photo + scale * rig.shoulder_y, top_of_photo + scale * rig.chin_y
    window_top = box.cy + (UPPER_BODY.v - UPPER_BODY.h / 2) * box.size
    window_bottom = box.cy + (UPPER_BODY.v + UPPER_BODY.h / 2) * box.size
    assert window_top > chin - 0.05 * box.size  # the head (and a talking jaw) stays out
    assert window_bottom > shoulders + 0.3 * box.size  # a band of shoulders and chest is in


def test_tracker_reports_a_lost_face() -> None:
    """The person turns away: the optical-flow points fail, and "face not found" follows within a second."""
    with_face = _frames(SyntheticSpec(seconds=2.0, noise_sigma=2.0, head_motion_px=3.0))
    away = _frames(SyntheticSpec(seconds=2.0, noise_sigma=2.0, head_motion_px=3.0, face=False))
    frames = with_face + [_Frame(f.image, f.t + 2.0, f.index + len(with_face)) for f in away]
    samples = extract(frames)
    found = np.array([s.face_found for s in samples])
    assert found[: len(with_face)].all()
    assert not found[len(with_face) + 30 :].any()


def test_skin_trace_peaks_at_the_heart_rate(still: _Still) -> None:
    """Green of the mean skin RGB, detrended, strongest FFT peak within 3 bpm (the real estimator is rppg.py)."""
    assert all(s.face_found for s in still.samples)
    t = np.array([s.t for s in still.samples])
    green = np.array([s.skin_rgb[1] for s in still.samples])
    peak = _peak_bpm(t, green / np.mean(green))
    assert abs(peak - still.truth.heart_rate_bpm) < 3.0, (still.spec.skin_tone, peak, still.truth.heart_rate_bpm)


def test_skin_trace_changes_in_the_blood_volume_pulse_direction(still: _Still) -> None:
    """Regressing normalised RGB on the rendered pulse gives back the PBV direction and about the amplitude."""
    rgb = np.array([s.skin_rgb for s in still.samples])
    normalised = rgb / rgb.mean(axis=0) - 1.0
    design = np.c_[still.truth.skin_modulation, np.ones(len(rgb)), still.truth.t]
    slope = np.linalg.lstsq(design, normalised, rcond=None)[0][0]
    cosine = float(slope @ np.array(still.truth.pulse_direction_rgb) / np.linalg.norm(slope))
    assert cosine > 0.99
    amplitude = float(np.linalg.norm(slope) * np.ptp(still.truth.skin_modulation))
    assert 0.5 * still.spec.pulse_amplitude < amplitude < 1.5 * still.spec.pulse_amplitude


def test_upper_body_follows_breathing(still: _Still) -> None:
    y = np.array([s.upper_body_y for s in still.samples])
    assert float(np.corrcoef(y, still.truth.body_dy)[0, 1]) > 0.95
    assert float(np.std(y)) == pytest.approx(float(np.std(still.truth.body_dy)), rel=0.3)


def test_background_region_sees_flicker_not_pulse() -> None:
    """A 1.3 Hz light flicker shows in the background trace, which the DSP can use to reject it."""
    spec = SyntheticSpec(seconds=5.0, heart_rate_bpm=100.0, flicker_hz=1.3, flicker_amplitude=0.01, noise_sigma=2.0)
    samples = extract(_frames(spec))
    t = np.array([s.t for s in samples])
    background = np.array([s.background_rgb[1] for s in samples])
    assert _peak_bpm(t, background / background.mean()) == pytest.approx(1.3 * 60.0, abs=6.0)


def test_extract_speed_is_measured(still: _Still, capsys: pytest.CaptureFixture[str]) -> None:
    """Printed, not asserted: a timed assertion on a shared machine is a flaky test. Timed in the fixture, where
    the tracker runs over the frames on one OpenCV thread (one core, as on a busy kiosk)."""
    with capsys.disabled():
        print(
            f"\nextract at 640x480, OpenCV on 1 thread, skin {still.spec.skin_tone}: "
            f"{len(still.frames) / still.extract_s:.0f} frames/s "
            f"({still.detections} detections in {len(still.frames)} frames); "
            f"render: {len(still.frames) / still.render_s:.0f} frames/s"
        )


def _iter_frames(frames: list[_Frame]) -> Iterator[_Frame]:
    yield from frames


def test_extract_accepts_any_iterable(still: _Still) -> None:
    samples = extract(_iter_frames(still.frames[:5]))
    assert [s.t for s in samples] == [f.t for f in still.frames[:5]]
