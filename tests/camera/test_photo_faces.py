"""Faces from real photographs (device/camera/photo_faces.py): skin found, tones moved, pulse only where skin is.

The renderer is the camera benchmark's ground truth, so these tests check what it promises about the truth: the
skin lands on the asked swatch and nothing else changes, the pulse is in skin pixels only and only when asked
for, at the rate the ground truth states, and a lamp lights skin and backdrop alike. No timing assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import zip_longest

import cv2
import numpy as np
import pytest

from device.camera import photo_faces as pf
from device.camera.synthetic import SKIN_TONES_SRGB
from device.camera.timebase import resample_uniform


def _peak_hz(times: np.ndarray, values: np.ndarray, band: tuple[float, float] = (0.7, 3.5)) -> tuple[float, float]:
    """(frequency of the strongest peak in the band, its power over the band's median) of a trace."""
    _, uniform = resample_uniform(times, values, 30.0, max_gap=None)
    x = uniform - uniform.mean()
    n = 8 * len(x)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)), n)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / 30.0)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    best = int(np.argmax(power[inside]))
    return float(freqs[inside][best]), float(power[inside][best] / np.median(power[inside]))


class _Means:
    """Capture times and, per mask, the masked mean colour (RGB) of every frame added.

    Only each mask's bounding box is read: outside it the weights are zero, so the means are the whole frame's.
    """

    def __init__(self, *masks: np.ndarray) -> None:
        self.times: list[float] = []
        self.means: list[list[np.ndarray]] = [[] for _ in masks]
        self.parts: list[tuple[tuple[slice, slice], np.ndarray, float]] = []
        for mask in masks:
            rows, cols = np.nonzero(mask)
            box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
            weights = mask[box].reshape(-1).astype(np.float64)
            self.parts.append((box, weights, float(weights.sum())))

    def add(self, t: float, image: np.ndarray) -> None:
        self.times.append(t)
        for out, (box, weights, total) in zip(self.means, self.parts, strict=True):
            out.append((weights @ image[box].reshape(-1, 3).astype(np.float64))[::-1] / total)

    def traces(self) -> tuple[np.ndarray, list[np.ndarray]]:
        return np.array(self.times), [np.array(m) for m in self.means]


