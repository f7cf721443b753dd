"""Case photos: the checks a patient sees, the burst picker, and that only pixels leave the kiosk.

Images are mostly synthetic: a skin texture (what a rash photo should look like, no face in it) and one frame
of the synthetic face video (what it should not); the face check also sees the two real photographs
(device/camera/assets.py), tone-shifted to Monk 10 by device/camera/photo_faces.py. Everything is small and
cached; the file runs in a few seconds.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from device.camera.photo_faces import PHOTO_NAMES, PHOTOS, PhotoName, photo, toned_photo
from device.camera.photos import (
    MIN_SHARPNESS,
    PhotoCheck,
    PhotoError,
    Problem,
    assess,
    best_frame,
    metadata_segments,
    prepare,
    sharpness,
    strip_jpeg,
)
from device.camera.source import Frame
from device.camera.synthetic import FitzpatrickType, SyntheticSpec, render_frames, render_skin

U8 = NDArray[np.uint8]


@functools.lru_cache(maxsize=8)
def _skin(size: tuple[int, int] = (1280, 960), tone: FitzpatrickType = "III", seed: int = 0) -> U8:
    """A close-up of skin with a rash, BGR, with sensor noise (device/camera/synthetic.py draws it). Read-only,
    since it is cached (copy before changing it)."""
    out = render_skin(size, tone, seed, noise_sigma=1.5)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=4)
def _face(tone: FitzpatrickType = "II") -> U8:
    """The first frame of a synthetic face video (640x480 BGR), the kind of photo that must not be sent."""
    _, image = next(render_frames(SyntheticSpec(seconds=0.04, skin_tone=tone)))
    image.flags.writeable = False
    return image


def _blur(image: U8, sigma_at_analysis_width: float) -> U8:
    """Gaussian blur of sigma pixels as measured on the 640 px analysis copy."""
    sigma = sigma_at_analysis_width * image.shape[1] / 640
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), dtype=np.uint8)


def _scaled(image: U8, gain: float) -> U8:
    """Exposure changed by gain, clipped like a sensor clips."""
    return np.asarray(cv2.convertScaleAbs(image, alpha=gain), dtype=np.uint8)


# -- assess -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tone", ["I", "III", "VI"])
def test_a_sharp_well_exposed_skin_photo_passes_for_light_and_dark_skin(tone: FitzpatrickType) -> None:
    check = assess(_skin(tone=tone))
    assert check.ok, check.problems
    assert check.problems == []
    assert check.metrics["faces"] == 0
    assert check.metrics["sharpness"] > 2 * MIN_SHARPNESS
    assert (check.metrics["width"], check.metrics["height"]) == (1280, 960)


def test_a_blurred_copy_is_blurry() -> None:
    check = assess(_blur(_skin(), 2.0))
    assert check.codes == ["blurry"]
    assert not check.ok
    assert check.metrics["sharpness"] < MIN_SHARPNESS
    assert "Hold still" in check.problems[0].message


_CALIBRATION_IMAGES: dict[str, Callable[[], U8]] = {
    "skin-III": _skin,
    "skin-I": lambda: _skin(tone="I"),
    "skin-VI": lambda: _skin(tone="VI"),
    "skin-III-640": lambda: _skin((640, 480)),
    "skin-III-1920": lambda: _skin((1920, 1440)),
    "face-II": lambda: _face("II"),
    "face-VI": lambda: _face("VI"),
}


@pytest.mark.parametrize("name", list(_CALIBRATION_IMAGES))
def test_the_sharpness_threshold_separates_sharp_from_a_1px_blur(name: str) -> None:
    """The calibration in the module docstring, kept honest: sharp well above the line, 1 px blur below it."""
    image = _CALIBRATION_IMAGES[name]()
    assert sharpness(image) > 2 * MIN_SHARPNESS
    assert sharpness(_blur(image, 1.0)) < MIN_SHARPNESS


def test_a_dark_copy_is_too_dark_and_not_also_called_blurry() -> None:
    check = assess(_scaled(_skin(), 0.15))  # 2.7 stops under
    assert check.codes == ["too_dark"]
    assert check.metrics["mean_luma"] < 30


def test_a_mostly_black_frame_is_too_dark_even_when_its_mean_is_not() -> None:
    image = _skin().copy()
    image[:, : image.shape[1] * 3 // 5] = 3  # the lens partly covered
    check = assess(image)
    assert "too_dark" in check.codes
    assert check.metrics["mean_luma"] > 30
    assert check.metrics["dark_fraction"] > 0.5


def test_an_over_exposed_copy_is_too_bright() -> None:
    check = assess(_scaled(_skin(), 1.6))
    assert check.codes == ["too_bright"]
    assert check.metrics["clipped_fraction"] > 0.9


@pytest.mark.parametrize("tone", ["II", "VI"])
def test_a_face_in_the_photo_is_flagged_unless_the_photo_is_of_the_face(tone: FitzpatrickType) -> None:
    check = assess(_face(tone))
    assert check.codes == ["face_in_frame"]
    assert check.metrics["faces"] >= 1
    assert "face" in check.problems[0].message
    allowed = assess(_face(tone), allow_face=True)
    assert allowed.ok
    assert "faces" not in allowed.metrics


@pytest.mark.parametrize("tone", [None, 10], ids=["own tone", "MST-10"])
@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_a_real_face_in_a_corner_of_a_rash_photo_is_flagged_light_or_dark(name: PhotoName, tone: int | None) -> None:
    """A real face (one of the two photographs, at its own tone or tone-shifted to Monk 10) pasted into a corner
    of a skin photo, its face box 15 % of the shorter side wide: too small for the whole-copy look, found by a
    tile. The Haar check used before missed the astronaut at MST-10 even at her photograph's full size."""
    source = (
        photo(name) if tone is None else np.clip(np.rint(np.asarray(toned_photo(name, tone))), 0, 255).astype(np.uint8)
    )
    rig = PHOTOS[name]
    scale = 0.15 * 960 / rig.face_width
    half = 1.2 * rig.face_width
    x, y = rig.face_center
    crop = source[max(0, int(y - half)) : int(y + half), max(0, int(x - half)) : int(x + half)]
    crop = np.asarray(cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    image = _skin().copy()
    h, w = crop.shape[:2]
    image[960 - 40 - h : 960 - 40, 1280 - 50 - w : 1280 - 50] = crop
    check = assess(image)
    assert check.codes[0] == "face_in_frame"
    assert check.metrics["faces"] == 1


def test_a_small_photo_is_too_small() -> None:
    check = assess(np.ascontiguousarray(_skin((640, 480))[:240, :320]))
    assert "too_small" in check.codes
    assert "640 x 480" in next(p.message for p in check.problems if p.code == "too_small")


def test_grey_images_are_accepted_and_non_images_refused() -> None:
    grey = np.asarray(cv2.cvtColor(_skin(), cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    assert assess(grey).ok
    with pytest.raises(PhotoError, match="uint8"):
        assess(np.zeros((480, 640, 3), dtype=np.float32))
    with pytest.raises(PhotoError, match="shape"):
        assess(np.zeros((480, 640, 2), dtype=np.uint8))
    with pytest.raises(PhotoError, match="empty"):
        assess(np.zeros((0, 640, 3), dtype=np.uint8))


def test_a_check_is_ok_exactly_when_it_has_no_problems() -> None:
    with pytest.raises(ValueError, match="ok"):
        PhotoCheck(ok=True, problems=[Problem("blurry", "...")], metrics={})
    with pytest.raises(ValueError, match="ok"):
        PhotoCheck(ok=False, problems=[], metrics={})


# -- best_frame -------------------------------------------------------------------------------------------------


def _burst(images: list[U8], fps: float = 30.0) -> list[Frame]:
    return [Frame(image=image, t=1000.0 + i / fps, index=i) for i, image in enumerate(images)]


def test_best_frame_keeps_the_sharp_frame_of_a_shaky_burst() -> None:
    sharp = _skin((640, 480))
    images = [_blur(sharp, 3.0), _blur(sharp, 2.0), _blur(sharp, 1.5), sharp, _blur(sharp, 1.0), _blur(sharp, 2.5)]
    image, check = best_frame(_burst(images))
    assert image is sharp
    assert check.ok, check.problems


def test_best_frame_prefers_a_well_exposed_frame_to_a_sharper_dark_one() -> None:
    """Normalising by brightness lifts a dark frame's noise: exposure ranks before sharpness."""
    sharp = _skin((640, 480))
    dark = _scaled(sharp, 0.15)
    softer = _blur(sharp, 0.5)
    assert sharpness(dark) > sharpness(softer)
    image, check = best_frame(_burst([dark, softer]))
    assert image is softer
    assert check.ok, check.problems


def test_best_frame_reads_only_its_window_of_a_live_stream() -> None:
    sharp = _skin((640, 480))
    blurred = _blur(sharp, 2.0)
    frames = _burst([blurred] * 20 + [sharp] * 5, fps=10.0)  # the sharp ones come after 2 s
    stream: Iterator[Frame] = iter(frames)
    image, check = best_frame(stream, seconds=2.0)
    assert image is blurred
    assert check.codes == ["blurry"]
    assert next(stream) is frames[21]  # frame 20 (t0 + 2 s) ended the burst; nothing after it was taken


def test_best_frame_of_no_frames_is_an_error() -> None:
    with pytest.raises(PhotoError, match="no frames"):
        best_frame([])
    with pytest.raises(ValueError, match="seconds"):
        best_frame(_burst([_skin((640, 480))]), seconds=0)


# -- prepare, metadata_segments, strip_jpeg ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [((960, 1280), 500, (500, 375)), ((1280, 960), 500, (375, 500)), ((480, 640), 2048, (640, 480))],
    ids=["landscape", "portrait", "never-enlarged"],
)
def test_prepare_keeps_the_aspect_ratio_within_max_side(
    shape: tuple[int, int], max_side: int, expected: tuple[int, int]
) -> None:
    source = _skin((shape[1], shape[0]))
    photo = prepare(source, max_side=max_side)
    assert (photo.width, photo.height) == expected
    decoded = cv2.imdecode(np.frombuffer(photo.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (expected[1], expected[0], 3)
    assert photo.sha256 == hashlib.sha256(photo.data).hexdigest()
    assert photo.media_type == "image/jpeg"
    assert metadata_segments(photo.data) == []
    assert "data" not in repr(photo)
    if shape == (480, 640):  # same size: only JPEG's small error
        assert float(np.abs(decoded.astype(np.int16) - source.astype(np.int16)).mean()) < 3.0


def test_prepare_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="quality"):
        prepare(_skin((640, 480)), quality=0)
    with pytest.raises(ValueError, match="max_side"):
        prepare(_skin((640, 480)), max_side=0)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _exif(orientation: int) -> bytes:
    """An APP1 Exif segment (little-endian TIFF): IFD0 with Make, Orientation and a GPS IFD holding a latitude."""
    make = b"FakeCam\x00"
    ifd0 = 8
    make_at = ifd0 + 2 + 3 * 12 + 4  # after IFD0: 3 entries and the next-IFD link
    gps_at = make_at + len(make)
    latitude_at = gps_at + 2 + 2 * 12 + 4
    tiff = b"II*\x00" + struct.pack("<I", ifd0)
    tiff += struct.pack("<H", 3)
    tiff += struct.pack("<HHII", 0x010F, 2, len(make), make_at)  # Make, ASCII
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)  # Orientation, SHORT, inline
    tiff += struct.pack("<HHII", 0x8825, 4, 1, gps_at)  # GPSInfo IFD pointer
    tiff += struct.pack("<I", 0) + make
    tiff += struct.pack("<H", 2)
    tiff += struct.pack("<HHI", 0x0001, 2, 2) + b"N\x00\x00\x00"  # GPSLatitudeRef "N", inline
    tiff += struct.pack("<HHII", 0x0002, 5, 3, latitude_at)  # GPSLatitude, 3 RATIONALs
    tiff += struct.pack("<I", 0)
    tiff += struct.pack("<6I", 51, 1, 30, 1, 2634, 100)  # 51 deg 30' 26.34"
    return _segment(0xE1, b"Exif\x00\x00" + tiff)


def _jpeg_with_metadata(orientation: int = 1) -> bytes:
    ok, encoded = cv2.imencode(".jpg", _skin((640, 480)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    plain = encoded.tobytes()
    extra = (
        _exif(orientation)
        + _segment(
            0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x10" + b"\x1c\x02\x05\x00\x0aJane Doe  "
        )
        + _segment(0xFE, b"patient Jane Doe, 51.507 N")
    )
    return plain[:2] + extra + plain[2:]


def test_metadata_segments_finds_exif_iptc_and_comments() -> None:
    ok, encoded = cv2.imencode(".jpg", _skin((640, 480)))
    assert ok
    assert metadata_segments(encoded.tobytes()) == []  # OpenCV writes a thumbnail-free JFIF header only
    found = metadata_segments(_jpeg_with_metadata())
    assert found == ["APP1 Exif", "APP13 Photoshop 3.0", "COM"]
    assert metadata_segments(encoded.tobytes() + b"\x00" * 32) == ["32 bytes after end of image"]


def test_strip_jpeg_removes_exif_gps_iptc_and_comments() -> None:
    original = _jpeg_with_metadata()
    photo = strip_jpeg(original)
    assert metadata_segments(photo.data) == []
    for secret in (b"Exif", b"FakeCam", b"Photoshop", b"Jane Doe", b"51.507"):
        assert secret not in photo.data
    assert (photo.width, photo.height) == (640, 480)
    assert photo.sha256 == hashlib.sha256(photo.data).hexdigest()
    decoded = cv2.imdecode(np.frombuffer(photo.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (480, 640, 3)


def test_strip_jpeg_applies_the_exif_orientation_before_dropping_it() -> None:
    """Orientation 6 (rotate 90 degrees clockwise): a phone held upright. Without it the photo lies on its side."""
    photo = strip_jpeg(_jpeg_with_metadata(orientation=6))
    assert (photo.width, photo.height) == (480, 640)
    assert metadata_segments(photo.data) == []


def test_strip_jpeg_shrinks_a_large_jpeg_to_max_side() -> None:
    ok, encoded = cv2.imencode(".jpg", _skin((1920, 1440)))
    assert ok
    photo = strip_jpeg(encoded.tobytes(), max_side=800)
    assert (photo.width, photo.height) == (800, 600)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a photo",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
        b"\xff\xd8" + bytes(range(256)) * 4,
    ],
    ids=["empty", "text", "png", "header-only", "garbage-after-soi"],
)
def test_strip_jpeg_refuses_what_is_not_a_jpeg(data: bytes) -> None:
    with pytest.raises(PhotoError):
        strip_jpeg(data)


def test_strip_jpeg_refuses_a_truncated_jpeg() -> None:
    ok, encoded = cv2.imencode(".jpg", _skin((640, 480)))
    assert ok
    whole = encoded.tobytes()
    with pytest.raises(PhotoError, match="truncated"):
        strip_jpeg(whole[: len(whole) // 2])


def test_strip_jpeg_refuses_a_decompression_bomb_before_decoding() -> None:
    ok, encoded = cv2.imencode(".jpg", np.zeros((8, 8, 3), dtype=np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    with pytest.raises(PhotoError, match="declares 60000x60000"):
        strip_jpeg(bytes(data))


def test_the_photo_command_guides_and_sends_only_a_usable_photo(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from device.outbox import Outbox
    from tests.harness import REPO

    sharp = _skin(seed=21)
    cv2.imwrite(str(tmp_path / "sharp.png"), sharp)
    cv2.imwrite(str(tmp_path / "blurry.png"), _blur(sharp, 3.0))

    def photo(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "device.cli", "camera", "photo", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=REPO)

    send = ["--enqueue", "--kiosk-id", "k-ph", "--data", str(tmp_path), "--patient", "P-4"]
    blurry = photo(str(tmp_path / "blurry.png"), *send)
    assert blurry.returncode == 0, blurry.stderr
    report = json.loads(blurry.stdout)
    assert report["ok"] is False and [p["code"] for p in report["problems"]] == ["blurry"]
    assert "attachment" not in report  # an unusable photo is not sent
    good = json.loads(photo(str(tmp_path / "sharp.png"), *send).stdout)
    assert good["ok"] is True and good["problems"] == []
    chunks = Outbox(tmp_path / "outbox.db", "k-ph").pending(0, 100, 1 << 30)
    assert chunks and all(json.loads(c.body)["payload"]["attachment"] == good["attachment"] for c in chunks)
    bad = photo(str(tmp_path / "missing.png"))
    assert bad.returncode == 2 and "not an image" in bad.stderr
