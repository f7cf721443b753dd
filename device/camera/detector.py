"""Face detection that works across skin tones: MediaPipe's BlazeFace (short range) run by OpenCV's own DNN module.

Why not OpenCV's stock frontal Haar cascade, which the camera code used first: it is a boosted cascade of
grey-level rectangle contrasts (eye band darker than the cheeks, nose bridge lighter than the eyes), and those
contrasts shrink with the skin's reflectance. Measured on the two real photographs the camera tests use
(device/camera/assets.py), their skin tone-shifted to each Monk level by device/camera/photo_faces.py, 30
variants each (shift +-10 px, scale 0.9-1.1, roll +-5 degrees, sensor noise sd 2), per cent of variants
with the face found; Haar as the tracker ran it (half-size grey, CLAHE, 4 neighbours) and as the photo check
ran it (480 px wide, 12 neighbours), BlazeFace at its 0.7 threshold on the whole frame:

=========  ============================================  ============================================
Monk       astronaut: Haar tracker / Haar photo / Blaze  Hopper: Haar tracker / Haar photo / Blaze
=========  ============================================  ============================================
own, 1-6   100 / 100 / 100                               100 / 100 / 100
7          43 / 73 / 100                                 100 / 100 / 100
8          43 / 0 / 100                                  100 / 100 / 100
9          0 / 0 / 100                                   100 / 100 / 100
10         0 / 0 / 100                                   100 / 100 / 100
=========  ============================================  ============================================

BlazeFace's lowest score there was 0.72 (Hopper at MST-1), 0.75 at MST-10. On kiosk videos of both
photographs (photo_faces.py: 640x480, face 150-180 px, head sway, talking, full and half light) it found
the face in every frame at every Monk level (lowest score 0.80), where Haar as the tracker ran it found the
astronaut in 0 % of the frames at MST-9 and 10 and 60-77 % at MST-8, and the tracker built on BlazeFace
reported the face in every frame. It is also far cheaper: 3-4 ms a call against Haar's 10 ms (near the
tracked box) to 22 ms (whole frame) for a 640x480 frame on one thread, measured side by side.

The model: BlazeFace short range (face_detection_short_range.tflite, Apache-2.0), a 128x128 single-shot
detector for faces within about 2 m of the camera, 896 anchors, one score and a box plus six keypoints each.
It is taken out of the pinned mediapipe wheel at install time and checked by SHA-256 (device/camera/assets.py:
no download at run time, no TensorFlow or mediapipe import); cv2.dnn.readNetFromTFLite runs it. A missing or
altered model file raises assets.AssetError, whose message says how to fetch it.

How a frame is read: the detector sees a square window of the frame (the whole frame letterboxed, i.e.
padded with black and never stretched, or a square around a tracked face) shrunk to 128x128 with area
averaging (bilinear shrinking by 5 aliases), and every output is mapped back through the exact per-axis
scale and offset of that resize, so a box does not jitter by the rounding of the window's size. Overlapping
candidates are merged by score-weighted averaging (MediaPipe's "weighted" non-maximum suppression), which
also averages the anchors' independent estimates and so makes the box steadier than any one of them. A
face's box must be about a sixth of the window's side or more to be found (short range): the whole
640x480 frame finds faces from about 100 px wide, a smaller window smaller ones.

Cost, 640x480 BGR in, OpenCV on one thread on these shared 2-core machines: 3 ms a call for the whole frame
when the machine is quiet (4-5 ms when the other core is busy), preparation of the 128x128 input included;
3.5-4 ms for the window around a tracked face (a larger crop to shrink, by a non-integer factor).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from device.camera import assets

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
U8 = NDArray[np.uint8]

MODEL_NAME: Final = "face_detection_short_range.tflite"
INPUT_SIZE: Final = 128
# MediaPipe keeps faces scoring 0.5 or more; that is too low here. Rash photos scored up to 0.56 (sixty
# synthetic skin textures), a photograph with its face painted out 0.46, and the back of the synthetic
# dark-haired head typically 0.54 (0.44-0.75 depending on the seed: a featureless dark oval over a neck is
# what a very dark face in poor light looks like to the model, so the tracker also asks for visible eyes,
# `eye_contrast`). Faces on whole frames: both photographs at every Monk level with shifts, scale, roll and
# noise at least 0.72, every synthetic tone 0.84, and at kiosk size (faces 150-180 px in 640x480 videos,
# full and half light, every Monk level) 0.80.
SCORE_THRESHOLD: Final = 0.7
NMS_THRESHOLD: Final = 0.3  # MediaPipe's (weighted NMS at IoU 0.3)
# Keypoint order in the model's output, named from the subject's side: the subject's right eye is on the
# image's left in an unmirrored camera frame (checked on the two photographs, tests/camera/test_detector.py).
KEYPOINTS: Final = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")

Point = tuple[float, float]


@dataclass(frozen=True)
class Detection:
    """One face: its box (top-left x, y, width, height, pixels of the frame), score (0-1) and six keypoints
    (x, y pixels, in `KEYPOINTS` order)."""

    x: float
    y: float
    width: float
    height: float
    score: float
    keypoints: tuple[Point, Point, Point, Point, Point, Point]

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2

    @property
    def right_eye(self) -> Point:
        """The subject's right eye (the image's left in an unmirrored frame)."""
        return self.keypoints[0]

    @property
    def left_eye(self) -> Point:
        return self.keypoints[1]

    @property
    def eye_centre(self) -> Point:
        (x0, y0), (x1, y1) = self.right_eye, self.left_eye
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def eye_distance(self) -> float:
        (x0, y0), (x1, y1) = self.right_eye, self.left_eye
        return math.hypot(x1 - x0, y1 - y0)

    @property
    def roll_deg(self) -> float:
        """Head roll from the eye line, degrees, positive clockwise in the image (y down)."""
        (x0, y0), (x1, y1) = self.right_eye, self.left_eye
        return math.degrees(math.atan2(y1 - y0, x1 - x0))


@functools.cache
def _anchors() -> F64:
    """(896, 2) anchor centres in [0, 1]: stride 8 (16x16 cells, 2 anchors each), then stride 16 (8x8, 6 each)."""
    centres: list[F64] = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[0:grid, 0:grid]
        cell = np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], axis=1)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float64)


@dataclass(frozen=True)
class _Window:
    """The 128x128 input and how its pixel coordinates map back to the frame: x = ox + u * sx, y = oy + v * sy."""

    canvas: U8
    ox: float
    oy: float
    sx: float
    sy: float


def _window(image: U8, x0: float, y0: float, side: float) -> _Window | None:
    """The square [x0, x0 + side) x [y0, y0 + side) of the frame as a 128x128 BGR canvas, black outside the
    frame; None if less than a pixel of the frame is in it."""
    height, width = image.shape[:2]
    scale = INPUT_SIZE / side  # canvas pixels per frame pixel
    # Whole frame pixels inside the square: the crop never starts before the window or ends after it.
    ix0, iy0 = max(0, math.ceil(x0)), max(0, math.ceil(y0))
    ix1, iy1 = min(width, math.floor(x0 + side)), min(height, math.floor(y0 + side))
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    px, py = round((ix0 - x0) * scale), round((iy0 - y0) * scale)
    dw = min(INPUT_SIZE, round((ix1 - x0) * scale)) - px
    dh = min(INPUT_SIZE, round((iy1 - y0) * scale)) - py
    if dw < 1 or dh < 1:
        return None
    crop = image[iy0:iy1, ix0:ix1]
    shrinking = dw < crop.shape[1] or dh < crop.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    canvas[py : py + dh, px : px + dw] = cv2.resize(crop, (dw, dh), interpolation=interpolation)
    sx, sy = crop.shape[1] / dw, crop.shape[0] / dh
    return _Window(canvas=canvas, ox=ix0 - px * sx, oy=iy0 - py * sy, sx=sx, sy=sy)


def _iou(box: F64, others: F64) -> F64:
    """Intersection over union of one (x0, y0, x1, y1) box with each row of others."""
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-12), dtype=np.float64)


def _suppress(scores: F64, rows: F64, threshold: float, weighted: bool) -> list[tuple[float, F64]]:
    """Non-maximum suppression over decoded rows (x0, y0, x1, y1, 12 keypoint coordinates), best first.

    Weighted: each kept face is the score-weighted mean of every candidate overlapping the best one by more
    than `threshold` (MediaPipe's WEIGHTED overlap type); plain: the best candidate alone."""
    order = np.argsort(-scores)
    scores, rows = scores[order], rows[order]
    kept: list[tuple[float, F64]] = []
    while len(scores):
        overlap = _iou(rows[0, :4], rows[:, :4]) > threshold
        overlap[0] = True
        if weighted:
            w = scores[overlap]
            merged = np.asarray((rows[overlap] * w[:, None]).sum(axis=0) / w.sum(), dtype=np.float64)
        else:
            merged = rows[0]
        kept.append((float(scores[0]), merged))
        scores, rows = scores[~overlap], rows[~overlap]
    return kept


class FaceDetector:
    """BlazeFace short range through cv2.dnn. One detector per thread: each holds its own cv2.dnn.Net."""

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        score_threshold: float = SCORE_THRESHOLD,
        nms_threshold: float = NMS_THRESHOLD,
        weighted_nms: bool = True,
    ) -> None:
        """`model_path` None: the installed asset (assets.AssetError if it is missing or altered)."""
        where = Path(model_path) if model_path is not None else assets.path(MODEL_NAME)
        if not where.is_file():
            raise assets.AssetError(f"{where} is missing: run `kiosk camera assets fetch` (make does)")
        self._net = cv2.dnn.readNetFromTFLite(str(where))  # its own network (3 ms): one per thread is safe
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.weighted_nms = weighted_nms

    def scores(self, image: U8, roi: tuple[float, float, float] | None = None) -> F64:
        """All 896 anchor scores (0-1) for the frame or the square roi (x0, y0, side): for calibration."""
        window = self._prepare(image, roi)
        if window is None:
            return np.zeros(len(_anchors()))
        logits, _ = self._run(window)
        return _sigmoid(logits)

    def detect(self, image: U8, roi: tuple[float, float, float] | None = None) -> list[Detection]:
        """Faces in an HxWx3 BGR frame, best score first.

        `roi` (x0, y0, side), in frame pixels, looks only at that square (it may reach past the frame's
        edges, which count as black): around a tracked face it sees the face larger, so its keypoints are
        finer, for the same cost. Without it the whole frame is letterboxed onto the model's square input.
        """
        window = self._prepare(image, roi)
        if window is None:
            return []
        logits, regressors = self._run(window)
        scores = _sigmoid(logits)
        chosen = scores >= self.score_threshold
        if not chosen.any():
            return []
        anchors = _anchors()[chosen] * INPUT_SIZE
        reg = regressors[chosen].astype(np.float64)
        centre = reg[:, 0:2] + anchors
        half = reg[:, 2:4] / 2
        points = reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        rows = np.concatenate([centre - half, centre + half, points.reshape(-1, 12)], axis=1)
        rows[:, 0::2] = window.ox + rows[:, 0::2] * window.sx
        rows[:, 1::2] = window.oy + rows[:, 1::2] * window.sy
        faces = []
        for score, row in _suppress(scores[chosen], rows, self.nms_threshold, self.weighted_nms):
            k = [(float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(6)]
            faces.append(
                Detection(
                    x=float(row[0]),
                    y=float(row[1]),
                    width=float(row[2] - row[0]),
                    height=float(row[3] - row[1]),
                    score=score,
                    keypoints=(k[0], k[1], k[2], k[3], k[4], k[5]),
                )
            )
        return faces

    def detect_largest(self, image: U8, roi: tuple[float, float, float] | None = None) -> Detection | None:
        """The largest face (the patient in front of the kiosk, not someone walking past), or None."""
        faces = self.detect(image, roi)
        return max(faces, key=lambda f: f.width * f.height) if faces else None

    def _prepare(self, image: U8, roi: tuple[float, float, float] | None) -> _Window | None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image.dtype} {image.shape}")
        if roi is None:
            height, width = image.shape[:2]
            side = float(max(height, width))
            roi = ((width - side) / 2, (height - side) / 2, side)
        if not roi[2] > 0:
            raise ValueError(f"roi side must be positive, got {roi[2]}")
        return _window(image, *roi)

    def _run(self, window: _Window) -> tuple[F32, F32]:
        blob = cv2.dnn.blobFromImage(window.canvas, 1.0 / 127.5, (INPUT_SIZE, INPUT_SIZE), (127.5,) * 3, swapRB=True)
        self._net.setInput(blob)
        logits, regressors = self._net.forward(["classificators", "regressors"])
        return np.asarray(logits, dtype=np.float32).reshape(-1), np.asarray(regressors, dtype=np.float32)[0]


