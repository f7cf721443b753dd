"""Synthetic face videos with a known pulse and breathing, for tests and the camera-vitals benchmark.

Real recordings with a reference oximeter cannot live in the repository (privacy, size), and a test needs to
know the truth exactly. This module draws a stylised but face-like head that OpenCV's stock frontal Haar
cascade finds, and modulates it with what a camera would see of a person sitting still in front of a kiosk:

* a blood-volume pulse with a realistic shape (systolic peak, dicrotic notch, diastolic wave, beat-to-beat
  variability, respiratory modulation), applied to skin pixels only and in the blood-volume-pulse colour
  direction of de Haan & van Leest 2014, so POS/CHROM see what they see on real skin;
* breathing as a slow vertical motion of head and shoulders;
* slow head sway and roll, illumination drift, periodic light flicker, sensor noise;
* irregular capture times (jitter) and dropped frames, carried in a JSON sidecar because a constant-rate
  container cannot carry them.

Motion is a sub-pixel warp of pre-rendered, anti-aliased layers: integer shifts would add exactly the
pixel-snapping noise the face tracker is built to avoid, and the benchmark would then measure the renderer.
Videos are written losslessly (FFV1): compression can erase a 1 % colour pulse.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
from numpy.typing import NDArray

from device.camera.source import timestamps_path

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]

log = logging.getLogger(__name__)

FitzpatrickType = Literal["I", "II", "III", "IV", "V", "VI"]
FITZPATRICK_TYPES: tuple[FitzpatrickType, ...] = get_args(FitzpatrickType)

# Skin colours (sRGB, 8-bit), one per Fitzpatrick type.
#
# Source of the colours: the Monk Skin Tone (MST) scale, Ellis Monk (2019/2023), published by Google with its
# sRGB hex values (skintone.google, CC BY 4.0): MST-1 #f6ede4 ... MST-10 #292420. Fitzpatrick types are
# sun-reactivity classes, not colours, so each type is matched to an MST swatch through the Individual Typology
# Angle ITA = atan((L* - 50) / b*) and its six skin-colour categories (Chardon et al. 1991, Int J Cosmet Sci
# 13:191; used as the colorimetric counterpart of Fitzpatrick I-VI by Del Bino & Bernerd 2013, Br J Dermatol
# 169 Suppl 3:33): very light > 55 deg, light 41-55, intermediate 28-41, tan 10-28, brown -30-10, dark < -30.
# ITA values below are computed from the hex values (sRGB D65 -> CIELAB).
SKIN_TONES_SRGB: dict[FitzpatrickType, tuple[int, int, int]] = {
    "I": (0xEA, 0xDA, 0xBA),  # MST-4 #eadaba, ITA 64.7 deg: very light
    "II": (0xD7, 0xBD, 0x96),  # MST-5 #d7bd96, ITA 50.3 deg: light
    # No MST swatch falls in the intermediate band (MST-5 is 50.3, MST-6 10.8): the CIELAB midpoint of MST-5
    # and MST-6, L*a*b* (66.5, 5.6, 25.0), ITA 33.4 deg.
    "III": (0xBB, 0x9D, 0x75),
    "IV": (0xA0, 0x7E, 0x56),  # MST-6 #a07e56, ITA 10.8 deg: tan
    "V": (0x82, 0x5C, 0x43),  # MST-7 #825c43, ITA -20.3 deg: brown
    "VI": (0x60, 0x41, 0x34),  # MST-8 #604134, ITA -55.6 deg: dark
}

# Blood-volume-pulse signature in normalised RGB (de Haan & van Leest 2014, "Improved motion robustness of
# remote-PPG by using the blood volume pulse signature", Physiol Meas 35:1913), made a unit vector.
PBV_RGB: tuple[float, float, float] = (0.33, 0.77, 0.53)
_PBV = np.asarray(PBV_RGB, dtype=np.float64) / float(np.linalg.norm(PBV_RGB))

# Pulse template per beat, in fractions of the beat period: a systolic Gaussian and a smaller, wider diastolic
# (reflected-wave) Gaussian; the dip between them is the dicrotic notch. Widths chosen so the notch stays
# visible (value at the notch about 0.35 against 0.5 at the diastolic peak).
_SYS_MU, _SYS_SIGMA, _DIA_MU, _DIA_SIGMA, _DIA_AMP = 0.18, 0.07, 0.45, 0.10, 0.5
_TEMPLATE_MEAN = math.sqrt(2 * math.pi) * (_SYS_SIGMA + _DIA_AMP * _DIA_SIGMA)  # mean over one period
_RESP_PULSE_MOD = 0.10  # respiratory modulation of pulse amplitude (fraction)
_AMP_VARIABILITY = 0.04  # beat-to-beat amplitude variability (fraction, 1 sd)
_HEAD_BREATH_FRACTION = 0.8  # the head rides on the shoulders, slightly damped

_SUPERSAMPLE = 4  # layers are drawn at 4x and area-averaged down: anti-aliased edges


@dataclass(frozen=True)
class SyntheticSpec:
    """What to render. Defaults: a still, evenly lit adult at a kiosk camera (640x480, 30 fps)."""

    seconds: float = 10.0
    fps: float = 30.0
    size: tuple[int, int] = (640, 480)  # (width, height)
    heart_rate_bpm: float = 72.0
    breathing_rate_bpm: float = 15.0
    skin_tone: FitzpatrickType = "III"
    pulse_amplitude: float = 0.01  # peak-to-peak relative skin colour change along the PBV direction
    head_motion_px: float = 0.0  # amplitude of slow head sway (translation) and the roll it implies
    illumination_drift: float = 0.0  # slow brightness change, fraction of the light level
    flicker_hz: float = 0.0
    flicker_amplitude: float = 0.0  # fraction of the light level, whole frame
    noise_sigma: float = 1.0  # sensor noise, 8-bit levels (1 sd, per channel and pixel)
    frame_drop_rate: float = 0.0  # probability that a frame is never delivered
    jitter_ms: float = 0.0  # capture-time irregularity (1 sd, clipped to +-45 % of a frame period)
    face: bool = True  # False: the person faces away (back of the head), for "no face" paths
    seed: int = 0
    breathing_amplitude_px: float = 2.0  # shoulder rise at full inhalation
    heart_rate_variability: float = 0.03  # beat-to-beat RR variability (fraction, 1 sd)

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.fps <= 0:
            raise ValueError("seconds and fps must be positive")
        if self.size[0] < 160 or self.size[1] < 120:
            raise ValueError("size must be at least 160x120")
        if self.skin_tone not in SKIN_TONES_SRGB:
            raise ValueError(f"skin_tone must be one of {FITZPATRICK_TYPES}")
        if not 0.0 <= self.frame_drop_rate < 1.0:
            raise ValueError("frame_drop_rate must be in [0, 1)")
        if min(self.noise_sigma, self.jitter_ms, self.pulse_amplitude, self.head_motion_px) < 0:
            raise ValueError("amplitudes and noise must not be negative")
        if not 0 < self.heart_rate_bpm < 300 or not 0 < self.breathing_rate_bpm < 120:
            raise ValueError("heart and breathing rates must be positive and plausible")

    @property
    def frame_count(self) -> int:
        """Frames the camera would have captured; dropped ones are not delivered."""
        return max(1, round(self.seconds * self.fps))


@dataclass(frozen=True)
class GroundTruth:
    """What the renderer knows, sampled at the capture time of every delivered frame."""

    t: F64  # capture times (s) of the frames render_frames yields
    nominal_index: I64  # index of each delivered frame on the nominal fps grid
    dropped_index: I64  # nominal indices of frames that were dropped
    pulse: F64  # blood-volume pulse, about zero mean, peak-to-peak about 1, systole up
    skin_modulation: F64  # p(t) in c(t) = c0 * (1 + a * p(t) * v): -pulse, since blood absorbs light
    respiration: F64  # breathing waveform, +1 at full inhalation
    heart_rate_bpm: float  # 60 / mean beat interval inside the video
    breathing_rate_bpm: float
    beat_times: F64  # systolic peak times inside the video
    face_center: F64  # (N, 2) true centre of the face (x, y), pixels
    head_angle_deg: F64  # head roll, degrees (positive: clockwise in the image)
    body_dy: F64  # vertical offset of the shoulders (px, positive = down)
    pulse_direction_rgb: tuple[float, float, float]  # unit vector v, RGB order


@dataclass(frozen=True)
class WrittenVideo:
    """Where write_video put things, and whether the codec kept every pixel."""

    path: Path
    timestamps_path: Path
    codec: str
    lossless: bool
    frames: int


# --------------------------------------------------------------------------------------------------------------
# Timeline: capture times, beats, breathing, head motion. Everything a frame needs except pixels.


def _rng(spec: SyntheticSpec, stream: int) -> np.random.Generator:
    """One independent random stream per aspect, so changing noise does not move the beats."""
    return np.random.default_rng([spec.seed, stream])


def _capture_times(spec: SyntheticSpec) -> tuple[F64, I64, I64]:
    """(times of delivered frames, their nominal indices, nominal indices of dropped frames)."""
    n = spec.frame_count
    period = 1.0 / spec.fps
    rng = _rng(spec, 1)
    jitter = rng.standard_normal(n) * spec.jitter_ms / 1000.0
    jitter = np.clip(jitter, -0.45 * period, 0.45 * period)
    jitter[0] = 0.0
    times = np.arange(n, dtype=np.float64) * period + jitter
    keep = rng.random(n) >= spec.frame_drop_rate
    keep[0] = True  # a video always has a first frame
    index = np.arange(n, dtype=np.int64)
    return times[keep], index[keep], index[~keep]


def _respiration(spec: SyntheticSpec, t: F64) -> F64:
    """Breathing waveform in [-1, 1], +1 at full inhalation; phase-warped so inhalation is quicker."""
    phase0 = _rng(spec, 2).uniform(0, 2 * math.pi)
    phi = 2 * math.pi * spec.breathing_rate_bpm / 60.0 * t + phase0
    return np.asarray(np.sin(phi + 0.3 * np.sin(phi)), dtype=np.float64)


@dataclass(frozen=True)
class _Beats:
    onsets: F64  # beat onset times; one more than beats so every beat has a period
    amplitudes: F64

    @property
    def periods(self) -> F64:
        return np.diff(self.onsets)


def _beats(spec: SyntheticSpec) -> _Beats:
    """Beat onsets with random and respiratory (sinus arrhythmia) variability, mean rate exactly as asked."""
    rng = _rng(spec, 3)
    period = 60.0 / spec.heart_rate_bpm
    start, stop = -3.0, spec.seconds + 3.0
    count = math.ceil((stop - start) / period) + 2
    onset0 = start - rng.uniform(0, period)
    rr = period * (1.0 + spec.heart_rate_variability * rng.standard_normal(count))
    rr = np.clip(rr, 0.6 * period, 1.4 * period)
    approx_onsets = onset0 + np.concatenate([[0.0], np.cumsum(rr)[:-1]])
    rr = rr * (1.0 - 0.5 * spec.heart_rate_variability * _respiration(spec, approx_onsets))
    inside = (approx_onsets >= 0) & (approx_onsets < spec.seconds)
    rr *= period / float(np.mean(rr[inside])) if inside.any() else 1.0
    onsets = onset0 + np.concatenate([[0.0], np.cumsum(rr)])
    amps = 1.0 + _AMP_VARIABILITY * rng.standard_normal(count)
    amps *= 1.0 + _RESP_PULSE_MOD * _respiration(spec, onsets[:-1])
    return _Beats(onsets=onsets, amplitudes=amps)


def _pulse(beats: _Beats, t: F64) -> F64:
    """Blood-volume pulse at times t: sum of the two-Gaussian template of the neighbouring beats, about zero mean."""
    periods = beats.periods
    current = np.searchsorted(beats.onsets, t, side="right") - 1
    out = np.zeros_like(t)
    for back in (-1, 0, 1, 2):
        k = current - back
        ok = (k >= 0) & (k < len(periods))
        kk = np.clip(k, 0, len(periods) - 1)
        period = periods[kk]
        tau = (t - beats.onsets[kk]) / period
        shape = np.exp(-0.5 * ((tau - _SYS_MU) / _SYS_SIGMA) ** 2)
        shape += _DIA_AMP * np.exp(-0.5 * ((tau - _DIA_MU) / _DIA_SIGMA) ** 2)
        out += np.where(ok, beats.amplitudes[kk] * shape, 0.0)
    # One constant offset (not one per beat, which would step at every beat boundary); the respiratory
    # amplitude modulation then leaves a small baseline wander at the breathing rate, as in real PPG.
    return out - _TEMPLATE_MEAN * float(np.mean(beats.amplitudes))


def _sway(rng: np.random.Generator, t: F64) -> F64:
    """Slow random sway in [-1, 1]: three sinusoids between 0.05 and 0.3 Hz (below the heart-rate band)."""
    freqs = rng.uniform(0.05, 0.3, 3)
    phases = rng.uniform(0, 2 * math.pi, 3)
    weights = np.array([0.5, 0.3, 0.2])
    return np.asarray(np.sin(2 * math.pi * np.outer(t, freqs) + phases) @ weights, dtype=np.float64)


@dataclass(frozen=True)
class _Motion:
    head_dx: F64
    head_dy: F64
    head_angle_deg: F64
    body_dx: F64
    body_dy: F64


def _motion(spec: SyntheticSpec, t: F64, respiration: F64) -> _Motion:
    """Head sway and roll plus breathing; the shoulders follow a fifth of the sway."""
    rng = _rng(spec, 4)
    geom = _geometry(spec.size)
    dx = spec.head_motion_px * _sway(rng, t)
    dy = spec.head_motion_px * _sway(rng, t)
    # Roll chosen so the face's edge moves about half the sway amplitude.
    angle = np.degrees(0.5 * spec.head_motion_px / geom.rx * _sway(rng, t))
    body_dy = -spec.breathing_amplitude_px * respiration
    return _Motion(
        head_dx=dx,
        head_dy=dy + _HEAD_BREATH_FRACTION * body_dy,
        head_angle_deg=np.asarray(angle, dtype=np.float64),
        body_dx=0.2 * dx,
        body_dy=body_dy,
    )


def _illumination(spec: SyntheticSpec, t: F64) -> F64:
    """Light level (1 = nominal): slow drift (ramp plus a 20 s wander) and periodic flicker."""
    phase = _rng(spec, 5).uniform(0, 2 * math.pi)
    ramp = 0.5 * (1 - np.cos(math.pi * np.clip(t / spec.seconds, 0, 1)))
    drift = spec.illumination_drift * (0.6 * ramp + 0.4 * np.sin(2 * math.pi * 0.05 * t + phase))
    flicker = spec.flicker_amplitude * np.sin(2 * math.pi * spec.flicker_hz * t)
    return np.asarray((1.0 + drift) * (1.0 + flicker), dtype=np.float64)


# --------------------------------------------------------------------------------------------------------------
# Scene: geometry and pre-rendered layers (background, body, head), drawn once per spec.


@dataclass(frozen=True)
class _Geometry:
    """Face centre and semi-axes in pixels; every feature is placed relative to these."""

    width: int
    height: int
    cx: float
    cy: float
    rx: float
    ry: float

    @property
    def pivot(self) -> tuple[float, float]:
        """Head roll pivots at the chin/neck."""
        return self.cx, self.cy + self.ry


@functools.lru_cache(maxsize=8)
def _geometry(size: tuple[int, int]) -> _Geometry:
    width, height = size
    ry = 0.21 * height
    return _Geometry(width=width, height=height, cx=0.5 * width, cy=0.44 * height, rx=0.77 * ry, ry=ry)


@dataclass(frozen=True)
class _Layer:
    """A layer on its own canvas: premultiplied colour and alpha, and premultiplied skin colour.

    The skin channels carry colour * skin coverage, so the pulse is added as skin * (a p v) after warping.
    """

    origin: tuple[int, int]  # canvas top-left in frame coordinates
    data: F32  # (h, w, 4): colour * alpha (RGB), alpha
    skin: F32  # (h, w, 3): diffuse colour * skin coverage (RGB)


@dataclass(frozen=True)
class _Scene:
    geometry: _Geometry
    background: F32  # (H, W, 3) RGB
    body: _Layer
    head: _Layer


class _Canvas:
    """Supersampled coordinate grid over a frame rectangle; masks and fields are drawn analytically on it."""

    def __init__(self, x0: int, y0: int, width: int, height: int) -> None:
        self.x0, self.y0, self.width, self.height = x0, y0, width, height
        s = _SUPERSAMPLE
        xs = x0 - 0.5 + (np.arange(width * s, dtype=np.float32) + 0.5) / s
        ys = y0 - 0.5 + (np.arange(height * s, dtype=np.float32) + 0.5) / s
        self.x, self.y = np.meshgrid(xs, ys)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> NDArray[np.bool_]:
        return np.asarray(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 <= 1.0)

    def gauss(self, cx: float, cy: float, sx: float, sy: float) -> F32:
        return np.asarray(np.exp(-0.5 * (((self.x - cx) / sx) ** 2 + ((self.y - cy) / sy) ** 2)), dtype=np.float32)

    def texture(self, rng: np.random.Generator, sigma_px: float, amplitude: float) -> F32:
        """Static multiplicative texture 1 +- amplitude, correlated over about sigma_px frame pixels."""
        noise = rng.standard_normal(self.x.shape).astype(np.float32)
        sigma = max(sigma_px * _SUPERSAMPLE, 0.5)
        noise = np.asarray(cv2.GaussianBlur(noise, (0, 0), sigma), dtype=np.float32)
        noise /= float(noise.std()) + 1e-9
        return np.asarray(1.0 + amplitude * np.clip(noise, -3, 3), dtype=np.float32)

    def reduce(self, array: F32) -> F32:
        """Area-average the supersampled array to frame pixels: this is the anti-aliasing."""
        return np.asarray(
            cv2.resize(array, (self.width, self.height), interpolation=cv2.INTER_AREA),
            dtype=np.float32,
        )


Paint = NDArray[np.floating[Any]] | tuple[float, ...]


class _Sheet:
    """The colour, alpha and skin-coverage planes of one layer while it is being drawn on a canvas."""

    def __init__(self, canvas: _Canvas) -> None:
        self.canvas = canvas
        shape = canvas.x.shape
        self.colour = np.zeros((*shape, 3), dtype=np.float32)
        self.alpha = np.zeros(shape, dtype=np.float32)
        self.skin = np.zeros(shape, dtype=np.float32)

    def paint(self, mask: NDArray[np.bool_], rgb: Paint, *, is_skin: bool = False) -> None:
        """Paint rgb (a colour or a per-sample image) over mask, opaque; mark or clear skin there."""
        value = np.asarray(rgb, dtype=np.float32)
        self.colour[mask] = value[mask] if value.ndim == 3 else value
        self.alpha[mask] = 1.0
        self.skin[mask] = 1.0 if is_skin else 0.0

    def finish(self, specular: F32 | None = None) -> _Layer:
        """Area-average to frame pixels. Specular light is reflected at the surface, before it reaches the
        blood, so it is part of the colour but not of the pulsing skin channels."""
        premult = self.colour * self.alpha[..., None]
        diffuse = self.colour if specular is None else self.colour - specular * self.skin[..., None]
        rgba = np.concatenate([premult, self.alpha[..., None]], axis=2)
        skin_colour = diffuse * self.skin[..., None]
        c = self.canvas
        return _Layer(origin=(c.x0, c.y0), data=c.reduce(rgba), skin=c.reduce(skin_colour))


def _skin_rgb(spec: SyntheticSpec) -> F32:
    return np.asarray(SKIN_TONES_SRGB[spec.skin_tone], dtype=np.float32)


_HAIR_RGB = (34.0, 26.0, 22.0)
_LIGHT_RGB = (1.0, 0.98, 0.94)  # slightly warm white light
_SPECULAR_LEVELS = 30.0
_CLOTH_RGB = (44.0, 62.0, 104.0)  # a navy top: not skin-coloured (YCrCb Cr well below 128)


def _face_shading(c: _Canvas, g: _Geometry) -> F32:
    """Multiplicative shading of the face: rounded falloff, eye sockets, lit nose bridge, soft side light."""
    u = (c.x - g.cx) / g.rx
    v = (c.y - g.cy) / g.ry
    radius = np.sqrt(u**2 + v**2)
    shade = 0.97 - 0.30 * radius**3 - 0.05 * u
    ex, ey = 0.37 * g.rx, g.cy - 0.08 * g.ry
    for side in (-1, 1):
        shade -= 0.30 * c.gauss(g.cx + side * ex, ey, 0.24 * g.rx, 0.11 * g.ry)  # eye sockets
        shade -= 0.10 * c.gauss(g.cx + side * 0.17 * g.rx, g.cy + 0.12 * g.ry, 0.06 * g.rx, 0.16 * g.ry)  # nose sides
        shade += 0.04 * c.gauss(g.cx + side * 0.45 * g.rx, g.cy + 0.18 * g.ry, 0.18 * g.rx, 0.12 * g.ry)  # cheekbones
    shade += 0.09 * c.gauss(g.cx, g.cy + 0.02 * g.ry, 0.055 * g.rx, 0.22 * g.ry)  # nose bridge highlight
    shade += 0.06 * c.gauss(g.cx, g.cy + 0.22 * g.ry, 0.08 * g.rx, 0.05 * g.ry)  # nose tip
    shade -= 0.12 * c.gauss(g.cx, g.cy + 0.38 * g.ry, 0.16 * g.rx, 0.05 * g.ry)  # shadow under the nose
    shade -= 0.10 * c.gauss(g.cx, g.cy + 0.72 * g.ry, 0.25 * g.rx, 0.06 * g.ry)  # under the lower lip
    return np.asarray(np.clip(shade, 0.45, 1.0), dtype=np.float32)


def _face_specular(c: _Canvas, g: _Geometry, skin_rgb: F32) -> F32:
    """Surface (specular) highlights on forehead, nose and cheekbones, in the light's colour.

    Skin reflects a few per cent at its surface whatever its pigment, so the highlight is the same in
    8-bit levels for every skin tone (capped where a light face would clip); on dark skin it is much of the
    facial structure a detector and a viewer see.
    """
    level = min(_SPECULAR_LEVELS, 0.8 * (250.0 - float(skin_rgb.max())))
    field = 0.9 * c.gauss(g.cx, g.cy - 0.45 * g.ry, 0.22 * g.rx, 0.1 * g.ry)  # forehead
    field += c.gauss(g.cx, g.cy + 0.05 * g.ry, 0.04 * g.rx, 0.17 * g.ry)  # nose bridge
    field += 0.8 * c.gauss(g.cx, g.cy + 0.22 * g.ry, 0.06 * g.rx, 0.045 * g.ry)  # nose tip
    for side in (-1, 1):
        field += 0.6 * c.gauss(g.cx + side * 0.45 * g.rx, g.cy + 0.12 * g.ry, 0.14 * g.rx, 0.07 * g.ry)
    light = np.asarray(_LIGHT_RGB, dtype=np.float32) * level
    return np.asarray(np.clip(field, 0, 1)[..., None] * light, dtype=np.float32)


def _face_outline(c: _Canvas, g: _Geometry) -> NDArray[np.bool_]:
    """An egg: the jaw narrows towards the chin."""
    v = (c.y - g.cy) / g.ry
    rx = g.rx * (1.0 - 0.22 * np.clip(v, 0, 1) ** 2)
    return np.asarray(((c.x - g.cx) / rx) ** 2 + v**2 <= 1.0)


def _hair_above_hairline(c: _Canvas, g: _Geometry) -> NDArray[np.bool_]:
    u = (c.x - g.cx) / g.rx
    hairline = g.cy - 0.62 * g.ry + 0.22 * g.ry * u**2
    return np.asarray(c.y < hairline)


def _brow(c: _Canvas, g: _Geometry, side: int) -> NDArray[np.bool_]:
    """An arched band, thicker near the nose."""
    d = side * (c.x - g.cx) / g.rx  # distance from the midline, in face half-widths, on this side
    along = np.clip((d - 0.12) / 0.52, 0, 1)
    centre = g.cy - 0.24 * g.ry - 0.06 * g.ry * np.sin(math.pi * along)
    half = g.ry * (0.035 - 0.015 * along)
    return np.asarray((d >= 0.12) & (d <= 0.64) & (np.abs(c.y - centre) <= half))


def _paint_eyes(sheet: _Sheet, g: _Geometry, base: F32) -> None:
    c = sheet.canvas
    ex, ey = 0.37 * g.rx, g.cy - 0.08 * g.ry
    for side in (-1, 1):
        x = g.cx + side * ex
        opening = c.ellipse(x, ey, 0.17 * g.rx, 0.055 * g.ry)
        lid = c.ellipse(x, ey - 0.012 * g.ry, 0.19 * g.rx, 0.07 * g.ry) & ~opening & (c.y < ey)
        sheet.paint(lid, base * 0.45)
        sheet.paint(opening, (196.0, 190.0, 184.0))  # sclera
        sheet.paint(opening & c.ellipse(x, ey, 0.06 * g.ry, 0.06 * g.ry), (62.0, 42.0, 30.0))  # iris
        sheet.paint(opening & c.ellipse(x, ey, 0.025 * g.ry, 0.025 * g.ry), (12.0, 10.0, 10.0))  # pupil


def _paint_nose_mouth(sheet: _Sheet, g: _Geometry, base: F32) -> None:
    c = sheet.canvas
    for side in (-1, 1):
        nostril = c.ellipse(g.cx + side * 0.09 * g.rx, g.cy + 0.31 * g.ry, 0.055 * g.rx, 0.024 * g.ry)
        sheet.paint(nostril, base * 0.3)
    my = g.cy + 0.56 * g.ry
    lips = c.ellipse(g.cx, my, 0.29 * g.rx, 0.075 * g.ry)
    lip_tint = np.asarray((0.78, 0.55, 0.56), dtype=np.float32)
    sheet.paint(lips, base * lip_tint * 0.85)
    line = lips & (np.abs(c.y - my) <= 0.012 * g.ry)
    sheet.paint(line, base * 0.25)


def _head_layer(spec: SyntheticSpec, g: _Geometry) -> _Layer:
    x0, y0 = int(g.cx - 1.45 * g.rx), int(g.cy - 1.3 * g.ry)
    c = _Canvas(x0, y0, int(2.9 * g.rx) + 2, int(2.45 * g.ry) + 2)
    rng = _rng(spec, 6)
    sheet = _Sheet(c)
    hair = np.asarray(_HAIR_RGB, dtype=np.float32) * c.texture(rng, 1.0, 0.15)[..., None]
    back_of_head = c.ellipse(g.cx, g.cy - 0.12 * g.ry, 1.12 * g.rx, 1.08 * g.ry)
    if not spec.face:
        sheet.paint(back_of_head | c.ellipse(g.cx, g.cy, 1.02 * g.rx, 1.04 * g.ry), hair)
        return sheet.finish()
    sheet.paint(back_of_head, hair)
    base = _skin_rgb(spec) * c.texture(rng, 1.2, 0.025)[..., None]  # skin colour with pores/blotches
    shaded = base * _face_shading(c, g)[..., None]
    specular = _face_specular(c, g, _skin_rgb(spec))
    face = _face_outline(c, g)
    sheet.paint(face, shaded + specular, is_skin=True)
    sheet.paint(face & _hair_above_hairline(c, g) & back_of_head, hair)
    _paint_eyes(sheet, g, shaded)
    for side in (-1, 1):
        sheet.paint(_brow(c, g, side), hair * 1.2)
    _paint_nose_mouth(sheet, g, shaded)
    return sheet.finish(specular)


def _body_layer(spec: SyntheticSpec, g: _Geometry) -> _Layer:
    """Neck (skin, shadowed under the chin) and shoulders in a navy top; extends below the frame edge."""
    x0, y0 = int(g.cx - 3.3 * g.rx), int(g.cy + 0.45 * g.ry)
    c = _Canvas(x0, y0, int(6.6 * g.rx) + 2, g.height - y0 + 24)
    rng = _rng(spec, 7)
    sheet = _Sheet(c)
    top = g.cy + 2.55 * g.ry
    cloth_shape = c.ellipse(g.cx, top, 3.1 * g.rx, 1.05 * g.ry) | ((c.y >= top) & (np.abs(c.x - g.cx) <= 3.1 * g.rx))
    cloth_shade = 1.0 - 0.25 * np.clip(np.abs(c.x - g.cx) / (3.1 * g.rx), 0, 1) ** 2
    cloth = np.asarray(_CLOTH_RGB, dtype=np.float32) * (c.texture(rng, 0.8, 0.06) * cloth_shade)[..., None]
    sheet.paint(cloth_shape, cloth)
    neck_half = 0.42 * g.rx * (1.0 + 0.25 * np.clip((c.y - g.cy - 1.2 * g.ry) / (0.5 * g.ry), 0, 1))
    neckline = g.cy + 1.5 * g.ry + 0.28 * g.ry * np.clip(1 - ((c.x - g.cx) / (0.55 * g.rx)) ** 2, 0, 1)
    neck = (np.abs(c.x - g.cx) <= neck_half) & (c.y >= g.cy + 0.5 * g.ry) & (c.y <= neckline)
    neck_shade = 0.55 + 0.25 * np.clip((c.y - g.cy - g.ry) / (0.6 * g.ry), 0, 1)
    neck_rgb = _skin_rgb(spec) * (c.texture(rng, 1.2, 0.025) * neck_shade)[..., None]
    sheet.paint(neck, neck_rgb, is_skin=True)
    return sheet.finish()


def _background(spec: SyntheticSpec, g: _Geometry) -> F32:
    """A blue-grey wall with soft blotches, two panels, a rail and fine texture: textured, never skin-coloured."""
    rng = _rng(spec, 8)
    h, w = g.height, g.width
    wall = np.empty((h, w, 3), dtype=np.float32)
    wall[:] = np.asarray((92.0, 108.0, 118.0), dtype=np.float32)
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    wall *= (1.08 - 0.16 * yy / h)[..., None]
    wall[:, int(0.78 * w) :] *= np.asarray((0.86, 0.92, 1.0), dtype=np.float32)  # a second panel
    rail = np.abs(yy - 0.58 * h) < 0.012 * h
    wall[rail] = np.asarray((70.0, 80.0, 88.0), dtype=np.float32)
    coarse = rng.standard_normal((h // 40 + 2, w // 40 + 2)).astype(np.float32)
    blotch = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.8)
    wall *= (1.0 + 0.05 * blotch + 0.03 * fine / (float(fine.std()) + 1e-9))[..., None]
    return np.asarray(np.clip(wall, 0, 255), dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _scene(size: tuple[int, int], skin_tone: FitzpatrickType, face: bool, seed: int) -> _Scene:
    spec = SyntheticSpec(size=size, skin_tone=skin_tone, face=face, seed=seed)
    g = _geometry(size)
    return _Scene(geometry=g, background=_background(spec, g), body=_body_layer(spec, g), head=_head_layer(spec, g))


# --------------------------------------------------------------------------------------------------------------
# Per-frame compositing.


def _pose_matrix(dx: float, dy: float, angle_deg: float, pivot: tuple[float, float]) -> F64:
    """2x3 affine: roll about the pivot, then translate (float offsets: sub-pixel motion)."""
    a = math.radians(angle_deg)
    cos, sin = math.cos(a), math.sin(a)
    px, py = pivot
    return np.array(
        [[cos, -sin, px - cos * px + sin * py + dx], [sin, cos, py - sin * px - cos * py + dy]], dtype=np.float64
    )


def _composite(frame: F32, layer: _Layer, matrix: F64, pulse_gain: F32) -> None:
    """Warp the layer into the frame window it covers and blend: frame = frame (1 - A) + P + K * gain.

    OpenCV's element-wise functions, not numpy broadcasting: this is most of the renderer's time.
    """
    h, w = layer.data.shape[:2]
    ox, oy = layer.origin
    corners = np.array([[ox, oy, 1], [ox + w, oy, 1], [ox, oy + h, 1], [ox + w, oy + h, 1]], dtype=np.float64)
    mapped = corners @ matrix.T
    fh, fw = frame.shape[:2]
    x0, y0 = max(0, math.floor(mapped[:, 0].min()) - 1), max(0, math.floor(mapped[:, 1].min()) - 1)
    x1, y1 = min(fw, math.ceil(mapped[:, 0].max()) + 1), min(fh, math.ceil(mapped[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    local = matrix.copy()
    local[:, 2] += matrix[:, :2] @ np.array([ox, oy], dtype=np.float64) - np.array([x0, y0], dtype=np.float64)
    size = (x1 - x0, y1 - y0)
    flags, border = cv2.INTER_LINEAR, cv2.BORDER_CONSTANT
    rgba = cv2.warpAffine(layer.data, local, size, flags=flags, borderMode=border, borderValue=0)
    skin = cv2.warpAffine(layer.skin, local, size, flags=flags, borderMode=border, borderValue=0)
    transparency = np.ascontiguousarray(1.0 - rgba[..., 3])
    window = np.ascontiguousarray(frame[y0:y1, x0:x1])
    out = cv2.multiply(window, cv2.merge((transparency, transparency, transparency)))
    out = cv2.add(out, cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB))
    out = cv2.add(out, cv2.transform(skin, np.diag(pulse_gain).astype(np.float32)))
    frame[y0:y1, x0:x1] = out


@dataclass(frozen=True)
class _Plan:
    """Everything per delivered frame, computed once from the spec (shared by render and ground truth)."""

    t: F64
    nominal_index: I64
    dropped_index: I64
    beats: _Beats
    pulse: F64
    respiration: F64
    motion: _Motion
    light: F64


def _plan(spec: SyntheticSpec) -> _Plan:
    t, nominal, dropped = _capture_times(spec)
    beats = _beats(spec)
    pulse = _pulse(beats, t)
    respiration = _respiration(spec, t)
    return _Plan(
        t=t,
        nominal_index=nominal,
        dropped_index=dropped,
        beats=beats,
        pulse=pulse,
        respiration=respiration,
        motion=_motion(spec, t, respiration),
        light=_illumination(spec, t),
    )


def _frame_noise(seed: int, shape: tuple[int, int, int], sigma: float) -> F32:
    """Sensor noise. OpenCV's generator is about twice as fast as numpy's here and is seeded per frame,
    so frames do not depend on which other frames were rendered before (theRNG is thread-local)."""
    noise = np.empty(shape, dtype=np.float32)
    cv2.setRNGSeed(seed)
    cv2.randn(noise, np.zeros(3), np.full(3, sigma))
    return noise


def render_frames(spec: SyntheticSpec) -> Iterator[tuple[float, U8]]:
    """Yield (capture time s, HxWx3 uint8 BGR image) for every delivered frame, in order. No disk involved."""
    scene = _scene(spec.size, spec.skin_tone, spec.face, spec.seed)
    plan = _plan(spec)
    g = scene.geometry
    pbv = _PBV.astype(np.float32)
    noise_seeds = _rng(spec, 9).integers(0, 2**31 - 1, size=len(plan.t))
    body_pivot = (g.cx, g.cy + 2.0 * g.ry)
    for i, t in enumerate(plan.t):
        m = plan.motion
        gain = (spec.pulse_amplitude * -plan.pulse[i] * pbv).astype(np.float32)
        frame = scene.background.copy()
        _composite(frame, scene.body, _pose_matrix(m.body_dx[i], m.body_dy[i], 0.0, body_pivot), gain)
        _composite(frame, scene.head, _pose_matrix(m.head_dx[i], m.head_dy[i], m.head_angle_deg[i], g.pivot), gain)
        frame *= np.float32(plan.light[i])
        if spec.noise_sigma > 0:
            frame += _frame_noise(int(noise_seeds[i]), (g.height, g.width, 3), spec.noise_sigma)
        np.clip(frame, 0.0, 255.0, out=frame)
        rgb = cv2.convertScaleAbs(frame)  # rounds to nearest and saturates
        yield float(t), np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), dtype=np.uint8)


def ground_truth(spec: SyntheticSpec) -> GroundTruth:
    """The pulse, breathing and head pose render_frames used, at the times of the frames it yields."""
    plan = _plan(spec)
    g = _geometry(spec.size)
    m = plan.motion
    centres = np.empty((len(plan.t), 2), dtype=np.float64)
    for i in range(len(plan.t)):
        matrix = _pose_matrix(m.head_dx[i], m.head_dy[i], m.head_angle_deg[i], g.pivot)
        centres[i] = matrix @ np.array([g.cx, g.cy, 1.0])
    onsets = plan.beats.onsets[:-1]
    inside = (onsets >= 0) & (onsets < spec.seconds)
    mean_period = float(np.mean(plan.beats.periods[inside])) if inside.any() else 60.0 / spec.heart_rate_bpm
    peaks = onsets + _SYS_MU * plan.beats.periods
    return GroundTruth(
        t=plan.t,
        nominal_index=plan.nominal_index,
        dropped_index=plan.dropped_index,
        pulse=plan.pulse,
        skin_modulation=-plan.pulse,
        respiration=plan.respiration,
        heart_rate_bpm=60.0 / mean_period,
        breathing_rate_bpm=spec.breathing_rate_bpm,
        beat_times=peaks[(peaks >= 0) & (peaks < spec.seconds)],
        face_center=centres,
        head_angle_deg=m.head_angle_deg,
        body_dy=m.body_dy,
        pulse_direction_rgb=(float(_PBV[0]), float(_PBV[1]), float(_PBV[2])),
    )


# --------------------------------------------------------------------------------------------------------------
# Writing to disk.

# Lossless first; MJPG only as a last resort because JPEG can erase a 1 % pulse. FFV1 (.mkv) is the smaller
# file; HuffYUV (.avi) is as exact and several times cheaper to write and read (about 6 and 5 ms a 640x480 frame
# here, against 40 and 20 for FFV1), for when a video is made only to be read back at once, as in tests.
_CODECS: tuple[tuple[str, str, bool], ...] = (("FFV1", ".mkv", True), ("HFYU", ".avi", True), ("MJPG", ".avi", False))


def _open_writer(path: Path, spec: SyntheticSpec) -> tuple[cv2.VideoWriter, Path, str, bool]:
    """The lossless codec the path's suffix names (.mkv FFV1, .avi HuffYUV), else the next that this build has."""
    asked = next((c for c in _CODECS if c[1] == path.suffix and c[2]), _CODECS[0])
    for fourcc, suffix, lossless in (asked, *(c for c in _CODECS if c != asked)):
        target = path if path.suffix == suffix else path.with_suffix(suffix)
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter.fourcc(*fourcc), spec.fps, spec.size)
        if writer.isOpened():
            if fourcc != asked[0]:
                message = (
                    f"{asked[0]} unavailable in this OpenCV build; wrote {fourcc} "
                    f"({'lossless' if lossless else 'LOSSY'})"
                )
                log.warning(message)
                warnings.warn(message, RuntimeWarning, stacklevel=3)
            return writer, target, fourcc, lossless
        writer.release()
    raise RuntimeError("no usable video codec in this OpenCV build (tried FFV1, HFYU, MJPG)")


