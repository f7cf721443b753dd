"""Heart rate from the colour of skin (remote photoplethysmography): pure functions over RGB traces.

The camera edge (device/camera/face.py) turns frames into per-frame mean colours of skin and of a
background region; everything here works on those traces, resampled onto a uniform time grid
(frames arrive with jitter and gaps; a spectrum must not assume the nominal rate).

Per window (10 s, stepped by 1 s): a chrominance projection (POS by default, CHROM as an
alternative) cancels most of the intensity and specular changes that motion and light cause,
a band-pass keeps 42-210 /min, and a harmonic-sum spectrum picks the pulse's fundamental (a PPG
wave has a strong second harmonic that a plain peak picker mistakes for the rate). The
background region is where the light shows: see below. A window that is dark, moving, faceless
or weak gives no value and says why; the measurement reports only when enough windows agree,
and otherwise abstains with the reason the patient can act on.

Pulse or nothing: a heart rate nobody has is the worst answer this can give, because a provider
would trust it. A lamp that flickers inside the band lights the skin and the background alike, and
in both by the same fraction of each colour channel (the ratio cancels the surface's own colour),
so each line the background shows in the band is fitted as a sinusoid and removed from the skin's
relative colour change before anything else (`cancel_light`); a pulse is in the skin only and
survives that. What is left at the chosen rate
must then look like blood: its colour change in the blood-volume direction of de Haan & van Leest
2014 (green strongest, red and blue in phase with it), and standing out of the band's floor. A
coloured lamp fails the first, noise the second; the windows must still agree. A rate within the
main lobe of a lamp's line (or of twice it) is not reported at all: there the two cannot be told
apart. The masking this replaced cut the background's peaks out of the skin's spectrum a bin or
so wide, and left the line's skirts to be read as a pulse 5 /min off the lamp.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from device.camera.timebase import GapError, resample_uniform

Array = NDArray[np.float64]
Method = Literal["pos", "chrom"]

# Reasons a kiosk can show, in the words it shows them.
FACE_NOT_FOUND = "face not found"
TOO_MUCH_MOVEMENT = "too much movement"
TOO_DARK = "too dark"
SIGNAL_TOO_WEAK = "signal too weak"
LIGHT_FLICKER = "light flicker"
TOO_SHORT = "measurement too short"


class _Timed(Protocol):
    @property
    def t(self) -> float: ...


_S = TypeVar("_S", bound=_Timed)


class Sample(Protocol):
    """One frame's worth of measurements from the face tracker (device/camera/face.py)."""

    @property
    def t(self) -> float: ...
    @property
    def skin_rgb(self) -> tuple[float, float, float]: ...
    @property
    def background_rgb(self) -> tuple[float, float, float]: ...
    @property
    def motion_px(self) -> float: ...
    @property
    def brightness(self) -> float: ...
    @property
    def face_found(self) -> bool: ...