def _traces(spec: pf.PhotoSpec, *masks: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Capture times and, per mask, the masked mean colour (RGB) of every frame."""
    means = _Means(*masks)
    for t, image in pf.render_frames(spec):
        means.add(t, image)
    return means.traces()


# -- skin ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", pf.PHOTO_NAMES)
def test_the_skin_mask_covers_the_face_and_not_the_backdrop(name: pf.PhotoName) -> None:
    rig = pf.PHOTOS[name]
    mask = pf.photo_skin(name)
    x, y = (round(v) for v in rig.face_center)
    half = round(0.15 * rig.face_width)
    assert mask[y - half : y + half, x - 2 * half : x - half].mean() > 0.9  # a cheek
    assert mask[: mask.shape[0] // 10, : mask.shape[1] // 10].max() == 0.0  # a corner of the backdrop
    hair_top = round(rig.head_center[1] - 0.85 * rig.head_axes[1])
    assert mask[hair_top, x - half : x + half].mean() < 0.1  # hair or hat above the face
    assert mask[min(mask.shape[0] - 1, round(rig.shoulder_y + 1.2 * rig.face_width)), :].mean() < 0.05  # clothes


def test_no_skin_no_mask() -> None:
    wall = np.full((120, 160, 3), (90, 140, 60), dtype=np.uint8)  # a green wall
    assert pf.skin_mask(wall).max() == 0.0
    with pytest.raises(ValueError, match="no skin"):
        pf.tone_shift(wall, 5)


# -- tone ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", pf.PHOTO_NAMES)
@pytest.mark.parametrize("tone", [1, 4, 7, 10, "VI"])
def test_tone_shift_moves_the_skin_mean_to_the_swatch_and_leaves_the_rest(name: pf.PhotoName, tone: pf.Tone) -> None:
    image, mask = pf.photo(name), pf.photo_skin(name)
    swatch = pf.lab_of_rgb(pf.tone_srgb(tone))
    linear = pf.tone_shift_linear(image, tone, mask)
    assert pf.delta_e(pf.mean_lab(pf.lab_of_linear(linear[..., ::-1]), mask), swatch) < 0.5
    shifted = pf.tone_shift(image, tone, mask)
    if tone not in (1, 4):  # in 8 bits the lightest swatches clip the lit half of the face (the renderer does not)
        assert pf.delta_e(pf.mean_skin_lab(shifted, mask), swatch) < 0.5
    outside = mask == 0
    assert outside.mean() > 0.5
    assert np.array_equal(shifted[outside], image[outside])  # bit for bit


def test_fitzpatrick_types_use_synthetic_mapping() -> None:
    assert pf.tone_srgb("V") == SKIN_TONES_SRGB["V"] == pf.MONK_SRGB[7]
    assert pf.tone_label("V") == "V" and pf.tone_label(7) == "MST-7"
    with pytest.raises(ValueError):
        pf.tone_srgb(11)


@pytest.mark.parametrize("name", pf.PHOTO_NAMES)
def test_tone_shift_keeps_texture_and_relative_shading(name: pf.PhotoName) -> None:
    image, mask = pf.photo(name), pf.photo_skin(name)
    skin = cv2.erode((mask > 0.95).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # away from eyes and edges

    def detail(linear: np.ndarray) -> np.ndarray:
        """Fine luminance detail relative to its neighbourhood: texture, pores, wrinkles."""
        luminance = linear @ np.array([0.0722, 0.7152, 0.2126], np.float32)
        return np.asarray(luminance / np.maximum(cv2.GaussianBlur(luminance, (0, 0), 2.0), 1e-4) - 1.0)[skin]

    original = detail(pf.srgb_to_linear(image.astype(np.float32) / 255.0))
    spread = {}
    for tone in (1, 2, 5, 8, 10):
        linear = pf.tone_shift_linear(image, tone, mask)
        d = detail(linear)
        assert d.std() > 0.8 * original.std()
        # Highlights keep their absolute level, so on the darkest skin they stand out more: a little less alike.
        assert np.corrcoef(original, d)[0, 1] > (0.75 if tone == 10 else 0.95), tone
        spread[tone] = float(pf.lab_of_linear(linear[..., ::-1])[..., 0][skin].std())
    # Darker skin, smaller absolute L* contrast: shading is kept in proportion, not in L* units.
    assert spread[10] < spread[8] < spread[5]


def test_pulse_amplitude_falls_with_tone() -> None:
    amplitudes = [pf.pulse_amplitude_for(t) for t in pf.MONK_LEVELS]
    lightness = [pf.lab_of_rgb(pf.tone_srgb(t))[0] for t in pf.MONK_LEVELS]
    by_lightness = [a for _, a in sorted(zip(lightness, amplitudes, strict=True))]
    assert by_lightness == sorted(amplitudes)  # lighter swatch, larger pulse (MST-2 is darker than MST-3)
    assert amplitudes[5] > 1.5 * amplitudes[9]
    green = 0.77 / float(np.linalg.norm([0.33, 0.77, 0.53]))
    assert amplitudes[0] * green == pytest.approx(pf.GREEN_PULSE_LIGHTEST, rel=1e-3)
    assert amplitudes[-1] * green == pytest.approx(pf.GREEN_PULSE_DARKEST, rel=1e-3)


# -- rendering ----------------------------------------------------------------------------------------------------

STILL = pf.PhotoSpec(photo="hopper", tone=6, seconds=10.0, heart_rate_bpm=84.0, breathing_amplitude_px=0.0, seed=4)


@dataclass(frozen=True)
class _StillPair:
    """STILL and its no-pulse control, each rendered once for the module and read frame by frame."""

    frames: tuple[int, int]  # delivered frames: with the pulse, without
    changed: np.ndarray  # pixels that differ between the two in any frame
    pulse: _Means  # the skin's mean colour, with the pulse
    flat: _Means  # and without


@pytest.fixture(scope="module")
def still_pair() -> _StillPair:
    skin = pf.skin_in_frame(STILL)
    changed = np.zeros(skin.shape, dtype=bool)
    frames = [0, 0]
    means = (_Means(skin), _Means(skin))
    for pair in zip_longest(pf.render_frames(STILL), pf.render_frames(pf.no_pulse(STILL))):
        for k, frame in enumerate(pair):
            if frame is not None:
                frames[k] += 1
                means[k].add(*frame)
        if pair[0] is not None and pair[1] is not None:
            changed |= np.any(pair[0][1] != pair[1][1], axis=2)
    return _StillPair((frames[0], frames[1]), changed, *means)


def test_the_pulse_is_in_skin_pixels_only_and_only_when_asked_for(still_pair: _StillPair) -> None:
    with_pulse, without = still_pair.frames
    assert with_pulse == without == len(pf.ground_truth(STILL).t)
    skin = pf.skin_in_frame(STILL)
    near_skin = cv2.dilate((skin > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    changed = still_pair.changed
    assert changed.any()
    assert not changed[~near_skin].any()  # the same noise, the same light: only skin differs


def test_the_skin_colour_peaks_at_the_true_rate(still_pair: _StillPair) -> None:
    truth = pf.ground_truth(STILL)
    times, (rgb,) = still_pair.pulse.traces()
    hz, prominence = _peak_hz(times, rgb[:, 1])
    assert abs(60 * hz - truth.heart_rate_bpm) < 3.0
    assert prominence > 50
    # Green moves most, blue next, red least: the blood-volume direction.
    _, uniform = resample_uniform(times, rgb, 30.0, max_gap=None)
    relative = (uniform / uniform.mean(axis=0)).std(axis=0)
    assert relative[1] > relative[2] > relative[0]
    _, (flat,) = still_pair.flat.traces()
    assert _peak_hz(times, flat[:, 1])[1] < prominence / 10


def test_a_lamp_flickers_on_the_backdrop_and_the_skin_alike() -> None:
    spec = replace(STILL, pulse=False, lamp=pf.Lamp("amber", 1.6, flicker=0.02))
    skin = pf.skin_in_frame(spec)
    backdrop = np.zeros(skin.shape, dtype=np.float32)
    backdrop[20:120, 20:120] = 1.0  # top left: flag and wall, no person
    times, (on_skin, on_backdrop) = _traces(spec, skin, backdrop)
    for trace in (on_skin, on_backdrop):
        hz, prominence = _peak_hz(times, trace[:, 0])
        assert hz == pytest.approx(1.6, abs=0.05) and prominence > 100
    # Amber: red changes most, blue least, on any surface.
    for trace in (on_skin, on_backdrop):
        change = (trace / trace.mean(axis=0)).std(axis=0)
        assert change[0] > change[1] > change[2]


def test_mains_flicker_is_seen_at_its_alias() -> None:
    spec = replace(STILL, pulse=False, fps=29.75, lamp=pf.Lamp("white", 120.0, flicker=0.08), seconds=8.0)
    backdrop = np.zeros((480, 640), dtype=np.float32)
    backdrop[20:120, 500:620] = 1.0
    times, (trace,) = _traces(spec, backdrop)
    hz, prominence = _peak_hz(times, trace[:, 1])
    assert hz == pytest.approx(abs(120.0 - 4 * 29.75), abs=0.06) and prominence > 100


def test_frames_are_deterministic_for_a_seed_and_differ_between_seeds() -> None:
    spec = replace(STILL, seconds=1.0, head_motion_px=5.0, talking=True, jitter_ms=4.0, frame_drop_rate=0.1)
    first = list(pf.render_frames(spec))
    again = list(pf.render_frames(spec))
    assert [t for t, _ in first] == [t for t, _ in again]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, again, strict=True))
    other = list(pf.render_frames(replace(spec, seed=spec.seed + 1)))
    assert not np.array_equal(first[0][1], other[0][1])


def test_motion_moves_the_face_as_the_ground_truth_says() -> None:
    spec = replace(STILL, seconds=6.0, head_motion_px=8.0, pulse=False, noise_sigma=0.0, shot_noise=0.0)
    truth = pf.ground_truth(spec)
    frames = list(pf.render_frames(spec))
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for _, f in frames]
    cx, cy = (round(v) for v in truth.face_center[0])
    half = round(0.4 * spec.face_width_px)
    window = cv2.createHanningWindow((2 * half, 2 * half), cv2.CV_32F)
    reference = grey[0][cy - half : cy + half, cx - half : cx + half]
    for i in (len(frames) // 3, 2 * len(frames) // 3, len(frames) - 1):
        (dx, dy), _ = cv2.phaseCorrelate(reference, grey[i][cy - half : cy + half, cx - half : cx + half], window)
        true = truth.face_center[i] - truth.face_center[0]
        assert abs(dx - true[0]) < 1.0 and abs(dy - true[1]) < 1.0


def test_ground_truth_matches_the_frames() -> None:
    spec = replace(STILL, frame_drop_rate=0.1, jitter_ms=3.0)
    truth = pf.ground_truth(spec)
    times = [t for t, _ in pf.render_frames(spec)]
    assert times == pytest.approx(list(truth.t))
    assert len(truth.dropped_index) > 0 and len(times) + len(truth.dropped_index) == round(spec.seconds * spec.fps)
    assert truth.heart_rate_bpm == pytest.approx(spec.heart_rate_bpm, rel=0.05)
    assert len(pf.ground_truth(pf.no_pulse(spec)).beat_times) == 0


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ValueError):
        pf.PhotoSpec(tone=0)
    with pytest.raises(ValueError):
        pf.PhotoSpec(noise_sigma=-1.0)
