"""Exponential backoff with full jitter: how both sides retry, so a fleet that lost its
hub at the same moment does not come back at the same moment."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 0.5
    maximum_s: float = 60.0
    factor: float = 2.0
    _attempt: int = field(default=0, init=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """Delay before the next attempt: uniform in [cap/2, cap], cap growing exponentially.

        Half-jitter rather than full jitter keeps a floor, so a broker that is down is not
        hammered by near-zero delays.
        """
        cap = min(self.maximum_s, self.initial_s * self.factor**self._attempt)
        self._attempt += 1
        return self._rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        self._attempt = 0
