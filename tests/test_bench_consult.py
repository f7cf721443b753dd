"""`kiosk bench consult` works: a short real call against Debian's Chromium gives every figure, media both ways.

This checks that the benchmark measures, not that the kiosk meets the targets (that is `make bench`'s job, on a
full-length run). The time stamp drawn into frames is tested apart, through what a video codec does to it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from device.consult.bench import (
    HEIGHT,
    TIME_BITS,
    WIDTH,
    draw_stamp,
    parse_codecs,
    read_stamp,
    sdp_video_codec,
    stamp_bits,
    unwrap_ms,
)

DIRECTION_KEYS = {
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_max_ms",
    "stamps_read",
    "stamps_unread",
    "fps",
    "frames",
    "resolution",
}
CALL_KEYS = {
    "negotiated",
    "offer_s",
    "first_frame_s",
    "kiosk_to_browser",
    "browser_to_kiosk",
    "browser_painted_fps",
    "browser_frames_dropped",
    "browser_sent_resolution",
    "browser_quality_limitation",
    "cpu_percent",
    "audio",
    "measured_s",
    "error",
}


def _frame(ms: int) -> np.ndarray:
    rng = np.random.default_rng(ms % 1000)
    image = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)  # the worst surroundings: noise
    draw_stamp(image, ms)
    return image


def test_a_stamp_survives_heavy_compression_and_a_smaller_picture() -> None:
    ms = 1_795_787_781_120
    image = _frame(ms)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 15])
    assert ok
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)
    assert read_stamp(decoded, WIDTH, HEIGHT) == ms % (1 << TIME_BITS)
    for width, height in ((320, 240), (160, 120)):  # a sender that lowered its resolution
        small = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (width, height), interpolation=cv2.INTER_AREA)
        assert read_stamp(small, width, height) == ms % (1 << TIME_BITS)


def test_a_damaged_or_missing_stamp_is_not_read() -> None:
    ms = 1_795_787_781_120
    gray = cv2.cvtColor(_frame(ms), cv2.COLOR_BGR2GRAY)
    bits = stamp_bits(ms)
    flipped = next(i for i in range(4, 4 + TIME_BITS) if bits[i])  # one white time block turned black
    col, row = flipped % 24, flipped // 24
    gray[16 + row * 16 : 32 + row * 16, 16 + col * 16 : 32 + col * 16] = 0
    assert read_stamp(gray, WIDTH, HEIGHT) is None  # the parity catches it
    assert read_stamp(np.full((HEIGHT, WIDTH), 128, np.uint8), WIDTH, HEIGHT) is None  # no start pattern


def test_the_full_time_comes_back_from_the_low_bits() -> None:
    period = 1 << TIME_BITS
    now = 5 * period + 10  # just after a wrap of the 42 bits
    assert unwrap_ms((now - 30) % period, now) == now - 30
    assert unwrap_ms((now + 5) % period, now) == now + 5


def test_the_negotiated_codec_is_read_from_the_answer() -> None:
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
    sdp += "m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\na=rtpmap:103 rtx/90000\r\na=rtpmap:102 H264/90000\r\n"
    assert sdp_video_codec(sdp) == "H264"
    assert sdp_video_codec(sdp.replace("m=video 9", "m=video 0")) is None
    with pytest.raises(ValueError, match="--codecs"):
        parse_codecs("vp8,av1")


def test_a_short_vp8_call_against_chromium_measures_every_figure() -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "device.cli", "bench", "consult", "--seconds", "4", "--codecs", "vp8", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=90,
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert elapsed < 40, f"the short run took {elapsed:.0f} s"

    assert {"benchmark", "settings", "source_alone", "vp8", "targets", "notes", "runtime_s"} <= report.keys()
    assert "h264" not in report  # only the codecs asked for
    assert report["settings"]["codecs"] == ["vp8"]
    assert report["source_alone"]["cpu_percent"] > 0
    vp8 = report["vp8"]
    assert set(vp8) == CALL_KEYS
    assert vp8["error"] is None
    assert vp8["negotiated"] == {"sdp": "VP8", "kiosk_to_browser": "VP8", "browser_to_kiosk": "VP8"}
    for side in ("browser", "kiosk"):
        assert 0 < vp8["first_frame_s"][side] < 15
    for direction in ("kiosk_to_browser", "browser_to_kiosk"):
        figures = vp8[direction]
        assert set(figures) == DIRECTION_KEYS
        assert figures["fps"] > 5, f"{direction}: {figures}"
        assert figures["stamps_read"] > figures["stamps_unread"]  # the stamps are read, not guessed at
        for key in ("latency_p50_ms", "latency_p95_ms"):
            assert math.isfinite(figures[key]) and 0 < figures[key] < 10_000, f"{direction} {key}: {figures}"
        assert figures["latency_p50_ms"] <= figures["latency_p95_ms"]
    assert 0 < vp8["cpu_percent"]["kiosk"] < 400
    assert vp8["audio"]["kiosk_frames_received"] > 0  # the provider's tone arrives too
    for target in ("first_frame_s", "latency_p50_ms", "kiosk_cpu_percent"):
        assert report["targets"][target]["limit"] > 0
        assert isinstance(report["targets"][target]["vp8"]["pass"], bool)