@dataclass(frozen=True)
class RppgConfig:
    method: Method = "pos"
    fps: float = 30.0  # the uniform grid the traces are resampled onto
    window_s: float = 10.0
    step_s: float = 1.0
    band_hz: tuple[float, float] = (0.7, 3.5)  # 42-210 /min
    min_snr_db: float = 0.0  # de Haan's SNR: pulse (and harmonic) energy against the rest of the band
    min_face_fraction: float = 0.9
    max_motion_px_per_frame: float = 3.0  # median box motion at 30 fps; more is a moving head
    # "Too dark" is about the light, not the skin: the darkest skin (Monk 10, luma 37 under light that puts a wall
    # at 140) is darker than a light face in a dim room. So a face is too dark when its own luma is under
    # `min_skin_luma` (too few levels for a pulse of a few tenths of a percent), or under `min_brightness` while
    # the background is dim too.
    min_brightness: float = 40.0  # mean luma, 0-255, below which the room counts as dim
    min_skin_luma: float = 15.0
    min_valid_windows: int = 3
    min_valid_fraction: float = 0.5
    max_spread_bpm: float = 8.0  # windows disagreeing more than this (IQR) are not a measurement
    # Pulse-or-nothing: how pulse-like the colour change at the chosen rate must be (cosine with the
    # blood-volume direction, after the light is taken out), and how strong against the rest of the band.
    min_pbv_cosine: float = 0.9
    min_colour_cosine: float = 0.7  # of the colour part alone (see pbv_cosine)
    candidates: int = 3  # strongest rates tried per window
    # Without a background to take the light from (a face too close to the camera), a green or white lamp's
    # colour change looks like blood's: then windows that all sit within this of one rate are a lamp's
    # constant frequency, not a heart's, whose rate drifts from one 10 s window to the next.
    min_unreferenced_spread_bpm: float = 1.0


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    bpm: float | None
    snr_db: float | None
    reason: str | None  # why no value (None when there is one)
    # The background was there, and clear enough to have shown a light as strong as the skin's change.
    referenced: bool = True


@dataclass(frozen=True)
class Estimate:
    bpm: float | None
    quality: float  # 0..1: share of valid windows times how clearly they stood out
    windows: list[Window] = field(default_factory=list)
    abstained: str | None = None


# Blood-volume-pulse signature in normalised RGB (de Haan & van Leest 2014, Physiol Meas 35:1913), unit length.
PBV = np.array([0.33, 0.77, 0.53]) / float(np.linalg.norm([0.33, 0.77, 0.53]))

LUMA = np.array([0.299, 0.587, 0.114])  # BT.601, as the tracker's `brightness`

# -- the signal chain: pure functions -------------------------------------------------------


def pos(rgb: Array, fps: float) -> Array:
    """Plane-Orthogonal-to-Skin (Wang et al. 2017): project temporally normalised RGB onto the plane
    orthogonal to skin tone, tune the two projections against each other, overlap-add 1.6 s windows."""
    n = len(rgb)
    length = max(2, round(1.6 * fps))
    if n < length:
        return np.zeros(n)
    chunks = np.lib.stride_tricks.sliding_window_view(rgb, length, axis=0)  # (n-length+1, 3, length)
    normalised = chunks / chunks.mean(axis=2, keepdims=True)
    s0 = normalised[:, 1, :] - normalised[:, 2, :]
    s1 = -2.0 * normalised[:, 0, :] + normalised[:, 1, :] + normalised[:, 2, :]
    spread = s1.std(axis=1, keepdims=True)
    alpha = np.divide(s0.std(axis=1, keepdims=True), spread, out=np.zeros_like(spread), where=spread > 0)
    h = s0 + alpha * s1
    h -= h.mean(axis=1, keepdims=True)
    pulse = np.zeros(n)
    count = len(h)
    for offset in range(length):  # overlap-add: window k covers samples k..k+length-1
        pulse[offset : offset + count] += h[:, offset]
    return pulse


