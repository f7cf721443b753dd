"""Breathing rate from the upper body's vertical motion: synthetic traces with a known rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from device.camera.respiration import estimate_respiratory_rate
from device.camera.rppg import FACE_NOT_FOUND, SIGNAL_TOO_WEAK, TOO_MUCH_MOVEMENT, TOO_SHORT


@dataclass(frozen=True)
class M:
    t: float
    upper_body_y: float
    motion_px: float = 0.3
    face_found: bool = True


def breathing(
    per_min: float,
    seconds: float = 40.0,
    *,
    amplitude_px: float = 2.0,
    noise_px: float = 0.3,
    seed: int = 3,
    **kw: float | bool,
) -> list[M]:
    rng = np.random.default_rng(seed)
    t = np.sort(np.arange(0, seconds, 1 / 30) + rng.normal(0, 0.004, int(np.ceil(seconds * 30))))
    t = t[rng.random(len(t)) > 0.03]
    # Inhale faster than exhale: a skewed wave, not a sine; plus slow postural drift.
    phase = (t * per_min / 60.0) % 1.0
    wave = np.where(phase < 0.4, np.sin(np.pi * phase / 0.4 / 2) ** 2, np.cos(np.pi * (phase - 0.4) / 0.6 / 2) ** 2)
    y = 240 + amplitude_px * wave + 0.02 * t + rng.normal(0, noise_px, len(t))
    return [M(float(a), float(b), **kw) for a, b in zip(t, y, strict=True)]  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [8.0, 12.0, 16.0, 22.0, 30.0])
def test_finds_the_breathing_rate_at_rest(rate: float) -> None:
    result = estimate_respiratory_rate(breathing(rate))
    assert result.abstained is None
    assert result.bpm == pytest.approx(rate, abs=2.0)


def test_no_rhythm_abstains() -> None:
    result = estimate_respiratory_rate(breathing(14.0, amplitude_px=0.0, noise_px=0.5))
    assert result.bpm is None and result.abstained == SIGNAL_TOO_WEAK


@pytest.mark.parametrize(
    ("kw", "reason"), [({"face_found": False}, FACE_NOT_FOUND), ({"motion_px": 8.0}, TOO_MUCH_MOVEMENT)]
)
def test_abstains_with_a_reason(kw: dict[str, float | bool], reason: str) -> None:
    result = estimate_respiratory_rate(breathing(14.0, **kw))
    assert result.bpm is None and result.abstained == reason


def test_too_short_abstains() -> None:
    assert estimate_respiratory_rate(breathing(14.0, seconds=15.0)).abstained == TOO_SHORT
