"""`kiosk bench consult`: how fast a live consult's video starts, how late it arrives, and what it costs the kiosk.

One call per codec between this process, as the kiosk (device.consult.call.Call with the real CameraTrack
over a synthetic 640x480 camera at 30 frames/s, and a ToneTrack for the microphone), and Debian's Chromium,
headless, as the provider (driven by Playwright; never a downloaded browser). Signaling is a function call
(`page.evaluate`): the benchmark measures media, not the hub. Per codec it reports:

* **join to first frame** on each side. "Join" is the moment the provider's page creates its
  RTCPeerConnection with the kiosk's offer in hand (the offer is made just before; its time is reported
  apart). The browser's first frame is the first `requestVideoFrameCallback` of its <video>; the kiosk's is
  `Call.stats.first_video_at`.
* **one-way glass-to-glass latency**, both ways, p50 and p95. Each side draws its wall clock (ms) into every
  frame it sends as a strip of 48 black and white blocks (a start pattern, 42 bits of time, two parity bits;
  see `draw_stamp`), and the far side reads the strip back from each decoded frame and subtracts it from its
  own clock: the same machine, so the same clock. The kiosk's stamp is drawn when the synthetic camera makes
  the frame (a real camera's exposure), the browser's when its canvas is painted; the kiosk reads stamps as
  frames leave Call's receive track, the browser in `requestVideoFrameCallback` (when the frame is shown).
* **frames per second** received on each side over the measured period (the browser's `framesDecoded`, and
  how many of them it painted; the frames Call received).
* **the kiosk's CPU**: this process's user + system time over the measured period, as % of one core. It
  includes the synthetic camera, Call's own handling of the provider's picture (a JPEG for the kiosk screen,
  15 a second) and reading the stamps; the synthetic camera's own share is measured alone first
  ("source alone": frames made, turned into VideoFrames and a tone, nothing encoded or sent).
* **the codec negotiated**: forced with `RTCRtpTransceiver.setCodecPreferences` on the kiosk's side,
  checked in the answer's SDP and in the browser's `getStats()` for each direction.

Chromium runs on the same two cores and its CPU (every browser process) is reported beside the kiosk's:
on a Pi the provider is elsewhere, here it competes with the kiosk for the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack

from device.bench_json import json_safe
from device.consult.call import Call
from device.consult.tracks import CameraTrack, ToneTrack
from device.screen.station import Camera, CameraConfig

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from playwright.async_api import Browser, Page

    from device.camera.source import Frame

log = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the bench runs as whatever user starts it, root included
    "--disable-gpu",  # no GPU here; software compositing
    "--no-first-run",
    # The machine's network is closed: without these Chromium keeps trying (and logging) its own services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--use-fake-ui-for-media-stream",  # a permission prompt would wait for a click nobody gives
    "--autoplay-policy=no-user-gesture-required",  # the received video and the page's tone start unprompted
    "--allow-loopback-in-peer-connection",  # a machine with no other interface still gets host candidates
    # Without camera permission Chromium hides its host addresses behind mDNS names, which aiortc cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

CODECS = ("vp8", "h264")
WIDTH, HEIGHT, FPS = 640, 480, 30
WARMUP_S = 1.0  # after both first frames, before measuring: the encoders' first keyframes and rate ramp
FIRST_FRAME_TIMEOUT_S = 15.0
SOURCE_ALONE_MAX_S = 5.0

# The targets.
TARGET_FIRST_FRAME_S = 1.5
TARGET_LATENCY_P50_MS = 120.0
TARGET_KIOSK_CPU_PERCENT = 50.0

# -- the time stamp drawn into frames (pure) --------------------------------------------------------------------
#
# 48 blocks in 2 rows of 24, 16 px square in a 640x480 frame (8 px in a 320x240 one: positions scale with the
# frame, so a sender that lowers its resolution is still read), top left, on a grey quiet zone one block wide.
# White is 1. Bits: START, then the wall clock in ms modulo 2**42 (139 years) most significant first, then the
# parity of the even-numbered and of the odd-numbered time bits. Each block is read as the mean brightness of
# its middle half, against the midpoint of the start pattern's white and black: compression blurs the edges,
# not the middle, and changes the levels, not their order. A misread that slips past the parity is caught by
# the plausibility window (a stamp more than `PLAUSIBLE_MS` away from the reader's clock is unread).

STAMP_BLOCK = 16
STAMP_COLS, STAMP_ROWS = 24, 2
STAMP_X0 = STAMP_Y0 = STAMP_BLOCK
START = (1, 0, 1, 0)
TIME_BITS = 42
STAMP_BITS = len(START) + TIME_BITS + 2
MIN_CONTRAST = 48.0  # levels between the start pattern's white and black; less is not a stamp
PLAUSIBLE_MS = 10_000
QUIET_GREY = 128
assert STAMP_BITS == STAMP_COLS * STAMP_ROWS


def stamp_bits(ms: int) -> list[int]:
    value = ms % (1 << TIME_BITS)
    data = [(value >> (TIME_BITS - 1 - i)) & 1 for i in range(TIME_BITS)]
    return [*START, *data, sum(data[0::2]) % 2, sum(data[1::2]) % 2]


def bits_to_ms(bits: list[int]) -> int | None:
    if len(bits) != STAMP_BITS or tuple(bits[: len(START)]) != START:
        return None
    data = bits[len(START) : len(START) + TIME_BITS]
    if [sum(data[0::2]) % 2, sum(data[1::2]) % 2] != bits[-2:]:
        return None
    value = 0
    for bit in data:
        value = value << 1 | bit
    return value


def unwrap_ms(stamp: int, now_ms: int) -> int:
    """The stamp's full time: the one nearest `now_ms` among those with the same low 42 bits."""
    period = 1 << TIME_BITS
    return now_ms - ((now_ms - stamp + period // 2) % period - period // 2)


def _block_centres(width: int, height: int) -> Iterator[tuple[float, float]]:
    sx, sy = width / WIDTH, height / HEIGHT
    for i in range(STAMP_BITS):
        col, row = i % STAMP_COLS, i // STAMP_COLS
        yield (STAMP_X0 + (col + 0.5) * STAMP_BLOCK) * sx, (STAMP_Y0 + (row + 0.5) * STAMP_BLOCK) * sy


def draw_stamp(image: NDArray[np.uint8], ms: int) -> None:
    """Draws `ms` into a 640x480 image (HxW or HxWxC, in place)."""
    b = STAMP_BLOCK
    image[
        STAMP_Y0 - b // 2 : STAMP_Y0 + STAMP_ROWS * b + b // 2, STAMP_X0 - b // 2 : STAMP_X0 + STAMP_COLS * b + b // 2
    ] = QUIET_GREY
    for i, bit in enumerate(stamp_bits(ms)):
        col, row = i % STAMP_COLS, i // STAMP_COLS
        y, x = STAMP_Y0 + row * b, STAMP_X0 + col * b
        image[y : y + b, x : x + b] = 255 if bit else 0


def read_stamp(luma: NDArray[np.uint8], width: int, height: int) -> int | None:
    """The stamp (ms modulo 2**42) in a frame's brightness (rows from the top, at least `width` columns), or None."""
    half_x = max(1.0, STAMP_BLOCK / 4 * width / WIDTH)
    half_y = max(1.0, STAMP_BLOCK / 4 * height / HEIGHT)
    levels = []
    for cx, cy in _block_centres(width, height):
        x0, x1 = round(cx - half_x), round(cx + half_x)
        y0, y1 = round(cy - half_y), round(cy + half_y)
        levels.append(float(luma[y0:y1, x0:x1].mean()))
    white = [lv for lv, bit in zip(levels, START, strict=False) if bit]
    black = [lv for lv, bit in zip(levels, START, strict=False) if not bit]
    if min(white) - max(black) < MIN_CONTRAST:
        return None
    threshold = (sum(white) / len(white) + sum(black) / len(black)) / 2
    return bits_to_ms([int(lv > threshold) for lv in levels])


def stamp_strip_height(height: int) -> int:
    """Rows from the top of a frame that hold the stamp."""
    return min(height, math.ceil((STAMP_Y0 + (STAMP_ROWS + 1) * STAMP_BLOCK) * height / HEIGHT))


def luma_of(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """The top rows of a decoded frame's brightness, without converting the whole frame."""
    rows = stamp_strip_height(frame.height)
    if frame.format.name in {"yuv420p", "yuvj420p", "nv12"}:
        plane = frame.planes[0]
        data = np.frombuffer(memoryview(plane), dtype=np.uint8)
        return data[: rows * plane.line_size].reshape(rows, plane.line_size)
    return np.asarray(frame.to_ndarray(format="gray")[:rows], dtype=np.uint8)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


# -- the kiosk's side -------------------------------------------------------------------------------------------


class SyntheticCamera(Camera):
    """A 640x480 camera at 30 frames/s showing a textured scene that pans, with the wall clock drawn in.

    It is watched through the real CameraTrack, so the call costs what it costs with a camera (the capture
    thread, the hand-over to the event loop, the conversion to a VideoFrame), minus the camera's own driver.
    """

    def __init__(self) -> None:
        super().__init__(CameraConfig(profile=Path("synthetic")))
        rng = np.random.default_rng(8)
        # Smooth shapes and some fine grain: work for the encoder like a room, not like a test card.
        cells = rng.integers(40, 215, size=(HEIGHT // 40 + 1, (WIDTH * 2) // 40 + 1, 3), dtype=np.uint8)
        scene = np.kron(cells, np.ones((40, 40, 1), dtype=np.uint8))[:HEIGHT, : WIDTH * 2]
        grain = rng.integers(0, 24, size=scene.shape, dtype=np.uint8)
        self._scene = np.ascontiguousarray(scene // 2 + grain + 40)

    @contextlib.contextmanager
    def watch(self, maxsize: int = 64) -> Iterator[Iterator[Frame]]:
        del maxsize  # frames are made on demand, at the camera's pace: none queue up
        yield self._frames()

    def _frames(self) -> Iterator[Frame]:
        from device.camera.source import Frame  # noqa: PLC0415 - OpenCV loads with it

        period = 1.0 / FPS
        start = time.monotonic()
        index = 0
        while True:
            due = start + index * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            shift = (index * 4) % WIDTH  # 4 px a frame, 120 px/s
            image = self._scene[:, shift : shift + WIDTH].copy()
            draw_stamp(image, int(time.time() * 1000))
            yield Frame(image=image, t=time.monotonic(), index=index)
            index += 1


class MeasuredCall(Call):
    """Call, with the provider's decoded frames shown to the benchmark through Call's `on_video_frame` hook."""

    def __init__(self, on_video_frame: Callable[[av.VideoFrame, float], None], **kwargs: Any) -> None:
        super().__init__(on_video_frame=on_video_frame, **kwargs)


def prefer_codec(call: Call, codec: str) -> None:
    """Offer only `codec` for video (with its retransmission format): the browser has to take it or refuse."""
    wanted = {"vp8": "video/vp8", "h264": "video/h264"}[codec]
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() in {wanted, "video/rtx"}]
    for transceiver in call.pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(codecs)


def sdp_video_codec(sdp: str) -> str | None:
    """The first video format of an SDP (what the answerer chose), e.g. VP8 or H264."""
    lines = sdp.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("m=video"):
            fields = line.split()
            if len(fields) < 4 or fields[1] == "0":
                return None
            payload = fields[3]
            for later in lines[n + 1 :]:
                if later.startswith("m="):
                    break
                if match := re.match(rf"a=rtpmap:{payload} ([^/]+)/", later):
                    return match.group(1)
    return None


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def descendants_cpu_seconds(root: int) -> float:
    """User + system seconds of every live process under `root` (not `root` itself): Playwright's driver and
    Chromium's processes. Read from /proc; 0 where there is none."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid, seconds in times.items():
        p = parents.get(pid)
        while p is not None and p not in {root, 0, 1}:
            p = parents.get(p)
        if p == root:
            total += seconds
    return total


@dataclass
class KioskSide:
    """What the kiosk sees of the provider's video while measuring."""

    latencies_ms: list[float] = field(default_factory=list)
    unread: int = 0
    width: int = 0
    height: int = 0
    measuring: bool = False

    def on_frame(self, frame: av.VideoFrame, now: float) -> None:
        self.width, self.height = frame.width, frame.height
        if not self.measuring:
            return
        now_ms = round(now * 1000)
        stamp = read_stamp(luma_of(frame), frame.width, frame.height)
        if stamp is None:
            self.unread += 1
            return
        latency = now_ms - unwrap_ms(stamp, now_ms)
        if abs(latency) > PLAUSIBLE_MS:
            self.unread += 1
        else:
            self.latencies_ms.append(float(latency))


# -- the provider's side: a page in Chromium --------------------------------------------------------------------

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>consult bench</title></head>
<body style="margin:0;background:#222">
<canvas id="out" width="%(width)d" height="%(height)d"></canvas>
<video id="in" muted autoplay playsinline width="%(width)d" height="%(height)d"></video>
<script>
"use strict";
const L = %(layout)s;
const out = document.getElementById("out");
const octx = out.getContext("2d");
const video = document.getElementById("in");
const reader = document.createElement("canvas");
const rctx = reader.getContext("2d", {willReadFrequently: true});

function stampBits(ms) {
  const value = ms %% 2 ** L.timeBits;
  const data = [];
  for (let i = L.timeBits - 1; i >= 0; i--) data.push(Math.floor(value / 2 ** i) %% 2);
  let even = 0, odd = 0;
  data.forEach((b, i) => { if (i %% 2) odd ^= b; else even ^= b; });
  return L.start.concat(data, [even, odd]);
}

function drawStamp(ctx, ms) {
  const b = L.block;
  ctx.fillStyle = "rgb(128,128,128)";
  ctx.fillRect(L.x0 - b / 2, L.y0 - b / 2, (L.cols + 1) * b, (L.rows + 1) * b);
  stampBits(ms).forEach((bit, i) => {
    ctx.fillStyle = bit ? "#fff" : "#000";
    ctx.fillRect(L.x0 + (i %% L.cols) * b, L.y0 + Math.floor(i / L.cols) * b, b, b);
  });
}

function readStamp(img, w, h) {
  const sx = w / L.width, sy = h / L.height;
  const hx = Math.max(1, L.block / 4 * sx), hy = Math.max(1, L.block / 4 * sy);
  const levels = [];
  for (let i = 0; i < L.bits; i++) {
    const cx = (L.x0 + (i %% L.cols + 0.5) * L.block) * sx, cy = (L.y0 + (Math.floor(i / L.cols) + 0.5) * L.block) * sy;
    let sum = 0, n = 0;
    for (let y = Math.round(cy - hy); y < Math.round(cy + hy); y++) {
      for (let x = Math.round(cx - hx); x < Math.round(cx + hx); x++) {
        const k = (y * img.width + x) * 4;
        sum += 0.299 * img.data[k] + 0.587 * img.data[k + 1] + 0.114 * img.data[k + 2];
        n++;
      }
    }
    levels.push(sum / n);
  }
  const white = [], black = [];
  L.start.forEach((bit, i) => (bit ? white : black).push(levels[i]));
  if (Math.min(...white) - Math.max(...black) < L.minContrast) return null;
  const mean = (a) => a.reduce((s, v) => s + v, 0) / a.length;
  const threshold = (mean(white) + mean(black)) / 2;
  const bits = levels.map((lv) => (lv > threshold ? 1 : 0));
  if (L.start.some((bit, i) => bits[i] !== bit)) return null;
  const data = bits.slice(L.start.length, L.start.length + L.timeBits);
  let even = 0, odd = 0, value = 0;
  data.forEach((b, i) => { if (i %% 2) odd ^= b; else even ^= b; value = value * 2 + b; });
  if (even !== bits[L.bits - 2] || odd !== bits[L.bits - 1]) return null;
  return value;
}

function unwrap(stamp, now) {
  const period = 2 ** L.timeBits;
  return now - ((((now - stamp + period / 2) %% period) + period) %% period - period / 2);
}

// The provider's camera: a moving scene with the clock drawn in, painted 30 times a second.
let painted = 0;
function paint() {
  painted++;
  octx.fillStyle = `hsl(${(painted * 2) %% 360}, 30%%, 35%%)`;
  octx.fillRect(0, 0, out.width, out.height);
  for (let i = 0; i < 14; i++) {
    octx.fillStyle = `hsl(${i * 26}, 70%%, ${35 + i * 3}%%)`;
    const x = ((i * 97 + painted * (2 + i)) %% (out.width + 80)) - 60;
    const y = ((i * 53 + painted * (1 + (i %% 3))) %% (out.height + 60)) - 40;
    octx.fillRect(x, y, 70, 50);
  }
  drawStamp(octx, Date.now());
}
paint();
setInterval(paint, 1000 / L.fps);
const outgoing = out.captureStream(L.fps);
let tone = null;
try {
  const ac = new AudioContext();
  const osc = ac.createOscillator();
  const gain = ac.createGain();
  gain.gain.value = 0.05;
  const dest = ac.createMediaStreamDestination();
  osc.connect(gain).connect(dest);
  osc.start();
  tone = dest.stream.getAudioTracks()[0];
} catch (e) {
  tone = null;  // no audio here: the call is video only
}

const S = {
  pc: null, joinedAt: null, firstFrameAt: null, painted: 0, measuring: false,
  latencies: [], unread: 0, width: 0, height: 0,
};

function onFrame(now, meta) {
  const t = Date.now();
  if (S.firstFrameAt === null) S.firstFrameAt = t;
  S.width = meta.width;
  S.height = meta.height;
  if (S.measuring) {
    S.painted++;
    const rows = Math.min(meta.height, Math.ceil(L.stripRows * meta.height / L.height));
    if (reader.width !== meta.width || reader.height !== rows) {
      reader.width = meta.width;
      reader.height = rows;
    }
    rctx.drawImage(video, 0, 0, meta.width, rows, 0, 0, meta.width, rows);
    const stamp = readStamp(rctx.getImageData(0, 0, meta.width, rows), meta.width, meta.height);
    const latency = stamp === null ? null : t - unwrap(stamp, t);
    if (latency === null || Math.abs(latency) > L.plausibleMs) S.unread++;
    else S.latencies.push(latency);
  }
  video.requestVideoFrameCallback(onFrame);
}

async function videoStats() {
  const found = {inbound: null, outbound: null, inCodec: null, outCodec: null};
  if (!S.pc) return found;
  const report = await S.pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") found.inbound = s;
    if (s.type === "outbound-rtp" && s.kind === "video") found.outbound = s;
  });
  if (found.inbound && found.inbound.codecId) found.inCodec = report.get(found.inbound.codecId).mimeType;
  if (found.outbound && found.outbound.codecId) found.outCodec = report.get(found.outbound.codecId).mimeType;
  return found;
}

window.bench = {
  // The provider joins: a peer connection with the kiosk's offer; the answer once every candidate is in it
  // (aiortc does not trickle), as the hub's consult page does.
  async join(offer) {
    S.joinedAt = Date.now();
    const pc = new RTCPeerConnection({iceServers: []});
    S.pc = pc;
    pc.addEventListener("track", (event) => {
      if (event.track.kind !== "video") return;
      video.srcObject = new MediaStream([event.track]);
      video.play().catch(() => {});
      video.requestVideoFrameCallback(onFrame);
    });
    await pc.setRemoteDescription({type: "offer", sdp: offer});
    pc.addTrack(outgoing.getVideoTracks()[0], outgoing);
    if (tone) pc.addTrack(tone, outgoing);
    await pc.setLocalDescription(await pc.createAnswer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const cap = setTimeout(resolve, 3000);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(cap); resolve(); }
      });
    });
    return {answer: pc.localDescription.sdp, joinedAt: S.joinedAt, audio: tone !== null};
  },
  firstFrameAt() { return S.firstFrameAt; },
  async mark() {
    const st = await videoStats();
    S.latencies = [];
    S.unread = 0;
    S.painted = 0;
    S.measuring = true;
    return {at: Date.now(), decoded: st.inbound ? st.inbound.framesDecoded : 0};
  },
  async collect() {
    S.measuring = false;
    const st = await videoStats();
    return {
      at: Date.now(),
      decoded: st.inbound ? st.inbound.framesDecoded : 0,
      dropped: st.inbound ? (st.inbound.framesDropped || 0) : 0,
      painted: S.painted,
      latencies: S.latencies,
      unread: S.unread,
      width: S.width,
      height: S.height,
      inCodec: st.inCodec,
      outCodec: st.outCodec,
      sentWidth: st.outbound ? st.outbound.frameWidth : null,
      sentHeight: st.outbound ? st.outbound.frameHeight : null,
      qualityLimitation: st.outbound ? st.outbound.qualityLimitationReason : null,
      connection: S.pc ? S.pc.connectionState : null,
    };
  },
  close() { if (S.pc) S.pc.close(); },
};
</script></body></html>
"""


def page_html() -> str:
    layout = {
        "width": WIDTH,
        "height": HEIGHT,
        "fps": FPS,
        "block": STAMP_BLOCK,
        "cols": STAMP_COLS,
        "rows": STAMP_ROWS,
        "x0": STAMP_X0,
        "y0": STAMP_Y0,
        "start": list(START),
        "timeBits": TIME_BITS,
        "bits": STAMP_BITS,
        "minContrast": MIN_CONTRAST,
        "plausibleMs": PLAUSIBLE_MS,
        "stripRows": STAMP_Y0 + (STAMP_ROWS + 1) * STAMP_BLOCK,
    }
    return _PAGE % {"width": WIDTH, "height": HEIGHT, "layout": json.dumps(layout)}


# -- one call -----------------------------------------------------------------------------------------------------


@dataclass
class Direction:
    """One way of the call: frames the receiver got and the stamps it read."""

    latencies_ms: list[float]
    unread: int
    frames: int
    seconds: float
    width: int
    height: int

    @property
    def fps(self) -> float | None:
        return self.frames / self.seconds if self.seconds > 0 else None

    def as_json(self) -> dict[str, Any]:
        return {
            "latency_p50_ms": percentile(self.latencies_ms, 50),
            "latency_p95_ms": percentile(self.latencies_ms, 95),
            "latency_max_ms": max(self.latencies_ms) if self.latencies_ms else None,
            "stamps_read": len(self.latencies_ms),
            "stamps_unread": self.unread,
            "fps": self.fps,
            "frames": self.frames,
            "resolution": [self.width, self.height],
        }


@dataclass
class CallResult:
    codec: str
    negotiated_sdp: str | None = None
    kiosk_to_browser_codec: str | None = None
    browser_to_kiosk_codec: str | None = None
    offer_s: float | None = None
    first_frame_browser_s: float | None = None
    first_frame_kiosk_s: float | None = None
    to_browser: Direction | None = None
    to_kiosk: Direction | None = None
    browser_painted_fps: float | None = None
    browser_dropped: int | None = None
    browser_sent_resolution: list[int | None] | None = None
    browser_quality_limitation: str | None = None
    kiosk_cpu_percent: float | None = None
    browser_cpu_percent: float | None = None
    measured_s: float | None = None
    browser_audio: bool | None = None
    kiosk_audio_frames: int = 0
    error: str | None = None

    def first_frame_ok(self) -> bool | None:
        if self.first_frame_browser_s is None or self.first_frame_kiosk_s is None:
            return False if self.error else None
        return max(self.first_frame_browser_s, self.first_frame_kiosk_s) <= TARGET_FIRST_FRAME_S

    def latency_ok(self) -> bool | None:
        p50s = [percentile(d.latencies_ms, 50) for d in (self.to_browser, self.to_kiosk) if d is not None]
        if len(p50s) < 2 or any(p is None for p in p50s):
            return False if self.error or p50s else None
        return all(p is not None and p < TARGET_LATENCY_P50_MS for p in p50s)

    def cpu_ok(self) -> bool | None:
        if self.kiosk_cpu_percent is None:
            return False if self.error else None
        return self.kiosk_cpu_percent < TARGET_KIOSK_CPU_PERCENT

    def as_json(self) -> dict[str, Any]:
        return {
            "negotiated": {
                "sdp": self.negotiated_sdp,
                "kiosk_to_browser": self.kiosk_to_browser_codec,
                "browser_to_kiosk": self.browser_to_kiosk_codec,
            },
            "offer_s": self.offer_s,
            "first_frame_s": {"browser": self.first_frame_browser_s, "kiosk": self.first_frame_kiosk_s},
            "kiosk_to_browser": self.to_browser.as_json() if self.to_browser else None,
            "browser_to_kiosk": self.to_kiosk.as_json() if self.to_kiosk else None,
            "browser_painted_fps": self.browser_painted_fps,
            "browser_frames_dropped": self.browser_dropped,
            "browser_sent_resolution": self.browser_sent_resolution,
            "browser_quality_limitation": self.browser_quality_limitation,
            "cpu_percent": {"kiosk": self.kiosk_cpu_percent, "browser": self.browser_cpu_percent},
            "audio": {"browser_sends": self.browser_audio, "kiosk_frames_received": self.kiosk_audio_frames},
            "measured_s": self.measured_s,
            "error": self.error,
        }


async def _until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:g} s")
        await asyncio.sleep(0.05)


async def run_call(browser: Browser, codec: str, seconds: float) -> CallResult:
    """One call, `codec` for video both ways: connect, wait for both first frames, warm up, measure, hang up."""
    result = CallResult(codec)
    kiosk = KioskSide()
    gone: list[str] = []
    context = await browser.new_context(viewport={"width": WIDTH * 2, "height": HEIGHT})
    call: MeasuredCall | None = None
    try:
        page: Page = await context.new_page()
        await page.set_content(page_html())
        # Never aiortc's public default STUN server: an explicit, empty list (host candidates on this machine).
        call = MeasuredCall(
            kiosk.on_frame,
            ice_servers=[],
            video=CameraTrack(SyntheticCamera()),
            audio=ToneTrack(),
            on_gone=gone.append,
        )
        prefer_codec(call, codec)
        started = time.monotonic()
        offer = await call.offer()
        result.offer_s = time.monotonic() - started
        joined = await page.evaluate("offer => window.bench.join(offer)", offer)
        result.browser_audio = bool(joined["audio"])
        answer = str(joined["answer"])
        result.negotiated_sdp = sdp_video_codec(answer)
        if result.negotiated_sdp is None:
            raise RuntimeError(f"the browser refused {codec.upper()} for video (no common codec in its answer)")
        await call.answer(answer)
        joined_at = float(joined["joinedAt"]) / 1000

        async def both_first_frames() -> bool:
            return (
                call is not None
                and call.stats.first_video_at is not None
                and bool(await page.evaluate("window.bench.firstFrameAt()"))
            )

        await _until(both_first_frames, FIRST_FRAME_TIMEOUT_S, "first frame on both sides")
        wall_minus_mono = time.time() - time.monotonic()
        assert call.stats.first_video_at is not None
        result.first_frame_kiosk_s = call.stats.first_video_at + wall_minus_mono - joined_at
        result.first_frame_browser_s = float(await page.evaluate("window.bench.firstFrameAt()")) / 1000 - joined_at
        await asyncio.sleep(WARMUP_S)

        mark = await page.evaluate("window.bench.mark()")
        kiosk.measuring = True
        frames0, audio0 = call.stats.video_frames, call.stats.audio_frames
        cpu0, browser_cpu0, wall0 = cpu_seconds(), descendants_cpu_seconds(os.getpid()), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, browser_cpu1, wall1 = cpu_seconds(), descendants_cpu_seconds(os.getpid()), time.monotonic()
        kiosk.measuring = False
        frames1 = call.stats.video_frames
        result.kiosk_audio_frames = call.stats.audio_frames - audio0
        got = await page.evaluate("window.bench.collect()")

        wall = wall1 - wall0
        result.measured_s = wall
        result.kiosk_cpu_percent = 100 * (cpu1 - cpu0) / wall
        result.browser_cpu_percent = 100 * (browser_cpu1 - browser_cpu0) / wall
        browser_wall = (float(got["at"]) - float(mark["at"])) / 1000
        result.to_browser = Direction(
            [float(v) for v in got["latencies"]],
            int(got["unread"]),
            int(got["decoded"]) - int(mark["decoded"]),
            browser_wall,
            int(got["width"]),
            int(got["height"]),
        )
        result.browser_painted_fps = int(got["painted"]) / browser_wall if browser_wall > 0 else None
        result.browser_dropped = int(got["dropped"])
        result.browser_sent_resolution = [got["sentWidth"], got["sentHeight"]]
        result.browser_quality_limitation = got["qualityLimitation"]
        result.kiosk_to_browser_codec = _codec_name(got["inCodec"])
        result.browser_to_kiosk_codec = _codec_name(got["outCodec"])
        result.to_kiosk = Direction(
            kiosk.latencies_ms, kiosk.unread, frames1 - frames0, wall, kiosk.width, kiosk.height
        )
        if gone:
            result.error = f"the call ended by itself while measuring: {gone[0]}"
        elif got["connection"] != "connected":
            result.error = f"the browser's connection was {got['connection']} at the end"
        with contextlib.suppress(Exception):
            await page.evaluate("window.bench.close()")
    except Exception as exc:  # noqa: BLE001 - one codec failing is a result to report, and the next still runs
        log.warning("consult bench %s: %s", codec, exc)
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if call is not None:
            await call.close()
        await context.close()
    return result


def _codec_name(mime: object) -> str | None:
    return str(mime).split("/", 1)[-1] if mime else None


async def source_alone(seconds: float) -> float:
    """% of one core this process spends on the synthetic camera (through CameraTrack) and the tone alone."""
    video, audio = CameraTrack(SyntheticCamera()), ToneTrack()

    async def drain(track: MediaStreamTrack) -> None:
        while True:
            await track.recv()

    tasks = [asyncio.create_task(drain(t)) for t in (video, audio)]
    try:
        await asyncio.sleep(0.5)  # the first frame, the capture thread started
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        return 100 * (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
    finally:
        for task in tasks:
            task.cancel()
        video.stop()
        audio.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the report ---------------------------------------------------------------------------------------------------


@dataclass
class Report:
    seconds: float
    codecs: tuple[str, ...]
    source_alone_s: float
    source_alone_cpu_percent: float | None
    calls: dict[str, CallResult]
    chromium_version: str
    runtime_s: float
    notes: list[str] = field(default_factory=list)

    def targets(self) -> list[tuple[str, str, str, CallResult, bool | None, str]]:
        out = []
        for codec, r in self.calls.items():
            ff = f"browser {_num(r.first_frame_browser_s, 2)} s, kiosk {_num(r.first_frame_kiosk_s, 2)} s"
            lat = "; ".join(
                f"{name} {_num(percentile(d.latencies_ms, 50), 0)} ms"
                for name, d in (("kiosk->browser", r.to_browser), ("browser->kiosk", r.to_kiosk))
                if d is not None
            )
            cpu = f"{_num(r.kiosk_cpu_percent, 0)} % of a core"
            out += [
                (
                    "first_frame",
                    f"both sides <= {TARGET_FIRST_FRAME_S:g} s after join",
                    codec,
                    r,
                    r.first_frame_ok(),
                    ff,
                ),
                (
                    "latency_p50",
                    f"one-way p50 < {TARGET_LATENCY_P50_MS:g} ms both ways",
                    codec,
                    r,
                    r.latency_ok(),
                    lat or "-",
                ),
                ("kiosk_cpu", f"< {TARGET_KIOSK_CPU_PERCENT:g} % of one core, 640x480", codec, r, r.cpu_ok(), cpu),
            ]
        return out

    def as_json(self) -> dict[str, Any]:
        targets: dict[str, Any] = {
            "first_frame_s": {"limit": TARGET_FIRST_FRAME_S, "wanted": "first frame on both sides within the limit"},
            "latency_p50_ms": {"limit": TARGET_LATENCY_P50_MS, "wanted": "one-way p50 under the limit, both ways"},
            "kiosk_cpu_percent": {
                "limit": TARGET_KIOSK_CPU_PERCENT,
                "wanted": "kiosk CPU for one call under the limit",
            },
        }
        keys = {"first_frame": "first_frame_s", "latency_p50": "latency_p50_ms", "kiosk_cpu": "kiosk_cpu_percent"}
        for name, _wanted, codec, _r, passed, measured in self.targets():
            targets[keys[name]][codec] = {"measured": measured, "pass": passed}
        report: dict[str, Any] = {
            "benchmark": "consult",
            "settings": {
                "seconds": self.seconds,
                "codecs": list(self.codecs),
                "width": WIDTH,
                "height": HEIGHT,
                "fps": FPS,
                "warmup_s": WARMUP_S,
                "chromium": self.chromium_version,
                "aiortc": _version("aiortc"),
            },
            "source_alone": {"seconds": self.source_alone_s, "cpu_percent": self.source_alone_cpu_percent},
            **{codec: r.as_json() for codec, r in self.calls.items()},
            "targets": targets,
            "notes": self.notes,
            "runtime_s": self.runtime_s,
        }
        return json_safe(report)  # type: ignore[no-any-return]

    def lines(self) -> list[str]:
        calls = list(self.calls.values())
        out = [
            f"kiosk bench consult: one call per codec, the kiosk (this process: Call, aiortc {_version('aiortc')}) "
            f"and {self.chromium_version} (headless, Playwright) on this machine;",
            f"kiosk video {WIDTH}x{HEIGHT} at {FPS} frames/s from a synthetic camera, a tone for audio; "
            f"measured for {self.seconds:g} s after both first frames and {WARMUP_S:g} s of warm-up",
            f"synthetic camera and tone alone (nothing encoded): {_num(self.source_alone_cpu_percent, 1)} % of a core "
            f"(over {self.source_alone_s:g} s)",
            "",
        ]
        rows: list[tuple[str, list[str]]] = [
            ("", [r.codec.upper() for r in calls]),
            (
                "codec: answer / kiosk->browser / browser->kiosk",
                [f"{r.negotiated_sdp or '-'} / {r.kiosk_to_browser_codec or '-'} / {r.browser_to_kiosk_codec or '-'}"
                 for r in calls],
            ),
            ("kiosk's offer ready (before join)", [f"{_num(r.offer_s, 3)} s" for r in calls]),
            (
                "join -> first frame, browser / kiosk",
                [f"{_num(r.first_frame_browser_s, 2)} / {_num(r.first_frame_kiosk_s, 2)} s" for r in calls],
            ),
        ]  # fmt: skip
        for title, dirs in (
            ("kiosk->browser", [r.to_browser for r in calls]),
            ("browser->kiosk", [r.to_kiosk for r in calls]),
        ):
            rows += [
                (f"{title} latency p50 / p95", [_latency_cell(d) for d in dirs]),
                (f"{title} stamps read / unread", [f"{len(d.latencies_ms)} / {d.unread}" if d else "-" for d in dirs]),
                (f"{title} frames/s, size", [f"{_num(d.fps, 1)} at {d.width}x{d.height}" if d else "-" for d in dirs]),
            ]
        rows += [
            ("browser frames/s painted", [_num(r.browser_painted_fps, 1) for r in calls]),
            (
                "browser sends at, limited by",
                [f"{_fmt_size(r.browser_sent_resolution)}, {r.browser_quality_limitation or '-'}" for r in calls],
            ),
            ("kiosk CPU, % of one core (whole process)", [_num(r.kiosk_cpu_percent, 1) for r in calls]),
            ("  of it the synthetic camera and tone", [_num(self.source_alone_cpu_percent, 1) for _ in calls]),
            ("Chromium + Playwright driver CPU, % of a core", [_num(r.browser_cpu_percent, 1) for r in calls]),
        ]
        out += [f"  {label:<46}" + "".join(f"{c:>24}" for c in cells) for label, cells in rows]
        out += [f"  {r.codec.upper()}: {r.error}" for r in calls if r.error]
        out += ["", "targets"]
        for _name, wanted, codec, _r, passed, measured in self.targets():
            verdict = "PASS" if passed else "MISS" if passed is False else "-"
            out.append(f"  {verdict:<5}{codec.upper():<6}{wanted:<42}{measured}")
        out += [f"note: {n}" for n in self.notes]
        out.append(f"runtime {self.runtime_s:.1f} s")
        return out


def _latency_cell(d: Direction | None) -> str:
    if d is None:
        return "-"
    return f"{_num(percentile(d.latencies_ms, 50), 0)} / {_num(percentile(d.latencies_ms, 95), 0)} ms"


def _fmt_size(size: list[int | None] | None) -> str:
    return "-" if not size or None in size else f"{size[0]}x{size[1]}"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _num(value: float | None, digits: int, missing: str = "-") -> str:
    return missing if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


# -- running -----------------------------------------------------------------------------------------------------


async def run_benchmark(seconds: float, codecs: tuple[str, ...]) -> Report:
    from playwright.async_api import async_playwright  # noqa: PLC0415 - a test tool, installed with [dev]

    started = time.monotonic()
    source_s = min(seconds, SOURCE_ALONE_MAX_S)
    source_cpu = await source_alone(source_s)
    calls: dict[str, CallResult] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            version = f"Chromium {browser.version}"
            for codec in codecs:
                log.info("consult bench: %s call", codec)
                calls[codec] = await run_call(browser, codec, seconds)
        finally:
            await browser.close()
    notes = [
        "the stamp is drawn when a frame is made and read when it is decoded (kiosk) or shown (browser): "
        "latency includes capture queueing, encoding, the network stack, jitter buffer and decoding",
        "both peers share this machine's cores; on a Pi the provider's browser is elsewhere",
    ]
    return Report(seconds, codecs, source_s, source_cpu, calls, version, time.monotonic() - started, notes)


def parse_codecs(text: str) -> tuple[str, ...]:
    names = [c.strip().lower() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in CODECS]
    if bad or not names:
        raise ValueError(f"--codecs: {','.join(bad) or 'none given'}; choose from {','.join(CODECS)}")
    return tuple(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    """The command: a table on stdout (or one JSON object with --json); bad options exit 2 with one line."""
    try:
        codecs = parse_codecs(args.codecs)
        if not args.seconds > 0:
            raise ValueError("--seconds: more than 0")
        if not CHROMIUM.exists():
            raise ValueError(f"{CHROMIUM} is missing: the benchmark uses Debian's Chromium (make browser)")
        import playwright  # noqa: F401, PLC0415
    except ValueError as exc:
        print(f"kiosk bench consult: {exc}", file=sys.stderr)
        return 2
    except ImportError:
        print("kiosk bench consult: needs Playwright (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    logging.getLogger("aioice").setLevel(logging.WARNING)  # a line per ICE check is noise in a benchmark
    report = asyncio.run(run_benchmark(float(args.seconds), codecs))
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print("\n".join(report.lines()))
    return 0 if all(r.error is None for r in report.calls.values()) else 1