def chrom(rgb: Array, fps: float, band_hz: tuple[float, float] = (0.7, 3.5)) -> Array:
    """CHROM (de Haan & Jeanne 2013): two chrominance signals, band-passed, combined with a tuned ratio,
    in half-overlapping Hann windows."""
    n = len(rgb)
    length = max(4, round(1.6 * fps) // 2 * 2)
    half = length // 2
    taper = np.hanning(length)
    pulse = np.zeros(n)
    for start in range(0, n - length + 1, half):
        chunk = rgb[start : start + length]
        normalised = chunk / chunk.mean(axis=0)
        x = 3.0 * normalised[:, 0] - 2.0 * normalised[:, 1]
        y = 1.5 * normalised[:, 0] + normalised[:, 1] - 1.5 * normalised[:, 2]
        spread = y.std()
        s = x - (x.std() / spread if spread > 0 else 0.0) * y
        pulse[start : start + length] += taper * (s - s.mean())
    return bandpass(pulse, fps, band_hz)


def bandpass(x: Array, fps: float, band_hz: tuple[float, float], order: int = 3) -> Array:
    """Zero-phase Butterworth band-pass (second-order sections: stable at low cut-offs)."""
    sos = signal.butter(order, band_hz, btype="bandpass", fs=fps, output="sos")
    padlen = min(len(x) - 1, 3 * (2 * order + 1))
    return np.asarray(signal.sosfiltfilt(sos, signal.detrend(x), padlen=padlen), dtype=np.float64)


def spectrum(x: Array, fps: float, resolution_hz: float = 0.01) -> tuple[Array, Array]:
    """Hann-windowed power spectrum, zero-padded to a fine bin spacing (peak location, not resolution)."""
    n_fft = max(len(x), int(2 ** np.ceil(np.log2(fps / resolution_hz))))
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft)) ** 2
    return np.fft.rfftfreq(n_fft, 1.0 / fps).astype(np.float64), power.astype(np.float64)


def _near(freqs: Array, centre: float, half_width: float) -> NDArray[np.bool_]:
    return np.abs(freqs - centre) <= half_width


def relative(rgb: Array) -> Array:
    """Each channel as its change relative to its own mean: a light's share, independent of the surface."""
    mean = rgb.mean(axis=0)
    return np.asarray(rgb / np.where(mean > 0, mean, 1.0) - 1.0, dtype=np.float64)


def _sinusoids(hz: Sequence[float], n: int, fps: float) -> Array:
    t = np.arange(n) / fps
    return np.column_stack([f(2 * np.pi * h * t) for h in hz for f in (np.cos, np.sin)])


def _remove(x: Array, basis: Array) -> Array:
    coef, *_ = np.linalg.lstsq(basis, x - x.mean(axis=0), rcond=None)
    return np.asarray(x - basis @ coef, dtype=np.float64)


def lamp_lines(
    background: Array, fps: float, band_hz: tuple[float, float], *, ratio: float = 10.0, most: int = 3
) -> list[float]:
    """The frequencies of the lights flickering in the band, as the background shows them (strongest first).

    One at a time: the strongest line of the background's relative change (all channels' power), if it stands
    `ratio` times over the band's median, is located between bins (a parabola through the log power) and
    its sinusoid removed before looking again, so a line's own side lobes are never taken for more lamps.
    """
    x = np.column_stack([bandpass(c, fps, band_hz) for c in relative(background).T])
    n_fft = 4 * len(x)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / fps)
    in_band = np.flatnonzero((freqs >= band_hz[0]) & (freqs <= band_hz[1]))
    found: list[float] = []
    for _ in range(most):
        power = (np.abs(np.fft.rfft(x * np.hanning(len(x))[:, None], n_fft, axis=0)) ** 2).sum(axis=1)
        k = int(in_band[np.argmax(power[in_band])])
        if power[k] <= ratio * float(np.median(power[in_band])) or not 0 < k < len(power) - 1:
            break
        # A line is narrow: 0.3 Hz away a sinusoid's power is down by its window's side lobes (> 30 dB for
        # Hann), a step's (a camera's exposure change) or a drift's by far less. Those are not lamps.
        beside = np.interp([freqs[k] - 0.3, freqs[k] + 0.3], freqs, power)
        if power[k] < ratio * float(beside.mean()):
            break
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-30)
        shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
        found.append(float(freqs[k] + shift * (freqs[1] - freqs[0])))
        x = _remove(x, _sinusoids(found[-1:], len(x), fps))
    return found


