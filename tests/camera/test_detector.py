"""The face detector (BlazeFace through cv2.dnn) on real photographs across skin tones, on frames without a face,
and against the Haar cascade it replaced.

The photographs are the two public-domain portraits device/camera/assets.py installs, tone-shifted along the
Monk scale by device/camera/photo_faces.py (skin pixels only, texture and shading kept). Everything is small:
the file runs in a few seconds.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from device.camera import assets, detector
from device.camera.detector import KEYPOINTS, SCORE_THRESHOLD, Detection, FaceDetector
from device.camera.photo_faces import PHOTO_NAMES, PHOTOS, PhotoName, photo, toned_photo
from device.camera.synthetic import SyntheticSpec, render_frames

U8 = NDArray[np.uint8]
HAAR = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector()


@functools.lru_cache(maxsize=16)
def _image(name: PhotoName, tone: int | None) -> U8:
    """The photograph at its own tone (None) or with its skin moved to a Monk level, as an 8-bit BGR image."""
    if tone is None:
        return photo(name)
    return np.asarray(np.clip(np.rint(np.asarray(toned_photo(name, tone), dtype=np.float32)), 0, 255), np.uint8)


def _near_the_face(face: Detection, name: PhotoName) -> bool:
    rig = PHOTOS[name]
    return math.hypot(face.cx - rig.face_center[0], face.cy - rig.face_center[1]) < 0.25 * rig.face_width


# --------------------------------------------------------------------------------------------------------------
# Faces across tones


@pytest.mark.parametrize("tone", [None, 4, 7, 10], ids=["own", "MST-4", "MST-7", "MST-10"])
@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_the_face_is_found_in_both_photographs_across_the_monk_scale(
    faces: FaceDetector, name: PhotoName, tone: int | None
) -> None:
    found = faces.detect(_image(name, tone))
    assert len(found) == 1, found
    face = found[0]
    assert _near_the_face(face, name), face
    assert face.score >= SCORE_THRESHOLD
    assert face.width == pytest.approx(PHOTOS[name].face_width, rel=0.25)
    assert face.height == pytest.approx(face.width, rel=0.05)  # square: nothing was stretched


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_keypoints_lie_inside_the_box_in_the_documented_order(faces: FaceDetector, name: PhotoName) -> None:
    """The subject's right eye is on the image's left; eyes above the nose tip above the mouth; the ears
    (tragions) at the box's sides, which they may touch."""
    face = faces.detect(photo(name))[0]
    points = dict(zip(KEYPOINTS, face.keypoints, strict=True))
    for key, (x, y) in points.items():
        margin = 0.05 * face.width if key.endswith("ear") else 0.0
        assert face.x - margin <= x <= face.x + face.width + margin, key
        assert face.y <= y <= face.y + face.height, key
    assert points["right_ear"][0] < points["right_eye"][0] < points["nose_tip"][0]
    assert points["nose_tip"][0] < points["left_eye"][0] < points["left_ear"][0]
    assert max(points["right_eye"][1], points["left_eye"][1]) < points["nose_tip"][1] < points["mouth"][1]
    assert 0.35 < face.eye_distance / face.width < 0.5
    assert abs(face.roll_deg) < 10.0  # both portraits are nearly upright