def write_video(spec: SyntheticSpec, path: Path | str) -> WrittenVideo:
    """Render spec to a video file plus <video>.timestamps.json with the true capture time of every frame.

    Dropped frames are simply not written and jittered times are recorded as they were: the container's
    constant frame rate is nominal only, so readers must take times from the sidecar.
    """
    return write_frames(render_frames(spec), Path(path), spec, asdict(spec))


def write_frames(
    frames: Iterator[tuple[float, U8]], path: Path, timeline: SyntheticSpec, described: dict[str, Any]
) -> WrittenVideo:
    """Frames (capture time, image) of a scene whose capture times `timeline` plans, to a lossless video and
    its timestamps sidecar; `described` is what the sidecar records of the scene. Shared by every renderer."""
    writer, target, codec, lossless = _open_writer(path, timeline)
    times: list[float] = []
    try:
        for t, image in frames:
            writer.write(image)
            times.append(round(t, 6))
    finally:
        writer.release()
    _, nominal, dropped = _capture_times(timeline)
    sidecar = {
        "version": 1,
        "video": target.name,
        "codec": codec,
        "lossless": lossless,
        "fps_nominal": timeline.fps,
        "frames": len(times),
        "timestamps": times,
        "nominal_index": [int(i) for i in nominal],
        "dropped_nominal_index": [int(i) for i in dropped],
        "spec": described,
    }
    stamps = timestamps_path(target)
    stamps.write_text(json.dumps(sidecar, indent=1))
    return WrittenVideo(path=target, timestamps_path=stamps, codec=codec, lossless=lossless, frames=len(times))


