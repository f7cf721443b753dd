"""From camera frames to the per-frame signals camera vitals need: skin colour, background, motion, breathing.

This sits between the frame source and the rPPG/breathing DSP. Faces are found by BlazeFace
(device/camera/detector.py): OpenCV's stock Haar cascade, used first, lost faces whose skin was darkened
towards Monk 10 while BlazeFace found every one (the measurement is in detector.py's docstring and
tests/camera/test_detector.py). Three measured traps shape the rest (docs: shared field notes, Camera section):

* Detection costs more than following: BlazeFace is 3-4 ms a call here (Haar was 10-22 ms), optical flow
  and the regions about 2.5 ms together, so the face is detected about once a second and followed in between with
  Lucas-Kanade optical flow. While tracking, the detector looks only at a square 3.5 box widths around the
  box; a search looks at the whole frame and refines what it finds through that same square. A face must
  also show open eyes (detector.eye_contrast): BlazeFace, made sensitive to dark faces, scores the back of
  the synthetic dark-haired head up to 0.75, as high as some real faces, but finds no eyes on it.
* Re-detecting every N frames makes the box jump and plants a false peak at fps/N, right inside the
  heart-rate band for N = fps. A new detection therefore never moves the box at once: only the part of its
  disagreement beyond the detector's own scatter (a dead band: position, size and roll) is corrected, half of
  it, as a linear ramp over the next ~0.7 s, and the detection interval is dithered so whatever residue
  remains is not a spectral line. On the synthetic videos, snapping to every BlazeFace detection put 4-5
  times more noise into the skin trace than the dead band does (as much as half to all of the pulse); with
  the dead band the noise is that of a box never corrected at all (tests/camera/test_synthetic_and_face.py).
* Pixel-snapped ROI edges add colour noise whenever the box moves. Regions are resampled bilinearly at
  float positions on the face-aligned box (translation, scale and roll), and the skin mask is soft, so a
  sub-pixel move changes the mean smoothly.

Speed, 640x480, OpenCV on one thread, on these 2-core shared machines: 370-450 frames/s for extract with a
detection about once a second when the machine is quiet (2.5 ms a frame on the synthetic videos), 180-300
with the other core busy (a median 3.4 ms over the photo_faces.py kiosk videos). Per frame: two pyramidal LK
passes for the forward-backward check, a phase correlation for the shoulders, five small region resamples;
a BlazeFace run is 3-4 ms, two when a search finds a face, so detection adds about 0.1 ms a frame on
average.

Regions are fractions of the face box: BlazeFace's box centre and width (u to the right and v downwards from
the box centre, in box widths), upright unless the line through the eye keypoints is rolled by more than
8 degrees (then by the excess; optical flow follows roll either way). The box is about square and spans
roughly mid-forehead to the chin, with the eyes at v = -0.21 to -0.27 and the nose tip near v = 0; it scales
the regions because it scattered no more than the eye distance and does not shrink when the head turns.
The keypoints' roll is not trusted fully because on the astronaut photograph darkened to Monk 9-10 all six
keypoints turned together 6-9 degrees further than at her own tone, which swung the forehead region onto
her fringe. Placed by drawing the regions on the two real photographs (device/camera/assets.py), the
photo_faces.py kiosk videos of both at every Monk level, and the synthetic faces of every tone
(device/camera/synthetic.py), and checked against photo_faces.py's skin mask: on both photographs at all ten
Monk levels each cheek region is 99-100 % skin and the forehead 99-100 %, except the astronaut at Monk 9 and
10 (86 and 76 %: her low fringe leaves a narrow forehead, and there her box sits 0.04 box widths higher);
the background regions are 0 % skin (tests/camera/test_synthetic_and_face.py). The forehead is the
compromise: 0.01 box widths higher loses the astronaut's forehead to her fringe, 0.01 lower takes in the
synthetic face's brows (the skin mask drops them, but they raised the skin trace's noise by a third). They
need checking on kiosk recordings:

=============  =====================  ===================  =================================================
region         centre (u, v)          size (w x h)         why
=============  =====================  ===================  =================================================
forehead       (0, -0.405)            0.26 x 0.06          thin skin, little motion, just above the brows:
                                                           below a low fringe or a cap's brim
left cheek     (-0.24, -0.02)         0.19 x 0.16          below the eye (and a glasses rim), beside the
                                                           nose, above the mouth
right cheek    (+0.24, -0.02)         0.19 x 0.16          mirror image
background     (+-0.92, -0.24)        0.35 x 0.46          beside the head: light changes without the pulse
upper body     (0, +0.87)             3.00 x 0.70          shoulders' outline: breathing moves it vertically
=============  =====================  ===================  =================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from device.camera.detector import SCORE_THRESHOLD, Detection, FaceDetector, eye_contrast

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
U8 = NDArray[np.uint8]

NAN3 = (math.nan, math.nan, math.nan)


class FrameLike(Protocol):
    """What the tracker needs from a frame: device.camera.source.Frame fits, and so does any test double."""

    @property
    def image(self) -> U8:  # HxWx3 BGR
        ...

    @property
    def t(self) -> float:  # capture time, seconds
        ...


@dataclass(frozen=True)
class Region:
    """A rectangle on the face box: centre (u, v) and size (w, h), all in box widths."""

    name: str
    u: float
    v: float
    w: float
    h: float


FOREHEAD = Region("forehead", 0.0, -0.405, 0.26, 0.06)
LEFT_CHEEK = Region("left_cheek", -0.24, -0.02, 0.19, 0.16)
RIGHT_CHEEK = Region("right_cheek", 0.24, -0.02, 0.19, 0.16)
SKIN_REGIONS = (FOREHEAD, LEFT_CHEEK, RIGHT_CHEEK)
BACKGROUND_REGIONS = (
    Region("background_left", -0.92, -0.24, 0.35, 0.46),
    Region("background_right", 0.92, -0.24, 0.35, 0.46),
)
UPPER_BODY = Region("upper_body", 0.0, 0.87, 3.0, 0.70)


@dataclass(frozen=True)
class FaceBox:
    """Tracked face box: centre, side length (px) and roll (degrees, clockwise in the image)."""

    cx: float
    cy: float
    size: float
    angle_deg: float = 0.0

    def point(self, u: float, v: float) -> tuple[float, float]:
        """Image position of (u, v) box widths from the centre, rotated with the face."""
        a = math.radians(self.angle_deg)
        x, y = u * self.size, v * self.size
        return self.cx + x * math.cos(a) - y * math.sin(a), self.cy + x * math.sin(a) + y * math.cos(a)


@dataclass(frozen=True)
class FaceSample:
    """One frame's signals. Colours are (R, G, B) means in 8-bit units; NaN where there is nothing to measure."""

    t: float
    skin_rgb: tuple[float, float, float]  # soft-masked skin of forehead and both cheeks
    background_rgb: tuple[float, float, float]  # beside the head; NaN if both regions are off the frame
    motion_px: float  # how far the face box centre moved since the previous frame (0 when not tracking)
    brightness: float  # mean luma (BT.601) of the skin regions
    face_found: bool
    # Vertical position of the shoulders (px, positive = down, arbitrary zero, continuous across re-anchoring);
    # breathing moves it. NaN when the shoulders are out of the frame.
    upper_body_y: float
    box: FaceBox | None = None


