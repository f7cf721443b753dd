"""Frame times to the uniform grid a spectrum needs: pure numpy, shared by the sources and the estimators.

Spectral estimates assume equally spaced samples; camera frames are not (jitter, drops, exposure
changes). Everything that turns per-frame values into a rate goes through `resample_uniform`,
which refuses to bridge a hole long enough to invent a beat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

# Longest hole in the frame times `resample_uniform` bridges by default. A pulse beat lasts 0.3-1.4 s:
# a straight line over half a second already flattens a beat, and anything longer invents one.
MAX_GAP_S = 0.5


class GapError(ValueError):
    """The frame times have holes longer than the limit; `gaps` lists each as (last time before, first after)."""

    def __init__(self, gaps: Sequence[tuple[float, float]], max_gap: float) -> None:
        self.gaps = list(gaps)
        self.max_gap = max_gap
        listed = ", ".join(f"{before:.3f}-{after:.3f} s" for before, after in self.gaps)
        super().__init__(
            f"{len(self.gaps)} gap(s) longer than {max_gap:g} s between frames ({listed}): interpolating across "
            "would invent the signal; cut the trace at the gaps (find_gaps) or measure again"
        )


def find_gaps(times: ArrayLike, max_gap: float = MAX_GAP_S) -> list[tuple[float, float]]:
    """Each pair of consecutive times more than `max_gap` seconds apart, as (before, after)."""
    t = np.asarray(times, dtype=np.float64)
    where = np.flatnonzero(np.diff(t) > max_gap)
    return [(float(t[i]), float(t[i + 1])) for i in where]


def resample_uniform(
    times: ArrayLike, values: ArrayLike, fps: float, *, max_gap: float | None = MAX_GAP_S
) -> tuple[FloatArray, FloatArray]:
    """A per-frame signal (N values, or N x K) linearly interpolated onto a uniform grid at `fps`.

    Spectral estimates (Welch, FFT) assume equally spaced samples; frames are not (jitter, drops,
    exposure changes), and treating them as if they were smears and shifts the pulse peak. The grid
    starts at the first time and steps by 1/fps up to the last, so nothing is extrapolated.

    A gap longer than `max_gap` seconds raises `GapError` (listing every gap) instead of being
    bridged by a straight line, because a line over a missing beat looks like a plausible signal
    and nothing downstream could tell. Raising rather than returning a mask is deliberate: a mask
    is easy to ignore, an exception is not; callers that can use part of a trace catch it and cut
    at `GapError.gaps` (or call `find_gaps` first), and `max_gap=None` turns the check off.
    Returns (grid times, grid values), float64, values shaped like the input (n or n x K).
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if t.ndim != 1 or t.size < 2:
        raise ValueError(f"need a 1-D sequence of at least two frame times, got shape {t.shape}")
    if v.ndim not in (1, 2) or v.shape[0] != t.size:
        raise ValueError(f"values must be N or N x K with N = {t.size} (one per frame time), got shape {v.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("frame times must be finite numbers")
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0)) + 1
        raise ValueError(f"frame times must increase: times[{i}] = {t[i]} is not after times[{i - 1}] = {t[i - 1]}")
    if max_gap is not None:
        gaps = find_gaps(t, max_gap)
        if gaps:
            raise GapError(gaps, max_gap)
    count = math.floor((t[-1] - t[0]) * fps + 1e-9) + 1
    grid = t[0] + np.arange(count, dtype=np.float64) / fps
    if v.ndim == 1:
        return grid, np.interp(grid, t, v)
    resampled = np.empty((count, v.shape[1]), dtype=np.float64)
    for column in range(v.shape[1]):
        resampled[:, column] = np.interp(grid, t, v[:, column])
    return grid, resampled
