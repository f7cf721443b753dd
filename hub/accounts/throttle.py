"""How long a login must wait after recent failures: the arithmetic (`retry_after`), and the failures kept.

Failures are counted per account and per client address over a window. The first few are
free (typos); after that each failure doubles the wait, up to a cap. While a wait is in
force every attempt is refused without checking the password, so guessing costs time
whatever the guesser's speed, and the account owner is slowed, not locked out for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.db import Connection

KEEP_FAILURES_S = 24 * 3600  # longer than any window: older failures are dropped when the next one is kept


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


def failure_times(conn: Connection, key: str, since: float) -> list[float]:
    """When `key` (an account, "user:<email>", or a client address, "ip:<address>") failed to log in after `since`."""
    return [r[0] for r in conn.execute("SELECT at FROM login_failures WHERE key = ? AND at > ?", (key, since))]


def record_failure(conn: Connection, keys: Sequence[str], now: float) -> None:
    """One failure for each key (the account and the address), in the caller's transaction; failures older than
    a day are dropped at the same time, so the table holds no more than a day's worth."""
    conn.executemany("INSERT INTO login_failures (key, at) VALUES (?, ?)", [(k, now) for k in keys])
    conn.execute("DELETE FROM login_failures WHERE at < ?", (now - KEEP_FAILURES_S,))


def forget_failures(conn: Connection, key: str) -> None:
    """A right password clears the account's failures (the address's stay: it may be guessing other accounts)."""
    conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))
