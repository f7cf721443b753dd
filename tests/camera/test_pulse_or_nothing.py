"""Pulse or nothing: no heart rate from a light, whatever its colour and rate; the pulse still found beside one.

Traces stand in for the tracker's per-frame means of skin and background under white room light plus a
lamp of one colour that flickers. Each channel of each surface is its reflectance times the light it gets,
so the lamp changes skin and wall by the same fraction per channel: what the estimator must exploit, and
what a coloured lamp at the wrong moment made it mistake for a pulse (issue 21: 74 /min, quality 0.48, on
a face with no pulse at all). The pulse, where there is one, is a PPG-shaped wave with a drifting rate in
the blood-volume colour direction, on the skin only.
"""

from __future__ import annotations

import numpy as np
import pytest

from device.camera.rppg import LIGHT_FLICKER, SIGNAL_TOO_WEAK, estimate_heart_rate
from device.camera.synthetic import PBV_RGB
from tests.camera.test_rppg import S as Frame  # one frame of the tracker's means, as the estimator reads it

LAMPS = {"white": (1.0, 1.0, 1.0), "red": (1.0, 0.25, 0.15), "green": (0.3, 1.0, 0.35), "blue": (0.2, 0.35, 1.0),
         "amber": (1.0, 0.7, 0.2)}  # fmt: skip
MONK = {1: (0xF6, 0xED, 0xE4), 6: (0xA0, 0x7E, 0x56), 10: (0x29, 0x24, 0x20)}  # Monk Skin Tone swatches (sRGB)
WALL = (140.0, 135.0, 125.0)
NAN3 = (float("nan"),) * 3
PBV = np.asarray(PBV_RGB) / np.linalg.norm(PBV_RGB)  # the blood-volume colour direction, unit length


def scene(
    *,
    bpm: float = 72.0,
    pulse: float = 0.006,  # relative change of green at the pulse's peak
    lamp: str | None = None,
    lamp_hz: float = 1.2,
    lamp_share: float = 0.3,  # of the light on both surfaces
    depth: float = 0.1,  # of the lamp's own light
    monk: int = 6,
    noise: float = 0.15,  # levels, on a region's mean
    wall_noise: float = 0.3,
    background: bool = True,
    seconds: float = 30.0,
    seed: int = 0,
) -> list[Frame]:
    rng = np.random.default_rng(seed)
    fps = 30.0
    t = np.arange(int(seconds * fps)) / fps + rng.normal(0, 0.002, int(seconds * fps))
    rate = bpm / 60.0 * (1 + 0.03 * np.sin(2 * np.pi * 0.25 * t) + 0.02 * np.sin(2 * np.pi * 0.05 * t + seed))
    phase = 2 * np.pi * np.cumsum(rate) / fps
    wave = np.sin(phase) + 0.4 * np.sin(2 * phase + 0.8)
    light = np.ones((len(t), 3))
    if lamp is not None:
        colour = np.asarray(LAMPS[lamp])
        flicker = 1 + depth * np.sin(2 * np.pi * lamp_hz * t + 0.3)
        light = (1 - lamp_share) * light + lamp_share * colour * flicker[:, None] / colour.mean()
    skin = np.asarray(MONK[monk]) * light * (1 + pulse * wave[:, None] * PBV / PBV[1])
    wall = np.asarray(WALL) * light
    skin += rng.normal(0, noise, skin.shape)
    wall += rng.normal(0, wall_noise, wall.shape)
    return [
        Frame(float(ti), tuple(s), tuple(w) if background else NAN3) for ti, s, w in zip(t, skin, wall, strict=True)
    ]


@pytest.mark.parametrize("lamp", list(LAMPS))
@pytest.mark.parametrize("hz", [0.72, 0.9, 1.23, 1.7, 2.5, 3.4])
def test_no_lamp_of_any_colour_or_rate_gives_a_heart_rate_to_a_face_without_a_pulse(lamp: str, hz: float) -> None:
    for depth, wall_noise in ((0.02, 0.3), (0.3, 0.3), (0.1, 1.0)):
        result = estimate_heart_rate(scene(pulse=0.0, lamp=lamp, lamp_hz=hz, depth=depth, wall_noise=wall_noise,
                                           seed=int(hz * 100)))  # fmt: skip
        assert result.bpm is None, (lamp, hz, depth, result.bpm, result.quality)
        assert result.abstained in (LIGHT_FLICKER, SIGNAL_TOO_WEAK)


def test_the_coloured_lamp_of_the_issue_gives_no_heart_rate_and_says_light_flicker() -> None:
    # A red lamp at 0.9 Hz: the old masking left the line's skirt, read as 55 /min (quality 0.43).
    result = estimate_heart_rate(scene(pulse=0.0, lamp="red", lamp_hz=0.9, depth=0.1, seed=90))
    assert result.bpm is None and result.abstained == LIGHT_FLICKER


@pytest.mark.parametrize("monk", sorted(MONK))
@pytest.mark.parametrize("lamp", ["green", "blue", "white"])
def test_a_pulse_away_from_the_lamps_rate_is_found_on_every_tone(monk: int, lamp: str) -> None:
    for bpm in (58.0, 100.0):  # the lamp at 1.3 Hz is 78 /min
        result = estimate_heart_rate(scene(bpm=bpm, lamp=lamp, lamp_hz=1.3, monk=monk, seed=int(bpm)))
        assert result.bpm == pytest.approx(bpm, abs=1.5), (monk, lamp, bpm, result.abstained)


def test_a_pulse_at_the_lamps_own_rate_is_not_reported() -> None:
    result = estimate_heart_rate(scene(bpm=78.0, lamp="green", lamp_hz=1.3, seed=3))
    assert result.bpm is None and result.abstained == LIGHT_FLICKER


def test_without_a_background_a_green_lamp_is_told_by_its_constant_rate() -> None:
    # A green lamp changes skin colour almost in the blood-volume direction; with no wall in view the one
    # thing left that tells it from a heart is that its rate does not drift.
    lamp = estimate_heart_rate(scene(pulse=0.0, lamp="green", lamp_hz=1.23, background=False, seed=5))
    assert lamp.bpm is None and lamp.abstained == LIGHT_FLICKER
    heart = estimate_heart_rate(scene(bpm=66.0, background=False, seed=6))
    assert heart.bpm == pytest.approx(66.0, abs=1.5)


@pytest.mark.parametrize("seed", range(12))
def test_noise_alone_never_gives_a_heart_rate(seed: int) -> None:
    for background in (True, False):
        result = estimate_heart_rate(scene(pulse=0.0, noise=0.3, background=background, seed=100 + seed))
        assert result.bpm is None
