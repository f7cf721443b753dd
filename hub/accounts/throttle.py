"""How long a login must wait after recent failures: pure arithmetic, the store keeps the failures.

Failures are counted per account and per client address over a window. The first few are
free (typos); after that each failure doubles the wait, up to a cap. While a wait is in
force every attempt is refused without checking the password, so guessing costs time
whatever the guesser's speed, and the account owner is slowed, not locked out for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottlePolicy:
    window_s: float = 15 * 60
    free_failures: int = 3
    first_delay_s: float = 2.0
    max_delay_s: float = 15 * 60


def retry_after(failures: Sequence[float], now: float, policy: ThrottlePolicy = ThrottlePolicy()) -> float:
    """Seconds until the next attempt may be checked (0 = now), given failure times inside the window."""
    recent = sorted(t for t in failures if now - policy.window_s < t <= now)
    over = len(recent) - policy.free_failures
    if over < 0:
        return 0.0
    delay = min(policy.first_delay_s * 2**over, policy.max_delay_s)
    return float(max(0.0, recent[-1] + delay - now))