def write_mjpg(spec: SyntheticSpec, path: Path | str, quality: int = 95) -> Path:
    """The same scene as MJPG at the spec's nominal frame rate: a tenth of the lossless size, for demos.

    Lossy and without a timestamps sidecar (frames are evenly spaced), so the benchmarks and the
    accuracy tests keep using `write_video`; at quality 95 the pulse still reads within 1 bpm here.
    """
    out = Path(path)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), spec.fps, spec.size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG to {out}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
    try:
        for _t, image in render_frames(spec):
            writer.write(image)
    finally:
        writer.release()
    return out


# --------------------------------------------------------------------------------------------------------------
# Skin for a case photo: what a patient holds up to the kiosk camera (the demo camera's photo scene).


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> F32:
    """Unit-variance Gaussian noise correlated over about `sigma` pixels (coarse fields drawn small, enlarged)."""
    factor = max(1, int(sigma / 2))
    small = rng.standard_normal((shape[0] // factor + 1, shape[1] // factor + 1)).astype(np.float32)
    noise = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    if factor > 1:
        noise = cv2.resize(noise, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    else:
        noise = noise[: shape[0], : shape[1]]
    return np.asarray(noise / (float(noise.std()) + 1e-9), dtype=np.float32)


def render_skin(
    size: tuple[int, int] = (640, 480), skin_tone: FitzpatrickType = "III", seed: int = 0, noise_sigma: float = 0.0
) -> U8:
    """A close-up of a forearm with a rash (BGR): soft light falloff, mottling, pores, red papules of 2-9 px,
    fine hairs, and sensor noise of `noise_sigma` grey levels. No face anywhere, so it passes
    `device.camera.photos.assess` when sharp; the texture the photo checks are tuned on
    (tests/camera/test_photos.py)."""
    width, height = size
    rng = np.random.default_rng(seed)
    base = np.asarray(SKIN_TONES_SRGB[skin_tone][::-1], dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - 0.12 * ((xx - 0.4 * width) ** 2 + (yy - 0.45 * height) ** 2) / width**2
    texture = light * (
        1.0 + 0.04 * _smooth_noise(rng, (height, width), width / 80) + 0.03 * _smooth_noise(rng, (height, width), 1.0)
    )
    image = base * texture[..., None]
    shift = 4  # sub-pixel drawing: coordinates in 1/16 px, anti-aliased
    papules = np.zeros((height, width), dtype=np.float32)
    for _ in range(60):
        centre = (int(rng.uniform(0.2, 0.8) * width * 16), int(rng.uniform(0.2, 0.8) * height * 16))
        cv2.circle(papules, centre, int(rng.uniform(0.004, 0.015) * width * 16), 1.0, -1, cv2.LINE_AA, shift)
    papules = np.asarray(cv2.GaussianBlur(papules, (0, 0), 0.6), dtype=np.float32)
    image *= 1.0 - papules[..., None] * np.asarray((0.35, 0.30, 0.05), dtype=np.float32)  # redder: less B and G
    hairs = np.zeros((height, width), dtype=np.float32)
    for _ in range(40):
        x0, y0, angle = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, np.pi)
        length = rng.uniform(0.02, 0.06) * width
        x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
        cv2.line(hairs, (int(x0 * 16), int(y0 * 16)), (int(x1 * 16), int(y1 * 16)), 1.0, 1, cv2.LINE_AA, shift)
    image *= 1.0 - 0.5 * hairs[..., None]
    if noise_sigma:
        image += noise_sigma * rng.standard_normal(image.shape).astype(np.float32)
    return np.asarray(np.clip(image + 0.5, 0, 255), dtype=np.uint8)


def write_skin_video(
    path: Path | str,
    *,
    seconds: float = 4.0,
    fps: float = 10.0,
    size: tuple[int, int] = (640, 480),
    skin_tone: FitzpatrickType = "III",
    seed: int = 0,
    quality: int = 95,
) -> Path:
    """A camera held on `render_skin`'s forearm, as MJPG: the patch drifts by a few whole pixels (an arm held
    up is never quite still, and a live preview should look live) under fresh sensor noise in every frame.
    Whole-pixel steps keep every frame as sharp as the first; the demo's photo step photographs this."""
    margin = 8
    width, height = size
    skin = render_skin((width + 2 * margin, height + 2 * margin), skin_tone, seed).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    out = Path(path)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG to {out}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
    frames = max(1, round(seconds * fps))
    try:
        for n in range(frames):
            phase = 2 * math.pi * n / frames  # a closed loop: the video repeats without a jump
            dx, dy = round(margin + 0.6 * margin * math.sin(phase)), round(margin + 0.4 * margin * math.cos(phase))
            frame = skin[dy : dy + height, dx : dx + width] + rng.normal(0, 1.5, (height, width, 3)).astype(np.float32)
            writer.write(np.asarray(np.clip(frame, 0, 255), dtype=np.uint8))
    finally:
        writer.release()
    return out
