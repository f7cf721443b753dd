"""Breathing rate from the small vertical motion of head and shoulders: pure functions over a trace.

Breathing lifts the shoulders and head by a few pixels, 6-40 times a minute. The face tracker
reports the upper body's vertical position per frame; here it is resampled on capture time,
detrended, band-passed to 0.1-0.7 Hz and its spectral peak taken per 20 s window (stepped by
2 s: a breath takes 2-10 s, so shorter windows cannot resolve the rate). Like heart rate, it
abstains with a reason when the face is lost, the person moves more than breathing does, or no
rhythm stands out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from device.camera.rppg import (
    FACE_NOT_FOUND,
    SIGNAL_TOO_WEAK,
    TOO_MUCH_MOVEMENT,
    Estimate,
    Window,
    bandpass,
    spectrum,
    summarise,
    windows_of,
)
from device.camera.timebase import GapError, resample_uniform


class MotionSample(Protocol):
    @property
    def t(self) -> float: ...
    @property
    def upper_body_y(self) -> float: ...
    @property
    def motion_px(self) -> float: ...
    @property
    def face_found(self) -> bool: ...


@dataclass(frozen=True)
class RespirationConfig:
    fps: float = 15.0  # breathing needs no more; a coarser grid keeps the spectra cheap
    window_s: float = 20.0
    step_s: float = 2.0
    band_hz: tuple[float, float] = (0.1, 0.7)  # 6-42 /min
    min_face_fraction: float = 0.9
    max_motion_px_per_frame: float = 3.0
    # The peak against the median of the band (13 dB): band-passed noise alone reached ~10 dB on synthetic
    # traces, breathing of 1 px over 0.5 px of noise 15-20 dB.
    min_peak_ratio: float = 20.0
    min_valid_windows: int = 2
    min_valid_fraction: float = 0.5
    max_spread_per_min: float = 4.0


def analyse_window(samples: Sequence[MotionSample], config: RespirationConfig) -> Window:  # noqa: PLR0911 - one exit per reason
    start, end = samples[0].t, samples[-1].t
    found = np.array([s.face_found for s in samples])
    if found.mean() < config.min_face_fraction:
        return Window(start, end, None, None, FACE_NOT_FOUND)
    faces = [s for s in samples if s.face_found]
    if np.median([s.motion_px for s in faces]) > config.max_motion_px_per_frame:
        return Window(start, end, None, None, TOO_MUCH_MOVEMENT)
    faces = [s for s in faces if np.isfinite(s.upper_body_y)]  # shoulders out of the frame: nothing to see
    if len(faces) < 2:
        return Window(start, end, None, None, SIGNAL_TOO_WEAK)
    times = np.array([s.t for s in faces])
    try:
        _, y = resample_uniform(times, np.array([s.upper_body_y for s in faces], dtype=np.float64), config.fps)
    except GapError:
        return Window(start, end, None, None, FACE_NOT_FOUND if len(faces) < len(samples) else SIGNAL_TOO_WEAK)
    if len(y) < config.fps * config.window_s * 0.8:
        return Window(start, end, None, None, SIGNAL_TOO_WEAK)
    freqs, power = spectrum(bandpass(y, config.fps, config.band_hz, order=2), config.fps, resolution_hz=0.005)
    band = (freqs >= config.band_hz[0]) & (freqs <= config.band_hz[1])
    peak = int(np.flatnonzero(band)[np.argmax(power[band])])
    floor = float(np.median(power[band]))
    ratio = float(power[peak] / floor) if floor > 0 else 0.0
    if ratio < config.min_peak_ratio:
        return Window(start, end, None, 10.0 * np.log10(ratio) if ratio > 0 else None, SIGNAL_TOO_WEAK)
    return Window(start, end, float(freqs[peak] * 60.0), float(10.0 * np.log10(ratio)), None)


def estimate_respiratory_rate(samples: Sequence[MotionSample], config: RespirationConfig | None = None) -> Estimate:
    config = config or RespirationConfig()
    return summarise(
        [analyse_window(w, config) for w in windows_of(samples, config)],
        min_valid=config.min_valid_windows,
        min_fraction=config.min_valid_fraction,
        max_spread=config.max_spread_per_min,
        clear_snr_db=20.0,
    )