@dataclass(frozen=True)
class TrackerConfig:
    """Tuning. Defaults suit a seated adult at a 640x480, 30 fps kiosk camera."""

    detect_interval_s: float = 1.0  # while tracking
    detect_interval_dither: float = 0.25  # +- fraction, so detections do not form a spectral line
    search_interval_s: float = 0.2  # while no face is tracked
    # While tracking (and to refine an acquisition), the detector sees only a square this many box widths
    # around the box: the face fills more of its 128x128 input, for the same cost. 3.5 scored faces highest
    # (0.91-0.95 on both photographs, own tone and darkened, and on the synthetic faces, against 0.80-0.92
    # at 2.5 and 3); the scatter of box and keypoints was the same from 2.5 to 3.5.
    detect_search_fraction: float = 3.5
    min_face_fraction: float = 0.15  # smallest face box (BlazeFace width), as a fraction of the frame height
    score_threshold: float = SCORE_THRESHOLD  # 0.7: see device/camera/detector.py
    # A face the vitals can use looks at the camera with its eyes open: detector.eye_contrast at least this
    # (faces of every Monk level gave 0.33 or more even at 30 % light, the back of the synthetic head, which
    # BlazeFace scores up to 0.75, at most 0.22). Dark glasses or closed eyes read as "face not found".
    min_eye_contrast: float = 0.27
    model_path: str | None = None  # None: the installed asset (device/camera/assets.py)
    max_features: int = 48
    min_features: int = 8  # fewer surviving points than this: the track is lost
    reseed_below: int = 24  # fewer than this: pick new points inside the box
    lk_window: int = 15
    lk_levels: int = 2
    fb_max_error_px: float = 0.7  # forward-backward check for each tracked point
    # BlazeFace boxes scatter by about 1 % of the face size in position, 1.5-2 % in size and 1-1.5 degrees in
    # roll between frames of a still face (real photographs with sensor noise and small shifts), while
    # optical flow is sub-pixel: a detection corrects only the part of its disagreement beyond about three
    # times that scatter.
    correction_deadband: float = 0.03  # box widths
    size_deadband: float = 0.05  # log of the size ratio
    roll_deadband_deg: float = 4.0
    # The eye line's roll is believed only beyond this much: patients sit about upright, and on the astronaut
    # photograph darkened to Monk 9-10 all six keypoints turned together 6-9 degrees further than at her own
    # tone, which swung the forehead region onto her fringe.
    upright_band_deg: float = 8.0
    correction_gain: float = 0.5  # fraction of the disagreement beyond the dead band to correct
    correction_s: float = 0.7  # spread over this long (linear ramp)
    reacquire_fraction: float = 0.35  # a detection this far off (box widths) is a new acquisition
    # Consecutive missed detections before "face not found" although optical flow still holds on: a lost
    # track costs the whole signal window, so one unlucky frame (a blink, a hand) must not end it.
    max_missed_detections: int = 3
    seed: int = 0