def cancel_light(skin: Array, background: Array, fps: float, band_hz: tuple[float, float]) -> tuple[Array, list[float]]:
    """The skin's colour with the lights the background shows taken out, and their frequencies.

    A lamp flickering in the band shows in the background as spectral lines (the pulse never does); at each
    line's frequency the skin's relative change is fitted with a sine and a cosine, per channel, over the whole
    window, and removed. A fitted sinusoid takes the line's leakage with it, which masking bins never did (a
    mask left the line's skirts to be read as a pulse near the lamp), and nothing of the background's own
    noise enters the skin. A pulse at another rate is nearly orthogonal to those sinusoids over the window and
    stays; a pulse at the lamp's rate is removed with it, and the caller abstains there.
    """
    lamps = lamp_lines(background, fps, band_hz)
    if not lamps:
        return skin, []
    cleaned = (1.0 + _remove(relative(skin), _sinusoids(lamps, len(skin), fps))) * skin.mean(axis=0)
    return np.asarray(cleaned, dtype=np.float64), lamps


def pbv_cosine(skin: Array, f_hz: float, fps: float, band_hz: tuple[float, float]) -> tuple[float, float]:
    """How much the skin's colour change at `f_hz` looks like blood: (cosine with PBV, cosine of its colour part).

    Each channel's Fourier coefficient at the rate (relative units, Hann-weighted), turned so green's is real
    and positive; a pulse moves all three in phase, green most. Noise points anywhere; a red, blue or amber
    lamp points at its own colour. PBV is close to the grey axis (cosine 0.95), so a change of brightness
    alone (a head moving over its own shading with each breath) also scores high on the first; the second
    takes the grey part out of both and compares what colour is left (green up, red down, for blood), and is 0
    when almost nothing is left.
    """
    s = np.column_stack([bandpass(c, fps, band_hz) for c in relative(skin).T])
    t = np.arange(len(s)) / fps
    coef = (s * (np.hanning(len(s)) * np.exp(-2j * np.pi * f_hz * t))[:, None]).sum(axis=0)
    if abs(coef[1]) == 0:
        return 0.0, 0.0
    aligned = (coef * np.conj(coef[1]) / abs(coef[1])).real
    norm = float(np.linalg.norm(aligned))
    if norm == 0:
        return 0.0, 0.0
    colour, pbv_colour = aligned - aligned.mean(), PBV - PBV.mean()
    # A pulse's colour part is a third of the whole (|PBV - mean| / |PBV|); a tenth is brightness with noise.
    if float(np.linalg.norm(colour)) < 0.1 * norm:
        return float(aligned @ PBV / norm), 0.0
    return float(aligned @ PBV / norm), float(colour @ pbv_colour / np.linalg.norm(colour) / np.linalg.norm(pbv_colour))


def pulse_rate(
    x: Array, fps: float, band_hz: tuple[float, float], keep: NDArray[np.bool_] | None = None
) -> tuple[float, float] | None:
    """(rate in /min, SNR in dB) of the strongest harmonic series in the band (among `keep`), or None.

    Harmonic sum: a candidate f scores P(f) + P(2f)/2. A PPG wave with a strong dicrotic notch puts
    much of its power at 2f; picking the plain peak would then double the rate.
    SNR after de Haan & Jeanne: power near f and its harmonics against the rest of 0.5-4 Hz.
    """
    freqs, power = spectrum(x, fps)
    choice = power if keep is None else np.where(keep, power, 0.0)
    in_band = np.flatnonzero((freqs >= band_hz[0]) & (freqs <= band_hz[1]))
    if in_band.size == 0 or not np.any(choice[in_band] > 0):
        return None
    doubled = np.interp(2.0 * freqs[in_band], freqs, choice)
    best = int(in_band[np.argmax(choice[in_band] + 0.5 * doubled)])
    f0 = float(freqs[best])
    # The Hann window's main lobe is +-2/T wide: narrower "signal" bins would count the pulse's own
    # leakage as noise. Every harmonic in range is pulse, not noise (a PPG wave is far from a sine).
    half = max(0.1, 2.0 * fps / len(x))
    signal_bins = np.zeros_like(freqs, dtype=bool)
    for k in range(1, 5):
        signal_bins |= _near(freqs, k * f0, half)
    wide = (freqs >= 0.5) & (freqs <= 4.0)  # a candidate passed over is still not pulse: it counts as noise
    noise = float(power[wide & ~signal_bins].sum())
    energy = float(power[wide & signal_bins].sum())
    if energy <= 0:
        return None
    snr = 10.0 * np.log10(energy / noise) if noise > 0 else 60.0
    return f0 * 60.0, float(snr)


