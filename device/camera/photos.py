"""Case photos: check a photo of a rash or a wound before it is sent, and send only its pixels.

A patient at the kiosk adds photos to an asynchronous case; a clinician looks at them hours later, when
the patient can no longer be asked for a better one. So the kiosk checks each photo at once and tells the
patient what to fix (`assess`, one short code and one sentence per problem), takes a short burst and keeps
the sharpest frame because hands shake (`best_frame`), and sends a JPEG re-encoded from pixels, so that
nothing but the image leaves the kiosk (`prepare`, `strip_jpeg`): no EXIF GPS position, no camera serial
number, no embedded thumbnail of the uncropped original, no comment.

How a photo is measured
-----------------------
Every number is taken on one analysis copy, resized to `ANALYSIS_WIDTH` (640 px) wide, so that a threshold
means the same for a 640x480 kiosk frame and a 12-megapixel phone photo (and a 12 MP photo costs a resize,
not a 12 MP Laplacian).

* **Sharpness** is the variance of the Laplacian (OpenCV's 3x3 kernel) of the grey copy, scaled by
  (128 / mean luma)^2, i.e. measured as if the photo's mean brightness were 128. The scaling is not
  cosmetic: skin texture is a reflectance contrast, so its amplitude in pixel levels is proportional to
  the skin's brightness, and the raw variance of a sharp photo of dark skin (Monk MST-8) was 45 against
  83 for light skin (MST-4) blurred by 0.5 px; a raw threshold would send darker-skinned patients back
  for "blurry" photos far more often. The raw value is kept in the metrics as `laplacian_var`.
  The threshold, `MIN_SHARPNESS` = 40, comes from synthetic skin (the test suite's texture: pores,
  mottling, 2-9 px papules, fine hairs, sensor noise) and synthetic face frames
  (`device.camera.synthetic`), each Gaussian-blurred by sigma px measured at the analysis width:

  ======================  =====  =====  =====  =====  =====  =====
  image (native width)    sharp  0.5    1.0    1.5    2.0    3.0
  ======================  =====  =====  =====  =====  =====  =====
  skin MST-4, 1280        124    30     4.3    1.3    0.8    0.7
  skin type III, 1280     126    31     5.0    1.9    1.4    1.2
  skin MST-8, 1280        145    38     9.7    5.9    4.8    3.9
  skin type III, 640      211    66     6.6    2.5    1.6    1.2
  skin type III, 1920     123    25     3.5    1.6    1.3    1.2
  face type II, 640       207    97     19     8.1    5.0    2.9
  face MST-8, 640         158    74     15     6.7    4.6    3.0
  ======================  =====  =====  =====  =====  =====  =====

  Sharp images scored 123-211 and every 1 px blur 3.5-19, so 40 sits a factor of three under the sharpest
  worst case and twice over the blurriest; a 0.5 px blur (hardly visible) mostly passes. Sensor noise
  raises the number (noise of sigma 1.5 levels added 6 % at 640 px and 2 % at 1280 px, where the resize
  averages it down; measured by rendering without it), which is the known weakness of the measure: a
  very noisy photo looks sharper than it is. Synthetic texture is not skin:
  the number needs re-checking on real kiosk photos.
* **Exposure** uses the mean luma (BT.601, the grey copy), the fraction of near-black pixels (luma below
  16: shadows crushed, detail gone) and the fraction of clipped pixels (any channel at 250 or above: on
  skin the red channel clips first, and a clipped red channel hides exactly the redness a clinician looks
  for). A uniformly dark or light photo cannot be told apart from very dark or very light skin by its
  luma, so the limits leave the whole Monk scale at its published colours alone: the darkest swatch
  (MST-10, #292420) rendered as skin has mean luma 36, so `too_dark` starts below 30 (or more than half
  the frame near black); the lightest (MST-1, #f6ede4) has mean luma 233, so `too_bright` starts above
  240 (or more than 20 % of pixels clipped; MST-1 at face value clips 27 % and *is* flagged, rightly:
  its red channel has lost the detail there). A type III skin photo underexposed 2.7 stops (x0.15, mean
  24) and overexposed x1.6 (99.5 % clipped) are flagged. Blur is not reported with an exposure problem:
  the contrast the Laplacian measures is what bad exposure destroys, and "hold still" is the wrong advice
  when the fix is light.
* **A face** is looked for with BlazeFace (device/camera/detector.py). OpenCV's Haar cascade, used first,
  missed darker faces: on the two real photographs tone-shifted along the Monk scale (photo_faces.py), with
  small shifts, rolls and noise, the Haar check as it was set here found the astronaut in 73 % of 30
  variants at MST-7 and in none at MST-8 to 10; BlazeFace found every one (both checks found Grace Hopper at
  every level). BlazeFace sees a 128x128 square, so it looks at the colour analysis copy whole (letterboxed)
  and through overlapping square tiles two thirds of the shorter side wide, half a tile apart (6 on a
  640x480 copy: 7 runs, about 25 ms on a quiet machine). Both photographs pasted small into a skin photo were
  found from a face box a tenth of the shorter side wide at their own tone and MST-5, and an eighth at MST-10
  (the Haar check's smallest face was a tenth); a face found by several windows is counted once. A face
  counts when it scores at least `FACE_MIN_SCORE`, the detector's own 0.7: the photographs at their own tone
  and at every Monk level, sharp, blurred (1-4 px) or overexposed (x1.4), scored 0.75 or more (under 0.8
  only the astronaut at MST-9 and 10 blurred 4 px), synthetic faces of all six types under the same changes
  0.86 or more; fifteen synthetic skin textures (three tones, five seeds) under the same changes at most
  0.67, sixty more seeds, sharp, at most 0.64 (the tiles, which see the texture magnified, give the
  highest). The margins are narrow both ways: real rash photos may move the line. A face is a privacy
  problem only when the photo should show skin elsewhere: `allow_face=True` skips the check for a rash on
  the face.
* **Resolution** below `MIN_SHORT_SIDE` x `MIN_LONG_SIDE` (480 x 640, the kiosk camera's VGA) is
  `too_small`: below it a 5 mm lesion on a forearm filling the frame spans only a few pixels.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from device.camera.detector import SCORE_THRESHOLD, Detection, FaceDetector
from device.camera.face import FrameLike

U8 = NDArray[np.uint8]

ProblemCode = Literal["blurry", "too_dark", "too_bright", "face_in_frame", "too_small"]

# The analysis copy: every threshold below was measured at this width (see the module docstring).
ANALYSIS_WIDTH: Final = 640
# An extreme strip (1000x10 px) would become a 640 x 640000 copy at a fixed width; cap its height instead.
_ANALYSIS_MAX_HEIGHT: Final = 4 * ANALYSIS_WIDTH

MIN_SHARPNESS: Final = 40.0  # brightness-normalised variance of the Laplacian
MIN_MEAN_LUMA: Final = 30.0
DARK_LEVEL: Final = 16  # luma below this is "near black"
MAX_DARK_FRACTION: Final = 0.5
MAX_MEAN_LUMA: Final = 240.0
CLIP_LEVEL: Final = 250  # a channel at or above this is clipped (JPEG ringing keeps clipped areas near, not at, 255)
MAX_CLIPPED_FRACTION: Final = 0.2
MIN_SHORT_SIDE: Final = 480
MIN_LONG_SIDE: Final = 640

FACE_MIN_SCORE: Final = SCORE_THRESHOLD  # BlazeFace score, 0.7 (see the module docstring)
FACE_TILE_FRACTION: Final = 2 / 3  # tile side, of the analysis copy's shorter side

MEDIA_TYPE: Final = "image/jpeg"
# A JPEG declaring more pixels than this is refused before decoding: a few hundred bytes can declare
# 65535 x 65535 (12 GB of BGR). 64 MP still admits a 64-megapixel phone's full-resolution photo.
MAX_DECODE_PIXELS: Final = 64_000_000

_MESSAGES: Final[dict[ProblemCode, str]] = {
    "face_in_frame": (
        "A face is visible in the photo. Keep faces out of the picture and show only the skin the clinician "
        "needs to see."
    ),
    "too_small": "The photo is too small to show detail (at least {long} x {short} pixels are needed).",
    "too_dark": "The photo is too dark. Turn on the kiosk light or move to brighter light, then take it again.",
    "too_bright": (
        "The photo is too bright and parts of it are washed out. Move out of direct light, then take it again."
    ),
    "blurry": "The photo is blurry. Hold still (rest your arm if you can), then take it again.",
}


class PhotoError(ValueError):
    """A photo cannot be used at all (not an image, not a JPEG, undecodable, absurdly large): say which."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing the patient can fix: a stable code for the kiosk screens and logs, and a sentence to show."""

    code: ProblemCode
    message: str


