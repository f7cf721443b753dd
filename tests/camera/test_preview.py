"""What the camera sees, for the patient: a small JPEG of the current frame on the kiosk's own screen server,
made only while someone looks; and the demo camera, which shows skin on the photo page so a photo can pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.camera.photos import assess
from device.camera.preview import Preview, encode
from device.camera.synthetic import render_skin
from device.screen.station import Camera, CameraConfig
from hub.cli import demo_camera_videos
from tests.harness import wait_until
from tests.screen.kiosk import NO_PIN, REPO, Kiosk, checked_in, goes_to_welcome, kiosk_screen

PROFILE = REPO / "firmware_configs" / "kiosk" / "video-file.yaml"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo camera's two videos (a short face, and the forearm with a rash), as `hub demo` renders them."""
    return demo_camera_videos(tmp_path_factory.mktemp("demo-camera"), face_seconds=3)


@pytest.fixture
def camera(videos: tuple[Path, Path]) -> Iterator[Camera]:
    face, skin = videos
    cam = Camera(CameraConfig(PROFILE, face, skin_video=skin))
    yield cam
    cam.close()


def decoded(jpeg: bytes) -> np.ndarray:
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_a_preview_picture_is_a_small_jpeg_of_the_frame() -> None:
    frame = render_skin((640, 480))
    picture = decoded(encode(frame))
    assert picture.shape == (240, 320, 3)
    # The same picture, smaller: the colours of the frame, not another image.
    assert np.abs(picture.mean(axis=(0, 1)) - frame.mean(axis=(0, 1))).max() < 3
    assert decoded(encode(frame[:, :200])).shape == (480, 200, 3)  # never enlarged


def test_the_preview_runs_only_while_someone_asks_and_forgets_its_last_picture(camera: Camera) -> None:
    preview = Preview(camera.watch, linger_s=0.5)
    assert preview.latest() is None  # asking starts it: the camera opens
    wait_until(lambda: preview.latest() is not None, 10, "the first preview picture")
    first = preview.latest()
    assert first is not None
    assert decoded(first[1]).shape == (240, 320, 3)
    wait_until(lambda: (p := preview.latest()) is not None and p[0] > first[0], 10, "a newer picture")
    # Nobody asks any more: it stops, lets the camera close, and keeps no picture of the last patient.
    wait_until(lambda: not preview.running, 10, "the preview to stop")
    wait_until(lambda: not camera.busy, 10, "the camera to be released")
    assert preview._jpeg is None


def test_the_demo_camera_shows_skin_on_the_photo_page_and_that_photo_passes_the_photo_checks(
    camera: Camera,
) -> None:
    camera.pose("face")
    _prepared, refused = camera.photo()
    assert refused.codes == ["face_in_frame"]  # a real patient's face is refused in a case photo, rightly
    camera.pose("skin")  # the photo page: the demo patient holds up their forearm
    prepared, check = camera.photo()
    assert check.ok, check.problems
    assert assess(decoded(prepared.data)).ok  # what is sent passes too
    camera.pose("face")
    assert camera.photo()[1].codes == ["face_in_frame"]  # and back to the face for the vitals


# -- the screen's preview endpoints ------------------------------------------------------------------------------


@pytest.fixture
def kiosk_with_camera(tmp_path: Path, videos: tuple[Path, Path]) -> Iterator[Kiosk]:
    with kiosk_screen(tmp_path, videos) as kiosk:
        kiosk.give_setup()
        checked_in(kiosk.client, NO_PIN)
        yield kiosk


def test_the_preview_endpoint_gives_the_visit_a_jpeg_of_what_the_camera_sees_now(kiosk_with_camera: Kiosk) -> None:
    kiosk = kiosk_with_camera
    response = kiosk.client.get("/camera/preview.jpg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "no-store"
    assert decoded(response.content).shape == (240, 320, 3)
    # Both steps that need it show it live, as an image the page needs no script for.
    for page in ("/vitals/camera", "/case/photos"):
        assert 'src="/camera/preview.mjpg"' in kiosk.client.get(page).text, page


def test_the_preview_stream_is_a_multipart_of_jpegs_that_ends_with_the_visit(kiosk_with_camera: Kiosk) -> None:
    kiosk = kiosk_with_camera
    visit = kiosk.screen.desk.visit
    ender = threading.Timer(2.0, kiosk.screen.desk.end)  # the patient signs out while the picture streams
    ender.start()
    try:
        response = kiosk.client.get("/camera/preview.mjpg")
    finally:
        ender.cancel()
    assert visit is not None and kiosk.screen.desk.visit is None
    assert response.headers["content-type"].startswith("multipart/x-mixed-replace; boundary=frame")
    parts = response.content.split(b"--frame\r\n")[1:]
    assert parts, "no picture in the stream"
    head, body = parts[0].split(b"\r\n\r\n", 1)
    assert b"Content-Type: image/jpeg" in head
    assert decoded(body.removesuffix(b"\r\n")).shape == (240, 320, 3)


def test_the_preview_is_for_the_visit_on_this_kiosk_only(kiosk_with_camera: Kiosk) -> None:
    kiosk = kiosk_with_camera
    for path in ("/camera/preview.jpg", "/camera/preview.mjpg"):
        assert goes_to_welcome(kiosk.browser().get(path)), path  # another browser: no visit, no picture
        # Another host name (a page elsewhere, its name pointed at 127.0.0.1) is refused: only 127.0.0.1 is served.
        foreign = kiosk.client.get(path, headers={"Host": "kiosk.example"})
        assert foreign.status_code == 403, path


def test_a_kiosk_without_a_camera_has_no_preview(tmp_path: Path) -> None:
    with kiosk_screen(tmp_path, None) as kiosk:
        kiosk.give_setup()
        checked_in(kiosk.client, NO_PIN)
        assert kiosk.client.get("/camera/preview.jpg").status_code == 404
        assert kiosk.client.get("/camera/preview.mjpg").status_code == 404