# --------------------------------------------------------------------------------------------------------------
# Sampling regions with sub-pixel accuracy.


def _region_samples(region: Region, size: float) -> tuple[int, int]:
    """About one sample per pixel at acquisition; fixed afterwards so the sampling grid never jumps."""
    return max(4, round(region.w * size)), max(4, round(region.h * size))


def _sample(image: U8, box: FaceBox, region: Region, samples: tuple[int, int]) -> F32 | None:
    """Bilinearly resample a face-aligned region to a float patch (nh, nw, 3), or None if it leaves the frame.

    Only the region's integer bounding crop is converted to float, so the interpolated values keep their
    fraction: rounding them to uint8 would add back some of the quantisation a moving box should not see.
    """
    nw, nh = samples
    a = math.radians(box.angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    step = rot @ np.diag([region.w * box.size / nw, region.h * box.size / nh])
    cx, cy = box.point(region.u, region.v)
    offset = np.array([cx, cy]) - step @ np.array([(nw - 1) / 2, (nh - 1) / 2])
    corners = offset[:, None] + step @ np.array([[0, nw - 1, 0, nw - 1], [0, 0, nh - 1, nh - 1]], dtype=np.float64)
    x0, y0 = math.floor(corners[0].min()), math.floor(corners[1].min())
    x1, y1 = math.ceil(corners[0].max()) + 2, math.ceil(corners[1].max()) + 2
    height, width = image.shape[:2]
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return None
    crop = image[y0:y1, x0:x1].astype(np.float32)
    matrix = np.hstack([step, (offset - np.array([x0, y0]))[:, None]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return np.asarray(cv2.warpAffine(crop, matrix, (nw, nh), flags=flags), dtype=np.float32)


def _ramp(x: F32, lo: float, hi: float) -> F32:
    return np.asarray(np.clip((x - lo) / (hi - lo), 0.0, 1.0), dtype=np.float32)


def _skin_weights(patch: F32) -> tuple[F32, F32]:
    """Soft skin mask (and luma): a hard threshold would flip pixels in and out as the box moves.

    The regions sit on skin by the detector's keypoints, so skin is what most of a region is: a pixel counts
    by how close its chroma (YCrCb) is to the region's median chroma, not by fixed chroma limits. Fixed limits
    (Cr 130-134 as a ramp) weighed the lightest and the darkest Monk swatches (Cr 133-137 and 131-133) by
    noise, and a green lamp's cast put light skin under them altogether; the skin's pulse then drifted off
    the blood-volume direction. Pixels much darker than the region's median (brows, hair, nostrils) are
    dropped by luma, since dark-brown hair has skin-like chroma; clipped highlights too.
    """
    b, g, r = patch[..., 0], patch[..., 1], patch[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = 0.713 * (r - y) + 128.0
    cb = 0.564 * (b - y) + 128.0
    median_y = float(np.median(y))
    distance = np.hypot(cr - float(np.median(cr)), cb - float(np.median(cb)))
    weight = 1.0 - _ramp(distance, 8.0, 14.0)
    weight = weight * _ramp(y, max(8.0, 0.55 * median_y), max(12.0, 0.7 * median_y)) * (1.0 - _ramp(y, 250.0, 254.0))
    return np.asarray(weight, dtype=np.float32), y


# --------------------------------------------------------------------------------------------------------------
# Breathing: vertical position of the shoulders by phase correlation against a reference.


class _UpperBody:
    """Vertical shift of a fixed image window on the shoulders relative to a reference, continuous across
    re-anchoring (the window moves only when the person does, and the offset carries the signal over)."""

    def __init__(self, grey: U8, rect: tuple[int, int, int, int], offset: float) -> None:
        self.rect = rect
        x, y, w, h = rect
        self._window = cv2.createHanningWindow((w, h), cv2.CV_32F)
        self._reference = grey[y : y + h, x : x + w].astype(np.float32)
        self._offset = offset
        self.last = offset

    def measure(self, grey: U8) -> float:
        x, y, w, h = self.rect
        current = grey[y : y + h, x : x + w].astype(np.float32)
        (_, dy), _ = cv2.phaseCorrelate(self._reference, current, self._window)
        self.last = self._offset + float(dy)
        return self.last


def _upper_body_rect(box: FaceBox, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Integer window (x, y, w, h) under the face, clipped to the frame; None if too little of it is visible."""
    cx, cy = box.point(UPPER_BODY.u, UPPER_BODY.v)
    half_w, half_h = UPPER_BODY.w * box.size / 2, UPPER_BODY.h * box.size / 2
    height, width = shape[:2]
    x0, y0 = max(0, round(cx - half_w)), max(0, round(cy - half_h))
    x1, y1 = min(width, round(cx + half_w)), min(height, round(cy + half_h))
    if x1 - x0 < 32 or y1 - y0 < 16:
        return None
    return x0, y0, x1 - x0, y1 - y0


# --------------------------------------------------------------------------------------------------------------
# The tracker.


@dataclass
class _Correction:
    """A detection's disagreement, applied as a linear ramp in time: (dx, dy, dlog_size, droll_deg) per second."""

    rate: tuple[float, float, float, float]
    start: float
    end: float

    def amount(self, t0: float, t1: float) -> tuple[float, float, float, float]:
        span = max(0.0, min(t1, self.end) - max(t0, self.start))
        return self.rate[0] * span, self.rate[1] * span, self.rate[2] * span, self.rate[3] * span


class FaceTracker:
    """Detect about once a second, follow with optical flow in between, measure regions every frame."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        model = self.config.model_path
        self._detector = FaceDetector(model, score_threshold=self.config.score_threshold)
        self._rng = np.random.default_rng(self.config.seed)
        self._box: FaceBox | None = None
        self._points: F32 | None = None
        self._prev_grey: U8 | None = None
        self._prev_t: float | None = None
        self._next_detect = -math.inf
        self._missed = 0
        self._correction: _Correction | None = None
        self._samples: dict[str, tuple[int, int]] = {}
        self._body: _UpperBody | None = None
        self._body_anchor: FaceBox | None = None
        self._body_last = 0.0
        self.detections = 0  # detection attempts (one or two BlazeFace runs each), for benchmarks

    @property
    def box(self) -> FaceBox | None:
        return self._box

    def extract(self, frames: Iterable[FrameLike]) -> list[FaceSample]:
        """Update over every frame and return one sample per frame."""
        return [self.update(frame) for frame in frames]

    def update(self, frame: FrameLike) -> FaceSample:
        """Advance by one frame and measure it."""
        image, t = frame.image, float(frame.t)
        grey = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        before = self._box
        if self._box is not None and self._prev_grey is not None:
            self._track(self._prev_grey, grey)
        if t >= self._next_detect:
            self._detect(image, grey, t)
        if self._box is not None and self._prev_t is not None:
            self._apply_correction(self._prev_t, t)
        if self._box is not None and (self._points is None or len(self._points) < self.config.reseed_below):
            self._seed_points(grey)
        self._prev_grey, self._prev_t = grey, t
        motion = 0.0
        if before is not None and self._box is not None:
            motion = math.hypot(self._box.cx - before.cx, self._box.cy - before.cy)
        return self._measure(image, grey, t, motion)

    # -- tracking ---------------------------------------------------------------------------------------------

    def _lk(self, prev: U8, grey: U8, points: F32) -> tuple[F32, NDArray[np.bool_]]:
        cfg = self.config
        params = {
            "winSize": (cfg.lk_window, cfg.lk_window),
            "maxLevel": cfg.lk_levels,
            "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01),
        }
        forward, st1, _ = cv2.calcOpticalFlowPyrLK(prev, grey, points, None, **params)  # type: ignore[call-overload]
        back, st2, _ = cv2.calcOpticalFlowPyrLK(grey, prev, forward, None, **params)  # type: ignore[call-overload]
        fb_error = np.linalg.norm((points - back).reshape(-1, 2), axis=1)
        good = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb_error < cfg.fb_max_error_px)
        return np.asarray(forward, dtype=np.float32), good

    def _track(self, prev: U8, grey: U8) -> None:
        """Move the box by the similarity transform of the points it carries (robust to a few bad ones)."""
        assert self._box is not None
        if self._points is None or len(self._points) < self.config.min_features:
            self._lose()
            return
        forward, good = self._lk(prev, grey, self._points)
        if int(good.sum()) < self.config.min_features:
            self._lose()
            return
        src, dst = self._points[good], forward[good]
        matrix, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0, maxIters=200, refineIters=10
        )
        if matrix is None:
            shift = np.median((dst - src).reshape(-1, 2), axis=0)
            matrix = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
            inliers = np.ones((len(src), 1), dtype=np.uint8)
        self._box = _moved(self._box, np.asarray(matrix, dtype=np.float64))
        kept = dst[np.asarray(inliers).ravel() == 1]
        self._points = kept if len(kept) >= self.config.min_features else None
        if not self._inside(grey.shape):
            self._lose()

    def _inside(self, shape: tuple[int, ...]) -> bool:
        assert self._box is not None
        height, width = shape[:2]
        return 0 <= self._box.cx < width and 0 <= self._box.cy < height and self._box.size > 8

    def _seed_points(self, grey: U8) -> None:
        """Corners inside the inner 80 % of the box (eyes, brows, nostrils, mouth, hairline, skin texture)."""
        assert self._box is not None
        half = 0.4 * self._box.size
        height, width = grey.shape[:2]
        x0, y0 = max(0, int(self._box.cx - half)), max(0, int(self._box.cy - half))
        x1, y1 = min(width, int(self._box.cx + half)), min(height, int(self._box.cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            self._points = None
            return
        min_distance = max(3.0, self._box.size / 25)
        found = cv2.goodFeaturesToTrack(grey[y0:y1, x0:x1], self.config.max_features, 0.01, min_distance)
        if found is None:
            self._points = None
            return
        self._points = (np.asarray(found, dtype=np.float32) + np.array([x0, y0], dtype=np.float32)).reshape(-1, 1, 2)

    def _lose(self) -> None:
        self._box, self._points, self._correction = None, None, None
        self._next_detect = -math.inf  # search at once

    # -- detection --------------------------------------------------------------------------------------------

    def _detect(self, image: U8, grey: U8, t: float) -> None:
        cfg = self.config
        self.detections += 1
        if self._box is None:
            self._next_detect = t + cfg.search_interval_s
        else:
            dither = 1.0 + cfg.detect_interval_dither * float(self._rng.uniform(-1.0, 1.0))
            self._next_detect = t + cfg.detect_interval_s * dither
        face = self._find(image, self._box)
        if face is None:
            self._missed += 1
            if self._box is not None and self._missed >= cfg.max_missed_detections:
                self._lose()
                self._next_detect = t + cfg.search_interval_s
            return
        self._missed = 0
        if self._box is None:
            self._acquire(face, grey)
            return
        tracked = self._box
        error = (face.cx - tracked.cx, face.cy - tracked.cy, math.log(face.size / tracked.size))
        roll_error = (face.angle_deg - tracked.angle_deg + 180.0) % 360.0 - 180.0
        if math.hypot(error[0], error[1]) > cfg.reacquire_fraction * tracked.size or abs(error[2]) > 0.4:
            self._acquire(face, grey)
            return
        shrink = _soft_threshold(math.hypot(error[0], error[1]), cfg.correction_deadband * tracked.size)
        size_step = math.copysign(_soft_threshold(abs(error[2]), cfg.size_deadband) * abs(error[2]), error[2])
        roll_step = math.copysign(_soft_threshold(abs(roll_error), cfg.roll_deadband_deg) * abs(roll_error), roll_error)
        gain = cfg.correction_gain / cfg.correction_s
        rate = (error[0] * shrink * gain, error[1] * shrink * gain, size_step * gain, roll_step * gain)
        if rate != (0.0, 0.0, 0.0, 0.0):
            self._correction = _Correction(rate=rate, start=t, end=t + cfg.correction_s)
        self._points = None  # fresh points on the face as it looks now

    def _find(self, image: U8, around: FaceBox | None) -> FaceBox | None:
        """The face, as a box on BlazeFace's geometry: centre and width of its box, roll of its eye line.

        While tracking, only a square `detect_search_fraction` box widths around the tracked box is searched
        (fewer false positives; the face is larger in the detector's input), and the face nearest the box is
        taken. While searching, the whole frame is, the largest face big enough is taken (the patient, not
        someone passing behind), and it is looked at again through the square around it, so that an
        acquisition and the later corrections come from the same view of the face and do not disagree by a
        systematic offset (on the dark synthetic face the whole frame's box was 5 % narrower than the
        square's, and its eye line rolled 5.5 degrees against the square's 3). Either way the face must show
        open eyes (`min_eye_contrast`), measured on the square's finer keypoints.
        """
        cfg = self.config
        min_width = cfg.min_face_fraction * image.shape[0]
        if around is None:
            found = [f for f in self._detector.detect(image) if f.width >= min_width]
            if not found:
                return None
            coarse = max(found, key=lambda f: f.width)
            return self._look_around(image, self._box_of(coarse))
        return self._look_around(image, around)

    def _look_around(self, image: U8, around: FaceBox) -> FaceBox | None:
        side = self.config.detect_search_fraction * around.size
        faces = self._detector.detect(image, (around.cx - side / 2, around.cy - side / 2, side))
        if not faces:
            return None
        nearest = min(faces, key=lambda f: math.hypot(f.cx - around.cx, f.cy - around.cy))
        if eye_contrast(image, nearest) < self.config.min_eye_contrast:
            return None  # no open eyes where the eyes should be: not a face to measure (see TrackerConfig)
        return self._box_of(nearest)

    def _box_of(self, face: Detection) -> FaceBox:
        """BlazeFace's box centre and width (as steady as the eye distance for scale, and not shortened when
        the head turns), rolled by the part of the eye line's roll beyond `upright_band_deg`."""
        band = self.config.upright_band_deg
        roll = math.copysign(max(0.0, abs(face.roll_deg) - band), face.roll_deg)
        return FaceBox(cx=face.cx, cy=face.cy, size=face.width, angle_deg=roll)

    def _acquire(self, box: FaceBox, grey: U8) -> None:
        """Start (or restart) a track: the one place the box may jump, since the signal restarts anyway."""
        self._box, self._correction, self._points = box, None, None
        self._samples = {r.name: _region_samples(r, box.size) for r in (*SKIN_REGIONS, *BACKGROUND_REGIONS)}
        self._anchor_body(grey, box)

    def _apply_correction(self, t0: float, t1: float) -> None:
        if self._correction is None or self._box is None:
            return
        dx, dy, dlog, droll = self._correction.amount(t0, t1)
        b = self._box
        self._box = FaceBox(cx=b.cx + dx, cy=b.cy + dy, size=b.size * math.exp(dlog), angle_deg=b.angle_deg + droll)
        if t1 >= self._correction.end:
            self._correction = None

    # -- measuring --------------------------------------------------------------------------------------------

    def _anchor_body(self, grey: U8, box: FaceBox) -> None:
        rect = _upper_body_rect(box, grey.shape)
        self._body = _UpperBody(grey, rect, self._body_last) if rect else None
        self._body_anchor = box

    def _upper_body_y(self, grey: U8) -> float:
        box, anchor = self._box, self._body_anchor
        if box is None or anchor is None:
            return math.nan
        if math.hypot(box.cx - anchor.cx, box.cy - anchor.cy) > 0.3 * anchor.size:
            self._anchor_body(grey, box)  # the person moved: new window, same signal level
        if self._body is None:
            return math.nan
        self._body_last = self._body.measure(grey)
        return self._body_last

    def _measure(self, image: U8, grey: U8, t: float, motion: float) -> FaceSample:
        box = self._box
        if box is None:
            return FaceSample(t, NAN3, NAN3, 0.0, math.nan, False, math.nan, None)
        total_w, total_rgb, total_y = 0.0, np.zeros(3), 0.0
        for region in SKIN_REGIONS:
            patch = _sample(image, box, region, self._samples[region.name])
            if patch is None:
                continue
            weight, luma = _skin_weights(patch)
            total_w += float(weight.sum())
            total_rgb += (patch * weight[..., None]).reshape(-1, 3).sum(axis=0)
            total_y += float((luma * weight).sum())
        skin = _bgr_to_rgb(total_rgb / total_w) if total_w > 1.0 else NAN3
        brightness = total_y / total_w if total_w > 1.0 else math.nan
        backgrounds = [_sample(image, box, r, self._samples[r.name]) for r in BACKGROUND_REGIONS]
        means = [p.reshape(-1, 3).mean(axis=0) for p in backgrounds if p is not None]
        background = _bgr_to_rgb(np.mean(means, axis=0)) if means else NAN3
        return FaceSample(t, skin, background, motion, brightness, True, self._upper_body_y(grey), box)


def _soft_threshold(magnitude: float, deadband: float) -> float:
    """Factor that shrinks a disagreement of this magnitude by the dead band (0 inside it)."""
    return 0.0 if magnitude <= deadband else (magnitude - deadband) / magnitude


def _bgr_to_rgb(bgr: F64 | F32) -> tuple[float, float, float]:
    return float(bgr[2]), float(bgr[1]), float(bgr[0])


def _moved(box: FaceBox, matrix: F64) -> FaceBox:
    """Apply a frame-to-frame similarity transform to the box (scale and roll clamped to plausible steps)."""
    cx, cy = matrix @ np.array([box.cx, box.cy, 1.0])
    scale = min(1.1, max(0.9, math.hypot(matrix[0, 0], matrix[1, 0])))
    roll = max(-5.0, min(5.0, math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))))
    return FaceBox(cx=float(cx), cy=float(cy), size=box.size * scale, angle_deg=box.angle_deg + roll)


def extract(frames: Iterable[FrameLike], config: TrackerConfig | None = None) -> list[FaceSample]:
    """Run a fresh tracker over frames and return one sample per frame."""
    return FaceTracker(config).extract(frames)