def _project(rgb: Array, config: RppgConfig) -> Array:
    if config.method == "chrom":
        return chrom(rgb, config.fps, config.band_hz)
    return bandpass(pos(rgb, config.fps), config.fps, config.band_hz)


# -- windows and the final answer ------------------------------------------------------------


def _gate(samples: Sequence[Sample], config: RppgConfig) -> str | None:
    """Why a window's frames cannot carry a pulse, before any signal processing."""
    found = np.array([s.face_found for s in samples])
    if found.mean() < config.min_face_fraction:
        return FACE_NOT_FOUND
    faces = [s for s in samples if s.face_found]
    skin = float(np.mean([s.brightness for s in faces]))
    walls = [s.background_rgb for s in faces if np.all(np.isfinite(s.background_rgb))]
    room = float(np.mean(np.asarray(walls) @ LUMA)) if walls else skin
    if skin < config.min_skin_luma or (skin < config.min_brightness and room < config.min_brightness):
        return TOO_DARK
    if np.median([s.motion_px for s in faces]) > config.max_motion_px_per_frame:
        return TOO_MUCH_MOVEMENT
    return None


def _traces(samples: Sequence[Sample], config: RppgConfig) -> tuple[Array, Array | None] | str:
    """The skin's and the background's colour on the uniform grid, or why the window has none."""
    reason = _gate(samples, config)
    if reason is not None:
        return reason
    faces = [s for s in samples if s.face_found and np.all(np.isfinite(s.skin_rgb))]
    if len(faces) < config.fps * 4:  # a face, but no skin colour to read on it (e.g. a strong green cast)
        return SIGNAL_TOO_WEAK
    times = np.array([s.t for s in faces])
    try:
        _, skin = resample_uniform(times, np.array([s.skin_rgb for s in faces], dtype=np.float64), config.fps)
        # The background may be out of the frame (a close face): then there is nothing to take the light from.
        background = None
        if all(np.all(np.isfinite(s.background_rgb)) for s in faces):
            _, background = resample_uniform(
                times, np.array([s.background_rgb for s in faces], dtype=np.float64), config.fps
            )
    except GapError:  # the face (or the camera) was gone long enough to miss a beat
        return FACE_NOT_FOUND if len(faces) < len(samples) else SIGNAL_TOO_WEAK
    if len(skin) < config.fps * 4 or np.any(skin.mean(axis=0) <= 0):
        return SIGNAL_TOO_WEAK
    if background is not None and not np.all(background.mean(axis=0) > 0):
        background = None
    return skin, background