def test_haar_misses_the_darkest_faces_that_blazeface_finds(faces: FaceDetector) -> None:
    """Why Haar was dropped: the stock frontal cascade, run as the tracker ran it (half-size grey, CLAHE,
    4 neighbours), finds the astronaut at her own tone but not at MST-9 or MST-10; BlazeFace finds all three.
    (The full table, both photographs x ten tones with shifts and noise, is in the change's report.)"""
    cascade = cv2.CascadeClassifier(HAAR)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
    rig = PHOTOS["astronaut"]

    def haar_finds(image: U8) -> bool:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small = clahe.apply(cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
        rects, _ = cascade.detectMultiScale2(small, scaleFactor=1.1, minNeighbors=4, minSize=(40, 40))
        return any(
            math.hypot(2 * (x + w / 2) - rig.face_center[0], 2 * (y + h / 2) - rig.face_center[1])
            < 0.25 * rig.face_width
            for x, y, w, h in rects
        )

    images = {tone: _image("astronaut", tone) for tone in (None, 9, 10)}
    assert [haar_finds(image) for image in images.values()] == [True, False, False]
    assert all(any(_near_the_face(f, "astronaut") for f in faces.detect(image)) for image in images.values())


def test_a_monk_10_face_in_a_kiosk_frame_with_motion_and_noise_is_found_in_every_frame(faces: FaceDetector) -> None:
    from device.camera.photo_faces import PhotoSpec, ground_truth
    from device.camera.photo_faces import render_frames as render_photo_frames

    spec = PhotoSpec(photo="astronaut", tone=10, seconds=1.0, fps=15.0, head_motion_px=4.0, talking=True, seed=3)
    truth = ground_truth(spec)
    for (_, image), centre in zip(render_photo_frames(spec), truth.face_center, strict=True):
        found = faces.detect(image)
        assert len(found) == 1
        assert math.hypot(found[0].cx - centre[0], found[0].cy - centre[1]) < 0.25 * spec.face_width_px


# --------------------------------------------------------------------------------------------------------------
# No face


def _no_face_frames() -> dict[str, U8]:
    rng = np.random.default_rng(0)
    wall = np.clip(np.full((480, 640, 3), (150.0, 160.0, 165.0)) + rng.normal(0, 2, (480, 640, 3)), 0, 255)
    astronaut, hopper = photo("astronaut"), photo("hopper")
    return {
        "blank wall": wall.astype(np.uint8),
        "black frame": np.zeros((480, 640, 3), dtype=np.uint8),
        "astronaut photo, right of the face (shuttle, helmet)": np.ascontiguousarray(astronaut[:, 300:]),
        "astronaut photo, below the face (suit)": np.ascontiguousarray(astronaut[250:]),
        "hopper photo, left of the face (flag)": np.ascontiguousarray(hopper[:, :170]),
        "hopper photo, below the face (uniform)": np.ascontiguousarray(hopper[360:]),
    }


@pytest.mark.parametrize("scene", list(_no_face_frames()))
def test_a_frame_without_a_face_gives_nothing(faces: FaceDetector, scene: str) -> None:
    assert faces.detect(_no_face_frames()[scene]) == []


@pytest.mark.parametrize("seed", [2, 12])
def test_the_back_of_a_head_may_score_like_a_face_but_shows_no_eyes(faces: FaceDetector, seed: int) -> None:
    """The synthetic "facing away" video (a featureless dark oval over a neck) is what a very dark face in poor
    light looks like to BlazeFace: 0.44-0.75 depending on the seed (seed 12 reaches 0.75, seed 2 stays under
    the threshold). The tracker also asks for open eyes, and there are none: eye_contrast stays under 0.25
    where every face measured gave 0.33 or more."""
    spec = SyntheticSpec(seconds=2.0, fps=5.0, face=False, seed=seed)
    lenient = FaceDetector(score_threshold=0.3)
    for _, image in render_frames(spec):
        for head in lenient.detect(image):
            side = 3.5 * head.width
            for seen in (head, *lenient.detect(image, (head.cx - side / 2, head.cy - side / 2, side))):
                assert detector.eye_contrast(image, seen) < 0.25


@pytest.mark.parametrize("tone", [None, 10], ids=["own", "MST-10"])
@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_open_eyes_show_whatever_the_skin_tone(faces: FaceDetector, name: PhotoName, tone: int | None) -> None:
    from device.camera.photo_faces import PhotoSpec
    from device.camera.photo_faces import render_frames as render_photo_frames

    image = _image(name, tone)
    assert detector.eye_contrast(image, faces.detect(image)[0]) > 0.4
    for light in (1.0, 0.5):  # in a kiosk frame, dimmed
        spec = PhotoSpec(photo=name, tone=tone or 5, seconds=0.2, light_level=light, seed=1)
        frame = next(iter(render_photo_frames(spec)))[1]
        face = faces.detect(frame)[0]
        side = 3.5 * face.width
        refined = faces.detect(frame, (face.cx - side / 2, face.cy - side / 2, side))[0]
        assert detector.eye_contrast(frame, refined) > 0.33


# --------------------------------------------------------------------------------------------------------------
# Geometry: windows, letterboxing, suppression


def test_a_window_maps_back_to_the_frame_exactly(faces: FaceDetector) -> None:
    """The same pixels seen through a window of a larger frame give the same face, moved by the offset."""
    image = photo("astronaut")
    alone = faces.detect(image)[0]
    frame = np.full((700, 1100, 3), 90, dtype=np.uint8)
    frame[100:612, 400:912] = image
    seen = faces.detect(frame, (400.0, 100.0, 512.0))[0]
    assert seen.score == pytest.approx(alone.score)
    assert (seen.x - 400, seen.y - 100, seen.width) == pytest.approx((alone.x, alone.y, alone.width), abs=1e-6)
    for (x, y), (x0, y0) in zip(seen.keypoints, alone.keypoints, strict=True):
        assert (x - 400, y - 100) == pytest.approx((x0, y0), abs=1e-6)


@pytest.mark.parametrize("shape", [(480, 1200), (1000, 560)], ids=["wide", "tall"])
def test_non_square_frames_are_padded_not_stretched(faces: FaceDetector, shape: tuple[int, int]) -> None:
    image = photo("hopper")
    frame = np.full((*shape, 3), 100, dtype=np.uint8)
    h, w = min(shape[0], image.shape[0]), min(shape[1], image.shape[1])
    y0, x0 = (shape[0] - h) // 2, (shape[1] - w) // 2
    frame[y0 : y0 + h, x0 : x0 + w] = image[:h, :w]
    face = faces.detect(frame)[0]
    truth = PHOTOS["hopper"]
    assert face.height == pytest.approx(face.width, rel=0.05)
    assert math.hypot(face.cx - x0 - truth.face_center[0], face.cy - y0 - truth.face_center[1]) < 0.2 * face.width


def test_a_window_reaching_past_the_frame_edge_sees_black_there(faces: FaceDetector) -> None:
    image = photo("hopper")
    rig = PHOTOS["hopper"]
    side = 3.5 * rig.face_width  # wider than the photograph: the window overhangs every edge
    window = (rig.face_center[0] - side / 2, rig.face_center[1] - side / 2, side)
    found = faces.detect(image, window)
    assert len(found) == 1
    assert _near_the_face(found[0], "hopper")
    assert faces.detect(image, (5000.0, 5000.0, 100.0)) == []  # entirely outside: nothing to look at


def test_weighted_suppression_merges_overlapping_candidates_and_keeps_separate_ones() -> None:
    rows = np.zeros((3, 16))
    rows[0, :4] = (0, 0, 10, 10)
    rows[1, :4] = (1, 1, 11, 11)  # overlaps the first (IoU 0.68)
    rows[2, :4] = (50, 50, 60, 60)
    scores = np.array([0.9, 0.6, 0.8])
    merged = detector._suppress(scores, rows, 0.3, weighted=True)
    assert [s for s, _ in merged] == [0.9, 0.8]
    assert merged[0][1][:4] == pytest.approx([0.4, 0.4, 10.4, 10.4])  # (0.9 * 0 + 0.6 * 1) / 1.5
    plain = detector._suppress(scores, rows, 0.3, weighted=False)
    assert plain[0][1][:4] == pytest.approx([0, 0, 10, 10])


def test_detect_largest_prefers_the_patient_to_a_face_behind(faces: FaceDetector) -> None:
    near = photo("hopper")[100:500, 70:460]  # face about 190 px wide
    far = cv2.resize(photo("astronaut")[20:240, 110:340], None, fx=1.3, fy=1.3)  # about 120 px
    frame = np.full((420, 720, 3), 100, dtype=np.uint8)
    frame[10:410, :390] = near
    frame[60 : 60 + far.shape[0], 410 : 410 + far.shape[1]] = far
    found = faces.detect(frame)
    assert len(found) == 2
    largest = faces.detect_largest(frame)
    assert largest is not None
    assert largest.cx < 390
    assert faces.detect_largest(np.zeros((480, 640, 3), dtype=np.uint8)) is None


def test_anchors_follow_the_model_layout() -> None:
    anchors = detector._anchors()
    assert anchors.shape == (896, 2)
    assert anchors[0] == pytest.approx([0.5 / 16, 0.5 / 16])
    assert anchors[1] == pytest.approx(anchors[0])  # two per cell at stride 8
    assert anchors[512] == pytest.approx([0.5 / 8, 0.5 / 8])  # then six per cell at stride 16
    assert anchors[-1] == pytest.approx([7.5 / 8, 7.5 / 8])


# --------------------------------------------------------------------------------------------------------------
# Errors


def test_a_missing_model_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "folder", lambda: tmp_path)
    with pytest.raises(assets.AssetError, match=r"missing: run `kiosk camera assets fetch`"):
        FaceDetector()
    with pytest.raises(assets.AssetError, match="kiosk camera assets fetch"):
        FaceDetector(tmp_path / "elsewhere.tflite")


