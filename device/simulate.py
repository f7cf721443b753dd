"""Simulated Bluetooth health devices: plausible vitals for demos and load tests, no hardware.

Pure: each device turns a random generator and a time into the observation payload a
real decoder would produce, so everything downstream (outbox, forwarder, hub) runs the
real code path.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Obs = dict[str, Any]


@dataclass(frozen=True)
class SimulatedDevice:
    id: str
    name: str
    model: str
    read: Callable[[random.Random, datetime], list[Obs]]

    def reading(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        device = {"id": self.id, "type": "simulated", "manufacturer": "Simulated", "model": self.model}
        return {"observations": [{**o, "effective": now, "device": device} for o in self.read(rng, now)]}


def _obs(code: str, value: float, unit: str, ndigits: int = 0) -> Obs:
    return {"code": code, "value": round(value, ndigits) if ndigits else float(round(value)), "unit": unit}


def _blood_pressure(rng: random.Random, _now: datetime) -> list[Obs]:
    systolic = rng.gauss(124, 12)
    diastolic = min(systolic - 25, rng.gauss(79, 8))
    return [
        _obs("8480-6", systolic, "mm[Hg]"),
        _obs("8462-4", diastolic, "mm[Hg]"),
        _obs("8478-0", diastolic + (systolic - diastolic) / 3, "mm[Hg]"),
        _obs("8867-4", rng.gauss(72, 9), "/min"),
    ]


def _pulse_oximeter(rng: random.Random, _now: datetime) -> list[Obs]:
    return [_obs("59408-5", min(100.0, rng.gauss(97, 1.5)), "%"), _obs("8867-4", rng.gauss(74, 10), "/min")]


def _thermometer(rng: random.Random, _now: datetime) -> list[Obs]:
    return [_obs("8310-5", rng.gauss(36.8, 0.35), "Cel", 1)]


def _scale(rng: random.Random, _now: datetime) -> list[Obs]:
    weight = rng.gauss(78, 0.6)
    return [_obs("29463-7", weight, "kg", 1), _obs("39156-5", weight / 1.76**2, "kg/m2", 1)]


def _glucose(rng: random.Random, _now: datetime) -> list[Obs]:
    return [_obs("41653-7", max(60.0, rng.gauss(105, 18)), "mg/dL")]


def _heart_rate_strap(rng: random.Random, _now: datetime) -> list[Obs]:
    return [_obs("8867-4", rng.gauss(70, 8), "/min")]


DEVICES: tuple[SimulatedDevice, ...] = (
    SimulatedDevice("sim-bp-01", "blood pressure cuff", "SimCuff 1", _blood_pressure),
    SimulatedDevice("sim-spo2-01", "pulse oximeter", "SimOx 1", _pulse_oximeter),
    SimulatedDevice("sim-temp-01", "thermometer", "SimTherm 1", _thermometer),
    SimulatedDevice("sim-scale-01", "scale", "SimScale 1", _scale),
    SimulatedDevice("sim-glu-01", "glucose meter", "SimGluco 1", _glucose),
    SimulatedDevice("sim-hr-01", "heart-rate strap", "SimStrap 1", _heart_rate_strap),
)


def single_reading(rng: random.Random, now: datetime, device_id: str = "sim-hr-01") -> dict[str, Any]:
    """One observation per envelope: the unit the ingest benchmark counts."""
    device = {"id": device_id, "type": "simulated", "model": "SimStrap 1"}
    return {"observations": [{**_obs("8867-4", rng.gauss(70, 8), "/min"), "effective": now, "device": device}]}