def analyse_window(samples: Sequence[Sample], config: RppgConfig) -> Window:
    start, end = samples[0].t, samples[-1].t
    traces = _traces(samples, config)
    if isinstance(traces, str):
        return Window(start, end, None, None, traces)
    skin, background = traces
    lamps: list[float] = []
    if background is not None:
        skin, lamps = cancel_light(skin, background, config.fps, config.band_hz)
    referenced = background is not None
    pulse = _project(skin, config)
    freqs, _ = spectrum(pulse, config.fps)
    keep = np.ones_like(freqs, dtype=bool)
    lobe = config.fps / len(skin)  # a lamp's sinusoid is out: only its own bin is beyond telling apart
    reason, snr = (LIGHT_FLICKER if lamps else SIGNAL_TOO_WEAK), None
    # The strongest rate that looks like a pulse, among the few strongest: breathing's motion can put a
    # harmonic over a weak pulse (dark skin), and it fails the colour test where the pulse passes it.
    for _ in range(config.candidates):
        found = pulse_rate(pulse, config.fps, config.band_hz, keep)
        if found is None or found[1] < config.min_snr_db:
            break
        bpm, snr = found
        keep &= ~_near(freqs, bpm / 60.0, 2.0 * config.fps / len(skin))
        if any(abs(bpm / 60.0 / k - hz) < lobe for hz in lamps for k in (1, 2)):
            reason = LIGHT_FLICKER  # at a lamp's rate (or twice it) a pulse cannot be told from the light
            continue
        whole, colour = pbv_cosine(skin, bpm / 60.0, config.fps, config.band_hz)
        if whole >= config.min_pbv_cosine and colour >= config.min_colour_cosine:
            return Window(start, end, bpm, snr, None, referenced)
    return Window(start, end, None, snr, reason, referenced)


class _Windowing(Protocol):
    @property
    def window_s(self) -> float: ...
    @property
    def step_s(self) -> float: ...


def windows_of(samples: Sequence[_S], config: _Windowing) -> list[Sequence[_S]]:
    """Windows of `window_s`, every `step_s`, by capture time (not by frame count: frames get dropped)."""
    if not samples:
        return []
    times = np.array([s.t for s in samples])
    out: list[Sequence[_S]] = []
    start = times[0]
    while start + config.window_s <= times[-1] + 1e-9:
        lo, hi = np.searchsorted(times, [start, start + config.window_s])
        out.append(samples[lo:hi])
        start += config.step_s
    return out


def summarise(
    windows: list[Window], *, min_valid: int, min_fraction: float, max_spread: float, clear_snr_db: float
) -> Estimate:
    """A final value from per-window values, or an abstention with the most common reason.

    Shared by heart and breathing rate: enough windows must carry a value, and they must agree
    (inter-quartile range within `max_spread`); quality is the share of valid windows, weighted
    by how clearly they stood out (median SNR against `clear_snr_db`).
    """
    if not windows:
        return Estimate(None, 0.0, [], TOO_SHORT)
    valid = [w for w in windows if w.bpm is not None]
    share = len(valid) / len(windows)
    if len(valid) < min_valid or share < min_fraction:
        reasons = Counter(w.reason for w in windows if w.reason is not None)
        return Estimate(None, 0.0, windows, reasons.most_common(1)[0][0] if reasons else SIGNAL_TOO_WEAK)
    rates = np.array([w.bpm for w in valid], dtype=np.float64)
    q75, q25 = np.percentile(rates, [75, 25])
    if q75 - q25 > max_spread:
        return Estimate(None, 0.0, windows, SIGNAL_TOO_WEAK)
    clarity = float(np.clip(np.median([w.snr_db or 0.0 for w in valid]) / clear_snr_db, 0.0, 1.0))
    return Estimate(float(np.median(rates)), round(share * (0.5 + 0.5 * clarity), 3), windows)


def estimate_heart_rate(samples: Sequence[Sample], config: RppgConfig | None = None) -> Estimate:
    """Per-window estimates and a final value, or an abstention with the most common reason."""
    config = config or RppgConfig()
    windows = [analyse_window(w, config) for w in windows_of(samples, config)]
    found = summarise(
        windows,
        min_valid=config.min_valid_windows,
        min_fraction=config.min_valid_fraction,
        max_spread=config.max_spread_bpm,
        clear_snr_db=10.0,
    )
    valid = [w.bpm for w in windows if w.bpm is not None]
    unreferenced = not any(w.referenced for w in windows if w.bpm is not None)
    if found.bpm is not None:
        spread = max(valid) - min(valid)
        if unreferenced and spread < config.min_unreferenced_spread_bpm:
            return Estimate(None, 0.0, windows, LIGHT_FLICKER)
    return found