def test_an_altered_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / detector.MODEL_NAME).write_bytes(b"not a model")
    monkeypatch.setattr(assets, "folder", lambda: tmp_path)
    with pytest.raises(assets.AssetError, match="SHA-256 differs"):
        FaceDetector()


def test_only_colour_frames_are_accepted(faces: FaceDetector) -> None:
    with pytest.raises(ValueError, match="BGR"):
        faces.detect(np.zeros((480, 640), dtype=np.uint8))
    with pytest.raises(ValueError, match="side"):
        faces.detect(np.zeros((480, 640, 3), dtype=np.uint8), (0.0, 0.0, 0.0))


# --------------------------------------------------------------------------------------------------------------
# Cost


def test_detection_cost_is_measured(faces: FaceDetector, capsys: pytest.CaptureFixture[str]) -> None:
    """Printed, not asserted: a timed assertion on a shared machine is a flaky test."""
    frame = next(render_frames(SyntheticSpec(seconds=0.04, skin_tone="VI", noise_sigma=2.0)))[1]
    face = faces.detect(frame)[0]
    side = 3.5 * face.width
    window = (face.cx - side / 2, face.cy - side / 2, side)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        timings = {}
        for label, roi in (("whole frame", None), ("window around the face", window)):
            faces.detect(frame, roi)
            started = time.perf_counter()
            for _ in range(30):
                faces.detect(frame, roi)
            timings[label] = (time.perf_counter() - started) / 30 * 1000
    finally:
        cv2.setNumThreads(threads)
    with capsys.disabled():
        print("\nBlazeFace at 640x480, OpenCV on 1 thread: " + ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()))
