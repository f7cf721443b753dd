"""The rPPG estimator on synthetic traces with a known pulse: what it finds, and when it refuses to.

Traces stand in for the face tracker's per-frame means: skin colour modulated by a PPG-shaped
pulse in the blood-volume direction, plus what goes wrong in practice (light drift, flicker,
noise, jittered and dropped frames, motion, darkness, no face).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from device.camera.rppg import (
    FACE_NOT_FOUND,
    LIGHT_FLICKER,
    SIGNAL_TOO_WEAK,
    TOO_DARK,
    TOO_MUCH_MOVEMENT,
    TOO_SHORT,
    RppgConfig,
    estimate_heart_rate,
    pulse_rate,
)

BVP = np.array([0.33, 0.77, 0.53]) / np.linalg.norm([0.33, 0.77, 0.53])  # de Haan & van Leest 2014
SKIN = np.array([180.0, 130.0, 110.0])  # a light-medium skin tone, RGB
WALL = np.array([90.0, 95.0, 100.0])


@dataclass(frozen=True)
class S:
    t: float
    skin_rgb: tuple[float, float, float]
    background_rgb: tuple[float, float, float]
    motion_px: float = 0.2
    brightness: float = 120.0
    face_found: bool = True


def ppg(t: np.ndarray, bpm: float) -> np.ndarray:
    """Two Gaussians per beat: systolic peak and a smaller, later diastolic wave (dicrotic notch between)."""
    phase = (t * bpm / 60.0) % 1.0
    wave = np.exp(-(((phase - 0.2) / 0.08) ** 2)) + 0.45 * np.exp(-(((phase - 0.5) / 0.12) ** 2))
    return wave - wave.mean()


def trace(
    bpm: float = 72.0,
    seconds: float = 30.0,
    *,
    fps: float = 30.0,
    amplitude: float = 0.01,
    noise: float = 0.1,  # on the mean of a skin region: thousands of pixels average sensor noise down
    drift: float = 0.05,
    flicker_hz: float | None = None,
    flicker: float = 0.02,
    jitter_ms: float = 4.0,
    drop: float = 0.03,
    seed: int = 1,
    **sample: float | bool,
) -> list[S]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, seconds, 1 / fps)
    t = np.sort(t + rng.normal(0, jitter_ms / 1000, len(t)))
    t = t[rng.random(len(t)) >= drop]
    light = 1 + drift * np.sin(2 * np.pi * t / 40.0)
    if flicker_hz is not None:
        light = light * (1 + flicker * np.sin(2 * np.pi * flicker_hz * t))
    pulse = amplitude * ppg(t, bpm)
    skin = SKIN * light[:, None] * (1 + pulse[:, None] * BVP * 1.7)
    wall = WALL * light[:, None]
    skin += rng.normal(0, noise, skin.shape)
    wall += rng.normal(0, noise, wall.shape)
    return [S(float(ti), tuple(sk), tuple(wa), **sample) for ti, sk, wa in zip(t, skin, wall, strict=True)]  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["pos", "chrom"])
@pytest.mark.parametrize("bpm", [48.0, 65.0, 88.0, 120.0, 165.0])
def test_finds_the_pulse_with_drift_noise_jitter_and_dropped_frames(method: str, bpm: float) -> None:
    result = estimate_heart_rate(trace(bpm), RppgConfig(method=method))  # type: ignore[arg-type]
    assert result.abstained is None
    assert result.bpm == pytest.approx(bpm, abs=1.5)
    assert 0 < result.quality <= 1
    within = [w for w in result.windows if w.bpm is not None and abs(w.bpm - bpm) <= 5]
    assert len(within) >= 0.95 * len([w for w in result.windows if w.bpm is not None])


def test_a_strong_second_harmonic_does_not_double_the_rate() -> None:
    fps = 30.0
    t = np.arange(0, 10, 1 / fps)
    x = np.sin(2 * np.pi * 1.1 * t) + 1.4 * np.sin(2 * np.pi * 2.2 * t)  # 66 /min with a louder 2nd harmonic
    found = pulse_rate(x, fps, (0.7, 3.5))
    assert found is not None and found[0] == pytest.approx(66, abs=1)


def test_flicker_in_the_heart_rate_band_is_not_taken_for_a_pulse() -> None:
    # A light flickering at 1.5 Hz (90 /min), twice as strong as the pulse at 70 /min.
    result = estimate_heart_rate(trace(70.0, flicker_hz=1.5, flicker=0.02))
    assert result.abstained is None
    assert result.bpm == pytest.approx(70, abs=1.5)


def test_flicker_and_no_pulse_abstains_instead_of_reporting_the_light() -> None:
    result = estimate_heart_rate(trace(70.0, amplitude=0.0, flicker_hz=1.5, flicker=0.02))
    assert result.bpm is None
    assert result.abstained in (LIGHT_FLICKER, SIGNAL_TOO_WEAK)


def test_noise_alone_abstains() -> None:
    result = estimate_heart_rate(trace(70.0, amplitude=0.0, noise=2.0))
    assert result.bpm is None and result.abstained == SIGNAL_TOO_WEAK


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ({"face_found": False}, FACE_NOT_FOUND),
        ({"brightness": 12.0}, TOO_DARK),  # too few levels for any pulse, whatever the room
        ({"motion_px": 9.0}, TOO_MUCH_MOVEMENT),
    ],
)
def test_abstains_with_a_reason_the_patient_can_act_on(sample: dict[str, float | bool], reason: str) -> None:
    result = estimate_heart_rate(trace(72.0, **sample))
    assert result.bpm is None and result.abstained == reason
    assert all(w.reason == reason for w in result.windows)


def test_too_short_a_recording_abstains() -> None:
    result = estimate_heart_rate(trace(72.0, seconds=6.0))
    assert result.bpm is None and result.abstained == TOO_SHORT


def test_windows_step_by_capture_time_not_by_frame_count() -> None:
    result = estimate_heart_rate(trace(72.0, seconds=20.0, drop=0.2))
    starts = [w.start for w in result.windows]
    assert len(starts) == 10 or len(starts) == 11
    assert np.allclose(np.diff(starts), 1.0, atol=0.15)


def test_dark_skin_in_a_lit_room_is_not_too_dark_but_a_dim_room_is() -> None:
    # Monk 10 skin has a luma of about 37 where a wall is at 94: the light is fine, the skin is dark.
    lit = estimate_heart_rate(trace(72.0, brightness=37.0))
    assert lit.abstained is None and lit.bpm == pytest.approx(72.0, abs=1.5)
    dim = [replace(s, background_rgb=(s.background_rgb[0] * 0.3, s.background_rgb[1] * 0.3, s.background_rgb[2] * 0.3))
           for s in trace(72.0, brightness=30.0)]  # fmt: skip
    assert estimate_heart_rate(dim).abstained == TOO_DARK
