"""Camera vitals end to end: frames -> face signals -> heart and breathing rate -> observations.

What `kiosk camera vitals` prints and what goes into the outbox. A value the estimator abstained
from is never sent; the report says why, in words the kiosk screen can show. A value that is sent
carries how it was computed (`method`) and how clearly it stood out (`quality`), and its device is
the camera, so a provider can tell it from a cuff reading.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from device.camera.face import FaceSample, FaceTracker
from device.camera.respiration import RespirationConfig, estimate_respiratory_rate
from device.camera.rppg import Estimate, RppgConfig, Window, estimate_heart_rate
from device.camera.source import Frame
from device.protocol.envelope import utc_iso

HEART_RATE = ("8867-4", "heart_rate")
RESPIRATORY_RATE = ("9279-1", "respiratory_rate")


@dataclass(frozen=True)
class CameraVitals:
    heart: Estimate
    breathing: Estimate
    method: str  # e.g. rppg-pos
    frames: int
    seconds: float  # capture time covered
    processing_s: float  # wall time from first frame to the estimates

    def report(self, effective: datetime, device: dict[str, Any]) -> dict[str, Any]:
        """The JSON the command prints: observations, per-window values, quality, and what was abstained from."""
        return {
            # As people read them: the LOINC code under its name (the outbox gets the protocol's shape).
            "observations": [{"loinc": o.pop("code"), **o} for o in self.observations(effective, device)],
            "windows": {
                HEART_RATE[1]: [_window(w) for w in self.heart.windows],
                RESPIRATORY_RATE[1]: [_window(w) for w in self.breathing.windows],
            },
            "quality": {HEART_RATE[1]: self.heart.quality, RESPIRATORY_RATE[1]: self.breathing.quality},
            "abstained": {HEART_RATE[1]: self.heart.abstained, RESPIRATORY_RATE[1]: self.breathing.abstained},
            "frames": self.frames,
            "seconds": round(self.seconds, 2),
            "frames_per_s_processed": round(self.frames / self.processing_s, 1) if self.processing_s > 0 else None,
        }

    def observations(self, effective: datetime, device: dict[str, Any]) -> list[dict[str, Any]]:
        """Protocol observations (device: the camera) for each vital not abstained from."""
        out = []
        for (code, _), estimate, method in (
            (HEART_RATE, self.heart, self.method),
            (RESPIRATORY_RATE, self.breathing, "camera-motion"),
        ):
            if estimate.bpm is None:
                continue
            out.append(
                {
                    "code": code,
                    "value": round(estimate.bpm, 1),
                    "unit": "/min",
                    "effective": utc_iso(effective),
                    "device": device,
                    "flags": [],
                    "method": method,
                    "quality": estimate.quality,
                }
            )
        return out


def _window(w: Window) -> dict[str, Any]:
    return {
        "start_s": round(w.start, 2),
        "end_s": round(w.end, 2),
        "value": round(w.bpm, 1) if w.bpm is not None else None,
        "snr_db": round(w.snr_db, 1) if w.snr_db is not None else None,
        "abstained": w.reason,
    }


def measure(
    frames: Iterable[Frame],
    *,
    tracker: FaceTracker | None = None,
    rppg: RppgConfig | None = None,
    respiration: RespirationConfig | None = None,
) -> CameraVitals:
    """Run the whole pipeline over a finite stream of frames (a file, or a live capture of N seconds)."""
    rppg = rppg or RppgConfig()
    started = time.perf_counter()
    samples: list[FaceSample] = (tracker or FaceTracker()).extract(frames)
    heart = estimate_heart_rate(samples, rppg)
    breathing = estimate_respiratory_rate(samples, respiration)
    seconds = samples[-1].t - samples[0].t if len(samples) > 1 else 0.0
    return CameraVitals(heart, breathing, f"rppg-{rppg.method}", len(samples), seconds, time.perf_counter() - started)