@dataclass(frozen=True)
class PhotoCheck:
    """The verdict on one photo: `ok` exactly when there are no problems, and the numbers behind it.

    Problems come in the order a patient should fix them: a face first (privacy), then resolution,
    exposure, and blur. `metrics` always holds width, height, sharpness, laplacian_var, mean_luma,
    dark_fraction and clipped_fraction; `faces` too unless the face check was skipped.
    """

    ok: bool
    problems: list[Problem]
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ok != (not self.problems):
            raise ValueError("PhotoCheck.ok must be True exactly when there are no problems")

    @property
    def codes(self) -> list[ProblemCode]:
        """The problem codes alone, in order."""
        return [problem.code for problem in self.problems]


@dataclass(frozen=True, slots=True)
class PreparedPhoto:
    """A photo ready to attach to a case: JPEG bytes made from pixels only, and what the receiver checks.

    `sha256` (hex, of `data`) lets the hub verify the upload and refer to the attachment by content.
    `data` is left out of the repr so that a logged PreparedPhoto does not put a patient's photo in a log.
    """

    data: bytes = field(repr=False)
    width: int
    height: int
    sha256: str
    media_type: str = MEDIA_TYPE


# -- measuring --------------------------------------------------------------------------------------------------


def _as_bgr(image: U8) -> U8:
    """The image as HxWx3 BGR uint8 (grey and BGRA are converted), or a PhotoError saying what it is instead."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = f"array of {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise PhotoError(f"expected an 8-bit image (numpy uint8 array), got {kind}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise PhotoError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise PhotoError(f"the image is empty (shape {image.shape})")
    if image.ndim == 2:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    return image


def _analysis_copy(bgr: U8) -> U8:
    """`ANALYSIS_WIDTH` wide (area-averaged when shrinking, which also averages sensor noise down)."""
    height, width = bgr.shape[:2]
    scale = min(ANALYSIS_WIDTH / width, _ANALYSIS_MAX_HEIGHT / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(bgr, size, interpolation=interpolation), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class _Measures:
    """What one pass over the analysis copy yields: all `assess` needs except the face search."""

    small: U8  # the analysis copy (BGR)
    grey: U8
    laplacian_var: float
    sharpness: float
    mean_luma: float
    dark_fraction: float
    clipped_fraction: float

    @property
    def exposure_problems(self) -> list[ProblemCode]:
        problems: list[ProblemCode] = []
        if self.mean_luma < MIN_MEAN_LUMA or self.dark_fraction > MAX_DARK_FRACTION:
            problems.append("too_dark")
        if self.mean_luma > MAX_MEAN_LUMA or self.clipped_fraction > MAX_CLIPPED_FRACTION:
            problems.append("too_bright")
        return problems


def _measure(bgr: U8) -> _Measures:
    small = _analysis_copy(bgr)
    grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    laplacian_var = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    mean_luma = float(grey.mean())
    return _Measures(
        small=small,
        grey=grey,
        laplacian_var=laplacian_var,
        sharpness=laplacian_var * (128.0 / max(mean_luma, 1.0)) ** 2,
        mean_luma=mean_luma,
        dark_fraction=float(np.count_nonzero(grey < DARK_LEVEL)) / grey.size,
        clipped_fraction=float(np.count_nonzero(small.max(axis=2) >= CLIP_LEVEL)) / grey.size,
    )


def sharpness(image: U8) -> float:
    """Brightness-normalised variance of the Laplacian at the analysis width; below `MIN_SHARPNESS` is blurry.

    Only comparable between photos through this function (same width, same normalisation).
    """
    return _measure(_as_bgr(image)).sharpness


_detectors = threading.local()


def _detector() -> FaceDetector:
    """One BlazeFace network per thread (a cv2.dnn.Net is not shared between threads); assets.AssetError
    saying how to fetch the model if it is missing."""
    detector: FaceDetector | None = getattr(_detectors, "detector", None)
    if detector is None:
        detector = FaceDetector(score_threshold=FACE_MIN_SCORE)
        _detectors.detector = detector
    return detector


def _face_windows(height: int, width: int) -> list[tuple[float, float, float] | None]:
    """The whole copy (None: letterboxed) and overlapping square tiles, half a tile apart, covering it."""
    side = max(1.0, FACE_TILE_FRACTION * min(height, width))
    windows: list[tuple[float, float, float] | None] = [None]
    nx = max(1, math.ceil((width - side) / (side / 2)) + 1)
    ny = max(1, math.ceil((height - side) / (side / 2)) + 1)
    for y in np.linspace(0.0, max(0.0, height - side), ny):
        for x in np.linspace(0.0, max(0.0, width - side), nx):
            windows.append((float(x), float(y), side))
    return windows


def _count_faces(small: U8) -> int:
    """Faces in the analysis copy (BGR), each counted once however many windows found it."""
    detector = _detector()
    found = [face for window in _face_windows(*small.shape[:2]) for face in detector.detect(small, window)]
    kept: list[Detection] = []
    for face in sorted(found, key=lambda f: -f.score):
        if all(_overlap(face, other) <= 0.3 for other in kept):
            kept.append(face)
    return len(kept)


def _overlap(a: Detection, b: Detection) -> float:
    """Intersection over the smaller box: a face cut by a tile's edge still matches the whole one."""
    ix = max(0.0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    return ix * iy / max(1e-9, min(a.width * a.height, b.width * b.height))


def assess(image: U8, *, allow_face: bool = False) -> PhotoCheck:
    """Check a BGR photo (HxWx3 uint8; grey and BGRA are accepted) and say what the patient should fix.

    `allow_face=True` is for a photo that is meant to show the face (a rash on the cheek): the face check
    is skipped rather than ignored, since it is the slow part (about 25 ms here: seven BlazeFace runs).
    """
    bgr = _as_bgr(image)
    height, width = bgr.shape[:2]
    m = _measure(bgr)
    metrics = {
        "width": float(width),
        "height": float(height),
        "sharpness": m.sharpness,
        "laplacian_var": m.laplacian_var,
        "mean_luma": m.mean_luma,
        "dark_fraction": m.dark_fraction,
        "clipped_fraction": m.clipped_fraction,
    }
    codes: list[ProblemCode] = []
    if not allow_face:
        faces = _count_faces(m.small)
        metrics["faces"] = float(faces)
        if faces:
            codes.append("face_in_frame")
    if min(width, height) < MIN_SHORT_SIDE or max(width, height) < MIN_LONG_SIDE:
        codes.append("too_small")
    exposure = m.exposure_problems
    codes.extend(exposure)
    if not exposure and m.sharpness < MIN_SHARPNESS:
        codes.append("blurry")
    problems = [Problem(code, _MESSAGES[code].format(long=MIN_LONG_SIDE, short=MIN_SHORT_SIDE)) for code in codes]
    return PhotoCheck(ok=not problems, problems=problems, metrics=metrics)


def best_frame(frames: Iterable[FrameLike], *, seconds: float = 2.0, allow_face: bool = False) -> tuple[U8, PhotoCheck]:
    """From a burst, the sharpest well-exposed frame and its full check.

    Frames are read for `seconds` of capture time from the first one (`Frame.t`), and no further: a live
    camera's iterator is never drained. Each frame costs one analysis pass (about 9 ms at 640x480 here); only the
    best one is kept in memory, and only it gets the face search, because that costs about 25 ms a frame
    here and a face in a 2 s burst is in every frame of it. Well-exposed frames rank above badly exposed
    ones whatever their sharpness (exposure makes the sharpness numbers incomparable); if none is well
    exposed, the sharpest is returned and its check says what to fix.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    best: U8 | None = None
    best_rank = (False, -1.0)
    t0: float | None = None
    for frame in frames:
        if t0 is None:
            t0 = frame.t
        elif frame.t - t0 >= seconds:
            break
        image = _as_bgr(frame.image)
        m = _measure(image)
        rank = (not m.exposure_problems, m.sharpness)
        if best is None or rank > best_rank:
            best, best_rank = image, rank
    if best is None:
        raise PhotoError("the camera delivered no frames for the photo")
    return best, assess(best, allow_face=allow_face)


# -- sending ----------------------------------------------------------------------------------------------------

_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE
_APP0, _APP15 = 0xE0, 0xEF
# Start-of-frame markers carry the image size: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7 have no length field


@dataclass(frozen=True, slots=True)
class _JpegLayout:
    metadata: list[str]
    width: int
    height: int


def _identifier(payload: bytes) -> str:
    """The NUL-terminated name an APPn segment starts with ('Exif', 'ICC_PROFILE', an XMP namespace ...)."""
    name = payload.split(b"\x00", 1)[0][:40]
    return "".join(chr(c) if 32 <= c < 127 else "?" for c in name)


def _label(marker: int, payload: bytes) -> str | None:
    """A metadata segment's label, or None for the one APPn segment that carries nothing: a JFIF header
    without a thumbnail (every encoder writes it; a thumbnail would be a copy of the uncropped original)."""
    if marker == _COM:
        return "COM"
    name = _identifier(payload)
    if marker == _APP0 and name == "JFIF":
        has_thumbnail = len(payload) >= 14 and payload[12] * payload[13] > 0
        return "APP0 JFIF thumbnail" if has_thumbnail else None
    number = marker - _APP0
    return f"APP{number} {name}" if name else f"APP{number}"


def _skip_entropy_coded(data: bytes, pos: int) -> int:
    """Position of the marker that ends a scan's entropy-coded data (FF 00 is a stuffed byte, RSTn is inside)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise PhotoError("truncated JPEG: the image data ends without an end-of-image marker")
        following = data[pos + 1]
        if following == 0xFF:  # fill byte before a marker
            pos += 1
        elif following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
        else:
            return pos


def _layout(data: bytes) -> _JpegLayout:
    """Walk a JPEG's marker segments: which of them carry metadata, and the frame size. Refuses what is not
    a complete baseline/progressive JPEG, so callers never hand OpenCV something it would half-decode."""
    if not data.startswith(b"\xff\xd8"):
        raise PhotoError("not a JPEG: it does not start with the start-of-image marker (FF D8)")
    metadata: list[str] = []
    width = height = 0
    pos, n = 2, len(data)
    while True:
        if pos >= n:
            raise PhotoError("truncated JPEG: it ends without an end-of-image marker")
        if data[pos] != 0xFF:
            raise PhotoError(f"corrupt JPEG: expected a marker at byte {pos}, found {data[pos]:#04x}")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise PhotoError("truncated JPEG: it ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            continue
        if marker in (0x00, _SOI):
            raise PhotoError(f"corrupt JPEG: marker FF {marker:02X} at byte {pos - 2}")
        if pos + 2 > n:
            raise PhotoError("truncated JPEG: it ends inside a segment header")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > n:
            raise PhotoError(f"corrupt or truncated JPEG: segment FF {marker:02X} at byte {pos - 2} overruns the file")
        payload = data[pos + 2 : pos + length]
        pos += length
        if _APP0 <= marker <= _APP15 or marker == _COM:
            label = _label(marker, payload)
            if label is not None:
                metadata.append(label)
        elif marker in _SOF_MARKERS and len(payload) >= 5:
            height = int.from_bytes(payload[1:3], "big")
            width = int.from_bytes(payload[3:5], "big")
        elif marker == _SOS:
            pos = _skip_entropy_coded(data, pos)
    if pos < n:
        metadata.append(f"{n - pos} bytes after end of image")  # where phones append motion-photo video
    if width == 0 or height == 0:
        raise PhotoError("not a usable JPEG: no frame header with a size")
    return _JpegLayout(metadata=metadata, width=width, height=height)


def metadata_segments(jpeg_bytes: bytes) -> list[str]:
    """Everything in a JPEG besides the image, by segment: e.g. ["APP1 Exif", "APP13 Photoshop 3.0", "COM"].

    Counted as metadata: every APPn segment (EXIF with GPS, XMP, IPTC, ICC profiles, maker notes) except
    a thumbnail-free JFIF header, every comment, and bytes after the end-of-image marker. An empty list
    means only the image is in there. Raises `PhotoError` for anything that is not a complete JPEG.
    """
    return _layout(bytes(jpeg_bytes)).metadata


def prepare(image: U8, *, max_side: int = 2048, quality: int = 90) -> PreparedPhoto:
    """Encode a BGR photo for a case: longer side at most `max_side`, JPEG at `quality`, nothing but pixels.

    Shrinking uses INTER_AREA (averaging; other filters alias fine texture into moire). Chroma is kept at
    full resolution (4:4:4): 2x2-pixel red dots on type III skin kept a Cr excess of 29 (of 33) through
    4:4:4 at quality 90 but only 4 through the usual 4:2:0, for 5 % more bytes, and petechiae are exactly
    such dots. Encoding from pixels writes no EXIF, GPS, maker notes or comments; that is checked on the
    result anyway (`metadata_segments`), so a future encoder that adds some fails loudly here.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1-100, got {quality}")
    bgr = _as_bgr(image)
    height, width = bgr.shape[:2]
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        bgr = np.asarray(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
        cv2.IMWRITE_JPEG_OPTIMIZE,
        1,
    ]
    ok, encoded = cv2.imencode(".jpg", bgr, params)
    if not ok:
        raise PhotoError(f"OpenCV could not encode the {width}x{height} image as JPEG")
    data = encoded.tobytes()
    leftover = metadata_segments(data)
    if leftover:
        raise PhotoError(f"the JPEG encoder wrote metadata ({', '.join(leftover)}); refusing to send it")
    return PreparedPhoto(data=data, width=width, height=height, sha256=hashlib.sha256(data).hexdigest())


def _reduction(width: int, height: int, max_side: int) -> int:
    """Largest libjpeg decode scale (1/2, 1/4, 1/8) that still leaves the longer side at least `max_side`:
    the decoder then never builds the full-size image, a quarter or less of the memory on a Pi."""
    for factor in (8, 4, 2):
        if max(width, height) // factor >= max_side:
            return factor
    return 1


_DECODE_FLAGS: Final = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def strip_jpeg(jpeg_bytes: bytes, *, max_side: int = 2048, quality: int = 90) -> PreparedPhoto:
    """A JPEG from elsewhere (a phone, an upload) decoded and re-encoded through `prepare`: no segment of the
    original survives, so neither does any metadata, whatever its kind or wherever it hides.

    OpenCV applies the EXIF orientation while decoding, so a phone photo stays upright after its EXIF is
    gone. Colour profiles are dropped, not applied: a Display-P3 photo is read as sRGB (slightly less
    saturated). Refused with `PhotoError`: anything that is not a complete JPEG, one declaring more than
    `MAX_DECODE_PIXELS`, and one OpenCV cannot decode.
    """
    data = bytes(jpeg_bytes)
    layout = _layout(data)
    if layout.width * layout.height > MAX_DECODE_PIXELS:
        raise PhotoError(
            f"the JPEG declares {layout.width}x{layout.height} pixels, more than the {MAX_DECODE_PIXELS:,} accepted"
        )
    flags = _DECODE_FLAGS[_reduction(layout.width, layout.height, max_side)]
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None:
        raise PhotoError("the JPEG could not be decoded (corrupt, or an unsupported variant such as arithmetic coding)")
    return prepare(np.asarray(image, dtype=np.uint8), max_side=max_side, quality=quality)