def eye_contrast(image: U8, face: Detection) -> float:
    """How clearly the face's eyes show: the smaller, over both eyes, of (p95 - p5) / (p95 + p5 + 8) of the
    grey levels in a box 0.16 x 0.10 face widths around the eye keypoint (0 if the box is off the frame).

    An open eye shows both the sclera, light in everyone, and the iris and pupil, dark in everyone, so the
    measure is high for every skin tone: 0.33-0.76 on the photo_faces.py videos of both photographs at every
    Monk level, down to 30 % light (the lowest: MST-10 at 30 %), 0.65-0.73 on the synthetic faces. The back
    of the synthetic head, a featureless dark oval over a neck that BlazeFace scores up to 0.75, gives
    0.16-0.22. The 8 in the denominator keeps the sensor noise of a very dark, flat patch from looking like
    contrast.
    """
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    height, width = grey.shape[:2]
    half_w, half_h = 0.08 * face.width, 0.05 * face.width
    contrasts = []
    for x, y in (face.right_eye, face.left_eye):
        x0, x1 = max(0, round(x - half_w)), min(width, round(x + half_w) + 1)
        y0, y1 = max(0, round(y - half_h)), min(height, round(y + half_h) + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return 0.0
        lo, hi = np.percentile(grey[y0:y1, x0:x1], [5, 95])
        contrasts.append(float((hi - lo) / (hi + lo + 8.0)))
    return min(contrasts)


def _sigmoid(logits: F32) -> F64:
    """Score from the model's logit, clipped first as MediaPipe does (and so exp cannot overflow)."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0))), dtype=np.float64)
